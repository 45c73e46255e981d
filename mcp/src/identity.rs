//! Who is calling: the end user a tracking id names, created on first sight.

use commands::services::end_users;
use domain::end_user::{EndUserError, TrackingId};
use domain::EventMetadata;
use eventstore::{EventStore, ExecuteError};
use std::collections::HashMap;
use std::sync::RwLock;
use uuid::Uuid;

/// The caller of one request. Without a tracking id (auth mode `none`) the caller is anonymous.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caller {
    pub end_user_id: Option<Uuid>,
    pub tracking_id: Option<TrackingId>,
}

/// Bound on remembered tracking ids; past it the map starts over (a miss costs one index read).
const MAX_CACHED: usize = 100_000;

/// Tracking id → end user, per org. The mapping never changes once made, so it is cached for
/// the life of the process.
#[derive(Default)]
pub struct Identities {
    known: RwLock<HashMap<(Uuid, TrackingId), Uuid>>,
}

impl Identities {
    pub async fn end_user(
        &self,
        store: &EventStore,
        org_id: Uuid,
        server_id: Uuid,
        tracking_id: &TrackingId,
        metadata: &EventMetadata,
    ) -> Result<Uuid, ExecuteError<EndUserError>> {
        let key = (org_id, tracking_id.clone());
        if let Some(id) = self.known.read().ok().and_then(|k| k.get(&key).copied()) {
            return Ok(id);
        }
        let id = end_users::identify(store, org_id, server_id, tracking_id, metadata).await?;
        if let Ok(mut known) = self.known.write() {
            if known.len() >= MAX_CACHED {
                known.clear();
            }
            known.insert(key, id);
        }
        Ok(id)
    }
}
