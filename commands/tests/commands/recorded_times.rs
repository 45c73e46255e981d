//! A write knows when it was recorded: the time each appended event got from the database, on
//! both commit paths (plain appends in one statement, and units with index writes in an
//! explicit transaction), equal to what the log then holds. The REST edge answers it as the
//! `created_at` of what a write made, whether the read models have it yet or not.

use crate::given::*;
use commands::services::accounts;
use commands::services::{organizations, tickets};
use domain::metadata::Actor;
use domain::organization::Organization;
use domain::ticket::Ticket;
use domain::values::{Name, Slug};
use domain::EventMetadata;
use uuid::Uuid;

#[tokio::test]
async fn every_commit_answers_the_time_its_events_were_recorded_at() {
    let given = Given::new().await;
    let owner = Uuid::new_v4();
    let signed_up = accounts::sign_up(
        &given.store,
        owner,
        email("owner@acme.dev"),
        Name::parse("Owner").unwrap(),
        "hash".into(),
        refresh_family(),
        None,
        &as_user(owner),
    )
    .await
    .unwrap();
    let user_log = given
        .store
        .history::<domain::user::User>(&owner.to_string())
        .await
        .unwrap();
    assert_eq!(signed_up.recorded_at, Some(user_log[0].recorded_at));

    // With index writes (the slug): the explicit-transaction path.
    let org = Uuid::new_v4();
    let created = organizations::create(
        &given.store,
        org,
        owner,
        email("owner@acme.dev"),
        Name::parse("Acme").unwrap(),
        Slug::parse("acme").unwrap(),
        &as_user(owner),
    )
    .await
    .unwrap();
    let org_log = given
        .store
        .history::<Organization>(&org.to_string())
        .await
        .unwrap();
    assert_eq!(org_log.len(), 1);
    assert_eq!(org_log[0].sequence, 1);
    assert_eq!(org_log[0].event, created.events[0]);
    assert_eq!(created.recorded_at(), Some(org_log[0].recorded_at));

    // Plain appends: the one-statement path.
    let server = given.server(org, owner, "guide").await;
    let ticket = Uuid::new_v4();
    let caller = Uuid::new_v4();
    let opened = tickets::open(
        &given.store,
        ticket,
        tickets::NewTicket {
            org_id: org,
            server_id: server,
            end_user_id: Some(caller),
            title: "Cannot log in".into(),
            description: "The button does nothing".into(),
            email: None,
            context: None,
        },
        &EventMetadata::by(Actor::EndUser { id: caller }),
    )
    .await
    .unwrap();
    let ticket_log = given
        .store
        .history::<Ticket>(&ticket.to_string())
        .await
        .unwrap();
    assert_eq!(opened.recorded_at(), Some(ticket_log[0].recorded_at));
    assert!(opened.recorded_at() >= created.recorded_at());
    assert!(given
        .store
        .history::<Ticket>(&Uuid::new_v4().to_string())
        .await
        .unwrap()
        .is_empty());
}
