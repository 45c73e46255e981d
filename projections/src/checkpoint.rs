//! Projection checkpoints: `(transaction_id, global_position)` of the last applied event and the
//! JetStream sequence of the last message consumed, stored with the read-model writes.

use eventstore::Cursor;
use sqlx::{PgConnection, PgPool, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub cursor: Cursor,
    pub stream_sequence: i64,
    /// The fencing token of the worker that leads this projection (see `eventstore::leader`).
    pub owner: Option<uuid::Uuid>,
}

pub async fn ensure(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

/// Reads and row-locks a checkpoint inside a transaction; a rebuild's swap takes the same lock,
/// so a batch and a swap never interleave.
pub async fn lock(conn: &mut PgConnection, name: &str) -> Result<Checkpoint, sqlx::Error> {
    let row = sqlx::query(
        "SELECT transaction_id::text::bigint AS tx, global_position, stream_sequence, owner \
         FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_one(conn)
    .await?;
    Ok(Checkpoint {
        cursor: Cursor::new(row.try_get("tx")?, row.try_get("global_position")?),
        stream_sequence: row.try_get("stream_sequence")?,
        owner: row.try_get("owner")?,
    })
}

pub async fn read(pool: &PgPool, name: &str) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT transaction_id::text::bigint AS tx, global_position, stream_sequence, owner \
         FROM projection_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(Checkpoint {
            cursor: Cursor::new(row.try_get("tx")?, row.try_get("global_position")?),
            stream_sequence: row.try_get("stream_sequence")?,
            owner: row.try_get("owner")?,
        })
    })
    .transpose()
}

pub async fn store(
    conn: &mut PgConnection,
    name: &str,
    checkpoint: Checkpoint,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_checkpoints SET transaction_id = $2::text::xid8, global_position = $3, \
         stream_sequence = $4, last_error = NULL, last_error_at = NULL, updated_at = now() \
         WHERE name = $1",
    )
    .bind(name)
    .bind(checkpoint.cursor.transaction_id.to_string())
    .bind(checkpoint.cursor.global_position)
    .bind(checkpoint.stream_sequence)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stamps the fencing token of a newly elected worker.
pub async fn claim(pool: &PgPool, name: &str, owner: uuid::Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE projection_checkpoints SET owner = $2 WHERE name = $1")
        .bind(name)
        .bind(owner)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn record_error(pool: &PgPool, name: &str, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_checkpoints SET last_error = $2, last_error_at = now() WHERE name = $1",
    )
    .bind(name)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Advisory-lock key of a projection's worker: a stable FNV-1a hash of its name.
pub fn worker_lock_key(name: &str) -> i64 {
    lock_key("projector:", name)
}

/// Advisory-lock key that keeps two rebuilds of one projection apart.
pub fn rebuild_lock_key(name: &str) -> i64 {
    lock_key("rebuild:", name)
}

fn lock_key(kind: &str, name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in kind.bytes().chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Every projection's checkpoint position, by name (for metrics).
pub async fn positions(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT name, global_position FROM projection_checkpoints ORDER BY name")
        .fetch_all(pool)
        .await
}
