//! `bench -- walkthroughs`: two measurements.
//!
//! 1. Against a running mcplatform (`--url`): a 10-step walkthrough is authored, published and
//!    assigned over REST; each virtual client is its own end user (own tracking id, own
//!    2025-11-25 session) and calls `next_walkthrough_step` in a loop, starting over when it
//!    finishes. Every answered call is a committed `StepCompleted`; at the end the bench checks
//!    that the funnel analytics count exactly the completions it was answered. The rows of
//!    `--clients` call as fast as they are answered (closed loop: at saturation a call's
//!    latency is mostly its wait behind the other clients' calls); the rows of `--paced` offer a
//!    fixed rate instead, each end user calling on a schedule, and time each call from when it
//!    was due, so a late answer also delays (and is charged to) the calls queued behind it.
//! 2. On a scratch database: a million step completions (runs spread over 30 days, 3 servers,
//!    2 versions, some dropping off) are stored, the walkthrough projections are rebuilt from
//!    them, and the analytics and sankey queries the REST routes run are timed.

use super::machine::{self, BusyCpu};
use super::mcp_load::{post, set_up, StepAnswer, VirtualClient};
use super::{ms, percentile, scratch_database, Row};
use anyhow::{bail, Context};
use chrono::{Duration as Days, Utc};
use domain::walkthrough::{
    StepContent, StepEdit, Walkthrough, WalkthroughCommand, WalkthroughEvent,
};
use domain::walkthrough_progress::{stream_id, ProgressEvent, WalkthroughProgress};
use domain::{Actor, Aggregate, EventMetadata};
use eventstore::{EventStore, UnitOfWork};
use projections::models::walkthrough_analytics::{self as analytics, Window};
use projections::models::walkthroughs as rm;
use reqwest::Client;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const STEPS: usize = 10;

