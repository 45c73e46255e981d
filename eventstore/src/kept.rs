//! Postgres connections kept out of sqlx's pool for work that runs on every MCP call: the group
//! committers' transactions and the per-call walkthrough read.
//!
//! sqlx 0.8 tests every pooled connection with a round trip to Postgres (a `Sync`) each time it
//! goes back to the pool. For a one-statement read that doubles the round trips and wakes a
//! Postgres backend for nothing: under 64 end users advancing walkthroughs, the test cost ~6% of
//! mcplatform's CPU. These connections are taken, used and put back as they are. Like the
//! leaders' connections they are opened besides the pool.

use crate::error::is_unavailable;
use sqlx::{Connection, PgConnection, PgPool};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long opening a connection may take before the work fails as unavailable (as the pool's
/// acquire timeout does), so an unreachable Postgres answers 503 instead of hanging the call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct KeptConnections {
    pool: PgPool,
    idle: Mutex<Vec<PgConnection>>,
    /// At most this many users (and connections) at once; more wait their turn.
    permits: Semaphore,
}

impl KeptConnections {
    /// Connections are opened on first use with the pool's options, up to `size`.
    pub fn new(pool: PgPool, size: usize) -> Self {
        Self {
            pool,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
        }
    }

    /// Runs `work` on a kept connection, which it hands back with its result. A connection
    /// that was idle may have died meanwhile (Postgres restarted): then the work runs once more
    /// on a fresh one before the error is reported. A connection whose work failed, or was
    /// cancelled half-way, is closed rather than kept, since its state is unknown.
    ///
    /// (The connection goes in and out by value rather than as `&mut` to an async closure:
    /// tasks that must be `Send` cannot yet hold such a closure's future.)
    pub async fn run<T, F, Fut>(&self, work: F) -> Result<T, sqlx::Error>
    where
        F: Fn(PgConnection) -> Fut,
        Fut: Future<Output = Result<(PgConnection, T), sqlx::Error>>,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let reused = kept.is_some();
        let conn = match kept {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let (conn, value) = match work(conn).await {
            Err(e) if reused && is_unavailable(&e) => work(self.connect().await?).await?,
            done => done?,
        };
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        Ok(value)
    }

    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let options = self.pool.connect_options();
        tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }
}
