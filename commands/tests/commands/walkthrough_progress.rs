//! walkthrough_progress: the end user's selection (a key-index pointer written with the start),
//! and step completions that conflict instead of skipping when the run moved on meanwhile.

use crate::given::*;
use crate::walkthroughs::{published, Authored};
use chrono::Utc;
use commands::services::tool_calls;
use commands::services::walkthrough_progress::{self as progress, RunCache, Source, Target};
use domain::metadata::Actor;
use domain::tool_call::{Outcome, ToolCall, ToolCallRecord};
use domain::walkthrough_progress::{
    LeftRun, ProgressError, ProgressEvent, StartingVersion, WalkthroughProgress,
};
use domain::{Aggregate, EventMetadata};
use eventstore::{CommitError, ExecuteError};
use uuid::Uuid;

fn target(a: &Authored, user: Uuid) -> Target {
    Target {
        org_id: a.org,
        server_id: a.server,
        end_user_id: user,
        walkthrough_id: a.wt,
    }
}

fn newest(a: &Authored) -> StartingVersion {
    StartingVersion {
        version: 1,
        steps: a.steps.clone(),
    }
}

fn as_end_user(id: Uuid) -> EventMetadata {
    EventMetadata::by(Actor::EndUser { id })
}

async fn select(
    given: &Given,
    cache: &RunCache,
    t: Target,
    resume: bool,
    newest: &StartingVersion,
) -> Vec<ProgressEvent> {
    progress::select(
        &given.store,
        cache,
        t,
        resume,
        newest,
        Utc::now(),
        &as_end_user(t.end_user_id),
    )
    .await
    .unwrap()
    .events
}

