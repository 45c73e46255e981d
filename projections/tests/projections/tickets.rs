//! tickets: support tickets and their timelines.

use crate::given::*;
use domain::metadata::Actor;
use domain::ticket::{reference, reference_range, Ticket, TicketEvent, TicketStatus};
use domain::values::OrgId;
use projections::models::tickets::{self, TicketFilter};
use uuid::Uuid;

struct Opened {
    org: OrgId,
    owner: Uuid,
    server: Uuid,
    caller: Uuid,
    ticket: Uuid,
}

async fn opened(given: &mut Given) -> Opened {
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    let server = given.server(org, owner, "guide").await;
    let caller = Uuid::new_v4();
    let ticket = Uuid::new_v4();
    given
        .append::<Ticket>(
            ticket,
            &end_user(caller, org.0),
            &[TicketEvent::TicketOpened {
                org_id: org.0,
                server_id: server,
                end_user_id: Some(caller),
                title: "Cannot log in".into(),
                description: "The button does nothing".into(),
                email: Some("caller@example.com".into()),
                context: Some("on step 2".into()),
            }],
        )
        .await;
    Opened {
        org,
        owner,
        server,
        caller,
        ticket,
    }
}

#[tokio::test]
async fn an_opened_ticket_is_new_and_found_by_id_reference_and_filters() {
    let mut given = Given::new().await;
    let t = opened(&mut given).await;
    given.project().await;
    let pool = given.pool();

    let row = tickets::get(pool, t.org, t.ticket).await.unwrap().unwrap();
    assert_eq!(
        (
            row.title.as_str(),
            row.description.as_str(),
            row.status.as_str()
        ),
        ("Cannot log in", "The button does nothing", "new")
    );
    assert_eq!(row.email.as_deref(), Some("caller@example.com"));
    assert_eq!(row.context.as_deref(), Some("on step 2"));
    assert_eq!((row.server_id, row.end_user_id), (t.server, Some(t.caller)));
    assert_eq!((row.assignee_id, row.comments), (None, 0));

    let range = reference_range(&reference(t.ticket)).unwrap();
    assert_eq!(
        tickets::ids_in_range(pool, t.org, range).await.unwrap(),
        [t.ticket]
    );
    let by_user = TicketFilter {
        end_user_id: Some(t.caller),
        ..TicketFilter::default()
    };
    assert_eq!(
        tickets::list(pool, t.org, &by_user, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let resolved = TicketFilter {
        status: Some("resolved".into()),
        ..TicketFilter::default()
    };
    assert!(tickets::list(pool, t.org, &resolved, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(tickets::count_open(pool, t.org).await.unwrap(), 1);
    assert!(
        tickets::get(pool, OrgId(Uuid::new_v4()), t.ticket)
            .await
            .unwrap()
            .is_none(),
        "another org does not see it"
    );
}

#[tokio::test]
async fn status_comments_and_assignment_update_the_ticket_and_its_timeline() {
    let mut given = Given::new().await;
    let t = opened(&mut given).await;
    let member = Actor::PlatformUser { id: t.owner };
    given
        .append::<Ticket>(
            t.ticket,
            &by(t.owner, t.org.0),
            &[
                TicketEvent::TicketAssigned {
                    member_id: t.owner,
                    by: member.clone(),
                },
                TicketEvent::TicketStatusChanged {
                    from: TicketStatus::New,
                    to: TicketStatus::InProgress,
                    by: member.clone(),
                },
                TicketEvent::TicketCommented {
                    by: member.clone(),
                    body: "Looking into it".into(),
                },
            ],
        )
        .await;
    given.project().await;
    let row = tickets::get(given.pool(), t.org, t.ticket)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.status.as_str(), row.assignee_id, row.comments),
        ("in_progress", Some(t.owner), 1)
    );

    given
        .append::<Ticket>(
            t.ticket,
            &by(t.owner, t.org.0),
            &[
                TicketEvent::TicketUnassigned { by: member.clone() },
                TicketEvent::TicketStatusChanged {
                    from: TicketStatus::InProgress,
                    to: TicketStatus::Resolved,
                    by: member,
                },
            ],
        )
        .await;
    given.project().await;
    let pool = given.pool();
    let row = tickets::get(pool, t.org, t.ticket).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.assignee_id), ("resolved", None));
    assert!(row.updated_at > row.created_at);
    assert_eq!(tickets::count_open(pool, t.org).await.unwrap(), 0);

    let timeline = tickets::activity(pool, t.org, t.ticket).await.unwrap();
    let kinds: Vec<_> = timeline
        .iter()
        .map(|a| (a.kind.as_str(), a.actor_kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("opened", "end_user"),
            ("assigned", "platform_user"),
            ("status_changed", "platform_user"),
            ("commented", "platform_user"),
            ("unassigned", "platform_user"),
            ("status_changed", "platform_user"),
        ]
    );
    assert_eq!(timeline[0].actor_id, Some(t.caller));
    assert_eq!(timeline[3].detail["body"], "Looking into it");
    assert_eq!(timeline[5].detail["to"], "resolved");
}
