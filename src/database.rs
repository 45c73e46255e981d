//! Connecting to Postgres: create the database if missing, pool, migrate.

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Creates the database named in `url` if it does not exist.
pub async fn ensure_database(url: &SecretString) -> anyhow::Result<()> {
    let url = url.expose_secret();
    let options =
        PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid Postgres URL")?;
    let name = options
        .get_database()
        .map(str::to_owned)
        .unwrap_or_else(|| "postgres".to_owned());
    if PgConnection::connect_with(&options).await.is_ok() {
        return Ok(());
    }
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .with_context(|| format!("cannot connect to Postgres at {}", redact(url)))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another process created it at the same moment.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e).context("creating the database"),
        }
    }
    Ok(())
}

pub async fn connect(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    let url = url.expose_secret();
    let options =
        PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid Postgres URL")?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        // sqlx pings a connection before every checkout by default: a whole extra round trip
        // per query on the hot paths. A connection that died while idle fails its next query
        // instead (a 503 the client may retry) and is then dropped from the pool.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to Postgres at {}", redact(url)))
}

/// A pool on a database that `migrate` (or `up`) already created and migrated, for the verbs
/// that only read or rebuild: they neither create a database nor change its schema, so a
/// missing or older one is refused with what to run instead of a raw Postgres error.
pub async fn connect_migrated(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    let shown = redact(url.expose_secret());
    let pool = match connect(url, max_connections).await {
        Ok(pool) => pool,
        Err(e) if is_missing_database(&e) => anyhow::bail!(
            "the database at {shown} does not exist; create it with `mcplatform migrate` (or `mcplatform up`)"
        ),
        Err(e) => return Err(e),
    };
    // A database without our migrations table, or with fewer migrations than this binary
    // knows, lacks tables or columns this verb reads.
    let applied: Vec<i64> = match sqlx::query_scalar(
        "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(&pool)
    .await
    {
        Ok(applied) => applied,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
        Err(e) => return Err(e).context("reading the applied migrations"),
    };
    let missing = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .filter(|m| applied.binary_search(&m.version).is_err())
        .count();
    if missing > 0 {
        anyhow::bail!(
            "the database at {shown} lacks {missing} migration(s) of this version; apply them with `mcplatform migrate` (or `mcplatform up`)"
        );
    }
    Ok(pool)
}

/// Postgres said the database named in the URL does not exist (`3D000`).
fn is_missing_database(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000")
        )
    })
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    // On a connection of its own without statement logging: a migration that rewrites a large
    // table takes seconds, and sqlx would log its whole SQL as a slow statement.
    let options = (*pool.connect_options())
        .clone()
        .disable_statement_logging();
    let mut conn = PgConnection::connect_with(&options)
        .await
        .context("connecting to migrate")?;
    MIGRATOR
        .run(&mut conn)
        .await
        .context("running migrations")?;
    conn.close().await.ok();
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((creds, host)) => {
                let user = creds.split(':').next().unwrap_or("");
                format!("{scheme}://{user}@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