/// The end user's current run, read from Postgres (a fresh cache, as on another instance).
async fn current(given: &Given, t: Target) -> (Uuid, WalkthroughProgress, i64) {
    let (wt, run, version, source) = progress::current(
        &given.store,
        &RunCache::default(),
        t.org_id,
        t.end_user_id,
        false,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(source, Source::Read);
    (wt, run, version)
}

fn call(t: Target) -> ToolCallRecord {
    ToolCallRecord {
        server_id: t.server_id,
        session_id: None,
        end_user_id: Some(t.end_user_id),
        tracking_id: None,
        tool: "next_walkthrough_step".into(),
        outcome: Outcome::Ok,
        error: None,
        duration_ms: 1,
        duration_us: None,
        client_name: None,
        client_version: None,
        arguments: serde_json::json!({}),
    }
}

async fn recorded_calls(given: &Given) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1")
        .bind(ToolCall::TYPE)
        .fetch_one(given.store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn selecting_starts_then_resumes_and_restarting_leaves_the_old_run_behind() {
    let given = Given::new().await;
    let a = published(&given, 2).await;
    let cache = RunCache::default();
    let t = target(&a, Uuid::new_v4());
    assert!(
        progress::current(&given.store, &cache, a.org, t.end_user_id, false)
            .await
            .unwrap()
            .is_none()
    );

    let started = select(&given, &cache, t, true, &newest(&a)).await;
    assert!(matches!(
        &started[..],
        [ProgressEvent::WalkthroughStarted {
            restarted_from: None,
            version: 1,
            ..
        }]
    ));
    let (wt, run, version) = current(&given, t).await;
    assert_eq!((wt, version), (a.wt, 1));
    assert_eq!(run.run.unwrap().current_step(), Some(a.steps[0]));

    assert!(
        select(&given, &cache, t, true, &newest(&a))
            .await
            .is_empty(),
        "a resume writes nothing"
    );
    let restarted = select(&given, &cache, t, false, &newest(&a)).await;
    assert!(matches!(
        &restarted[..],
        [ProgressEvent::WalkthroughStarted { restarted_from: Some(LeftRun { version: 1, step_id: Some(s) }), .. }] if *s == a.steps[0]
    ));
    assert_eq!(current(&given, t).await.2, 2);
}

#[tokio::test]
async fn a_step_staged_on_a_run_that_lost_the_selection_conflicts_and_records_no_call() {
    let given = Given::new().await;
    let a = published(&given, 2).await;
    let cache = RunCache::default();
    let user = Uuid::new_v4();
    let first = target(&a, user);
    select(&given, &cache, first, true, &newest(&a)).await;
    let (_, run, version) = current(&given, first).await;
    let (outcome, staged) =
        progress::stage_step(first, None, (run, version), Utc::now(), &as_end_user(user)).unwrap();
    assert!(matches!(
        &outcome.events[..],
        [ProgressEvent::StepCompleted { step_index: 0, .. }]
    ));

    // Meanwhile another client of the same end user switches to another walkthrough.
    let other = Uuid::new_v4();
    let meta = as_user(a.owner);
    commands::services::walkthroughs::create(
        &given.store,
        a.org,
        other,
        a.owner,
        "Other".into(),
        None,
        &meta,
    )
    .await
    .unwrap();
    let second = Target {
        walkthrough_id: other,
        ..first
    };
    select(
        &given,
        &cache,
        second,
        true,
        &StartingVersion {
            version: 1,
            steps: vec![Uuid::new_v4()],
        },
    )
    .await;
    assert_eq!(current(&given, first).await.0, other, "the pointer moved");

    let committed = tool_calls::record(
        &given.store,
        a.org,
        call(first),
        Some(staged),
        &as_end_user(user),
    )
    .await;
    assert!(
        matches!(committed, Err(CommitError::Conflict)),
        "{committed:?}"
    );
    assert_eq!(
        recorded_calls(&given).await,
        0,
        "a call's effects and its record commit together"
    );
    let untouched = progress::load(&given.store, a.wt, user).await.unwrap();
    assert_eq!(untouched.run.unwrap().current_step(), Some(a.steps[0]));
}

#[tokio::test]
async fn two_completions_decided_on_one_state_commit_once_and_the_retry_names_the_real_step() {
    let given = Given::new().await;
    let a = published(&given, 2).await;
    let cache = RunCache::default();
    let user = Uuid::new_v4();
    let t = target(&a, user);
    select(&given, &cache, t, true, &newest(&a)).await;
    let (_, run, version) = current(&given, t).await;
    let meta = as_end_user(user);
    let (_, one) =
        progress::stage_step(t, None, (run.clone(), version), Utc::now(), &meta).unwrap();
    let (_, two) = progress::stage_step(t, None, (run, version), Utc::now(), &meta).unwrap();
    tool_calls::record(&given.store, a.org, call(t), Some(one), &meta)
        .await
        .unwrap();
    let lost = tool_calls::record(&given.store, a.org, call(t), Some(two), &meta).await;
    assert!(matches!(lost, Err(CommitError::Conflict)), "{lost:?}");

    // Decided again on fresh state, pinned to the step it was completing: refused, naming the
    // current one, instead of completing a step nobody was shown.
    let (_, fresh, version) = current(&given, t).await;
    let retry = progress::stage_step(
        t,
        Some(a.steps[0]),
        (fresh.clone(), version),
        Utc::now(),
        &meta,
    );
    assert!(matches!(
        retry,
        Err(ExecuteError::Domain(ProgressError::StaleStep { current_step_id })) if current_step_id == a.steps[1]
    ));
    let (last, uow) = progress::stage_step(t, None, (fresh, version), Utc::now(), &meta).unwrap();
    assert!(matches!(
        &last.events[..],
        [
            ProgressEvent::StepCompleted {
                next_step_id: None,
                ..
            },
            ProgressEvent::WalkthroughCompleted { .. }
        ]
    ));
    given.store.commit(uow).await.unwrap();
    let (_, done, version) = current(&given, t).await;
    assert!(matches!(
        progress::stage_step(t, None, (done, version), Utc::now(), &meta),
        Err(ExecuteError::Domain(ProgressError::AlreadyCompleted))
    ));
    assert!(matches!(
        progress::stage_step(
            t,
            None,
            (WalkthroughProgress::default(), 0),
            Utc::now(),
            &meta
        ),
        Err(ExecuteError::Domain(ProgressError::NoWalkthroughSelected))
    ));
    assert_eq!(recorded_calls(&given).await, 1);
}
