//! Rebuild and status of projections.
//!
//! A rebuild reads the Postgres event store (not NATS) in keyset pages, applies them to shadow
//! tables with the projection's own `apply`, then, holding the checkpoint row lock (which the
//! live worker takes for every batch), applies whatever the live model saw meanwhile and swaps
//! the shadows in by rename, all in one transaction. Readers never see a half-built model, and
//! the live worker resumes from the swapped-in checkpoint.

use crate::checkpoint::{self, rebuild_lock_key, worker_lock_key};
use crate::projection::{shadow_name, Projection, ProjectionError, Reads, Tables};
use eventstore::{Cursor, EventFilter, StoredEvent};
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool, Row};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAGE: i64 = 5000;

/// Progress of a running rebuild, reported after every page.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub applied: u64,
    pub total: u64,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub projection: String,
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub checkpoint: Cursor,
}

pub async fn rebuild(
    pool: &PgPool,
    projection: Arc<dyn Projection>,
    mut on_progress: impl FnMut(Progress),
) -> Result<RebuildReport, ProjectionError> {
    let name = projection.name();
    let started = Instant::now();
    let mut lock_conn = PgConnection::connect_with(&pool.connect_options()).await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(rebuild_lock_key(name))
        .fetch_one(&mut lock_conn)
        .await?;
    if !got {
        return Err(ProjectionError::RebuildRunning(name.to_owned()));
    }
    checkpoint::ensure(pool, name).await?;

    let mut conn = pool.acquire().await?;
    for table in projection.tables() {
        let shadow = shadow_name(table);
        sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!(
            "CREATE UNLOGGED TABLE {shadow} (LIKE {table} INCLUDING ALL)"
        ))
        .execute(&mut *conn)
        .await?;
    }

    // Limited to the types read where it can be; the types left out are skipped below.
    let filter = EventFilter {
        aggregate_types: projection
            .reads()
            .only()
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        ..EventFilter::default()
    };
    // A rebuild pages through the whole table in cursor order; after a bulk load the planner's
    // statistics can be so stale that it sorts the table for every page instead of walking the
    // cursor index. Refresh them first (a sample, so cheap).
    sqlx::query("ANALYZE events").execute(&mut *conn).await?;
    let total = count_events(pool, projection.reads()).await?;

    // Read pages on one connection while the previous page is written on another.
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<Vec<StoredEvent>, eventstore::StoreError>>(2);
    let reader_pool = pool.clone();
    let reader_filter = filter.clone();
    let reader = tokio::spawn(async move {
        let mut cursor = Cursor::START;
        loop {
            let page =
                eventstore::reading::read_after(&reader_pool, &reader_filter, cursor, PAGE).await;
            let done = match &page {
                Ok(events) => match events.last() {
                    Some(last) => {
                        cursor = last.cursor;
                        events.len() < PAGE as usize
                    }
                    None => true,
                },
                Err(_) => true,
            };
            if tx.send(page).await.is_err() || done {
                return;
            }
        }
    });
    let mut rebuilt = Cursor::START;
    let mut applied = 0u64;
    while let Some(page) = rx.recv().await {
        let events = page?;
        let Some(last) = events.last() else { break };
        rebuilt = last.cursor;
        let read = events.len() as u64;
        // Each page commits on its own: a long write transaction would hold back every
        // reader's snapshot horizon (and so the relay).
        let mut page_tx = conn.begin().await?;
        let wanted = projection.wanted(events);
        projection
            .apply(&mut page_tx, Tables::SHADOW, &wanted)
            .await?;
        page_tx.commit().await?;
        applied += read;
        on_progress(Progress {
            applied,
            total: total.max(applied),
            elapsed: started.elapsed(),
        });
    }
    let _ = reader.await;

    // Make the shadows durable before taking any lock: this rewrites them whole, and nothing
    // (the live worker, readers of the event store) should wait for that. And give them
    // statistics: new tables have none, so until autovacuum came by, the planner would take
    // each for a few rows (a rebuilt walkthrough_analytics answered its analytics query 2-3x
    // slower, walking 20,000 rows by index instead of scanning them). Statistics belong to the
    // table, so they survive the renames below.
    for table in projection.tables() {
        let shadow = shadow_name(table);
        for statement in [
            format!("ALTER TABLE {shadow} SET LOGGED"),
            format!("ANALYZE {shadow}"),
        ] {
            sqlx::query(&statement).execute(&mut *conn).await?;
        }
    }

    // Swap, under the checkpoint lock.
    let mut swap = conn.begin().await?;
    let live = checkpoint::lock(&mut swap, name).await?;
    if live.cursor > rebuilt {
        let catch_up = projection
            .wanted(read_between(&mut swap, projection.reads(), rebuilt, live.cursor).await?);
        if !catch_up.is_empty() {
            applied += catch_up.len() as u64;
            projection
                .apply(&mut swap, Tables::SHADOW, &catch_up)
                .await?;
        }
    }
    for table in projection.tables() {
        let shadow = shadow_name(table);
        let old = format!("{table}__old");
        sqlx::query(&format!("ALTER TABLE {table} RENAME TO {old}"))
            .execute(&mut *swap)
            .await?;
        sqlx::query(&format!("ALTER TABLE {shadow} RENAME TO {table}"))
            .execute(&mut *swap)
            .await?;
        sqlx::query(&format!("DROP TABLE {old}"))
            .execute(&mut *swap)
            .await?;
    }
    let checkpoint = live.cursor.max(rebuilt);
    checkpoint::store(
        &mut swap,
        name,
        checkpoint::Checkpoint {
            cursor: checkpoint,
            ..live
        },
    )
    .await?;
    swap.commit().await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(RebuildReport {
        projection: name.to_owned(),
        events: applied,
        seconds,
        events_per_second: if seconds > 0.0 {
            applied as f64 / seconds
        } else {
            0.0
        },
        checkpoint,
    })
}

