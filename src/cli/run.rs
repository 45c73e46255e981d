//! `up`, `serve`, `relay`, `project`, `migrate`: the running pieces, together or apart.

use crate::config::Config;
use crate::database;
use anyhow::Context;
use api::auth::rate_limit::LoginLimiter;
use api::auth::tokens::TokenKeys;
use commands::nats::Topology;
use commands::relay::Relay;
use commands::EventStore;
use projections::worker::Worker;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// Everything a running piece needs.
pub struct Runtime {
    pub config: Config,
    pub pool: PgPool,
    pub store: EventStore,
    pub nats: async_nats::Client,
    pub topology: Topology,
}

impl Runtime {
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        database::ensure_database(&config.database_url).await?;
        let pool = database::connect(&config.database_url, config.db_pool).await?;
        database::migrate(&pool).await?;
        let store = EventStore::open(pool.clone()).await?;
        let nats = commands::nats::connect(&config.nats_url)
            .await
            .with_context(|| {
                format!(
                    "NATS_URL {} is not usable",
                    database::redact(&config.nats_url)
                )
            })?;
        let topology = Topology::new(config.nats_prefix.clone());
        Ok(Self {
            config,
            pool,
            store,
            nats,
            topology,
        })
    }

    fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.nats.clone())
    }

    pub fn spawn_relay(&self) {
        let relay = Relay::new(
            self.pool.clone(),
            self.jetstream(),
            self.topology.clone(),
            self.store.store_id(),
        );
        tokio::spawn(relay.run());
    }

    pub fn spawn_projectors(&self, only: Option<&str>) -> anyhow::Result<()> {
        let all = projections::registry::all();
        let chosen: Vec<_> = match only {
            Some(name) => {
                let p = projections::registry::by_name(name).with_context(|| {
                    let names: Vec<_> = all.iter().map(|p| p.name()).collect();
                    format!("unknown projection {name:?}; known: {}", names.join(", "))
                })?;
                vec![p]
            }
            None => all,
        };
        for projection in chosen {
            let worker = Worker::new(
                self.pool.clone(),
                self.jetstream(),
                self.topology.clone(),
                self.store.store_id(),
                projection,
            );
            tokio::spawn(worker.run());
        }
        Ok(())
    }

    pub async fn serve(&self) -> anyhow::Result<()> {
        let secret = self.config.secret_or_dev()?;
        let listener = tokio::net::TcpListener::bind(self.config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", self.config.bind))?;
        let addr = listener.local_addr()?;
        let limiter = Arc::new(LoginLimiter::default());
        let shrink = limiter.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                shrink.shrink();
            }
        });
        let state = api::AppState {
            store: self.store.clone(),
            pool: self.pool.clone(),
            nats: Some(self.nats.clone()),
            topology: self.topology.clone(),
            tokens: Arc::new(TokenKeys::from_secret(secret.expose().as_bytes())),
            limiter,
            config: Arc::new(api::ApiConfig {
                base_domain: self.config.base_domain.clone(),
                public_port: addr.port(),
                // How long a write waits for the read models to show it (read-your-writes).
                // Only reached when projectors lag (just after start, under a backlog);
                // normally they are there in milliseconds.
                consistency_wait: Duration::from_secs(5),
            }),
        };
        let edge = mcp::McpEdge::new(
            self.store.clone(),
            mcp::McpConfig {
                base_domain: self.config.base_domain.to_ascii_lowercase(),
                extra_hosts: self.config.extra_hosts.clone(),
                allowed_origins: self.config.mcp_allowed_origins.clone(),
                request_state_key: api::auth::tokens::derive_key(
                    secret.expose().as_bytes(),
                    "mcp request state",
                ),
            },
        );
        let app = api::router(state).merge(mcp::router(edge.clone()));
        // Printed on stdout, so scripts and tests can find the port.
        println!("mcplatform listening on http://{addr}");
        println!(
            "  sign up:  curl -s -X POST http://{addr}/api/v1/auth/signup -H 'content-type: application/json' \\\n            -d '{{\"email\":\"you@example.com\",\"password\":\"a long passphrase\",\"name\":\"You\"}}'"
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // Responses (SSE frames above all) go out at once instead of waiting on Nagle's
        // algorithm and the peer's delayed ACK, which would add ~40 ms to every MCP call.
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Open SSE streams would otherwise hold the shutdown forever.
            edge.shutdown();
        })
        .await
        .context("HTTP server failed")
    }
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

pub async fn up(config: Config) -> anyhow::Result<()> {
    let rt = Runtime::start(config).await?;
    rt.spawn_relay();
    rt.spawn_projectors(None)?;
    rt.serve().await
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    Runtime::start(config).await?.serve().await
}

pub async fn relay(config: Config) -> anyhow::Result<()> {
    let rt = Runtime::start(config).await?;
    rt.spawn_relay();
    tracing::info!("relay running; Ctrl-C to stop");
    shutdown_signal().await;
    Ok(())
}

pub async fn project(config: Config, only: Option<String>) -> anyhow::Result<()> {
    let rt = Runtime::start(config).await?;
    rt.spawn_projectors(only.as_deref())?;
    tracing::info!("projectors running; Ctrl-C to stop");
    shutdown_signal().await;
    Ok(())
}

pub async fn migrate(config: Config) -> anyhow::Result<()> {
    database::ensure_database(&config.database_url).await?;
    let pool = database::connect(&config.database_url, 2).await?;
    database::migrate(&pool).await?;
    println!(
        "migrations applied to {}",
        database::redact(&config.database_url)
    );
    Ok(())
}
