//! end_users: sign-in (find by provider subject, then verified email, else create), and identity
//! stitching: merges that move keys and walkthrough progress, no-ops, unmerges, and orgs kept
//! apart.

use crate::given::*;
use crate::walkthroughs::published;
use chrono::Utc;
use commands::errors::ErrorCode;
use commands::services::end_users::{self, SignIn};
use commands::services::walkthrough_progress::{self as progress, RunCache, Target};
use domain::end_user::{EndUser, MergeReason, TrackingId};
use domain::metadata::Actor;
use domain::values::OrgId;
use domain::walkthrough_progress::StartingVersion;
use domain::{Aggregate, EventMetadata};
use eventstore::index::{self, KeyKind};
use uuid::Uuid;

fn system() -> EventMetadata {
    EventMetadata::by(Actor::System)
}

fn sign_in(org: Uuid, provider: Uuid, subject: &str, mail: Option<&str>, verified: bool) -> SignIn {
    SignIn {
        org_id: OrgId(org),
        server_id: Uuid::nil(),
        provider_id: provider,
        subject: subject.to_owned(),
        email: mail.map(email),
        email_verified: verified,
        name: Some("Ada".to_owned()),
    }
}

async fn tracked(given: &Given, org: Uuid, tracking_id: &str) -> Uuid {
    end_users::identify(
        &given.store,
        org,
        Uuid::nil(),
        &TrackingId::parse(tracking_id).unwrap(),
        &system(),
    )
    .await
    .unwrap()
}

async fn events_of(given: &Given, id: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(EndUser::TYPE)
    .bind(id.to_string())
    .fetch_one(given.store.pool())
    .await
    .unwrap()
}

async fn tracking_owner(given: &Given, org: Uuid, tracking_id: &str) -> Option<Uuid> {
    end_users::find(
        given.store.pool(),
        OrgId(org),
        &TrackingId::parse(tracking_id).unwrap(),
    )
    .await
    .unwrap()
}

async fn two_orgs(given: &Given) -> (Uuid, Uuid) {
    let owner = given.user("owner@acme.dev").await;
    let a = given.org(owner, "owner@acme.dev", "acme").await;
    let b = given.org(owner, "owner@acme.dev", "beta").await;
    (a, b)
}

#[tokio::test]
async fn a_sign_in_finds_by_subject_then_by_verified_email_and_never_across_orgs() {
    let given = Given::new().await;
    let (org, other) = two_orgs(&given).await;
    let (github, okta) = (Uuid::new_v4(), Uuid::new_v4());
    let s = &given.store;
    let ada = end_users::sign_in(
        s,
        &system(),
        sign_in(org, github, "42", Some("ada@x.dev"), true),
    )
    .await
    .unwrap();
    // The same subject again, on another server of the org: the same end user.
    let again = end_users::sign_in(s, &system(), sign_in(org, github, "42", None, false))
        .await
        .unwrap();
    assert_eq!(again, ada);
    // Another provider, the same verified email: the same person.
    let by_email = end_users::sign_in(
        s,
        &system(),
        sign_in(org, okta, "okta-1", Some("ADA@x.dev"), true),
    )
    .await
    .unwrap();
    assert_eq!(by_email, ada);
    // An unverified email finds nobody.
    let unverified = end_users::sign_in(
        s,
        &system(),
        sign_in(org, okta, "okta-2", Some("ada@x.dev"), false),
    )
    .await
    .unwrap();
    assert_ne!(unverified, ada);
    // Another org never matches, by subject or email.
    let elsewhere = end_users::sign_in(
        s,
        &system(),
        sign_in(other, github, "42", Some("ada@x.dev"), true),
    )
    .await
    .unwrap();
    assert_ne!(elsewhere, ada);
    let (user, _) = s.load::<EndUser>(&ada.to_string()).await.unwrap();
    assert_eq!(user.sign_ins, 3);
    assert_eq!(user.held.subjects.len(), 2);
}

