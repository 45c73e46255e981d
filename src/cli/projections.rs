//! `projections list | status | rebuild`.

use crate::config::DatabaseArgs;
use crate::database;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use projections::rebuild::{self, Progress};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub fn list(json: bool) -> anyhow::Result<()> {
    let all = projections::registry::all();
    let mut out = std::io::stdout().lock();
    if json {
        let items: Vec<_> = all
            .iter()
            .map(|p| {
                // `reads`: the types read, all when empty; `except`: the types left out.
                serde_json::json!({
                    "name": p.name(),
                    "reads": p.reads().only(),
                    "except": p.reads().except(),
                    "tables": p.tables(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
        return Ok(());
    }
    let reads: Vec<String> = all.iter().map(|p| p.reads().describe()).collect();
    let w = column_width("NAME", all.iter().map(|p| p.name()));
    let r = column_width("READS", reads.iter().map(String::as_str));
    writeln!(out, "{:<w$} {:<r$} TABLES", "NAME", "READS")?;
    for (p, reads) in all.iter().zip(&reads) {
        writeln!(
            out,
            "{:<w$} {:<r$} {}",
            p.name(),
            reads,
            p.tables().join(", ")
        )?;
    }
    Ok(())
}

/// A column as wide as its longest value (or its heading), so the next column lines up.
fn column_width<'a>(heading: &str, values: impl Iterator<Item = &'a str>) -> usize {
    values.map(str::len).max().unwrap_or(0).max(heading.len())
}

pub async fn status(database: DatabaseArgs, json: bool) -> anyhow::Result<()> {
    let pool = database::connect_migrated(&database.database_url, 2).await?;
    let mut rows = Vec::new();
    for p in projections::registry::all() {
        rows.push(rebuild::status(&pool, p.as_ref()).await?);
    }
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let w = column_width("NAME", rows.iter().map(|s| s.projection.as_str()));
    writeln!(
        out,
        "{:<w$} {:<22} {:>8} {:<7} LAST ERROR",
        "NAME", "CHECKPOINT", "BEHIND", "WORKER"
    )?;
    for s in rows {
        writeln!(
            out,
            "{:<w$} {:<22} {:>8} {:<7} {}",
            s.projection,
            s.checkpoint.to_string(),
            s.events_behind,
            if s.worker_active { "active" } else { "none" },
            s.last_error.unwrap_or_else(|| "-".to_owned())
        )?;
    }
    Ok(())
}

pub async fn rebuild_cmd(
    database: DatabaseArgs,
    name: Option<String>,
    all: bool,
    json: bool,
) -> anyhow::Result<()> {
    let targets = match (name, all) {
        (_, true) => projections::registry::all(),
        (Some(name), false) => vec![projections::registry::by_name(&name).with_context(|| {
            let names: Vec<_> = projections::registry::all()
                .iter()
                .map(|p| p.name())
                .collect();
            format!("unknown projection {name:?}; known: {}", names.join(", "))
        })?],
        (None, false) => anyhow::bail!("name a projection to rebuild, or pass --all"),
    };
    let pool = database::connect_migrated(&database.database_url, 4).await?;
    let terminal = std::io::stderr().is_terminal() && !json;
    for projection in targets {
        let name = projection.name();
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:<14} [{bar:30}] {pos}/{len} events  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(name.to_owned());
            bar
        });
        let mut last_line = Instant::now();
        let report = rebuild::rebuild(&pool, projection.clone(), |p: Progress| match &bar {
            Some(bar) => {
                bar.set_length(p.total);
                bar.set_position(p.applied);
            }
            None if !json && last_line.elapsed() >= Duration::from_secs(2) => {
                last_line = Instant::now();
                let rate = p.applied as f64 / p.elapsed.as_secs_f64().max(0.001);
                eprintln!(
                    "{name}: {}/{} events, {:.0} events/s",
                    p.applied, p.total, rate
                );
            }
            None => {}
        })
        .await
        .with_context(|| format!("rebuilding {name}"))?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
        } else {
            writeln!(
                out,
                "{}: rebuilt from {} events in {:.2} s ({:.0} events/s), checkpoint {}",
                report.projection,
                report.events,
                report.seconds,
                report.events_per_second,
                report.checkpoint
            )?;
        }
    }
    Ok(())
}
