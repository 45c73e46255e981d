//! people: end users as persons after identity stitching. Identities with their sources, the
//! identified / anonymous split, sign-ins by the hour, merges that show one person's sessions,
//! calls, tickets and walkthrough runs, and unmerges that give them back.

use crate::given::*;
use crate::walkthrough_progress::walkthrough;
use chrono::Duration;
use domain::end_user::{
    EmailSource, EndUser, EndUserEvent, KeyedIdentities, MergeReason, TrackingId,
};
use domain::ticket::{Ticket, TicketEvent};
use domain::tool_call::{Outcome, ToolCall, ToolCallEvent, ToolCallRecord};
use domain::values::OrgId;
use domain::walkthrough_progress::ProgressEvent;
use projections::models::people::{self, PersonStatus};
use projections::models::tickets::{self as rm_tickets, TicketFilter};
use projections::models::usage::{self, ToolCallFilter};
use projections::models::walkthrough_progress;
use uuid::Uuid;

async fn tracked(given: &mut Given, org: OrgId, server: Uuid, tracking: &str) -> Uuid {
    let id = Uuid::new_v4();
    given
        .append::<EndUser>(
            id,
            &end_user(id, org.0),
            &[EndUserEvent::EndUserIdentified {
                org_id: org.0,
                server_id: server,
                tracking_id: TrackingId::parse(tracking).unwrap(),
            }],
        )
        .await;
    id
}

fn signed_in(org: OrgId, server: Uuid, provider: Uuid, subject: &str) -> EndUserEvent {
    EndUserEvent::EndUserSignedIn {
        org_id: org.0,
        server_id: server,
        provider_id: provider,
        subject: subject.to_owned(),
        email: Some(email("ada@example.com")),
        email_verified: true,
        name: Some("Ada".to_owned()),
        email_keyed: true,
    }
}

async fn call(given: &mut Given, org: OrgId, server: Uuid, user: Uuid) {
    given
        .append::<ToolCall>(
            Uuid::now_v7(),
            &end_user(user, org.0),
            &[ToolCallEvent::ToolCalled(ToolCallRecord {
                server_id: server,
                session_id: None,
                end_user_id: Some(user),
                tracking_id: None,
                tool: "search".into(),
                outcome: Outcome::Ok,
                error: None,
                duration_ms: 1,
                duration_us: None,
                client_name: Some("claude".into()),
                client_version: None,
                arguments: serde_json::json!({}),
            })],
        )
        .await;
}

/// Merges `merged` into `survivor` as the command writes it (both streams).
pub async fn merge(given: &mut Given, org: OrgId, survivor: Uuid, merged: Uuid, tracking: &str) {
    let meta = end_user(survivor, org.0);
    given
        .append::<EndUser>(
            survivor,
            &meta,
            &[EndUserEvent::EndUsersMerged {
                survivor,
                merged,
                reason: MergeReason::TrackingUserSignedIn,
                identities: KeyedIdentities {
                    tracking_ids: vec![TrackingId::parse(tracking).unwrap()],
                    ..Default::default()
                },
            }],
        )
        .await;
    given
        .append::<EndUser>(
            merged,
            &meta,
            &[EndUserEvent::EndUserMergedAway {
                survivor,
                reason: MergeReason::TrackingUserSignedIn,
            }],
        )
        .await;
}

/// Undoes that merge as the command writes it.
pub async fn unmerge(given: &mut Given, org: OrgId, survivor: Uuid, merged: Uuid, tracking: &str) {
    let meta = end_user(survivor, org.0);
    given
        .append::<EndUser>(
            survivor,
            &meta,
            &[EndUserEvent::EndUserUnmerged {
                survivor,
                merged,
                identities: KeyedIdentities {
                    tracking_ids: vec![TrackingId::parse(tracking).unwrap()],
                    ..Default::default()
                },
            }],
        )
        .await;
    given
        .append::<EndUser>(merged, &meta, &[EndUserEvent::EndUserRestored { survivor }])
        .await;
}

