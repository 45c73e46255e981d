//! tickets: one lifecycle, assignment to members only, scoped to their org.

use crate::given::*;
use commands::services::tickets::{self, AssignError, NewTicket};
use domain::metadata::Actor;
use domain::ticket::{TicketError, TicketEvent, TicketStatus};
use domain::EventMetadata;
use eventstore::ExecuteError;
use uuid::Uuid;

struct Opened {
    org: Uuid,
    owner: Uuid,
    ticket: Uuid,
}

async fn opened(given: &Given) -> Opened {
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    let server = given.server(org, owner, "guide").await;
    let ticket = Uuid::new_v4();
    let caller = Uuid::new_v4();
    let executed = tickets::open(
        &given.store,
        ticket,
        NewTicket {
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
    assert!(matches!(
        &executed.events[..],
        [TicketEvent::TicketOpened { .. }]
    ));
    Opened { org, owner, ticket }
}

#[tokio::test]
async fn a_ticket_moves_only_along_its_lifecycle() {
    let given = Given::new().await;
    let t = opened(&given).await;
    let by = Actor::PlatformUser { id: t.owner };
    let meta = as_user(t.owner);
    let skip = tickets::change_status(
        &given.store,
        t.org,
        t.ticket,
        TicketStatus::Resolved,
        by.clone(),
        &meta,
    )
    .await;
    match skip {
        Err(ExecuteError::Domain(TicketError::IllegalTransition { from, to, allowed })) => {
            assert_eq!((from, to), (TicketStatus::New, TicketStatus::Resolved));
            assert_eq!(allowed, [TicketStatus::InProgress]);
        }
        other => panic!("{other:?}"),
    }
    for to in [
        TicketStatus::InProgress,
        TicketStatus::Resolved,
        TicketStatus::Closed,
    ] {
        tickets::change_status(&given.store, t.org, t.ticket, to, by.clone(), &meta)
            .await
            .unwrap();
    }
    let reopen = tickets::change_status(
        &given.store,
        t.org,
        t.ticket,
        TicketStatus::InProgress,
        by.clone(),
        &meta,
    )
    .await;
    assert!(matches!(
        reopen,
        Err(ExecuteError::Domain(TicketError::IllegalTransition { ref allowed, .. })) if allowed.is_empty()
    ));
    let commented = tickets::comment(
        &given.store,
        t.org,
        t.ticket,
        "Closed, but noted".into(),
        by,
        &meta,
    )
    .await
    .unwrap();
    assert_eq!(commented.events.len(), 1);
}

#[tokio::test]
async fn tickets_are_assigned_to_members_by_id_or_email_and_stay_in_their_org() {
    let given = Given::new().await;
    let t = opened(&given).await;
    let member = given.user("member@acme.dev").await;
    given
        .member(t.org, t.owner, "member@acme.dev", "member")
        .await;
    let outsider = given.user("outsider@globex.dev").await;
    let by = Actor::PlatformUser { id: t.owner };
    let meta = as_user(t.owner);

    let assigned = tickets::assign(
        &given.store,
        t.org,
        t.ticket,
        " Member@Acme.dev ",
        by.clone(),
        &meta,
    )
    .await
    .unwrap();
    assert!(
        matches!(&assigned.events[..], [TicketEvent::TicketAssigned { member_id, .. }] if *member_id == member)
    );
    let not_member = tickets::assign(
        &given.store,
        t.org,
        t.ticket,
        &outsider.to_string(),
        by.clone(),
        &meta,
    )
    .await;
    assert!(
        matches!(not_member, Err(AssignError::NotAMember(_))),
        "{not_member:?}"
    );
    let unknown = tickets::assign(
        &given.store,
        t.org,
        t.ticket,
        "nobody@acme.dev",
        by.clone(),
        &meta,
    )
    .await;
    assert!(matches!(unknown, Err(AssignError::NotAMember(_))));

    let unassigned = tickets::unassign(&given.store, t.org, t.ticket, by.clone(), &meta)
        .await
        .unwrap();
    assert!(matches!(
        &unassigned.events[..],
        [TicketEvent::TicketUnassigned { .. }]
    ));
    let again = tickets::unassign(&given.store, t.org, t.ticket, by.clone(), &meta)
        .await
        .unwrap();
    assert!(again.events.is_empty(), "nobody has it: nothing happens");

    let other_org = given.org(outsider, "outsider@globex.dev", "globex").await;
    let elsewhere =
        tickets::comment(&given.store, other_org, t.ticket, "hi".into(), by, &meta).await;
    assert!(matches!(
        elsewhere,
        Err(ExecuteError::Domain(TicketError::NotFound))
    ));
}
