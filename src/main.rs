//! `mcplatform`: one binary for the whole platform. See `mcplatform --help`.

mod cli;
mod config;
mod database;
mod telemetry;

use clap::{Parser, Subcommand};

/// The hot MCP path allocates per call (JSON-RPC parsing, SSE frames, event payloads); mimalloc
/// keeps that cheaper than the system allocator under many threads of short-lived allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "mcplatform",
    version,
    about = "Multi-tenant hosted MCP servers on an event-sourced core"
)]
struct Cli {
    #[command(flatten)]
    config: Config,

    /// Machine-readable output where a verb prints results.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Migrate, then run HTTP, the relay and every projector in one process.
    Up,
    /// Run the HTTP edges only.
    Serve,
    /// Run the relay only (Postgres -> NATS).
    Relay,
    /// Run projectors only.
    Project {
        /// Run just this projection.
        #[arg(long)]
        only: Option<String>,
    },
    /// Create the database if missing and apply migrations.
    Migrate,
    /// Inspect and rebuild projections.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Export or follow the event store.
    #[command(subcommand)]
    Events(EventsCommand),
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// List projections, what they read and their tables.
    List,
    /// Checkpoint, events behind head, last error and worker of each projection.
    Status,
    /// Rebuild from the event store into shadow tables and swap them in atomically.
    Rebuild {
        /// The projection to rebuild.
        name: Option<String>,
        /// Rebuild every projection.
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Write an org's events (oldest first) as NDJSON or CSV.
    Export {
        /// Org id or slug.
        #[arg(long)]
        org: String,
        /// Only events recorded at or after this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long, value_parser = cli::events::parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only events recorded before this time.
        #[arg(long, value_parser = cli::events::parse_time)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Only these event types (repeatable).
        #[arg(long = "type")]
        types: Vec<String>,
        #[arg(long, value_enum, default_value = "ndjson")]
        format: cli::events::Format,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Follow new events as NDJSON.
    Tail {
        /// Org id or slug; all orgs when omitted.
        #[arg(long)]
        org: Option<String>,
        /// Only these event types (repeatable).
        #[arg(long = "type")]
        types: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.config.log_format);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command {
        Command::Up => cli::run::up(config).await,
        Command::Serve => cli::run::serve(config).await,
        Command::Relay => cli::run::relay(config).await,
        Command::Project { only } => cli::run::project(config, only).await,
        Command::Migrate => cli::run::migrate(config).await,
        Command::Projections(ProjectionsCommand::List) => cli::projections::list(cli.json),
        Command::Projections(ProjectionsCommand::Status) => {
            cli::projections::status(config, cli.json).await
        }
        Command::Projections(ProjectionsCommand::Rebuild { name, all }) => {
            cli::projections::rebuild_cmd(config, name, all, cli.json).await
        }
        Command::Events(EventsCommand::Export {
            org,
            since,
            until,
            types,
            format,
            output,
        }) => {
            cli::events::export(
                config,
                cli::events::ExportArgs {
                    org,
                    since,
                    until,
                    types,
                    format,
                    output,
                },
            )
            .await
        }
        Command::Events(EventsCommand::Tail { org, types }) => {
            cli::events::tail(config, org, types).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
