//! `up`, `serve`, `relay`, `project`, `migrate`, `healthcheck`: the running pieces, together or
//! apart.

use crate::config::{DatabaseArgs, HealthcheckArgs, HttpArgs, RuntimeArgs, ServeArgs};
use crate::database;
use crate::http_server;
use anyhow::Context;
use api::auth::passwords::ArgonGate;
use api::auth::rate_limit::LoginLimiter;
use api::auth::tokens::TokenKeys;
use commands::limits::{Guard, Limits};
use eventstore::nats::Topology;
use eventstore::relay::Relay;
use eventstore::EventStore;
use projections::worker::Worker;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// Everything a running piece needs.
pub struct Runtime {
    pub pool: PgPool,
    pub store: EventStore,
    pub nats: async_nats::Client,
    pub topology: Topology,
}

/// The pool of the relay and the projectors: each leads on a connection of its own
/// (`LeaderLock`), so the pool serves only their start-up and checkpoint reads.
const BACKGROUND_POOL: u32 = 4;

impl Runtime {
    /// Connects to Postgres (a pool of `pool_size`) and NATS.
    pub async fn start(config: &RuntimeArgs, pool_size: u32) -> anyhow::Result<Self> {
        // Before anything records: the event store's and the MCP edge's metric handles are
        // made as they start.
        api::metrics::install().context("cannot install the metrics recorder")?;
        let url = &config.database.database_url;
        database::ensure_database(url).await?;
        let pool = database::connect(url, pool_size).await?;
        api::metrics::watch_pool("main", &pool);
        database::migrate(&pool).await?;
        let store = EventStore::open(pool.clone()).await?;
        let nats = connect_nats(config).await?;
        let topology = Topology::new(config.nats_prefix.clone());
        Ok(Self {
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

    pub async fn serve(&self, http: HttpArgs, limits: Limits) -> anyhow::Result<()> {
        let secret = http.secret_or_dev()?;
        let listener = tokio::net::TcpListener::bind(http.bind)
            .await
            .with_context(|| format!("cannot listen on {}", http.bind))?;
        let addr = listener.local_addr()?;
        let limiter = Arc::new(LoginLimiter::new(&limits));
        let guard = Arc::new(Guard::new(limits));
        let (shrink, shrink_guard) = (limiter.clone(), guard.clone());
        let metrics_listener = match http.metrics_bind {
            Some(bind) => Some(
                tokio::net::TcpListener::bind(bind)
                    .await
                    .with_context(|| format!("cannot listen for metrics on {bind}"))?,
            ),
            None => None,
        };
        let connection_limits = http_server::Limits {
            header_timeout: http.header_timeout,
            body_timeout: http.body_timeout,
            idle_timeout: http.idle_timeout,
            connections_per_address: usize::try_from(http.connections_per_address)
                .unwrap_or(usize::MAX),
        };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                shrink.shrink();
                shrink_guard.shrink();
            }
        });
        // Servers' tracking secrets are sealed at rest under a key of their own.
        let tracking_seal =
            commands::tracking::TrackingSeal::derive(secret.expose_secret().as_bytes())?;
        // Identity providers' client secrets, under a key of their own.
        let provider_seal = commands::sealing::Seal::derive(
            secret.expose_secret().as_bytes(),
            commands::sealing::Purpose::ProviderClientSecrets,
        )?;
        // The one guard of every outbound fetch, shared by both edges.
        let outbound = http.outbound.guard()?;
        let live = api::live::LiveHub::start(
            self.store.clone(),
            Some(self.nats.clone()),
            self.topology.clone(),
            http.streams.limits(),
        );
        let state = api::AppState {
            store: self.store.clone(),
            pool: self.pool.clone(),
            nats: Some(self.nats.clone()),
            topology: self.topology.clone(),
            tokens: Arc::new(TokenKeys::from_secret(secret.expose_secret().as_bytes())?),
            limiter,
            argon: Arc::new(ArgonGate::default()),
            guard: guard.clone(),
            tracking_seal: tracking_seal.clone(),
            outbound: outbound.clone(),
            provider_seal: provider_seal.clone(),
            live: live.clone(),
            config: Arc::new(api::ApiConfig {
                base_domain: http.base_domain.clone(),
                public_port: addr.port(),
                // How long a write waits for the read models to show it (read-your-writes).
                // Only reached when projectors lag (just after start, under a backlog);
                // normally they are there in milliseconds.
                consistency_wait: Duration::from_secs(5),
                metrics_token: http
                    .metrics_token
                    .as_ref()
                    .map(|token| api::metrics::ScrapeToken::new(token.expose_secret())),
                invitation_ttl: Duration::from_secs(u64::from(http.invitation_ttl_hours) * 3600),
            }),
        };
        let edge = mcp::McpEdge::new(
            self.store.clone(),
            mcp::McpConfig {
                base_domain: http.base_domain.to_ascii_lowercase(),
                extra_hosts: http.extra_hosts,
                allowed_origins: http.mcp_allowed_origins,
                request_state_key: api::auth::tokens::derive_key(
                    secret.expose_secret().as_bytes(),
                    "mcp request state",
                )?
                .to_vec(),
                guard,
                tracking_seal,
                oauth_rotation_key: api::auth::tokens::derive_key(
                    secret.expose_secret().as_bytes(),
                    "oauth refresh rotation",
                )?
                .to_vec(),
                outbound,
                provider_seal,
                provider_token_seal: commands::sealing::Seal::derive(
                    secret.expose_secret().as_bytes(),
                    commands::sealing::Purpose::ProviderTokens,
                )?,
                sign_in_key: api::auth::tokens::derive_key(
                    secret.expose_secret().as_bytes(),
                    "oauth sign-in flows",
                )?
                .to_vec(),
            },
        );
        // What `/metrics` shows of the event store and the projections, read in the
        // background: a scrape runs no query.
        api::metrics::watch_database(self.pool.clone());
        let app = api::instrument(api::router(state).merge(mcp::router(edge.clone())));
        // Printed on stdout, so scripts and tests can find the port. Nobody may be reading
        // (`mcplatform up | head -1`): the server runs on regardless.
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "mcplatform listening on http://{addr}");
            let _ = writeln!(
                out,
                "  sign up:  curl -s -X POST http://{addr}/api/v1/auth/signup -H 'content-type: application/json' \\\n            -d '{{\"email\":\"you@example.com\",\"password\":\"a long passphrase\",\"name\":\"You\"}}'"
            );
            let _ = out.flush();
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            // Open SSE streams would otherwise hold the shutdown forever.
            edge.shutdown();
            live.shutdown();
            let _ = stop.send(true);
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        match metrics_listener {
            Some(metrics_listener) => {
                if let Ok(at) = metrics_listener.local_addr() {
                    tracing::info!("metrics served on http://{at}/metrics");
                }
                tokio::spawn(http_server::serve(
                    metrics_listener,
                    api::metrics::router(),
                    connection_limits,
                    until_stopped(stopped.clone()),
                ));
            }
            None if http.metrics_token.is_none() => tracing::info!(
                "/metrics is not served: set MCPLATFORM_METRICS_BIND (a private address serving only /metrics) or MCPLATFORM_METRICS_TOKEN (a bearer token for /metrics on this address)"
            ),
            None => {}
        }
        http_server::serve(listener, app, connection_limits, until_stopped(stopped)).await;
        Ok(())
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
    async fn connect(config: &RuntimeArgs, store_id: uuid::Uuid) -> anyhow::Result<Self> {
        let pool = database::connect(&config.database.database_url, BACKGROUND_POOL).await?;
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

async fn connect_nats(config: &RuntimeArgs) -> anyhow::Result<async_nats::Client> {
    let url = config.nats_url.expose_secret();
    eventstore::nats::connect(url)
        .await
        .with_context(|| format!("NATS_URL {} is not usable", database::redact(url)))
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
pub async fn up(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        runtime: config,
        db_pool,
        http,
        limits,
    } = args;
    let rt = Runtime::start(&config, db_pool).await?;
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
    let served = rt.serve(http, limits.limits()).await;
    // Dropping a runtime blocks until its tasks end, which the relay and projectors never do.
    background.shutdown_background();
    served
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    Runtime::start(&args.runtime, args.db_pool)
        .await?
        .serve(args.http, args.limits.limits())
        .await
}

pub async fn relay(config: RuntimeArgs) -> anyhow::Result<()> {
    let rt = Runtime::start(&config, BACKGROUND_POOL).await?;
    rt.background().spawn_relay();
    tracing::info!("relay running; Ctrl-C to stop");
    shutdown_signal().await;
    Ok(())
}

pub async fn project(config: RuntimeArgs, only: Option<String>) -> anyhow::Result<()> {
    let rt = Runtime::start(&config, BACKGROUND_POOL).await?;
    rt.background().spawn_projectors(only.as_deref())?;
    tracing::info!("projectors running; Ctrl-C to stop");
    shutdown_signal().await;
    Ok(())
}

pub async fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    let url = &args.database_url;
    database::ensure_database(url).await?;
    let pool = database::connect(url, 2).await?;
    database::migrate(&pool).await?;
    use std::io::Write;
    writeln!(
        std::io::stdout(),
        "migrations applied to {}",
        database::redact(url.expose_secret())
    )?;
    Ok(())
}

/// Asks the local server's `/readyz`, for a container's `HEALTHCHECK`: the runtime image then
/// needs no HTTP client of its own.
pub async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<()> {
    let url = format!("http://{}/readyz", args.target());
    // Straight to loopback, whatever HTTP_PROXY the container was given.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}
