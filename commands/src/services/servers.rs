//! Hosted MCP servers of an org.

use crate::services::organizations;
use domain::server::{
    Server, ServerChanges, ServerCommand, ServerConfig, ServerError, ServerEvent,
};
use domain::values::Role;
use domain::{Aggregate, EventMetadata};
use eventstore::KeyKind;
use eventstore::{EventStore, ExecuteError, Executed};
use uuid::Uuid;

type Result = std::result::Result<Executed<ServerEvent>, ExecuteError<ServerError>>;

/// The actor's role in the org, from the write model. Not a member: the server is "not found"
/// to them, like everything else of an org they do not belong to.
async fn actor_role(
    store: &EventStore,
    org_id: Uuid,
    actor_id: Uuid,
) -> std::result::Result<Role, ExecuteError<ServerError>> {
    organizations::load(store, org_id)
        .await?
        .and_then(|org| org.role_of(actor_id))
        .ok_or(ExecuteError::Domain(ServerError::NotFound))
}

pub async fn create(
    store: &EventStore,
    org_id: Uuid,
    server_id: Uuid,
    actor_id: Uuid,
    config: ServerConfig,
    metadata: &EventMetadata,
) -> Result {
    let actor_role = actor_role(store, org_id, actor_id).await?;
    let metadata = metadata.clone().for_org(org_id);
    let slug = config.slug.as_str().to_owned();
    store
        .execute::<Server, _, _>(
            &server_id.to_string(),
            &metadata,
            |server| {
                server.handle(ServerCommand::Create {
                    org_id,
                    actor_role,
                    config: config.clone(),
                })
            },
            |_, _, uow| {
                uow.claim(KeyKind::ServerSlug, slug.clone(), server_id);
            },
        )
        .await
}

pub async fn update(
    store: &EventStore,
    org_id: Uuid,
    server_id: Uuid,
    actor_id: Uuid,
    changes: ServerChanges,
    metadata: &EventMetadata,
) -> Result {
    let actor_role = actor_role(store, org_id, actor_id).await?;
    let metadata = metadata.clone().for_org(org_id);
    store
        .execute::<Server, _, _>(
            &server_id.to_string(),
            &metadata,
            |server| {
                if server.org_id != Some(org_id) {
                    return Err(ServerError::NotFound);
                }
                server.handle(ServerCommand::Update {
                    actor_role,
                    changes: changes.clone(),
                })
            },
            |before, events, uow| {
                // A new slug is claimed and the old one released in the same commit.
                let old = before.config.as_ref().map(|c| c.slug.as_str().to_owned());
                for event in events {
                    if let ServerEvent::ServerUpdated { config } = event {
                        if old.as_deref() != Some(config.slug.as_str()) {
                            if let Some(old) = &old {
                                uow.release(KeyKind::ServerSlug, old.clone(), server_id);
                            }
                            uow.claim(KeyKind::ServerSlug, config.slug.as_str(), server_id);
                        }
                    }
                }
            },
        )
        .await
}

/// Archives a server and frees its slug for reuse.
pub async fn archive(
    store: &EventStore,
    org_id: Uuid,
    server_id: Uuid,
    actor_id: Uuid,
    metadata: &EventMetadata,
) -> Result {
    let actor_role = actor_role(store, org_id, actor_id).await?;
    let metadata = metadata.clone().for_org(org_id);
    store
        .execute::<Server, _, _>(
            &server_id.to_string(),
            &metadata,
            |server| {
                if server.org_id != Some(org_id) {
                    return Err(ServerError::NotFound);
                }
                server.handle(ServerCommand::Archive { actor_role })
            },
            |_, events, uow| {
                for event in events {
                    if let ServerEvent::ServerArchived { slug } = event {
                        uow.release(KeyKind::ServerSlug, slug.as_str(), server_id);
                    }
                }
            },
        )
        .await
}