pub async fn run_mcp(
    base: &str,
    seconds: u64,
    clients: &[usize],
    paced: &Paced,
    analyze: Option<&str>,
) -> anyhow::Result<()> {
    let base = base.trim_end_matches('/');
    let http = Client::new();
    let tenant = set_up(&http, base).await?;
    let org = &tenant.org;
    let token = Some(tenant.token.as_str());
    let wt = post(
        &http,
        &format!("{base}/api/v1/orgs/{org}/walkthroughs"),
        token,
        json!({ "title": "Bench tour", "description": "ten steps" }),
    )
    .await?;
    let wt = wt["id"].as_str().unwrap_or_default().to_owned();
    for i in 1..=STEPS {
        post(
            &http,
            &format!("{base}/api/v1/orgs/{org}/walkthroughs/{wt}/steps"),
            token,
            json!({ "title": format!("Step {i}"), "content": format!("Do thing {i}."),
                     "agent_instructions": "Guide the user.", "operations": ["check it"] }),
        )
        .await?;
    }
    post(
        &http,
        &format!("{base}/api/v1/orgs/{org}/walkthroughs/{wt}/publish"),
        token,
        json!({}),
    )
    .await?;
    post(
        &http,
        &format!(
            "{base}/api/v1/orgs/{org}/servers/{}/walkthroughs",
            tenant.slug
        ),
        token,
        json!({ "walkthrough_id": wt }),
    )
    .await?;
    // The servers' offer cache turns over within a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    println!("mcplatform walkthrough benchmark against {base} ({seconds} s per row)");
    println!("{}", machine::describe());
    Row::print_header();
    let mut total = 0u64;
    let mut round = 0;
    if analyze.is_some() {
        round += 1;
        let warm = measure(&tenant.base, &tenant.slug, &wt, round, 16, 2, None).await?;
        total += warm.calls;
        super::analyze(analyze).await?;
    }
    for &n in clients {
        round += 1;
        let row = measure(&tenant.base, &tenant.slug, &wt, round, n, seconds, None).await?;
        total += row.calls;
        row.print("next_walkthrough_step", n);
    }
    for &rate in &paced.rates {
        round += 1;
        let n = paced.clients;
        let row = measure(
            &tenant.base,
            &tenant.slug,
            &wt,
            round,
            n,
            seconds,
            Some(rate),
        )
        .await?;
        total += row.calls;
        row.print(&format!("paced at {rate:.0}/s"), n);
    }
    // Every answered call is a step completion the funnel must count.
    let deadline = Instant::now() + Duration::from_secs(120);
    let counted = loop {
        let body: Value = http
            .get(format!(
                "{base}/api/v1/orgs/{org}/walkthroughs/{wt}/analytics"
            ))
            .bearer_auth(&tenant.token)
            .send()
            .await?
            .json()
            .await?;
        let counted: u64 = body["steps"]
            .as_array()
            .map(|s| s.iter().filter_map(|s| s["completed"].as_u64()).sum())
            .unwrap_or(0);
        if counted >= total || Instant::now() > deadline {
            break counted;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("step completions counted by the funnel: {counted} of {total} answered");
    if counted != total {
        bail!("the funnel counts {counted} completions, the clients were answered {total}");
    }
    Ok(())
}

/// The fixed-rate rows: `clients` end users offering each of `rates` completions per second
/// between them.
pub struct Paced {
    pub clients: usize,
    pub rates: Vec<f64>,
}

/// One row: `clients` end users walking for `seconds`, as fast as they are answered, or
/// offering `rate` calls per second between them.
async fn measure(
    base: &str,
    slug: &str,
    wt: &str,
    round: usize,
    clients: usize,
    seconds: u64,
    rate: Option<f64>,
) -> anyhow::Result<Row> {
    let mut walkers = Vec::with_capacity(clients);
    for n in 0..clients {
        let url = format!("{base}/s/{slug}/t/walker-{round}-{n}/mcp");
        let mut client = VirtualClient::connect(&url, n).await?;
        let first: Option<StepAnswer> = client
            .call(
                "select_walkthrough",
                &json!({ "walkthrough_id": wt }).to_string(),
            )
            .await?;
        let step = first
            .and_then(|a| a.step)
            .map(|s| s.id)
            .context("select_walkthrough returned no step")?;
        walkers.push((client, step));
    }
    let failed = Arc::new(AtomicU64::new(0));
    let cpu = BusyCpu::now();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    // Paced, each end user calls every `clients / rate` seconds, the end users' schedules
    // spread evenly over that interval.
    let interval = rate.map(|rate| Duration::from_secs_f64(clients as f64 / rate));
    let mut tasks = Vec::new();
    for (n, (mut client, mut step)) in walkers.into_iter().enumerate() {
        let failed = failed.clone();
        let restart = json!({ "walkthrough_id": wt, "resume_if_exists": false }).to_string();
        let mut due =
            started + interval.map_or(Duration::ZERO, |i| i.mul_f64(n as f64 / clients as f64));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while interval.map_or_else(Instant::now, |_| due) < deadline {
                // A paced call is timed from when it was due, not from when the end user got
                // round to sending it: a late answer delays the next call, and that wait is
                // the next call's (without it, a stall would hide all but one of the calls it
                // held up).
                let t = match interval {
                    Some(interval) => {
                        tokio::time::sleep_until(due.into()).await;
                        let t = due;
                        due += interval;
                        t
                    }
                    None => Instant::now(),
                };
                let answer: anyhow::Result<Option<StepAnswer>> = client
                    .call(
                        "next_walkthrough_step",
                        &format!(r#"{{"current_step_id":"{step}"}}"#),
                    )
                    .await;
                let elapsed = t.elapsed();
                let next = match answer {
                    Ok(Some(a)) if a.status.as_deref() == Some("completed") => {
                        latencies.push((t.duration_since(started), elapsed));
                        // Start over (not timed: only step completions are measured).
                        client
                            .call::<StepAnswer>("select_walkthrough", &restart)
                            .await
                    }
                    other => {
                        other.inspect(|_| latencies.push((t.duration_since(started), elapsed)))
                    }
                };
                match next.map(|a| a.and_then(|a| a.step).map(|s| s.id)) {
                    Ok(Some(id)) => step = id,
                    Ok(None) | Err(_) => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("  a walker lost its step; stopping it");
                        }
                        break;
                    }
                }
            }
            latencies
        }));
    }
    // Restarts are not timed, but their CPU is in the machine's: counted per completion.
    Ok(Row::from_clients(tasks, started, &failed, cpu).await)
}

