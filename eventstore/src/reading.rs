//! Reading the log in committed (cursor) order, for the relay, projectors, the CLI and the
//! events API.

use crate::cursor::Cursor;
use crate::error::StoreError;
use crate::event::StoredEvent;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

/// Which events a reader wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub org_id: Option<Uuid>,
    pub event_types: Vec<String>,
    pub aggregate_types: Vec<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// See [`EventStore::head`]; free for readers without a committer (CLI).
pub async fn head(pool: &PgPool) -> Result<Cursor, StoreError> {
    let row = sqlx::query(
        "SELECT transaction_id::text::bigint AS tx, global_position FROM events \
         WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(row) => Cursor::new(row.try_get("tx")?, row.try_get("global_position")?),
        None => Cursor::START,
    })
}

pub const EVENT_COLUMNS: &str = "event_id, transaction_id::text::bigint AS tx, \
    global_position, aggregate_type, aggregate_id, sequence, event_type, event_version, org_id, \
    recorded_at, payload, metadata";

/// See [`EventStore::read_after`]. Free so readers without a committer (CLI, relay) use it.
pub async fn read_after<'e, E>(
    executor: E,
    filter: &EventFilter,
    after: Cursor,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
    q.push(EVENT_COLUMNS);
    q.push(" FROM events WHERE (transaction_id, global_position) > (");
    q.push_bind(after.transaction_id.to_string());
    q.push("::xid8, ");
    q.push_bind(after.global_position);
    q.push(") AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())");
    if let Some(org_id) = filter.org_id {
        q.push(" AND org_id = ").push_bind(org_id);
    }
    if !filter.event_types.is_empty() {
        q.push(" AND event_type = ANY(")
            .push_bind(filter.event_types.clone())
            .push(")");
    }
    if !filter.aggregate_types.is_empty() {
        q.push(" AND aggregate_type = ANY(")
            .push_bind(filter.aggregate_types.clone())
            .push(")");
    }
    if let Some(since) = filter.since {
        q.push(" AND recorded_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        q.push(" AND recorded_at < ").push_bind(until);
    }
    if filter.org_id.is_some() {
        q.push(" ORDER BY org_id, transaction_id, global_position LIMIT ");
    } else {
        q.push(" ORDER BY transaction_id, global_position LIMIT ");
    }
    q.push_bind(limit);
    let rows = q.build().fetch_all(executor).await?;
    rows.iter().map(row_to_event).collect()
}

pub fn row_to_event(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        event_id: row.try_get("event_id")?,
        cursor: Cursor::new(row.try_get("tx")?, row.try_get("global_position")?),
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        org_id: row.try_get("org_id")?,
        recorded_at: row.try_get("recorded_at")?,
        payload: row.try_get::<&RawValue, _>("payload")?.to_owned(),
        metadata: row.try_get::<&RawValue, _>("metadata")?.to_owned(),
    })
}
