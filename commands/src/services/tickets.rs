//! Support tickets: opened by end users through `get_support`, worked by the org's members.

use crate::services::organizations;
use domain::ticket::{Ticket, TicketCommand, TicketError, TicketEvent, TicketStatus};
use domain::{Actor, Aggregate, EventMetadata};
use eventstore::index::{self, KeyKind};
use eventstore::{EventStore, ExecuteError, Executed};
use uuid::Uuid;

type Result = std::result::Result<Executed<TicketEvent>, ExecuteError<TicketError>>;

/// What an end user asked for help with.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub org_id: Uuid,
    pub server_id: Uuid,
    pub end_user_id: Option<Uuid>,
    pub title: String,
    pub description: String,
    pub email: Option<String>,
    pub context: Option<String>,
}

pub async fn open(
    store: &EventStore,
    ticket_id: Uuid,
    ticket: NewTicket,
    metadata: &EventMetadata,
) -> Result {
    let metadata = metadata.clone().for_org(ticket.org_id);
    store
        .run::<Ticket>(&ticket_id.to_string(), &metadata, |_| TicketCommand::Open {
            org_id: ticket.org_id,
            server_id: ticket.server_id,
            end_user_id: ticket.end_user_id,
            title: ticket.title.clone(),
            description: ticket.description.clone(),
            email: ticket.email.clone(),
            context: ticket.context.clone(),
        })
        .await
}

/// Runs a command on a ticket of `org_id`; a ticket of another org is not found.
async fn on_ticket(
    store: &EventStore,
    org_id: Uuid,
    ticket_id: Uuid,
    metadata: &EventMetadata,
    command: impl Fn() -> TicketCommand,
) -> Result {
    let metadata = metadata.clone().for_org(org_id);
    store
        .execute::<Ticket, _, _>(
            &ticket_id.to_string(),
            &metadata,
            |ticket| {
                if ticket.org_id != Some(org_id) {
                    return Err(TicketError::NotFound);
                }
                ticket.handle(command())
            },
            |_, _, _| {},
        )
        .await
}

pub async fn change_status(
    store: &EventStore,
    org_id: Uuid,
    ticket_id: Uuid,
    to: TicketStatus,
    by: Actor,
    metadata: &EventMetadata,
) -> Result {
    on_ticket(store, org_id, ticket_id, metadata, || {
        TicketCommand::ChangeStatus { to, by: by.clone() }
    })
    .await
}

pub async fn comment(
    store: &EventStore,
    org_id: Uuid,
    ticket_id: Uuid,
    body: String,
    by: Actor,
    metadata: &EventMetadata,
) -> Result {
    on_ticket(store, org_id, ticket_id, metadata, || {
        TicketCommand::Comment {
            by: by.clone(),
            body: body.clone(),
        }
    })
    .await
}

/// Takes the ticket off whoever has it (nothing happens if nobody does).
pub async fn unassign(
    store: &EventStore,
    org_id: Uuid,
    ticket_id: Uuid,
    by: Actor,
    metadata: &EventMetadata,
) -> Result {
    on_ticket(store, org_id, ticket_id, metadata, || {
        TicketCommand::Unassign { by: by.clone() }
    })
    .await
}

/// Why an assignment was refused before the ticket was touched.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    #[error("{0} is not a member of this organization")]
    NotAMember(String),
    #[error(transparent)]
    Execute(#[from] ExecuteError<TicketError>),
}

/// Assigns a ticket to an active member, named by user id or email.
pub async fn assign(
    store: &EventStore,
    org_id: Uuid,
    ticket_id: Uuid,
    member: &str,
    by: Actor,
    metadata: &EventMetadata,
) -> std::result::Result<Executed<TicketEvent>, AssignError> {
    let member_id = match member.parse::<Uuid>() {
        Ok(id) => Some(id),
        Err(_) => index::owner_of(
            store.pool(),
            KeyKind::UserEmail,
            &member.trim().to_lowercase(),
        )
        .await
        .map_err(ExecuteError::Store)?,
    };
    let org = organizations::load(store, org_id)
        .await
        .map_err(ExecuteError::Store)?;
    let member_id = member_id
        .filter(|id| org.as_ref().and_then(|o| o.role_of(*id)).is_some())
        .ok_or_else(|| AssignError::NotAMember(member.to_owned()))?;
    Ok(on_ticket(store, org_id, ticket_id, metadata, || {
        TicketCommand::Assign {
            member_id,
            by: by.clone(),
        }
    })
    .await?)
}
