//! walkthrough_progress: each end user's current run of each walkthrough.

use crate::given::*;
use chrono::{DateTime, Duration, Utc};
use domain::values::OrgId;
use domain::walkthrough::{Walkthrough, WalkthroughEvent};
use domain::walkthrough_progress::{stream_id, LeftRun, ProgressEvent, WalkthroughProgress};
use projections::models::walkthrough_progress::{self, ProgressRow};
use uuid::Uuid;

pub struct Run {
    pub org: OrgId,
    pub server: Uuid,
    pub wt: Uuid,
    pub steps: [Uuid; 2],
}

/// An org, a server and a walkthrough (only its creation: progress carries its own steps).
pub async fn walkthrough(given: &mut Given) -> Run {
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    let server = given.server(org, owner, "guide").await;
    let wt = Uuid::new_v4();
    given
        .append::<Walkthrough>(
            wt,
            &by(owner, org.0),
            &[WalkthroughEvent::WalkthroughCreated {
                org_id: org.0,
                title: "Quickstart".into(),
                description: None,
            }],
        )
        .await;
    Run {
        org,
        server,
        wt,
        steps: [Uuid::new_v4(), Uuid::new_v4()],
    }
}

impl Run {
    pub fn started(
        &self,
        user: Uuid,
        at: DateTime<Utc>,
        restarted_from: Option<LeftRun>,
    ) -> ProgressEvent {
        ProgressEvent::WalkthroughStarted {
            org_id: self.org.0,
            walkthrough_id: self.wt,
            end_user_id: user,
            server_id: self.server,
            version: 1,
            steps: self.steps.to_vec(),
            restarted_from,
            at,
        }
    }

    pub fn completed_step(
        &self,
        user: Uuid,
        index: usize,
        took_ms: u64,
        at: DateTime<Utc>,
    ) -> ProgressEvent {
        ProgressEvent::StepCompleted {
            walkthrough_id: self.wt,
            end_user_id: user,
            server_id: self.server,
            version: 1,
            step_id: self.steps[index],
            step_index: index as u32,
            step_count: 2,
            previous_step_id: index.checked_sub(1).map(|i| self.steps[i]),
            next_step_id: self.steps.get(index + 1).copied(),
            time_on_step_ms: took_ms,
            at,
        }
    }

    pub fn completed(&self, user: Uuid, at: DateTime<Utc>) -> ProgressEvent {
        ProgressEvent::WalkthroughCompleted {
            walkthrough_id: self.wt,
            end_user_id: user,
            server_id: self.server,
            version: 1,
            duration_ms: 5_000,
            at,
        }
    }

    pub async fn walk(&self, given: &mut Given, user: Uuid, events: &[ProgressEvent]) {
        given
            .append::<WalkthroughProgress>(
                stream_id(self.wt, user),
                &end_user(user, self.org.0),
                events,
            )
            .await;
    }
}

async fn row(given: &Given, run: &Run, user: Uuid) -> ProgressRow {
    let rows = walkthrough_progress::of_end_user(given.pool(), run.org, user)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    rows.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_run_moves_step_by_step_to_completed_and_a_restart_counts_another_run() {
    let mut given = Given::new().await;
    let run = walkthrough(&mut given).await;
    let user = Uuid::new_v4();
    let t0 = now();
    run.walk(&mut given, user, &[run.started(user, t0, None)])
        .await;
    given.project().await;
    let r = row(&given, &run, user).await;
    assert_eq!(r.title.as_deref(), Some("Quickstart"));
    assert_eq!(
        (
            r.status.as_str(),
            r.current_step_id,
            r.steps_completed,
            r.step_count,
            r.runs
        ),
        ("in_progress", Some(run.steps[0]), 0, 2, 1)
    );
    assert_eq!((r.started_at, r.server_id, r.version), (t0, run.server, 1));
    assert_eq!(
        walkthrough_progress::active_runs(given.pool(), run.org)
            .await
            .unwrap(),
        1
    );

    let t1 = t0 + Duration::seconds(10);
    run.walk(&mut given, user, &[run.completed_step(user, 0, 10_000, t1)])
        .await;
    given.project().await;
    let r = row(&given, &run, user).await;
    assert_eq!(
        (r.current_step_id, r.steps_completed, r.last_activity_at),
        (Some(run.steps[1]), 1, t1)
    );

    let t2 = t1 + Duration::seconds(5);
    run.walk(
        &mut given,
        user,
        &[
            run.completed_step(user, 1, 5_000, t2),
            run.completed(user, t2),
        ],
    )
    .await;
    given.project().await;
    let r = row(&given, &run, user).await;
    assert_eq!(
        (
            r.status.as_str(),
            r.current_step_id,
            r.steps_completed,
            r.completed_at
        ),
        ("completed", None, 2, Some(t2))
    );
    assert_eq!(
        walkthrough_progress::active_runs(given.pool(), run.org)
            .await
            .unwrap(),
        0
    );

    let t3 = t2 + Duration::seconds(60);
    let left = LeftRun {
        version: 1,
        step_id: None,
    };
    run.walk(&mut given, user, &[run.started(user, t3, Some(left))])
        .await;
    given.project().await;
    let r = row(&given, &run, user).await;
    assert_eq!(
        (
            r.status.as_str(),
            r.steps_completed,
            r.runs,
            r.started_at,
            r.completed_at
        ),
        ("in_progress", 0, 2, t3, None)
    );
}

#[tokio::test]
async fn one_batch_or_one_event_at_a_time_give_the_same_row() {
    let mut given = Given::new().await;
    let run = walkthrough(&mut given).await;
    let (alone, batched) = (Uuid::new_v4(), Uuid::new_v4());
    let t0 = now();
    let script = |user: Uuid| {
        vec![
            run.started(user, t0, None),
            run.completed_step(user, 0, 1_000, t0 + Duration::seconds(1)),
            run.completed_step(user, 1, 1_000, t0 + Duration::seconds(2)),
            run.completed(user, t0 + Duration::seconds(2)),
            run.started(
                user,
                t0 + Duration::seconds(3),
                Some(LeftRun {
                    version: 1,
                    step_id: None,
                }),
            ),
            run.completed_step(user, 0, 1_000, t0 + Duration::seconds(4)),
        ]
    };
    for event in script(alone) {
        run.walk(&mut given, alone, &[event]).await;
        given.project().await;
    }
    for event in script(batched) {
        run.walk(&mut given, batched, &[event]).await;
    }
    given.project().await;
    let key = |r: ProgressRow| {
        (
            r.status,
            r.current_step_id,
            r.steps_completed,
            r.step_count,
            r.runs,
            r.started_at,
            r.completed_at,
            r.last_activity_at,
        )
    };
    let (a, b) = (
        key(row(&given, &run, alone).await),
        key(row(&given, &run, batched).await),
    );
    assert_eq!(a, b);
    assert_eq!(
        (a.0.as_str(), a.1, a.2, a.4),
        ("in_progress", Some(run.steps[1]), 1, 2)
    );
}
