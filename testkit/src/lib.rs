//! Test support for the middle tier: each test gets a database of its own, cloned from a
//! template that the workspace's migrations built once (after crates.io's `crates_io_test_db`).
//!
//! The template is named after a hash of the migrations, so a changed or added migration gets
//! a template of its own, and an unchanged one is reused across runs and test processes. It is
//! built under a Postgres advisory lock (nextest runs every test in its own process, and other
//! worktrees may run tests at the same time), under a scratch name that is renamed into place
//! once migrated: a template that exists by its name is complete. Nobody may connect to it, so
//! cloning never finds it "being accessed by other users".
//!
//! Postgres is reached at `MCPLATFORM_TEST_DATABASE_URL` (any database of the server; default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

// Test support: a database that cannot be set up fails the test that asked for it.
#![allow(clippy::expect_used, clippy::panic)]

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The server every test database lives on, when `MCPLATFORM_TEST_DATABASE_URL` is not set.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Prefix of the per-test databases, so a leftover one (a killed run) is recognisable.
pub const TEST_DB_PREFIX: &str = "mcpl_mt_";
const TEMPLATE_PREFIX: &str = "mcpl_tpl_";

/// Connections of a test's pool. Postgres allows 100 in all, shared with every other test and
/// process on the machine; a middle-tier test needs a few (the event store keeps its own
/// committer and hot-read connections besides).
const POOL_SIZE: u32 = 3;

/// Key of the advisory lock the template is built under (any fixed number; "mcpltpl" in ASCII).
const TEMPLATE_LOCK: i64 = 0x006d_6370_6c74_706c;

/// A database of one test, cloned from the migrated template; dropped when this is.
pub struct TestDb {
    name: String,
    options: PgConnectOptions,
    pool: PgPool,
}

impl TestDb {
    /// A fresh, migrated database with nothing in it, and a small pool on it.
    pub async fn new() -> TestDb {
        let server = server_options();
        let mut admin = PgConnection::connect_with(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot reach Postgres for the test database: {e}"));
        let template = ensure_template(&mut admin, &server).await;
        let name = format!(
            "{TEST_DB_PREFIX}{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        clone_template(&mut admin, &template, &name).await;
        admin.close().await.ok();

        let options = server.clone().database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .expect("connect to the test database");
        // The template's event store identity would be every clone's: give this one its own,
        // as a fresh `mcplatform migrate` would.
        sqlx::query("UPDATE event_store_identity SET store_id = gen_random_uuid()")
            .execute(&pool)
            .await
            .expect("new event store identity");
        TestDb {
            name,
            options,
            pool,
        }
    }

    /// The pool on this test's database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Options to connect to this database (for a second pool, or a connection of its own).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let pool = self.pool.clone();
        // Drop runs outside async (and maybe on a runtime that is shutting down): clean up on
        // a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                // Not `pool.close()`: it waits for checked-out connections to come back, which
                // they do on the test's runtime, blocked here until this thread ends.
                drop(pool);
                if let Ok(mut admin) = PgConnection::connect_with(&server_options()).await {
                    // FORCE: connections the code under test opened besides the pool (the
                    // event store's committers) may still be open.
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                    admin.close().await.ok();
                }
            });
        })
        .join();
    }
}

fn server_options() -> PgConnectOptions {
    let url =
        std::env::var("MCPLATFORM_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    PgConnectOptions::from_str(&url)
        .unwrap_or_else(|e| panic!("MCPLATFORM_TEST_DATABASE_URL is not a Postgres URL: {e}"))
        .disable_statement_logging()
}

/// The template's name: a hash of every migration's version and checksum.
fn template_name() -> String {
    let mut hash = Sha256::new();
    for migration in MIGRATOR.iter() {
        hash.update(migration.version.to_be_bytes());
        hash.update(&migration.checksum);
    }
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{TEMPLATE_PREFIX}{hex}")
}

async fn database_exists(admin: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(admin)
        .await
        .expect("look up a database")
}

/// The migrated template, built if this is the first test since the migrations changed.
async fn ensure_template(admin: &mut PgConnection, server: &PgConnectOptions) -> String {
    let template = template_name();
    if database_exists(admin, &template).await {
        return template;
    }
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(TEMPLATE_LOCK)
        .execute(&mut *admin)
        .await
        .expect("take the template lock");
    // Another process may have built it while this one waited for the lock.
    if !database_exists(admin, &template).await {
        build_template(admin, server, &template).await;
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(TEMPLATE_LOCK)
        .execute(&mut *admin)
        .await
        .expect("release the template lock");
    template
}

async fn build_template(admin: &mut PgConnection, server: &PgConnectOptions, template: &str) {
    let scratch = format!("{template}_building");
    // Left by a process that died while building (it held the lock we now hold).
    sqlx::query(&format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"))
        .execute(&mut *admin)
        .await
        .expect("drop a half-built template");
    sqlx::query(&format!("CREATE DATABASE {scratch}"))
        .execute(&mut *admin)
        .await
        .expect("create the template database");
    let mut conn = PgConnection::connect_with(&server.clone().database(&scratch))
        .await
        .expect("connect to the template database");
    MIGRATOR
        .run(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("migrating the test template failed: {e}"));
    conn.close().await.expect("close the template connection");
    for statement in [
        format!("ALTER DATABASE {scratch} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"),
        format!("ALTER DATABASE {scratch} RENAME TO {template}"),
    ] {
        sqlx::query(&statement)
            .execute(&mut *admin)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// `CREATE DATABASE name TEMPLATE template`, retried while Postgres finds the template busy.
async fn clone_template(admin: &mut PgConnection, template: &str, name: &str) {
    let statement = format!("CREATE DATABASE {name} TEMPLATE {template}");
    let mut attempt = 0;
    loop {
        match sqlx::query(&statement).execute(&mut *admin).await {
            Ok(_) => return,
            // 55006 object_in_use: "source database is being accessed by other users".
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("55006") && attempt < 50 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{statement}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_test_gets_a_migrated_database_of_its_own_that_goes_away_after() {
        let (a, b) = (TestDb::new().await, TestDb::new().await);
        assert_ne!(a.name(), b.name());
        let count = |db: &TestDb| {
            let pool = db.pool().clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(count(&a).await, 0, "a new database holds no events");
        let store = |db: &TestDb| {
            let pool = db.pool().clone();
            async move {
                sqlx::query_scalar::<_, uuid::Uuid>("SELECT store_id FROM event_store_identity")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert_ne!(
            store(&a).await,
            store(&b).await,
            "each clone is its own store"
        );

        let name = a.name().to_owned();
        drop(a);
        let mut admin = PgConnection::connect_with(&server_options()).await.unwrap();
        assert!(
            !database_exists(&mut admin, &name).await,
            "dropped with the TestDb"
        );
        assert!(database_exists(&mut admin, &template_name()).await);
        drop(b);
    }
}
