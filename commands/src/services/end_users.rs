//! End users of an org's servers, known by tracking id.

use domain::end_user::{EndUser, EndUserCommand, EndUserError, EndUserEvent, TrackingId};
use domain::values::{Email, OrgId};
use domain::{Aggregate, EventMetadata};
use eventstore::index::{self, KeyKind};
use eventstore::{EventStore, ExecuteError, Executed};
use uuid::Uuid;

/// The unique-key value of a tracking id: tracking ids are unique per org.
pub fn tracking_key(org_id: Uuid, tracking_id: &TrackingId) -> String {
    format!("{org_id}/{}", tracking_id.as_str())
}

/// The end user a tracking id names in an org, if the org's servers have seen it (never
/// creates one). Read from the key index the edge claims it in, so it is never behind.
pub async fn find(
    pool: &sqlx::PgPool,
    org: OrgId,
    tracking_id: &TrackingId,
) -> Result<Option<Uuid>, eventstore::StoreError> {
    index::owner_of(
        pool,
        KeyKind::EndUserTracking,
        &tracking_key(org.0, tracking_id),
    )
    .await
}

/// The end user a tracking id names in an org, created on first sight. Two first calls racing
/// with one new tracking id agree on one end user: the key claim lets one win, and the loser
/// reads the winner's id.
pub async fn identify(
    store: &EventStore,
    org_id: Uuid,
    server_id: Uuid,
    tracking_id: &TrackingId,
    metadata: &EventMetadata,
) -> Result<Uuid, ExecuteError<EndUserError>> {
    let key = tracking_key(org_id, tracking_id);
    for _ in 0..3 {
        if let Some(owner) = index::owner_of(store.pool(), KeyKind::EndUserTracking, &key).await? {
            return Ok(owner);
        }
        let end_user_id = Uuid::new_v4();
        let mut metadata = metadata.clone().for_org(org_id);
        metadata.actor = domain::Actor::EndUser { id: end_user_id };
        let outcome = store
            .execute::<EndUser, _, _>(
                &end_user_id.to_string(),
                &metadata,
                |user| {
                    user.handle(EndUserCommand::Identify {
                        org_id,
                        server_id,
                        tracking_id: tracking_id.clone(),
                    })
                },
                |_, _, uow| {
                    uow.claim(KeyKind::EndUserTracking, key.clone(), end_user_id);
                },
            )
            .await;
        match outcome {
            Ok(_) => return Ok(end_user_id),
            Err(ExecuteError::KeyTaken { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ExecuteError::Conflict)
}

/// Records an email the end user gave; already-known emails change nothing.
pub async fn record_email(
    store: &EventStore,
    org_id: Uuid,
    end_user_id: Uuid,
    email: Email,
    metadata: &EventMetadata,
) -> Result<Executed<EndUserEvent>, ExecuteError<EndUserError>> {
    let metadata = metadata.clone().for_org(org_id);
    store
        .execute::<EndUser, _, _>(
            &end_user_id.to_string(),
            &metadata,
            |user| {
                // A command never writes into another org's stream.
                if user.org_id.is_some_and(|o| o != org_id) {
                    return Err(EndUserError::OtherOrg);
                }
                user.handle(EndUserCommand::RecordEmail {
                    email: email.clone(),
                })
            },
            |_, _, _| {},
        )
        .await
}