async fn count_events(pool: &PgPool, reads: Reads) -> Result<u64, sqlx::Error> {
    let n: i64 = if reads == Reads::All {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(pool)
            .await?
    } else {
        sqlx::query_scalar(&format!(
            "SELECT count(*) FROM events WHERE {}",
            Reads::sql_condition(1, 2)
        ))
        .bind(reads.only())
        .bind(reads.except())
        .fetch_one(pool)
        .await?
    };
    Ok(n.max(0) as u64)
}

/// Events in `(after, until]`, already committed (the live worker applied them).
async fn read_between(
    conn: &mut PgConnection,
    reads: Reads,
    after: Cursor,
    until: Cursor,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    let rows = sqlx::query(&format!(
        "SELECT {} FROM events WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
         AND (transaction_id, global_position) <= ($3::text::xid8, $4) \
         AND {} ORDER BY transaction_id, global_position",
        eventstore::reading::EVENT_COLUMNS,
        Reads::sql_condition(5, 6)
    ))
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .bind(until.transaction_id.to_string())
    .bind(until.global_position)
    .bind(reads.only())
    .bind(reads.except())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(eventstore::reading::row_to_event)
        .collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub projection: String,
    pub checkpoint: Cursor,
    pub events_behind: i64,
    pub last_error: Option<String>,
    #[serde(with = "domain::time::rfc3339_option")]
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
    pub worker_active: bool,
    #[serde(with = "domain::time::rfc3339_option")]
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn status(pool: &PgPool, projection: &dyn Projection) -> Result<Status, sqlx::Error> {
    let name = projection.name();
    let row = sqlx::query(
        "SELECT transaction_id::text::bigint AS tx, global_position, last_error, last_error_at, \
         updated_at FROM projection_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    let (checkpoint, last_error, last_error_at, updated_at) = match row {
        Some(r) => (
            Cursor::new(r.try_get("tx")?, r.try_get("global_position")?),
            r.try_get("last_error")?,
            r.try_get("last_error_at")?,
            r.try_get("updated_at")?,
        ),
        None => (Cursor::START, None, None, None),
    };
    // Only events the projection reads: one that never gets another's events is not behind
    // because of them.
    let reads = projection.reads();
    let events_behind: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM events WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
         AND {}",
        Reads::sql_condition(3, 4)
    ))
    .bind(checkpoint.transaction_id.to_string())
    .bind(checkpoint.global_position)
    .bind(reads.only())
    .bind(reads.except())
    .fetch_one(pool)
    .await?;
    let key = worker_lock_key(name);
    let worker_active: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = (($1::bigint >> 32) & 4294967295)::oid \
         AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1)",
    )
    .bind(key)
    .fetch_one(pool)
    .await?;
    Ok(Status {
        projection: name.to_owned(),
        checkpoint,
        events_behind,
        last_error,
        last_error_at,
        worker_active,
        updated_at,
    })
}
