//! Organizations and their members.

use domain::organization::{
    Organization, OrganizationCommand, OrganizationError, OrganizationEvent,
};
use domain::values::{Email, Name, Role, Slug};
use domain::{Aggregate, EventMetadata};
use eventstore::index::{self, KeyKind};
use eventstore::{EventStore, ExecuteError, Executed, Precondition, StoreError};
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

/// Adds a signed-up user as member, or invites an email that has no account yet. If the email
/// signs up meanwhile, the invitation's guard fails and the command runs again, now adding the
/// new account directly.
pub async fn add_member(
    store: &EventStore,
    org_id: Uuid,
    actor_id: Uuid,
    email: Email,
    role: Role,
    metadata: &EventMetadata,
) -> Result<OrganizationError> {
    let metadata = metadata.clone().for_org(org_id);
    let invite_key = email.as_str().to_owned();
    let mut outcome = Err(ExecuteError::Conflict);
    for _ in 0..3 {
        let user_id = index::owner_of(store.pool(), KeyKind::UserEmail, email.as_str()).await?;
        outcome = store
            .execute::<Organization, _, _>(
                &org_id.to_string(),
                &metadata,
                |org| {
                    org.handle(OrganizationCommand::AddMember {
                        actor_id,
                        user_id,
                        email: email.clone(),
                        role,
                    })
                },
                |_, events, uow| {
                    if events
                        .iter()
                        .any(|e| matches!(e, OrganizationEvent::MemberInvited { .. }))
                    {
                        uow.add_invitation(invite_key.clone(), org_id)
                            .require(Precondition::EmailHasNoAccount(invite_key.clone()));
                    }
                },
            )
            .await;
        if !matches!(outcome, Err(ExecuteError::Conflict)) {
            break;
        }
    }
    outcome
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
            |_, _, uow| {
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
