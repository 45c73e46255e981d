//! Leader election for singleton workers (the relay, each projector): a Postgres advisory lock
//! held on a connection of its own. If that connection dies the lock is released and a standby
//! takes over. The leader also stamps its `owner` id on the checkpoint it writes and every
//! checkpoint write checks it (fencing), so a leader that lost its lock without noticing cannot
//! write behind its successor's back.
//!
//! The leader does its work on that same connection ([`LeaderLock::connection`]): a pooled
//! connection costs a round trip to Postgres each time it goes back to the pool (sqlx tests it
//! on release), which a relay or projector would pay on every batch.

use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;
use uuid::Uuid;

pub struct LeaderLock {
    conn: PgConnection,
    /// This leadership's fencing token.
    pub owner: Uuid,
}

impl LeaderLock {
    /// Waits (as a standby) until the lock `key` is ours.
    pub async fn acquire(pool: &PgPool, key: i64) -> Result<Self, sqlx::Error> {
        let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
        // A leader runs the same few statements over and over, and Postgres would plan some of
        // them afresh every time: the relay's cursor read looks cheaper with its parameters
        // filled in (a few rows past the cursor) than as a generic plan (a third of the table),
        // so Postgres never settles on the generic plan, yet both are the same index scan and
        // planning it costs more than running it. This connection is the leader's alone.
        sqlx::query("SET plan_cache_mode = force_generic_plan")
            .execute(&mut conn)
            .await?;
        // A leader writes only derived state: read models with their checkpoints (in one
        // transaction), or the relay's position. A crash may lose its last few commits, never
        // half of one, and they are redone from the event store, whose appends stay synchronous
        // (the relay re-publishes, JetStream and the projectors' cursors drop the repeats; a
        // projector catches up from the store on start). Not waiting for the WAL flush keeps
        // these commits out of the queue for the disk, where the appends wait (a flush is
        // milliseconds on a virtual disk).
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut conn)
            .await?;
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut conn)
                .await?;
            if got {
                return Ok(Self {
                    conn,
                    owner: Uuid::new_v4(),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The connection that holds the lock, for the leader's own reads and transactions.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Fails if the lock's connection is gone (and with it the lock).
    pub async fn check(&mut self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&mut self.conn).await?;
        Ok(())
    }
}