/// Stores `completions` step completions, rebuilds the walkthrough projections from them and
/// times the analytics and sankey queries.
pub async fn run_queries(postgres: &str, completions: u64, keep: bool) -> anyhow::Result<()> {
    let scratch = scratch_database(postgres, 8).await?;
    let store = EventStore::open(scratch.pool.clone()).await?;
    let org_id = Uuid::new_v4();
    let servers = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    let metadata = EventMetadata::by(Actor::System).for_org(org_id);

    // The walkthrough: ten steps, version 1, then an edit and version 2.
    let wt_id = Uuid::new_v4();
    let v1: Vec<Uuid> = (0..STEPS).map(|_| Uuid::new_v4()).collect();
    let mut commands = vec![WalkthroughCommand::Create {
        org_id,
        title: "Bench tour".into(),
        description: None,
    }];
    for (i, step_id) in v1.iter().enumerate() {
        commands.push(WalkthroughCommand::AddStep {
            step_id: *step_id,
            after: None,
            step: StepContent::parse(&format!("Step {}", i + 1), "Do it.", None, &[])?,
        });
    }
    commands.push(WalkthroughCommand::Publish);
    commands.push(WalkthroughCommand::EditStep {
        step_id: v1[0],
        edit: StepEdit {
            content: Some("Do it, now better.".into()),
            ..StepEdit::default()
        },
    });
    commands.push(WalkthroughCommand::Publish);
    let mut walkthrough = Walkthrough::default();
    let mut history: Vec<WalkthroughEvent> = Vec::new();
    for command in commands {
        let events = walkthrough.handle(command)?;
        for e in &events {
            walkthrough.apply(e);
        }
        history.extend(events);
    }
    let mut uow = UnitOfWork::new();
    uow.append::<Walkthrough>(wt_id.to_string(), 0, &history, &metadata)?;
    store.commit(uow).await?;

    // Runs: most finish, every fifth drops off at a step of its own; until `completions`.
    println!("storing {completions} step completions...");
    let started = Instant::now();
    let now = Utc::now();
    let mut stored = 0u64;
    let mut run = 0u64;
    let mut events_total = 0u64;
    let mut pending = Vec::new();
    while stored < completions {
        let mut uow = UnitOfWork::new();
        for _ in 0..500 {
            if stored >= completions {
                break;
            }
            run += 1;
            let k = if run.is_multiple_of(5) {
                (run / 5 % STEPS as u64) as usize
            } else {
                STEPS
            };
            let k = k.min((completions - stored) as usize);
            stored += k as u64;
            let end_user = Uuid::new_v4();
            let server = servers[(run % 3) as usize];
            let version = if run.is_multiple_of(2) { 1 } else { 2 };
            let at = now - Days::days((run % 30) as i64) - Days::minutes((run % 600) as i64);
            let mut events = vec![ProgressEvent::WalkthroughStarted {
                org_id,
                walkthrough_id: wt_id,
                end_user_id: end_user,
                server_id: server,
                version,
                steps: v1.clone(),
                restarted_from: None,
                at,
            }];
            for i in 0..k {
                events.push(ProgressEvent::StepCompleted {
                    walkthrough_id: wt_id,
                    end_user_id: end_user,
                    server_id: server,
                    version,
                    step_id: v1[i],
                    step_index: i as u32,
                    step_count: STEPS as u32,
                    previous_step_id: i.checked_sub(1).map(|p| v1[p]),
                    next_step_id: v1.get(i + 1).copied(),
                    time_on_step_ms: 5_000 + (run * 7919 + i as u64 * 104_729) % 120_000,
                    at: at + Days::seconds(30 * (i as i64 + 1)),
                });
            }
            if k == STEPS {
                events.push(ProgressEvent::WalkthroughCompleted {
                    walkthrough_id: wt_id,
                    end_user_id: end_user,
                    server_id: server,
                    version,
                    duration_ms: 30_000 * STEPS as u64,
                    at: at + Days::seconds(30 * STEPS as i64),
                });
            }
            events_total += events.len() as u64;
            uow.append::<WalkthroughProgress>(stream_id(wt_id, end_user), 0, &events, &metadata)?;
        }
        let store = store.clone();
        pending.push(tokio::spawn(async move { store.commit(uow).await }));
        if pending.len() >= 4 {
            pending.remove(0).await??;
        }
    }
    for p in pending {
        p.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "stored {events_total} events ({run} runs) in {secs:.1} s ({:.0} events/s)",
        events_total as f64 / secs
    );

    for name in ["walkthroughs", "walkthrough_analytics"] {
        let projection = projections::registry::by_name(name).context("projection")?;
        let report = projections::rebuild::rebuild(&scratch.pool, projection, |_| {}).await?;
        println!(
            "rebuilt {name}: {} events in {:.1} s ({:.0} events/s)",
            report.events, report.seconds, report.events_per_second
        );
    }

    let org = domain::values::OrgId(org_id);
    let windows = [
        ("30 days, all servers", None, None),
        ("30 days, one server", Some(servers[0]), None),
        ("30 days, version 2", None, Some(2)),
    ];
    println!(
        "{:<26} {:>10} {:>10} {:>10}",
        "query", "window", "p50 ms", "p99 ms"
    );
    for (label, server_id, version) in windows {
        let w = Window {
            from: (now - Days::days(29)).date_naive(),
            to: now.date_naive(),
            server_id,
            version,
        };
        let pool = &scratch.pool;
        let mut analytics_times = Vec::new();
        let mut sankey_times = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let (funnel, versions) = tokio::try_join!(
                analytics::funnel(pool, org, wt_id, &w),
                rm::versions(pool, org, wt_id),
            )?;
            analytics_times.push(t.elapsed());
            if funnel.days.is_empty()
                || funnel.steps.len() != STEPS
                || funnel.medians.is_empty()
                || versions.len() != 2
            {
                bail!("the analytics came back incomplete");
            }
            let t = Instant::now();
            let (flows, _) = tokio::try_join!(
                analytics::flows(pool, org, wt_id, &w),
                rm::versions(pool, org, wt_id),
            )?;
            sankey_times.push(t.elapsed());
            if flows.links.is_empty() {
                bail!("the sankey came back empty");
            }
        }
        for (query, times) in [
            ("analytics", &mut analytics_times),
            ("sankey", &mut sankey_times),
        ] {
            times.sort_unstable();
            println!(
                "{:<36} {:>10.2} {:>10.2}",
                format!("{query} ({label})"),
                ms(percentile(times, 0.50)),
                ms(percentile(times, 0.99))
            );
        }
    }
    let completed: i64 = analytics::flows(
        &scratch.pool,
        org,
        wt_id,
        &Window {
            from: (now - Days::days(40)).date_naive(),
            to: now.date_naive(),
            server_id: None,
            version: None,
        },
    )
    .await?
    .steps
    .iter()
    .map(|s| s.completed)
    .sum();
    println!("step completions in the rollups: {completed} of {completions} stored");
    if completed as u64 != completions {
        bail!("the rollups count {completed} completions, {completions} were stored");
    }
    scratch.finish(keep).await
}
