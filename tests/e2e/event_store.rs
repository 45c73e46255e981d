//! The event store and the relay: optimistic concurrency, late commits, re-publishing, and no
//! credentials in events.

use crate::helpers::*;
use domain::organization::{Organization, OrganizationEvent};
use domain::values::{Email, Name, Role, Slug};
use domain::EventMetadata;
use eventstore::{CommitError, Cursor, EventFilter, EventStore, KeyKind, UnitOfWork};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

async fn migrated_store(env: &TestEnv) -> EventStore {
    let out = env.cli(&["migrate"]);
    assert!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    EventStore::open(env.pool().await).await.unwrap()
}

fn created(org: Uuid) -> Vec<OrganizationEvent> {
    vec![OrganizationEvent::OrganizationCreated {
        name: Name::parse("Acme").unwrap(),
        slug: Slug::parse("acme").unwrap(),
        owner_id: org,
        owner_email: Email::parse("o@acme.dev").unwrap(),
    }]
}

fn member(n: u8) -> Vec<OrganizationEvent> {
    vec![OrganizationEvent::MemberAdded {
        user_id: Uuid::from_u128(n as u128),
        email: Email::parse(&format!("m{n}@acme.dev")).unwrap(),
        role: Role::Member,
    }]
}

fn unit(org: Uuid, version: i64, events: &[OrganizationEvent]) -> UnitOfWork {
    let mut uow = UnitOfWork::new();
    uow.append::<Organization>(
        org.to_string(),
        version,
        events,
        &EventMetadata::system().for_org(org),
    )
    .unwrap();
    uow
}

#[tokio::test]
async fn concurrent_appends_at_one_version_conflict_and_lose_nothing() {
    let env = TestEnv::new();
    let store = migrated_store(&env).await;
    let org = Uuid::new_v4();
    store.commit(unit(org, 0, &created(org))).await.unwrap();

    // Two writers both saw version 1: exactly one wins, the other is told it conflicted.
    let (a, b) = tokio::join!(
        store.commit(unit(org, 1, &member(1))),
        store.commit(unit(org, 1, &member(2)))
    );
    let outcomes = [a.is_ok(), b.is_ok()];
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{outcomes:?}");
    assert!(matches!(a.err().or(b.err()), Some(CommitError::Conflict)));
    // Readers wait for every older transaction in the cluster (other tests' too): poll.
    let events = eventually("both events readable", Duration::from_secs(10), || async {
        let events = store
            .read_after(&EventFilter::default(), Cursor::START, 100)
            .await
            .unwrap();
        (events.len() >= 2).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 2, "the loser left no partial write");
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2]
    );

    // Many concurrent units in one group commit: conflicts are per unit, not per batch.
    let other = Uuid::new_v4();
    let mut handles = Vec::new();
    for i in 0..32u8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            if i == 0 {
                store.commit(unit(other, 0, &created(other))).await
            } else {
                store.commit(unit(other, 0, &member(i))).await
            }
        }));
    }
    let mut ok = 0;
    for h in handles {
        if h.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "only one writer may take sequence 1 of a stream");
}

/// Units committed together, each all or nothing: one of them spans two streams and finds the
/// second moved on, another expects a key owner that no longer holds. Neither leaves a trace;
/// the plain units beside them are stored.
#[tokio::test]
async fn a_unit_refused_in_a_group_leaves_none_of_its_events_and_spares_the_others() {
    let env = TestEnv::new();
    let store = migrated_store(&env).await;
    let (taken, fresh, keyed) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    store.commit(unit(taken, 0, &created(taken))).await.unwrap();
    let mut claim = unit(keyed, 0, &created(keyed));
    claim.claim(KeyKind::OrgSlug, format!("k-{keyed}"), keyed);
    store.commit(claim).await.unwrap();

    // A new stream plus a stream whose version 0 is already taken.
    let mut spanning = unit(fresh, 0, &created(fresh));
    spanning
        .append::<Organization>(
            taken.to_string(),
            0,
            &member(1),
            &EventMetadata::system().for_org(taken),
        )
        .unwrap();
    // Decided on a key owner that is not the one on record.
    let mut stale = unit(keyed, 1, &member(2));
    stale.expect_owner(KeyKind::OrgSlug, format!("k-{keyed}"), Uuid::new_v4());
    let mut held = unit(keyed, 1, &member(3));
    held.expect_owner(KeyKind::OrgSlug, format!("k-{keyed}"), keyed);
    let plain: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();

    let plain_commits = futures::future::join_all(
        plain
            .iter()
            .map(|org| store.commit(unit(*org, 0, &created(*org)))),
    );
    let (spanning, stale, held, plain_results) = tokio::join!(
        store.commit(spanning),
        store.commit(stale),
        store.commit(held),
        plain_commits
    );
    assert!(
        matches!(spanning, Err(CommitError::Conflict)),
        "{spanning:?}"
    );
    assert!(matches!(stale, Err(CommitError::Conflict)), "{stale:?}");
    assert!(held.is_ok(), "{held:?}");
    assert!(plain_results.iter().all(Result::is_ok));

    // The refused units' events are gone: the new stream is still free at version 0, and the
    // taken stream and the keyed one hold only what was accepted.
    store.commit(unit(fresh, 0, &created(fresh))).await.unwrap();
    let pool = env.pool().await;
    let count = |org: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM events WHERE aggregate_type = 'organization' AND aggregate_id = $1",
            )
            .bind(org.to_string())
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(count(taken).await, 1);
    assert_eq!(count(fresh).await, 1);
    assert_eq!(
        count(keyed).await,
        2,
        "the creation and the held unit's member"
    );
    for org in &plain {
        assert_eq!(count(*org).await, 1);
    }
}

