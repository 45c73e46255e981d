//! Who is calling: the end user a tracking id names, created on first sight.

use commands::services::end_users;
use domain::end_user::{EndUserError, TrackingId};
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

/// Tracking id → end user, per org. The mapping never changes once made, so it is cached until
/// evicted; the first calls of a new tracking id that arrive together identify it once.
pub struct Identities {
    known: Cache<(Uuid, TrackingId), Uuid>,
}

impl Default for Identities {
    fn default() -> Self {
        Self {
            known: Cache::new(MAX_CACHED),
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
