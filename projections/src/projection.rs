//! What a projection is: a name, the streams it reads, its tables, and a batch apply function.
//!
//! The same `apply` writes live tables (from NATS) and shadow tables (during a rebuild), so a
//! rebuilt model is the live model by construction.

use eventstore::StoredEvent;
use futures::future::BoxFuture;
use sqlx::PgConnection;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] eventstore::StoreError),
    #[error("nats: {0}")]
    Nats(String),
    #[error("unknown projection {0:?}")]
    Unknown(String),
    #[error("another worker became leader of this projection")]
    LostLeadership,
    #[error("another rebuild of {0} is running")]
    RebuildRunning(String),
}

/// Table names for one run: the live tables, or their shadows during a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    shadow: bool,
}

impl Tables {
    pub const LIVE: Tables = Tables { shadow: false };
    pub const SHADOW: Tables = Tables { shadow: true };

    /// The physical name of a read-model table in this run.
    pub fn name(&self, table: &str) -> String {
        if self.shadow {
            shadow_name(table)
        } else {
            table.to_owned()
        }
    }
}

pub fn shadow_name(table: &str) -> String {
    format!("{table}__shadow")
}

pub trait Projection: Send + Sync {
    /// Stable name: checkpoint key, consumer name, CLI argument.
    fn name(&self) -> &'static str;
    /// The aggregate types whose events it reads; empty means every event.
    fn aggregate_types(&self) -> &'static [&'static str];
    /// The tables it owns (and rebuild replaces).
    fn tables(&self) -> &'static [&'static str];
    /// Applies a batch of events, in order, inside the caller's transaction. Every event given
    /// is newer than the checkpoint and of one of `aggregate_types`.
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        tables: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;

    /// Whether an event is one this projection reads.
    fn wants(&self, aggregate_type: &str) -> bool {
        let types = self.aggregate_types();
        types.is_empty() || types.contains(&aggregate_type)
    }
}
