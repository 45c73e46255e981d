//! A few Postgres connections kept out of sqlx's pool for reads that run on every MCP call.
//!
//! sqlx 0.8 tests every pooled connection with a round trip to Postgres (a `Sync`) each time it
//! goes back to the pool. For a one-statement read that doubles the round trips and wakes a
//! Postgres backend for nothing: under 64 end users advancing walkthroughs, the test cost ~6% of
//! mcplatform's CPU. These connections are taken, used and put back as they are. Like the
//! committers' and the leaders' connections they are opened besides the pool.

use crate::store::is_unavailable;
use sqlx::{Connection, PgConnection, PgPool};
use std::sync::Mutex;
use tokio::sync::Semaphore;

pub struct KeptConnections {
    pool: PgPool,
    idle: Mutex<Vec<PgConnection>>,
    /// At most this many reads (and connections) at once; more wait their turn.
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

    /// Runs `read` on a kept connection. A connection that was idle may have died meanwhile
    /// (Postgres restarted): then the read runs once more on a fresh one before the error is
    /// reported. A connection whose read failed, or was cancelled half-way, is closed rather
    /// than kept, since its state is unknown.
    pub async fn read<T>(
        &self,
        read: impl AsyncFn(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let reused = kept.is_some();
        let mut conn = match kept {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        match read(&mut conn).await {
            Ok(value) => {
                self.put_back(conn);
                Ok(value)
            }
            Err(e) if reused && is_unavailable(&e) => {
                drop(conn);
                let mut fresh = self.connect().await?;
                let value = read(&mut fresh).await?;
                self.put_back(fresh);
                Ok(value)
            }
            Err(e) => Err(e),
        }
    }

    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.pool.connect_options()).await
    }

    fn put_back(&self, conn: PgConnection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }
}
