//! `mcplatform`: one binary for the whole platform. See `mcplatform --help`.

mod cli;
mod config;
mod database;
mod http_server;
mod telemetry;

use clap::{Parser, Subcommand};
use config::{DatabaseArgs, HealthcheckArgs, LogFormat, RuntimeArgs, ServeArgs};

/// The hot MCP path allocates per call (JSON-RPC parsing, SSE frames, event payloads); mimalloc
/// keeps that cheaper than the system allocator under many threads of short-lived allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "mcplatform",
    version,
    about = "Multi-tenant hosted MCP servers on an event-sourced core"
)]
struct Cli {
    /// Log lines on stderr as text or as JSON.
    #[arg(
        long,
        env = "MCPLATFORM_LOG_FORMAT",
        global = true,
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and migrate the database if needed, then run the HTTP edges, the relay and every
    /// projector in one process.
    Up(ServeArgs),
    /// Create and migrate the database if needed, then run the HTTP edges only.
    Serve(ServeArgs),
    /// Create and migrate the database if needed, then run the relay (Postgres to NATS) only.
    Relay(RuntimeArgs),
    /// Create and migrate the database if needed, then run the projectors only.
    Project {
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// Run just this projection.
        #[arg(long)]
        only: Option<String>,
    },
    /// Create the database if missing and apply the migrations it lacks.
    Migrate(DatabaseArgs),
    /// Inspect and rebuild projections.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Export or follow the event store.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Exit 0 if the local server answers `/readyz` with success, 1 otherwise (for container
    /// health checks).
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// List the projections, what they read and their tables, without touching the database.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show each projection's checkpoint, events behind, last error and worker; the database
    /// must exist and be migrated.
    Status {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild projections from the event store into shadow tables and swap them in
    /// atomically; the database must exist and be migrated.
    Rebuild {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The projection to rebuild.
        name: Option<String>,
        /// Rebuild every projection.
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Print one JSON report per projection instead of progress and a sentence.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Write an org's events, oldest first, as NDJSON or CSV; the database must exist and be
    /// migrated.
    Export {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Org id or slug.
        #[arg(long)]
        org: String,
        /// Only events recorded from this date (YYYY-MM-DD, UTC) or RFC 3339 time on.
        #[arg(long, value_parser = cli::events::parse_bound)]
        since: Option<domain::time::Bound>,
        /// Only events recorded up to this date (included) or before this RFC 3339 time.
        #[arg(long, value_parser = cli::events::parse_bound)]
        until: Option<domain::time::Bound>,
        /// Only events of this type (repeatable; an unknown type is refused with the list).
        #[arg(long = "type", value_parser = cli::events::event_type)]
        types: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "ndjson")]
        format: cli::events::Format,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Follow new events as NDJSON until interrupted; the database must exist and be migrated.
    Tail {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Org id or slug; all orgs when omitted.
        #[arg(long)]
        org: Option<String>,
        /// Only events of this type (repeatable; an unknown type is refused with the list).
        #[arg(long = "type", value_parser = cli::events::event_type)]
        types: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Whoever read our output stopped reading (`mcplatform events export | head`): that
        // is how a pipeline ends, not a failure to report.
        Err(e) if cli::output::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Each cause once: sqlx's and io's errors repeat their sources in their text.
            eprintln!("error: {}", commands::errors::Chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => cli::run::up(args).await,
        Command::Serve(args) => cli::run::serve(args).await,
        Command::Relay(args) => cli::run::relay(args).await,
        Command::Project { runtime, only } => cli::run::project(runtime, only).await,
        Command::Migrate(database) => cli::run::migrate(database).await,
        Command::Healthcheck(args) => cli::run::healthcheck(args).await,
        Command::Projections(ProjectionsCommand::List { json }) => cli::projections::list(json),
        Command::Projections(ProjectionsCommand::Status { database, json }) => {
            cli::projections::status(database, json).await
        }
        Command::Projections(ProjectionsCommand::Rebuild {
            database,
            name,
            all,
            json,
        }) => cli::projections::rebuild_cmd(database, name, all, json).await,
        Command::Events(EventsCommand::Export {
            database,
            org,
            since,
            until,
            types,
            format,
            output,
        }) => {
            cli::events::export(
                database,
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
        Command::Events(EventsCommand::Tail {
            database,
            org,
            types,
        }) => cli::events::tail(database, org, types).await,
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

    /// The long flags a verb's `--help` lists.
    fn flags_of(path: &[&str]) -> Vec<String> {
        let mut command = Cli::command();
        command.build();
        let mut verb = &command;
        for name in path {
            verb = verb
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no verb {name}"));
        }
        verb.get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect()
    }

    #[test]
    fn each_verb_takes_only_the_flags_it_uses() {
        let every_verb: &[&[&str]] = &[
            &["up"],
            &["serve"],
            &["relay"],
            &["project"],
            &["migrate"],
            &["healthcheck"],
            &["projections", "list"],
            &["projections", "status"],
            &["projections", "rebuild"],
            &["events", "export"],
            &["events", "tail"],
        ];
        for path in every_verb {
            let flags = flags_of(path);
            let has = |flag: &str| flags.iter().any(|f| f == flag);
            let db = !matches!(path, [_, "list"] | ["healthcheck"]);
            assert_eq!(has("database-url"), db, "{path:?}: {flags:?}");
            let runtime = matches!(path, ["up" | "serve" | "relay" | "project"]);
            assert_eq!(has("nats-url"), runtime, "{path:?}: {flags:?}");
            let http = matches!(path, ["up" | "serve"]);
            // The pool for the HTTP edges' queries: the relay and the projectors have none.
            assert_eq!(has("db-pool"), http, "{path:?}: {flags:?}");
            assert_eq!(has("secret"), http, "{path:?}: {flags:?}");
            assert_eq!(has("base-domain"), http, "{path:?}: {flags:?}");
            assert_eq!(
                has("bind"),
                http || path == &["healthcheck"],
                "{path:?}: {flags:?}"
            );
            assert_eq!(
                has("json"),
                path.first() == Some(&"projections"),
                "{path:?}: {flags:?}"
            );
            assert!(has("log-format"), "{path:?}: {flags:?}");
        }
    }

    #[test]
    fn help_lines_are_one_sentence() {
        let mut command = Cli::command();
        command.build();
        let mut pending = vec![&command];
        while let Some(verb) = pending.pop() {
            let abouts = verb
                .get_about()
                .into_iter()
                .chain(verb.get_arguments().filter_map(|a| a.get_help()))
                .map(|text| text.to_string());
            for about in abouts {
                let sentences = about
                    .trim_end_matches('.')
                    .split(". ")
                    .filter(|s| !s.is_empty())
                    .count();
                assert!(
                    sentences <= 1 && !about.contains('\n'),
                    "{}: {about:?}",
                    verb.get_name()
                );
            }
            pending.extend(verb.get_subcommands());
        }
    }

    #[test]
    fn an_unknown_event_type_is_refused_with_the_known_ones() {
        let refused = Cli::try_parse_from([
            "mcplatform",
            "events",
            "tail",
            "--type",
            "ServerCreated",
            "--type",
            "Foo",
        ])
        .unwrap_err()
        .to_string();
        assert!(refused.contains("Foo"), "{refused}");
        for known in domain::catalogue::event_types() {
            assert!(refused.contains(known), "{known} missing from {refused}");
        }
        assert!(Cli::try_parse_from([
            "mcplatform",
            "events",
            "export",
            "--org",
            "acme",
            "--type",
            "ServerCreated"
        ])
        .is_ok());
    }
}
