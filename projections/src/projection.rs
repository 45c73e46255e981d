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

/// Which events a projection reads, by aggregate type. The one description that its worker's
/// subscription and catch-up, its rebuild, read-your-writes waiting, its lag (`/metrics`,
/// `projections status`) and `projections list` all follow, so none of them can count or wait
/// for events the projection never gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Every event.
    All,
    /// Only events of these aggregate types (at least one).
    Only(&'static [&'static str]),
    /// Every event but those of these aggregate types.
    AllBut(&'static [&'static str]),
}

impl Reads {
    pub fn includes(self, aggregate_type: &str) -> bool {
        match self {
            Reads::All => true,
            Reads::Only(types) => types.contains(&aggregate_type),
            Reads::AllBut(types) => !types.contains(&aggregate_type),
        }
    }

    /// The types a read of the log may be limited to; empty: not limited this way.
    pub fn only(self) -> &'static [&'static str] {
        match self {
            Reads::Only(types) => types,
            Reads::All | Reads::AllBut(_) => &[],
        }
    }

    /// The types a read of the log leaves out.
    pub fn except(self) -> &'static [&'static str] {
        match self {
            Reads::AllBut(types) => types,
            Reads::All | Reads::Only(_) => &[],
        }
    }

    /// For a read in SQL: binds `only()` and `except()` as `text[]` to placeholders `$only`
    /// and `$except` of this condition (`only` empty means no limit, as `Only` is never empty).
    pub fn sql_condition(only: usize, except: usize) -> String {
        format!(
            "(cardinality(${only}::text[]) = 0 OR aggregate_type = ANY(${only})) \
             AND aggregate_type <> ALL(${except}::text[])"
        )
    }

    /// For people: "all events", "server", "all events but tool_call, end_user".
    pub fn describe(self) -> String {
        match self {
            Reads::All => "all events".to_owned(),
            Reads::Only(types) => types.join(", "),
            Reads::AllBut(types) => format!("all events but {}", types.join(", ")),
        }
    }
}

pub trait Projection: Send + Sync {
    /// Stable name: checkpoint key, consumer name, CLI argument.
    fn name(&self) -> &'static str;
    /// The events it reads.
    fn reads(&self) -> Reads;
    /// The tables it owns (and rebuild replaces).
    fn tables(&self) -> &'static [&'static str];
    /// Applies a batch of events, in order, inside the caller's transaction. Every event given
    /// is newer than the checkpoint and one it wants (see `wants` on `dyn Projection`).
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        tables: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;
}

impl dyn Projection {
    /// Whether an event is one this projection reads (as [`Projection::reads`] says): the one
    /// filter its worker applies both to what it catches up on from the event store and to what
    /// it receives live from NATS, its rebuild, and read-your-writes waiting. Not a trait
    /// method, so no projection can answer differently from its `reads()` (which its NATS
    /// subscription and its lag follow).
    pub fn wants(&self, aggregate_type: &str) -> bool {
        self.reads().includes(aggregate_type)
    }

    /// The events of a page of the log that this projection reads, in order.
    pub fn wanted(&self, mut events: Vec<StoredEvent>) -> Vec<StoredEvent> {
        events.retain(|e| self.wants(&e.aggregate_type));
        events
    }
}

#[cfg(test)]
mod tests {
    use super::Reads;

    #[test]
    fn a_description_of_what_is_read_answers_for_each_type() {
        let only = Reads::Only(&["server", "organization"]);
        assert!(only.includes("server") && !only.includes("tool_call"));
        let all_but = Reads::AllBut(&["tool_call"]);
        assert!(all_but.includes("server") && !all_but.includes("tool_call"));
        assert!(Reads::All.includes("tool_call"));
        assert_eq!(
            (only.only(), only.except()),
            (&["server", "organization"][..], &[][..])
        );
        assert_eq!(
            (all_but.only(), all_but.except()),
            (&[][..], &["tool_call"][..])
        );
        assert_eq!(all_but.describe(), "all events but tool_call");
        assert_eq!(only.describe(), "server, organization");
        assert_eq!(Reads::All.describe(), "all events");
    }
}