/// Units written for a key's owner (through `EventStore::for_owner_of`) are refused as
/// `OwnerMoved`, never as a conflict to decide again, once the key names another owner: in a
/// group of plain appends and in one with index writes alike. Units of one group requiring the
/// same key are each decided on their own, and a handle remembers that its owner moved. An
/// owner merely expected (decided on a cache) that moved is still a conflict.
#[tokio::test]
async fn a_unit_written_for_a_key_owner_that_moved_is_refused_as_such() {
    let env = TestEnv::new();
    let store = migrated_store(&env).await;
    let (owner, other) = (Uuid::new_v4(), Uuid::new_v4());
    let key = format!("k-{owner}");
    let mut claim = unit(owner, 0, &created(owner));
    claim.claim(KeyKind::ServerSlug, key.clone(), owner);
    store.commit(claim).await.unwrap();

    let held = store.for_owner_of(KeyKind::ServerSlug, key.clone(), owner);
    let moved = store.for_owner_of(KeyKind::ServerSlug, key.clone(), other);
    let orgs: Vec<Uuid> = (0..16).map(|_| Uuid::new_v4()).collect();
    let results = futures::future::join_all(orgs.iter().enumerate().map(|(i, org)| {
        let handle = if i % 2 == 0 { &held } else { &moved };
        handle.commit(unit(*org, 0, &created(*org)))
    }))
    .await;
    for (i, result) in results.iter().enumerate() {
        if i % 2 == 0 {
            assert!(result.is_ok(), "{i}: {result:?}");
        } else {
            assert!(
                matches!(result, Err(CommitError::OwnerMoved { kind: KeyKind::ServerSlug, key: k }) if *k == key),
                "{i}: {result:?}"
            );
        }
    }
    assert!(!held.owner_moved());
    assert!(moved.owner_moved());

    // With an index write, so through the explicit transaction.
    let fresh = Uuid::new_v4();
    let mut indexed = unit(fresh, 0, &created(fresh));
    indexed.claim(KeyKind::OrgSlug, format!("o-{fresh}"), fresh);
    let refused = moved.commit(indexed.clone()).await;
    assert!(
        matches!(
            refused,
            Err(CommitError::OwnerMoved {
                kind: KeyKind::ServerSlug,
                ..
            })
        ),
        "{refused:?}"
    );
    let mut expected = unit(fresh, 0, &created(fresh));
    expected.expect_owner(KeyKind::ServerSlug, key.clone(), other);
    let conflict = store.commit(expected).await;
    assert!(
        matches!(conflict, Err(CommitError::Conflict)),
        "{conflict:?}"
    );
    held.commit(indexed).await.unwrap();

    let pool = env.pool().await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = 'organization' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut kept: Vec<String> = orgs
        .iter()
        .step_by(2)
        .chain([&owner, &fresh])
        .map(Uuid::to_string)
        .collect();
    kept.sort();
    assert_eq!(stored, kept, "only the units whose owner held are stored");
}

#[tokio::test]
async fn concurrent_commands_on_one_org_are_all_applied_via_retry() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    let mut calls = Vec::new();
    let (app_ref, token) = (&app, owner.token.as_str());
    for i in 0..12 {
        let path = format!("/api/v1/orgs/{org}/members");
        let body = json!({ "email": format!("invitee{i}@acme.dev"), "role": "member" });
        calls.push(async move { app_ref.post(&path, token, body).await });
    }
    let results = futures::future::join_all(calls).await;
    for (status, body) in &results {
        assert!(
            *status == StatusCode::CREATED || *status == StatusCode::CONFLICT,
            "{status} {body}"
        );
    }
    // Conflicts are retried inside the command, so with 12 distinct invitees none is lost.
    assert!(results.iter().all(|(s, _)| *s == StatusCode::CREATED));
    let (_, members) = app
        .get(&format!("/api/v1/orgs/{org}/members"), &owner.token)
        .await;
    assert_eq!(members["items"].as_array().unwrap().len(), 13);
}

