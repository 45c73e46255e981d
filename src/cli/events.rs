//! `events export` and `events tail`: the event store for analysts, straight from Postgres.

use crate::config::DatabaseArgs;
use crate::database;
use anyhow::Context;
use domain::time::Bound;
use eventstore::{Cursor, EventFilter, StoredEvent};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::io::Write;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Ndjson,
    Csv,
}

/// `2026-11-23` or `2026-11-23T10:00:00Z`, read as the REST API reads a range bound (see
/// [`Bound`]): as `--since`, a date starts at its first instant; as `--until`, a date is
/// included whole.
pub fn parse_bound(s: &str) -> Result<Bound, String> {
    Bound::parse(s).map_err(|e| e.to_string())
}

/// An event type mcplatform stores; any other is refused with the list of known ones.
pub fn event_type(s: &str) -> Result<String, String> {
    if domain::catalogue::is_event_type(s) {
        return Ok(s.to_owned());
    }
    Err(format!(
        "unknown event type; known types: {}",
        domain::catalogue::event_types().join(", ")
    ))
}

/// An org by id or slug.
async fn resolve_org(pool: &PgPool, org: &str) -> anyhow::Result<Uuid> {
    if let Ok(id) = org.parse::<Uuid>() {
        return Ok(id);
    }
    eventstore::index::owner_of(pool, eventstore::KeyKind::OrgSlug, org)
        .await?
        .with_context(|| format!("no organization with slug {org:?}"))
}

pub struct ExportArgs {
    pub org: String,
    pub since: Option<Bound>,
    pub until: Option<Bound>,
    pub types: Vec<String>,
    pub format: Format,
    pub output: Option<std::path::PathBuf>,
}

pub async fn export(database: DatabaseArgs, args: ExportArgs) -> anyhow::Result<()> {
    let pool = database::connect_migrated(&database.database_url, 2).await?;
    let org_id = resolve_org(&pool, &args.org).await?;
    let filter = EventFilter {
        org_id: Some(org_id),
        event_types: args.types,
        since: args.since.map(Bound::start),
        until: args.until.map(Bound::end),
        ..EventFilter::default()
    };
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    enum Sink {
        Csv(Box<csv::Writer<Box<dyn Write>>>),
        Ndjson(Box<dyn Write>),
    }
    let mut sink = match args.format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(CSV_HEADER)?;
            Sink::Csv(Box::new(w))
        }
        Format::Ndjson => Sink::Ndjson(out),
    };
    let mut cursor = Cursor::START;
    let mut count = 0u64;
    loop {
        let page = eventstore::reading::read_after(&pool, &filter, cursor, 5000).await?;
        let Some(last) = page.last() else { break };
        cursor = last.cursor;
        for event in &page {
            match &mut sink {
                Sink::Csv(w) => w.write_record(csv_record(event))?,
                Sink::Ndjson(out) => {
                    serde_json::to_writer(&mut *out, event)?;
                    out.write_all(b"\n")?;
                }
            }
        }
        count += page.len() as u64;
    }
    match &mut sink {
        Sink::Csv(w) => w.flush()?,
        Sink::Ndjson(out) => out.flush()?,
    }
    if let Some(path) = &args.output {
        eprintln!("exported {count} events to {}", path.display());
    }
    Ok(())
}

const CSV_HEADER: [&str; 12] = [
    "cursor",
    "event_id",
    "recorded_at",
    "org_id",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "event_type",
    "event_version",
    "actor_kind",
    "actor_id",
    "payload",
];

fn csv_record(e: &StoredEvent) -> [String; 12] {
    let meta = e.typed_metadata();
    [
        e.cursor.to_string(),
        e.event_id.to_string(),
        domain::time::format(&e.recorded_at),
        e.org_id.map(|o| o.to_string()).unwrap_or_default(),
        e.aggregate_type.clone(),
        e.aggregate_id.clone(),
        e.sequence.to_string(),
        e.event_type.clone(),
        e.event_version.clone(),
        meta.actor.kind().to_owned(),
        meta.actor.id().map(|i| i.to_string()).unwrap_or_default(),
        e.payload.get().to_owned(),
    ]
}

/// Follows new events as NDJSON, woken by Postgres notifications (works with NATS down).
pub async fn tail(
    database: DatabaseArgs,
    org: Option<String>,
    types: Vec<String>,
) -> anyhow::Result<()> {
    let pool = database::connect_migrated(&database.database_url, 2).await?;
    let org_id = match org {
        Some(org) => Some(resolve_org(&pool, &org).await?),
        None => None,
    };
    let filter = EventFilter {
        org_id,
        event_types: types,
        ..EventFilter::default()
    };
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen("mcplatform_events").await?;
    let mut cursor = eventstore::reading::head(&pool).await?;
    eprintln!("following new events from {cursor}; Ctrl-C to stop");
    let stdout = std::io::stdout();
    loop {
        let page = eventstore::reading::read_after(&pool, &filter, cursor, 1000).await?;
        if let Some(last) = page.last() {
            cursor = last.cursor;
            let mut out = stdout.lock();
            for event in &page {
                serde_json::to_writer(&mut out, event)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            continue;
        }
        tokio::select! {
            _ = tokio::time::timeout(Duration::from_secs(1), listener.recv()) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