#[tokio::test]
async fn first_sign_ins_of_one_subject_racing_agree_on_one_end_user() {
    let given = Given::new().await;
    let (org, _) = two_orgs(&given).await;
    let provider = Uuid::new_v4();
    let s = &given.store;
    let meta = system();
    let all = futures::future::join_all((0..6).map(|_| {
        end_users::sign_in(
            s,
            &meta,
            sign_in(org, provider, "racer", Some("r@x.dev"), true),
        )
    }))
    .await;
    let ids: Vec<Uuid> = all.into_iter().map(Result::unwrap).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

#[tokio::test]
async fn a_merge_moves_every_key_to_the_survivor_and_repeating_it_writes_nothing() {
    let given = Given::new().await;
    let (org, other) = two_orgs(&given).await;
    let s = &given.store;
    let anon = tracked(&given, org, "t-anon").await;
    let signed = end_users::sign_in(
        s,
        &system(),
        sign_in(org, Uuid::new_v4(), "7", Some("bo@x.dev"), true),
    )
    .await
    .unwrap();
    let survivor = end_users::merge(
        s,
        &system(),
        OrgId(org),
        signed,
        anon,
        MergeReason::TrackingUserSignedIn,
    )
    .await
    .unwrap();
    assert_eq!(survivor, signed);
    assert_eq!(tracking_owner(&given, org, "t-anon").await, Some(signed));
    let written = (
        events_of(&given, signed).await,
        events_of(&given, anon).await,
    );
    // Already one person, whichever way round: nothing more is written.
    for (into, from) in [(signed, anon), (anon, signed)] {
        let again = end_users::merge(
            s,
            &system(),
            OrgId(org),
            into,
            from,
            MergeReason::TicketEmail,
        )
        .await
        .unwrap();
        assert_eq!(again, signed);
    }
    assert_eq!(
        (
            events_of(&given, signed).await,
            events_of(&given, anon).await
        ),
        written
    );
    // Commands on the merged end user name the survivor.
    assert_eq!(
        end_users::person_of(s, OrgId(org), anon).await.unwrap(),
        signed
    );
    // An end user of another org is not found, and nothing is merged.
    let stranger = tracked(&given, other, "t-anon").await;
    let refused = end_users::merge(
        s,
        &system(),
        OrgId(org),
        signed,
        stranger,
        MergeReason::SignedInWithTrackingId,
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code, ErrorCode::EndUserNotFound);
    assert_eq!(
        tracking_owner(&given, other, "t-anon").await,
        Some(stranger)
    );
}

#[tokio::test]
async fn an_unmerge_undoes_exactly_one_merge_and_the_later_one_first() {
    let given = Given::new().await;
    let (org, _) = two_orgs(&given).await;
    let s = &given.store;
    let (a, b, c) = (
        tracked(&given, org, "a").await,
        tracked(&given, org, "b").await,
        tracked(&given, org, "c").await,
    );
    let why = MergeReason::SignedInWithTrackingId;
    end_users::merge(s, &system(), OrgId(org), b, c, why)
        .await
        .unwrap();
    end_users::merge(s, &system(), OrgId(org), a, b, why)
        .await
        .unwrap();
    for t in ["a", "b", "c"] {
        assert_eq!(tracking_owner(&given, org, t).await, Some(a));
    }
    // c was merged into b, which was merged into a since: that merge goes first.
    let later = end_users::unmerge(s, &system(), OrgId(org), a, c)
        .await
        .unwrap_err();
    assert_eq!(later.code, ErrorCode::MergeLater);
    let undone = end_users::unmerge(s, &system(), OrgId(org), a, b)
        .await
        .unwrap();
    assert_eq!(undone.person, a);
    assert_eq!(tracking_owner(&given, org, "a").await, Some(a));
    // b's merge brought b and c back; both are b's again.
    assert_eq!(tracking_owner(&given, org, "b").await, Some(b));
    assert_eq!(tracking_owner(&given, org, "c").await, Some(b));
    let not_merged = end_users::unmerge(s, &system(), OrgId(org), a, b)
        .await
        .unwrap_err();
    assert_eq!(not_merged.code, ErrorCode::NotMerged);
    let undone = end_users::unmerge(s, &system(), OrgId(org), c, c).await;
    assert_eq!(undone.unwrap().person, b);
    assert_eq!(tracking_owner(&given, org, "c").await, Some(c));
    assert_eq!(end_users::person_of(s, OrgId(org), c).await.unwrap(), c);
}

#[tokio::test]
async fn a_merge_carries_the_further_walkthrough_run_over_and_it_continues() {
    let given = Given::new().await;
    let a = published(&given, 3).await;
    let s = &given.store;
    let cache = RunCache::default();
    let newest = StartingVersion {
        version: 1,
        steps: a.steps.clone(),
    };
    let anon = tracked(&given, a.org, "walker").await;
    let signed = end_users::sign_in(
        s,
        &system(),
        sign_in(a.org, Uuid::new_v4(), "9", None, false),
    )
    .await
    .unwrap();
    let target = |end_user_id| Target {
        org_id: a.org,
        server_id: a.server,
        end_user_id,
        walkthrough_id: a.wt,
    };
    // The anonymous end user is one step in; the signed-in one has not started.
    progress::select(
        s,
        &cache,
        target(anon),
        true,
        &newest,
        Utc::now(),
        &system(),
    )
    .await
    .unwrap();
    let (wt, run, version, _) = progress::current(s, &cache, a.org, anon, false)
        .await
        .unwrap()
        .unwrap();
    let (_, uow) =
        progress::stage_step(target(anon), None, (run, version), Utc::now(), &system()).unwrap();
    s.commit(uow).await.unwrap();
    assert_eq!(wt, a.wt);
    end_users::merge(
        s,
        &system(),
        OrgId(a.org),
        signed,
        anon,
        MergeReason::TrackingUserSignedIn,
    )
    .await
    .unwrap();
    // The survivor is in the same walkthrough, on the same step, and goes on from there.
    let fresh = RunCache::default();
    let (wt, run, version, _) = progress::current(s, &fresh, a.org, signed, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wt, a.wt);
    assert_eq!(run.run.as_ref().unwrap().current_step(), Some(a.steps[1]));
    let (outcome, uow) =
        progress::stage_step(target(signed), None, (run, version), Utc::now(), &system()).unwrap();
    s.commit(uow).await.unwrap();
    assert_eq!(
        outcome.progress.run.as_ref().unwrap().current_step(),
        Some(a.steps[2])
    );
    // The selection key moved with it: the survivor owns a pointer to the walkthrough.
    let pointer = progress::pointer_key(a.org, signed);
    assert_eq!(
        index::owner_of(s.pool(), KeyKind::WalkthroughSelected, &pointer)
            .await
            .unwrap(),
        Some(a.wt)
    );

    // A third end user, behind the survivor: merging it carries nothing over.
    let behind = tracked(&given, a.org, "behind").await;
    progress::select(
        s,
        &cache,
        target(behind),
        true,
        &newest,
        Utc::now(),
        &system(),
    )
    .await
    .unwrap();
    end_users::merge(
        s,
        &system(),
        OrgId(a.org),
        signed,
        behind,
        MergeReason::TicketEmail,
    )
    .await
    .unwrap();
    let (_, run, _, _) = progress::current(s, &RunCache::default(), a.org, signed, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.run.as_ref().unwrap().current_step(), Some(a.steps[2]));
}

#[tokio::test]
async fn a_ticket_email_merges_an_anonymous_end_user_into_the_signed_in_owner_only() {
    let given = Given::new().await;
    let (org, other) = two_orgs(&given).await;
    let s = &given.store;
    let provider = Uuid::new_v4();
    let owner = end_users::sign_in(
        s,
        &system(),
        sign_in(org, provider, "1", Some("cy@x.dev"), true),
    )
    .await
    .unwrap();
    let anon = tracked(&given, org, "typist").await;
    let mail = email("cy@x.dev");
    let merged = end_users::stitch_ticket_email(s, &system(), OrgId(org), anon, &mail)
        .await
        .unwrap();
    assert_eq!(merged, Some(owner));
    assert_eq!(tracking_owner(&given, org, "typist").await, Some(owner));
    // A signed-in end user typing someone's email is not merged into them.
    let other_person = end_users::sign_in(s, &system(), sign_in(org, provider, "2", None, false))
        .await
        .unwrap();
    assert_eq!(
        end_users::stitch_ticket_email(s, &system(), OrgId(org), other_person, &mail)
            .await
            .unwrap(),
        None
    );
    // Nor is anyone of another org, where nobody has that email verified.
    let elsewhere = tracked(&given, other, "typist").await;
    assert_eq!(
        end_users::stitch_ticket_email(s, &system(), OrgId(other), elsewhere, &mail)
            .await
            .unwrap(),
        None
    );
}