#[tokio::test]
async fn an_event_committed_late_by_a_long_transaction_is_still_delivered() {
    let env = TestEnv::new();
    let store = migrated_store(&env).await;
    let pool = env.pool().await;
    let early_org = Uuid::new_v4();
    let late_org = Uuid::new_v4();

    // A transaction takes its xid and appends, but does not commit yet.
    let mut slow = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata, org_id) VALUES ('organization', $1, 1, 'OrganizationCreated', '1', \
         $2, '{\"actor\":{\"kind\":\"system\"}}', $3)",
    )
    .bind(late_org.to_string())
    .bind(json!({"name":"Late","slug":"late","owner_id": late_org,"owner_email":"l@late.dev"}))
    .bind(late_org)
    .execute(&mut *slow)
    .await
    .unwrap();

    // Meanwhile a later transaction commits.
    store
        .commit(unit(early_org, 0, &created(early_org)))
        .await
        .unwrap();

    // Readers must not pass the open transaction: nothing is readable yet.
    let before = store
        .read_after(&EventFilter::default(), Cursor::START, 10)
        .await
        .unwrap();
    assert!(
        before.is_empty(),
        "a reader skipped past a running transaction: {before:?}"
    );

    // Relay them through NATS as well.
    let mut relay = env.start(&["relay"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow.commit().await.unwrap();

    let after = store
        .read_after(&EventFilter::default(), Cursor::START, 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(
        after[0].aggregate_id,
        late_org.to_string(),
        "the late event sorts first"
    );

    // The relay published both, the late one first.
    let js =
        async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await.unwrap());
    let subjects = eventually(
        "both events in the stream",
        Duration::from_secs(20),
        || async {
            let msgs = stream_messages(&js, &env.stream_name()).await;
            (msgs.len() == 2).then_some(msgs)
        },
    )
    .await;
    assert!(subjects[0].contains(&late_org.to_string()));
    assert!(subjects[1].contains(&early_org.to_string()));
    relay.kill();
}

/// Subjects of every message in a stream, in stream order.
async fn stream_messages(js: &async_nats::jetstream::Context, name: &str) -> Vec<String> {
    let Ok(stream) = js.get_stream(name).await else {
        return vec![];
    };
    let mut out = Vec::new();
    let mut seq = 1;
    loop {
        match stream.get_raw_message(seq).await {
            Ok(m) => out.push(m.subject.to_string()),
            Err(_) => break,
        }
        seq += 1;
    }
    out
}

#[tokio::test]
async fn a_relay_that_republishes_after_a_crash_creates_no_duplicates() {
    let env = TestEnv::new();
    let store = migrated_store(&env).await;
    for _ in 0..25 {
        let org = Uuid::new_v4();
        store.commit(unit(org, 0, &created(org))).await.unwrap();
    }
    let js =
        async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await.unwrap());
    let mut relay = env.start(&["relay"]);
    eventually("25 messages", Duration::from_secs(20), || async {
        (stream_messages(&js, &env.stream_name()).await.len() == 25).then_some(())
    })
    .await;
    relay.kill();

    // Simulate a crash between publishing and storing the checkpoint: the next leader starts
    // from scratch and publishes everything again.
    let pool = env.pool().await;
    sqlx::query("UPDATE relay_checkpoint SET transaction_id = '0', global_position = 0")
        .execute(&pool)
        .await
        .unwrap();
    let mut relay = env.start(&["relay"]);
    eventually(
        "the relay to catch up again",
        Duration::from_secs(20),
        || async {
            let pos: i64 = sqlx::query_scalar("SELECT global_position FROM relay_checkpoint")
                .fetch_one(&pool)
                .await
                .unwrap();
            (pos > 0).then_some(())
        },
    )
    .await;
    relay.kill();
    assert_eq!(
        stream_messages(&js, &env.stream_name()).await.len(),
        25,
        "JetStream de-duplicated the re-published events"
    );
}

#[tokio::test]
async fn events_carry_no_credentials() {
    let app = spawn_app().await;
    let user = app.signup("ada@example.com").await;
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": user.email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let pool = app.env.pool().await;
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE payload::text LIKE '%argon2%' OR payload::jsonb ? 'password_hash'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0, "a password hash is in an event payload");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM user_credentials")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);
}
