//! Read-your-writes: after a command, an edge waits (briefly, bounded) until the projections
//! that read the written stream have applied it, so the next read shows the change. If they
//! do not catch up in time (NATS away), the write has still succeeded; reads converge later.

use crate::registry;
use eventstore::Cursor;
use sqlx::{PgPool, Row};
use std::time::Duration;

/// Waits until every projection reading `aggregate_type` has passed `cursor`. Returns whether
/// they did within `timeout`.
pub async fn until_projected(
    pool: &PgPool,
    aggregate_type: &str,
    cursor: Cursor,
    timeout: Duration,
) -> bool {
    let names: Vec<String> = registry::all()
        .iter()
        .filter(|p| p.wants(aggregate_type))
        .map(|p| p.name().to_owned())
        .collect();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        let behind = sqlx::query(
            "SELECT count(*) AS n FROM projection_checkpoints WHERE name = ANY($1) \
             AND (transaction_id, global_position) >= ($2::text::xid8, $3)",
        )
        .bind(&names)
        .bind(cursor.transaction_id.to_string())
        .bind(cursor.global_position)
        .fetch_one(pool)
        .await
        .and_then(|row| row.try_get::<i64, _>("n"));
        if matches!(behind, Ok(n) if n as usize == names.len()) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}
