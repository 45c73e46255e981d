//! `up`, `serve`, `relay`, `project`, `migrate`: the running pieces, together or apart.

use crate::config::Config;
use crate::database;
use anyhow::Context;
use api::auth::rate_limit::LoginLimiter;
use api::auth::tokens::TokenKeys;
use eventstore::nats::Topology;
use eventstore::relay::Relay;
use eventstore::EventStore;
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
        // Before anything records: the event store's and the MCP edge's metric handles are
        // made as they start.
        api::metrics::install().context("cannot install the metrics recorder")?;
        database::ensure_database(&config.database_url).await?;
        let pool = database::connect(&config.database_url, config.db_pool).await?;
        api::metrics::watch_pool("main", &pool);
        database::migrate(&pool).await?;
        let store = EventStore::open(pool.clone()).await?;
        let nats = connect_nats(&config).await?;
        let topology = Topology::new(config.nats_prefix.clone());
        Ok(Self {
            config,
            pool,
            store,
            nats,
            topology,
        })
    }

    /// The relay and projectors' half of this runtime, sharing its connections: for the
    /// `relay` and `project` commands, which run nothing else.
    pub fn background(&self) -> Background {
        Background {
            pool: self.pool.clone(),
            nats: self.nats.clone(),
            topology: self.topology.clone(),
            store_id: self.store.store_id(),
        }
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
            tokens: Arc::new(TokenKeys::from_secret(secret.expose().as_bytes())?),
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
                )?
                .to_vec(),
            },
        );
        let app = api::instrument(api::router(state).merge(mcp::router(edge.clone())));
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

/// The relay and the projectors: what runs behind the edges, fed by the event store.
pub struct Background {
    pool: PgPool,
    nats: async_nats::Client,
    topology: Topology,
    store_id: uuid::Uuid,
}

impl Background {
    /// Connections of its own, for a runtime of its own (see [`up`]).
    async fn connect(config: &Config, store_id: uuid::Uuid) -> anyhow::Result<Self> {
        // The relay and each projector lead on a connection of their own (`LeaderLock`); the
        // pool serves only their start-up and checkpoint reads.
        let pool = database::connect(&config.database_url, 4).await?;
        api::metrics::watch_pool("background", &pool);
        let nats = connect_nats(config).await?;
        Ok(Self {
            pool,
            nats,
            topology: Topology::new(config.nats_prefix.clone()),
            store_id,
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
            self.store_id,
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
                self.store_id,
                projection,
            );
            tokio::spawn(worker.run());
        }
        Ok(())
    }
}

async fn connect_nats(config: &Config) -> anyhow::Result<async_nats::Client> {
    eventstore::nats::connect(&config.nats_url)
        .await
        .with_context(|| {
            format!(
                "NATS_URL {} is not usable",
                database::redact(&config.nats_url)
            )
        })
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

/// Everything in one process: the edges on the main runtime, the relay and the projectors on a
/// runtime of their own, with their own pool and NATS connection.
///
/// On one runtime they would share the edges' worker threads (one per core), and tokio does not
/// preempt: a projector applying a batch of hundreds of events, or the relay publishing a page,
/// holds a thread for milliseconds while the MCP calls queued behind it wait. On threads of
/// their own they are scheduled by the kernel beside the edges, as separate processes are
/// (`serve`, `relay`, `project`). Measured with 64 end users advancing walkthroughs on 2 cores:
/// 2,400-3,200 completions/s at p99 39-67 ms on one runtime, 3,300-3,700/s at p99 32-39 ms
/// apart; read-only tool calls went from 5,100 to 7,100/s.
pub async fn up(config: Config) -> anyhow::Result<()> {
    let rt = Runtime::start(config.clone()).await?;
    let background = tokio::runtime::Builder::new_multi_thread()
        .thread_name("mcpl-background")
        .enable_all()
        .build()
        .context("cannot start the background runtime")?;
    let store_id = rt.store.store_id();
    background
        .spawn(async move {
            let pieces = Background::connect(&config, store_id).await?;
            pieces.spawn_relay();
            pieces.spawn_projectors(None)
        })
        .await
        .context("the background runtime failed to start")??;
    let served = rt.serve().await;
    // Dropping a runtime blocks until its tasks end, which the relay and projectors never do.
    background.shutdown_background();
    served
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    Runtime::start(config).await?.serve().await
}

pub async fn relay(config: Config) -> anyhow::Result<()> {
    let rt = Runtime::start(config).await?;
    rt.background().spawn_relay();
    tracing::info!("relay running; Ctrl-C to stop");
    shutdown_signal().await;
    Ok(())
}

pub async fn project(config: Config, only: Option<String>) -> anyhow::Result<()> {
    let rt = Runtime::start(config).await?;
    rt.background().spawn_projectors(only.as_deref())?;
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