#[tokio::test]
async fn identities_are_listed_with_their_source_and_the_list_splits_by_sign_in() {
    let mut given = Given::new().await;
    let run = walkthrough(&mut given).await;
    let (org, server) = (run.org, run.server);
    let anon = tracked(&mut given, org, server, "anon-1").await;
    given
        .append::<EndUser>(
            anon,
            &end_user(anon, org.0),
            &[EndUserEvent::EndUserEmailRecorded {
                email: email("typed@example.com"),
                verified: false,
                source: EmailSource::GetSupport,
            }],
        )
        .await;
    let provider = Uuid::new_v4();
    let ada = Uuid::new_v4();
    given
        .append::<EndUser>(
            ada,
            &end_user(ada, org.0),
            &[signed_in(org, server, provider, "gh-1")],
        )
        .await;
    given.project().await;
    let pool = given.pool();

    let all = people::list(pool, org, None, None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    let identified = people::list(pool, org, Some(true), None, 10).await.unwrap();
    assert_eq!(identified.len(), 1);
    let ada_row = &identified[0];
    assert_eq!(
        (ada_row.id, ada_row.status),
        (ada, PersonStatus::Identified)
    );
    assert_eq!(ada_row.name.as_deref(), Some("Ada"));
    let kinds: Vec<(&str, &str, bool, &str)> = ada_row
        .identities
        .iter()
        .map(|i| {
            (
                i.kind.as_str(),
                i.value.as_str(),
                i.verified,
                i.source.as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("email", "ada@example.com", true, "sign_in"),
            ("provider_subject", "gh-1", true, "sign_in"),
        ]
    );
    assert_eq!(ada_row.identities[1].provider_id, Some(provider));
    let anonymous = people::list(pool, org, Some(false), None, 10)
        .await
        .unwrap();
    assert_eq!(anonymous.len(), 1);
    assert_eq!(anonymous[0].status, PersonStatus::Anonymous);
    assert_eq!(anonymous[0].tracking_ids, ["anon-1"]);
    assert_eq!(anonymous[0].emails, ["typed@example.com"]);
    let sources: Vec<&str> = anonymous[0]
        .identities
        .iter()
        .map(|i| i.source.as_str())
        .collect();
    assert_eq!(sources, ["tracking_id", "get_support"]);

    let counts = people::counts(pool, org).await.unwrap();
    assert_eq!((counts.people, counts.identified), (2, 1));
    assert_eq!(
        people::sign_ins_since(pool, org, now() - Duration::hours(24))
            .await
            .unwrap(),
        1
    );
    // Another org sees none of them.
    let owner = given.user("other@beta.dev").await;
    let other = given.org(owner, "other@beta.dev", "beta").await;
    let pool = given.pool();
    assert!(people::list(pool, other, None, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(people::get(pool, other, ada).await.unwrap().is_none());
    assert_eq!(people::counts(pool, other).await.unwrap().people, 0);
}

#[tokio::test]
async fn a_merge_shows_everything_under_the_survivor_and_an_unmerge_gives_it_back() {
    let mut given = Given::new().await;
    let run = walkthrough(&mut given).await;
    let (org, server) = (run.org, run.server);
    let anon = tracked(&mut given, org, server, "anon-2").await;
    let ada = Uuid::new_v4();
    given
        .append::<EndUser>(
            ada,
            &end_user(ada, org.0),
            &[signed_in(org, server, Uuid::new_v4(), "gh-2")],
        )
        .await;
    call(&mut given, org, server, anon).await;
    call(&mut given, org, server, anon).await;
    call(&mut given, org, server, ada).await;
    given
        .append::<Ticket>(
            Uuid::new_v4(),
            &end_user(anon, org.0),
            &[TicketEvent::TicketOpened {
                org_id: org.0,
                server_id: server,
                end_user_id: Some(anon),
                title: "Help".into(),
                description: "Please".into(),
                email: None,
                context: None,
            }],
        )
        .await;
    let t0 = now();
    run.walk(
        &mut given,
        anon,
        &[
            run.started(anon, t0, None),
            run.completed_step(anon, 0, 100, t0),
        ],
    )
    .await;
    given.project().await;

    merge(&mut given, org, ada, anon, "anon-2").await;
    // What the merge command writes for the run that went further.
    run.walk(
        &mut given,
        ada,
        &[ProgressEvent::ProgressCarriedOver {
            org_id: org.0,
            walkthrough_id: run.wt,
            end_user_id: ada,
            from_end_user_id: anon,
            server_id: server,
            version: 1,
            steps: run.steps.to_vec(),
            current: 1,
            started_at: t0,
            shown_at: t0,
            completed_at: None,
        }],
    )
    .await;
    // A call the merged end user's stale cache still made in its name.
    call(&mut given, org, server, anon).await;
    given.project().await;
    let pool = given.pool();

    let all = people::list(pool, org, None, None, 10).await.unwrap();
    assert_eq!(all.len(), 1, "one person");
    let person = &all[0];
    assert_eq!((person.id, person.status), (ada, PersonStatus::Identified));
    assert_eq!(person.tool_calls, 4);
    assert_eq!(person.tracking_ids, ["anon-2"]);
    assert_eq!(person.merged.len(), 1);
    assert_eq!(
        (person.merged[0].id, person.merged[0].merged_into),
        (anon, ada)
    );
    // The merged end user's id answers with the survivor.
    assert_eq!(people::get(pool, org, anon).await.unwrap().unwrap().id, ada);
    let by_person = ToolCallFilter {
        end_user_id: Some(ada),
        ..Default::default()
    };
    assert_eq!(
        usage::tool_calls(pool, org, &by_person, None, 10)
            .await
            .unwrap()
            .len(),
        4
    );
    let tickets = TicketFilter {
        end_user_id: Some(ada),
        ..Default::default()
    };
    assert_eq!(
        rm_tickets::list(pool, org, &tickets, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let runs = walkthrough_progress::of_end_user(pool, org, ada)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].steps_completed, runs[0].current_step_id),
        (1, Some(run.steps[1]))
    );

    unmerge(&mut given, org, ada, anon, "anon-2").await;
    given.project().await;
    let pool = given.pool();
    let all = people::list(pool, org, None, None, 10).await.unwrap();
    assert_eq!(all.len(), 2, "two people again");
    let back = people::get(pool, org, anon).await.unwrap().unwrap();
    assert_eq!(
        (back.id, back.tool_calls, back.status),
        (anon, 3, PersonStatus::Anonymous)
    );
    assert!(back.merged.is_empty());
    let ada_now = people::get(pool, org, ada).await.unwrap().unwrap();
    assert_eq!(ada_now.tool_calls, 1);
    assert!(ada_now.tracking_ids.is_empty());
    assert_eq!(
        rm_tickets::list(pool, org, &tickets, None, 10)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        usage::tool_calls(pool, org, &by_person, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}
