//! Organizations and their members.

use chrono::{DateTime, Utc};
use domain::organization::{
    Organization, OrganizationCommand, OrganizationError, OrganizationEvent,
};
use domain::values::{Email, Name, Role, Slug};
use domain::{Aggregate, EventMetadata};
use eventstore::index::{self, KeyKind};
use eventstore::{EventStore, ExecuteError, Executed, StoreError};
use uuid::Uuid;

type Result<T> = std::result::Result<Executed<OrganizationEvent>, ExecuteError<T>>;

/// Creates an org owned by `owner_id`; the slug is claimed platform-wide in the same commit.
pub async fn create(
    store: &EventStore,
    org_id: Uuid,
    owner_id: Uuid,
    owner_email: Email,
    name: Name,
    slug: Slug,
    metadata: &EventMetadata,
) -> Result<OrganizationError> {
    let metadata = metadata.clone().for_org(org_id);
    let claim_key = slug.as_str().to_owned();
    store
        .execute::<Organization, _, _>(
            &org_id.to_string(),
            &metadata,
            |org| {
                org.handle(OrganizationCommand::Create {
                    name: name.clone(),
                    slug: slug.clone(),
                    owner_id,
                    owner_email: owner_email.clone(),
                })
            },
            |_, _, uow| {
                uow.claim(KeyKind::OrgSlug, claim_key.clone(), org_id);
            },
        )
        .await
}

/// A new invitation's token, as stored: its sha256 hash (the token is shown to the inviter
/// once and never stored), and when it expires.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

/// Invites an email (with an account or not) to join with `role`. The invitation grants
/// nothing until accepted with its token ([`accept_invitation`], or a signup presenting it).
/// Inviting an email again replaces the earlier invitation: its token no longer works.
pub async fn invite(
    store: &EventStore,
    org_id: Uuid,
    actor_id: Uuid,
    email: Email,
    role: Role,
    invitation: NewInvitation,
    metadata: &EventMetadata,
) -> Result<OrganizationError> {
    let metadata = metadata.clone().for_org(org_id);
    let invite_key = email.as_str().to_owned();
    store
        .execute::<Organization, _, _>(
            &org_id.to_string(),
            &metadata,
            |org| {
                org.handle(OrganizationCommand::Invite {
                    actor_id,
                    email: email.clone(),
                    role,
                    token_hash: invitation.token_hash.clone(),
                    expires_at: invitation.expires_at,
                })
            },
            |org, _, uow| {
                if let Some(old) = org.invitation(&email).and_then(|i| i.token_hash.as_deref()) {
                    uow.release(KeyKind::InvitationToken, old, org_id);
                }
                uow.claim(
                    KeyKind::InvitationToken,
                    invitation.token_hash.clone(),
                    org_id,
                )
                .add_invitation(invite_key.clone(), org_id);
            },
        )
        .await
}

/// The pending invitation a token's hash names: the org that sent it, if any.
pub async fn invitation_org(
    store: &EventStore,
    token_hash: &str,
) -> std::result::Result<Option<Uuid>, StoreError> {
    index::owner_of(store.pool(), KeyKind::InvitationToken, token_hash).await
}

/// The account `user_id` (whose email is `email`) accepts the invitation whose token hashes to
/// `token_hash`, and joins its org with the invited role. Unknown, used, revoked and replaced
/// tokens are all [`OrganizationError::UnknownInvitation`], whatever org sent them.
pub async fn accept_invitation(
    store: &EventStore,
    token_hash: &str,
    user_id: Uuid,
    email: Email,
    now: DateTime<Utc>,
    metadata: &EventMetadata,
) -> std::result::Result<(Uuid, Executed<OrganizationEvent>), ExecuteError<OrganizationError>> {
    let unknown = || ExecuteError::Domain(OrganizationError::UnknownInvitation);
    let org_id = invitation_org(store, token_hash)
        .await?
        .ok_or_else(unknown)?;
    let metadata = metadata.clone().for_org(org_id);
    let done = store
        .execute::<Organization, _, _>(
            &org_id.to_string(),
            &metadata,
            |org| {
                org.handle(OrganizationCommand::AcceptInvitation {
                    user_id,
                    email: email.clone(),
                    token_hash: token_hash.to_owned(),
                    now,
                })
            },
            |_, _, uow| {
                uow.release(KeyKind::InvitationToken, token_hash, org_id)
                    .remove_invitation(email.as_str(), org_id);
            },
        )
        .await
        .map_err(|e| match e {
            ExecuteError::Domain(OrganizationError::NotFound) => unknown(),
            e => e,
        })?;
    Ok((org_id, done))
}

pub async fn change_role(
    store: &EventStore,
    org_id: Uuid,
    actor_id: Uuid,
    user_id: Uuid,
    role: Role,
    metadata: &EventMetadata,
) -> Result<OrganizationError> {
    let metadata = metadata.clone().for_org(org_id);
    store
        .run::<Organization>(&org_id.to_string(), &metadata, |_| {
            OrganizationCommand::ChangeRole {
                actor_id,
                user_id,
                role,
            }
        })
        .await
}

pub async fn remove_member(
    store: &EventStore,
    org_id: Uuid,
    actor_id: Uuid,
    user_id: Uuid,
    metadata: &EventMetadata,
) -> Result<OrganizationError> {
    let metadata = metadata.clone().for_org(org_id);
    store
        .run::<Organization>(&org_id.to_string(), &metadata, |_| {
            OrganizationCommand::RemoveMember { actor_id, user_id }
        })
        .await
}

pub async fn revoke_invitation(
    store: &EventStore,
    org_id: Uuid,
    actor_id: Uuid,
    email: Email,
    metadata: &EventMetadata,
) -> Result<OrganizationError> {
    let metadata = metadata.clone().for_org(org_id);
    let key = email.as_str().to_owned();
    store
        .execute::<Organization, _, _>(
            &org_id.to_string(),
            &metadata,
            |org| {
                org.handle(OrganizationCommand::RevokeInvitation {
                    actor_id,
                    email: email.clone(),
                })
            },
            |org, _, uow| {
                if let Some(hash) = org.invitation(&email).and_then(|i| i.token_hash.as_deref()) {
                    uow.release(KeyKind::InvitationToken, hash, org_id);
                }
                uow.remove_invitation(key.clone(), org_id);
            },
        )
        .await
}

/// The org as the write model sees it (strongly consistent).
pub async fn load(
    store: &EventStore,
    org_id: Uuid,
) -> std::result::Result<Option<Organization>, StoreError> {
    let (org, _) = store.load::<Organization>(&org_id.to_string()).await?;
    Ok(org.created.then_some(org))
}
