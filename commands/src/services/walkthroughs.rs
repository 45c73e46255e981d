//! Walkthrough authoring, publishing and server assignment. Owners and admins write; the role
//! and a server's org come from the write model, so a just-demoted admin or a foreign server
//! is refused at once.

use crate::services::organizations;
use domain::server::Server;
use domain::walkthrough::{Walkthrough, WalkthroughCommand, WalkthroughError, WalkthroughEvent};
use domain::{Aggregate, EventMetadata};
use eventstore::{EventStore, ExecuteError, Executed};
use uuid::Uuid;

type Result<T = Executed<WalkthroughEvent>> =
    std::result::Result<T, ExecuteError<WalkthroughError>>;

/// Fails unless the actor may author the org's walkthroughs.
async fn authorize(store: &EventStore, org_id: Uuid, actor_id: Uuid) -> Result<()> {
    let role = organizations::load(store, org_id)
        .await?
        .and_then(|org| org.role_of(actor_id));
    match role {
        Some(role) if role.can_manage() => Ok(()),
        Some(_) => Err(ExecuteError::Domain(WalkthroughError::NotAllowed)),
        None => Err(ExecuteError::Domain(WalkthroughError::NotFound)),
    }
}

pub async fn create(
    store: &EventStore,
    org_id: Uuid,
    walkthrough_id: Uuid,
    actor_id: Uuid,
    title: String,
    description: Option<String>,
    metadata: &EventMetadata,
) -> Result {
    authorize(store, org_id, actor_id).await?;
    let metadata = metadata.clone().for_org(org_id);
    store
        .run::<Walkthrough>(&walkthrough_id.to_string(), &metadata, |_| {
            WalkthroughCommand::Create {
                org_id,
                title: title.clone(),
                description: description.clone(),
            }
        })
        .await
}

/// Runs a command on a walkthrough of `org_id`; one of another org is not found.
pub async fn change(
    store: &EventStore,
    org_id: Uuid,
    walkthrough_id: Uuid,
    actor_id: Uuid,
    metadata: &EventMetadata,
    command: impl Fn() -> WalkthroughCommand,
) -> Result {
    authorize(store, org_id, actor_id).await?;
    let metadata = metadata.clone().for_org(org_id);
    store
        .execute::<Walkthrough, _, _>(
            &walkthrough_id.to_string(),
            &metadata,
            |walkthrough| {
                if walkthrough.org_id != Some(org_id) {
                    return Err(WalkthroughError::NotFound);
                }
                walkthrough.handle(command())
            },
            |_, _, _| {},
        )
        .await
}

/// Why an assignment was refused before the walkthrough was touched.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    #[error("server not found")]
    ServerNotFound,
    #[error("the server is archived; nothing new can be assigned to it")]
    ServerArchived,
    #[error(transparent)]
    Execute(#[from] ExecuteError<WalkthroughError>),
}

/// Assignment commands name a server; it must be a live server of the same org.
pub async fn change_assignment(
    store: &EventStore,
    org_id: Uuid,
    walkthrough_id: Uuid,
    server_id: Uuid,
    actor_id: Uuid,
    metadata: &EventMetadata,
    command: impl Fn() -> WalkthroughCommand,
) -> std::result::Result<Executed<WalkthroughEvent>, AssignError> {
    let (server, _) = store
        .load::<Server>(&server_id.to_string())
        .await
        .map_err(ExecuteError::Store)?;
    if server.org_id != Some(org_id) {
        return Err(AssignError::ServerNotFound);
    }
    // An archived server serves nobody: nothing new goes on it, though what is on it can still
    // be changed or taken off.
    if server.archived && matches!(command(), WalkthroughCommand::Assign { .. }) {
        return Err(AssignError::ServerArchived);
    }
    Ok(change(store, org_id, walkthrough_id, actor_id, metadata, command).await?)
}

/// The walkthrough as the write model has it, if it belongs to `org_id`.
pub async fn load(
    store: &EventStore,
    org_id: Uuid,
    walkthrough_id: Uuid,
) -> std::result::Result<Option<Walkthrough>, eventstore::StoreError> {
    let (walkthrough, _) = store
        .load::<Walkthrough>(&walkthrough_id.to_string())
        .await?;
    Ok((walkthrough.org_id == Some(org_id)).then_some(walkthrough))
}
