//! Hosted MCP servers of an org.

use crate::services::{identity_providers, organizations};
use crate::tracking::{self, NewTrackingSecret, TrackingKey, TrackingSeal};
use domain::server::{
    Server, ServerChanges, ServerCommand, ServerConfig, ServerError, ServerEvent, TrackingSecretRef,
};
use domain::values::Role;
use domain::{Aggregate, EventMetadata};
use eventstore::KeyKind;
use eventstore::{EventStore, ExecuteError, Executed, StoreError};
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

/// A server binding `provider_id` needs it to be a live provider of its org; the commit then
/// requires the provider's key still owned by the org (not deleted meanwhile).
async fn check_provider(
    store: &EventStore,
    org_id: Uuid,
    provider_id: Option<Uuid>,
) -> std::result::Result<(), ExecuteError<ServerError>> {
    let Some(provider_id) = provider_id else {
        return Ok(());
    };
    match identity_providers::exists(store, org_id, provider_id).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ExecuteError::Domain(ServerError::UnknownProvider)),
        Err(e) => Err(ExecuteError::Store(e)),
    }
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
    let provider = config.identity_provider_id;
    if actor_role.can_manage() {
        check_provider(store, org_id, provider).await?;
    }
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
                if let Some(provider) = provider {
                    uow.require_owner(KeyKind::IdentityProvider, provider.to_string(), org_id);
                }
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
    if actor_role.can_manage() {
        check_provider(store, org_id, changes.identity_provider_id.flatten()).await?;
    }
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
                let old_provider = before.config.as_ref().and_then(|c| c.identity_provider_id);
                for event in events {
                    if let ServerEvent::ServerUpdated { config } = event {
                        if let Some(provider) = config.identity_provider_id {
                            if old_provider != Some(provider) {
                                uow.require_owner(
                                    KeyKind::IdentityProvider,
                                    provider.to_string(),
                                    org_id,
                                );
                            }
                        }
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

/// A new tracking secret for the server: its events say only its id and prefix; the secret is
/// sealed into the write-side index in the same commit, and returned here once.
pub async fn create_tracking_secret(
    store: &EventStore,
    seal: &TrackingSeal,
    org_id: Uuid,
    server_id: Uuid,
    actor_id: Uuid,
    metadata: &EventMetadata,
) -> std::result::Result<(Executed<ServerEvent>, Uuid, NewTrackingSecret), ExecuteError<ServerError>>
{
    let actor_role = actor_role(store, org_id, actor_id).await?;
    let metadata = metadata.clone().for_org(org_id);
    let secret_id = Uuid::new_v4();
    let fresh = tracking::new_secret();
    let sealed = seal.seal(server_id, &fresh.secret);
    let reference = TrackingSecretRef {
        secret_id,
        prefix: fresh.prefix.clone(),
    };
    let done = store
        .execute::<Server, _, _>(
            &server_id.to_string(),
            &metadata,
            |server| {
                if server.org_id != Some(org_id) {
                    return Err(ServerError::NotFound);
                }
                server.handle(ServerCommand::CreateTrackingSecret {
                    actor_role,
                    secret: reference.clone(),
                })
            },
            |_, events, uow| {
                if !events.is_empty() {
                    uow.add_tracking_secret(server_id, secret_id, sealed.clone());
                }
            },
        )
        .await?;
    Ok((done, secret_id, fresh))
}

/// Revokes a tracking secret: signatures made with it stop verifying, and it is deleted.
pub async fn revoke_tracking_secret(
    store: &EventStore,
    org_id: Uuid,
    server_id: Uuid,
    secret_id: Uuid,
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
                server.handle(ServerCommand::RevokeTrackingSecret {
                    actor_role,
                    secret_id,
                })
            },
            |_, events, uow| {
                if !events.is_empty() {
                    uow.remove_tracking_secret(server_id, secret_id);
                }
            },
        )
        .await
}

/// The server's active tracking secrets, opened, for verifying signatures. A secret that does
/// not open (the platform secret was changed) is left out and logged, so signatures made with
/// it are refused rather than the server failing.
pub async fn tracking_keys(
    store: &EventStore,
    seal: &TrackingSeal,
    server_id: Uuid,
    active: &[TrackingSecretRef],
) -> std::result::Result<Vec<TrackingKey>, StoreError> {
    if active.is_empty() {
        return Ok(Vec::new());
    }
    let sealed = eventstore::index::sealed_tracking_secrets(store.pool(), server_id).await?;
    let mut keys = Vec::with_capacity(active.len());
    for (secret_id, sealed) in sealed {
        if !active.iter().any(|a| a.secret_id == secret_id) {
            continue;
        }
        match seal.open(server_id, &sealed) {
            Ok(secret) => keys.push(TrackingKey::new(secret_id, secret)),
            Err(e) => {
                tracing::warn!(%server_id, %secret_id, error = %e, "tracking secret left out")
            }
        }
    }
    Ok(keys)
}
