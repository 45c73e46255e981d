//! Who is calling: the end user a tracking id names, created on first sight.

use commands::services::end_users;
use domain::end_user::{EndUserError, MergeReason, TrackingId};
use domain::values::OrgId;
use domain::EventMetadata;
use eventstore::{EventStore, ExecuteError, StoreError};
use moka::future::Cache;
use std::sync::Arc;
use uuid::Uuid;

/// The caller of one request. Without a tracking id (auth mode `none`) the caller is anonymous.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caller {
    pub end_user_id: Option<Uuid>,
    pub tracking_id: Option<TrackingId>,
}

/// Bound on remembered tracking ids (a miss costs one index read).
const MAX_CACHED: u64 = 100_000;

/// How long a tracking id's end user is remembered. A merge (identity stitching) moves a
/// tracking id to the survivor: every instance names the survivor within this time, and this
/// process at once when the merge went through [`Identities::forget`].
pub const REMEMBERED_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Tracking id → end user, per org, remembered for [`REMEMBERED_FOR`]; the first calls of a new
/// tracking id that arrive together identify it once.
pub struct Identities {
    known: Cache<(Uuid, TrackingId), Uuid>,
    /// (signed-in end user, tracking id's end user) pairs already made one person here, so a
    /// signed-in client calling with a tracking id costs the merge's reads once, not per call.
    merged: Cache<(Uuid, Uuid), ()>,
}

impl Default for Identities {
    fn default() -> Self {
        Self {
            known: Cache::builder()
                .max_capacity(MAX_CACHED)
                .time_to_live(REMEMBERED_FOR)
                .build(),
            merged: Cache::new(MAX_CACHED),
        }
    }
}

impl Identities {
    /// The end user a tracking id names, if the org has seen it: never creates one.
    pub async fn known(
        &self,
        store: &EventStore,
        org_id: Uuid,
        tracking_id: &TrackingId,
    ) -> Result<Option<Uuid>, StoreError> {
        let key = (org_id, tracking_id.clone());
        if let Some(id) = self.known.get(&key).await {
            return Ok(Some(id));
        }
        let found = end_users::find(store.pool(), OrgId(org_id), tracking_id).await?;
        if let Some(id) = found {
            self.known.insert(key, id).await;
        }
        Ok(found)
    }

    /// Forgets what a tracking id names (after a merge moved it to another end user).
    pub async fn forget(&self, org_id: Uuid, tracking_id: &TrackingId) {
        self.known.invalidate(&(org_id, tracking_id.clone())).await;
    }

    /// A client signed in as `signed_in` that also calls with a tracking id naming `tracked` is
    /// both: the two are made one person (`SignedInWithTrackingId`), once per pair and process
    /// (a merge of a pair that is one person already writes nothing). A failure is logged and
    /// the merge tried again on the next call: it never fails the call itself.
    pub async fn merge_signed_in(
        &self,
        store: &EventStore,
        org_id: Uuid,
        signed_in: Uuid,
        tracked: Uuid,
        tracking_id: &TrackingId,
        metadata: &EventMetadata,
    ) {
        if signed_in == tracked || self.merged.contains_key(&(signed_in, tracked)) {
            return;
        }
        let outcome = self
            .merged
            .try_get_with((signed_in, tracked), async {
                end_users::merge(
                    store,
                    metadata,
                    OrgId(org_id),
                    signed_in,
                    tracked,
                    MergeReason::SignedInWithTrackingId,
                )
                .await
                .map(|_| ())
            })
            .await;
        match outcome {
            // The tracking id names the survivor now.
            Ok(()) => self.forget(org_id, tracking_id).await,
            Err(e) => tracing::warn!(
                error = %e,
                "could not merge a signed-in end user with their tracking id"
            ),
        }
    }

    pub async fn end_user(
        &self,
        store: &EventStore,
        org_id: Uuid,
        server_id: Uuid,
        tracking_id: &TrackingId,
        metadata: &EventMetadata,
    ) -> Result<Uuid, Arc<ExecuteError<EndUserError>>> {
        self.known
            .try_get_with((org_id, tracking_id.clone()), async {
                end_users::identify(store, org_id, server_id, tracking_id, metadata).await
            })
            .await
    }
}
