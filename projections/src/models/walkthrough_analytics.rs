//! Funnel and sankey rollups of walkthrough progress, by UTC day, server and version. A batch
//! of progress events becomes a handful of counter upserts; the analytics and sankey queries
//! read these rollups (a few rows per step and day), never raw events, so they cost the same
//! at a thousand completions as at a million.
//!
//! - `rm_walkthrough_daily`: starts, restarts, completions.
//! - `rm_walkthrough_step_daily`: per step, runs that reached it (were shown it), completed it,
//!   or restarted while on it.
//! - `rm_walkthrough_step_times`: time on step as a log-scale histogram, for medians.
//! - `rm_walkthrough_transitions`: sankey links (`start` → first step, step → next step, last
//!   step → `completed`, step or `completed` → `restarted`).

use crate::projection::{Projection, ProjectionError, Reads, Tables};
use chrono::NaiveDate;
use domain::values::OrgId;
use domain::walkthrough_progress::{ProgressEvent, WalkthroughProgress};
use domain::Aggregate;
use eventstore::StoredEvent;
use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgConnection, PgPool, Postgres};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

pub struct WalkthroughAnalyticsProjection;

pub const START: &str = "start";
pub const COMPLETED: &str = "completed";
pub const RESTARTED: &str = "restarted";

/// Histogram base: bucket `b` holds times in `[1.1^b - 1, 1.1^(b+1) - 1)` ms, so a median read
/// from it is within 5% of the true one.
const BUCKET_BASE: f64 = 1.1;
const MAX_BUCKET: i16 = 300;

pub fn bucket_of(ms: u64) -> i16 {
    let b = ((ms as f64) + 1.0).ln() / BUCKET_BASE.ln();
    (b.floor() as i16).clamp(0, MAX_BUCKET)
}

/// The geometric middle of a bucket, in milliseconds.
pub fn bucket_middle_ms(bucket: i16) -> f64 {
    (BUCKET_BASE.powf(f64::from(bucket) + 0.5) - 1.0).max(0.0)
}

/// Day, server, version: the dimensions every rollup shares.
type Dims = (NaiveDate, Uuid, i32);

#[derive(Default)]
struct Daily {
    starts: i64,
    restarts: i64,
    completions: i64,
}

#[derive(Default)]
struct StepDaily {
    step_index: i32,
    reached: i64,
    completed: i64,
    restarted: i64,
}

#[derive(Default)]
struct Batch {
    daily: BTreeMap<(Uuid, Uuid, Dims), Daily>,
    steps: BTreeMap<(Uuid, Uuid, Dims, Uuid), StepDaily>,
    times: BTreeMap<(Uuid, Uuid, Dims, Uuid, i16), i64>,
    links: BTreeMap<(Uuid, Uuid, Dims, String, String), i64>,
}

fn version_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl Batch {
    fn step(&mut self, org: Uuid, wt: Uuid, dims: Dims, step: Uuid, index: i32) -> &mut StepDaily {
        let entry = self.steps.entry((org, wt, dims, step)).or_default();
        entry.step_index = index;
        entry
    }

    fn link(&mut self, org: Uuid, wt: Uuid, dims: Dims, from: String, to: String) {
        *self.links.entry((org, wt, dims, from, to)).or_default() += 1;
    }

    fn add(&mut self, org: Uuid, event: ProgressEvent) {
        match event {
            ProgressEvent::WalkthroughStarted {
                walkthrough_id,
                server_id,
                version,
                steps,
                restarted_from,
                at,
                ..
            } => {
                let dims = (at.date_naive(), server_id, version_of(version));
                let daily = self.daily.entry((org, walkthrough_id, dims)).or_default();
                daily.starts += 1;
                if let Some(left) = &restarted_from {
                    daily.restarts += 1;
                    // The restart leaves the old run where it was: on its version's step.
                    let left_dims = (dims.0, server_id, version_of(left.version));
                    match left.step_id {
                        Some(step) => {
                            self.steps
                                .entry((org, walkthrough_id, left_dims, step))
                                .or_default()
                                .restarted += 1;
                            self.link(
                                org,
                                walkthrough_id,
                                left_dims,
                                step.to_string(),
                                RESTARTED.into(),
                            );
                        }
                        None => self.link(
                            org,
                            walkthrough_id,
                            left_dims,
                            COMPLETED.into(),
                            RESTARTED.into(),
                        ),
                    }
                }
                if let Some(first) = steps.first() {
                    self.step(org, walkthrough_id, dims, *first, 0).reached += 1;
                    self.link(org, walkthrough_id, dims, START.into(), first.to_string());
                }
            }
            ProgressEvent::StepCompleted {
                walkthrough_id,
                server_id,
                version,
                step_id,
                step_index,
                next_step_id,
                time_on_step_ms,
                at,
                ..
            } => {
                let dims = (at.date_naive(), server_id, version_of(version));
                let index = i32::try_from(step_index).unwrap_or(i32::MAX);
                self.step(org, walkthrough_id, dims, step_id, index)
                    .completed += 1;
                *self
                    .times
                    .entry((
                        org,
                        walkthrough_id,
                        dims,
                        step_id,
                        bucket_of(time_on_step_ms),
                    ))
                    .or_default() += 1;
                match next_step_id {
                    Some(next) => {
                        self.step(org, walkthrough_id, dims, next, index + 1)
                            .reached += 1;
                        self.link(
                            org,
                            walkthrough_id,
                            dims,
                            step_id.to_string(),
                            next.to_string(),
                        );
                    }
                    None => self.link(
                        org,
                        walkthrough_id,
                        dims,
                        step_id.to_string(),
                        COMPLETED.into(),
                    ),
                }
            }
            ProgressEvent::WalkthroughCompleted {
                walkthrough_id,
                server_id,
                version,
                at,
                ..
            } => {
                let dims = (at.date_naive(), server_id, version_of(version));
                self.daily
                    .entry((org, walkthrough_id, dims))
                    .or_default()
                    .completions += 1;
            }
            // Counted when the merged end user made those starts, steps and completions.
            ProgressEvent::ProgressCarriedOver { .. } => {}
        }
    }
}

impl Projection for WalkthroughAnalyticsProjection {
    fn name(&self) -> &'static str {
        "walkthrough_analytics"
    }

    fn reads(&self) -> Reads {
        Reads::Only(&[WalkthroughProgress::TYPE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_walkthrough_daily",
            "rm_walkthrough_step_daily",
            "rm_walkthrough_step_times",
            "rm_walkthrough_transitions",
        ]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        t: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let mut batch = Batch::default();
            for event in events {
                let Some(org_id) = event.org_id else { continue };
                batch.add(org_id, event.decode::<ProgressEvent>()?);
            }
            write(conn, t, batch).await?;
            Ok(())
        })
    }
}

/// Columns shared by every rollup key.
#[derive(Default)]
struct KeyColumns {
    org: Vec<Uuid>,
    walkthrough: Vec<Uuid>,
    day: Vec<NaiveDate>,
    server: Vec<Uuid>,
    version: Vec<i32>,
}

impl KeyColumns {
    fn push(&mut self, org: Uuid, wt: Uuid, dims: &Dims) {
        self.org.push(org);
        self.walkthrough.push(wt);
        self.day.push(dims.0);
        self.server.push(dims.1);
        self.version.push(dims.2);
    }
}

async fn write(conn: &mut PgConnection, t: Tables, batch: Batch) -> Result<(), sqlx::Error> {
    if !batch.daily.is_empty() {
        let mut k = KeyColumns::default();
        let (mut starts, mut restarts, mut completions) = (Vec::new(), Vec::new(), Vec::new());
        for ((org, wt, dims), d) in &batch.daily {
            k.push(*org, *wt, dims);
            starts.push(d.starts);
            restarts.push(d.restarts);
            completions.push(d.completions);
        }
        sqlx::query(&format!(
            "INSERT INTO {} AS r (org_id, walkthrough_id, day, server_id, version, starts, restarts, completions) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::date[], $4::uuid[], $5::int[], \
             $6::bigint[], $7::bigint[], $8::bigint[]) \
             ON CONFLICT (org_id, walkthrough_id, day, server_id, version) DO UPDATE SET \
             starts = r.starts + EXCLUDED.starts, restarts = r.restarts + EXCLUDED.restarts, \
             completions = r.completions + EXCLUDED.completions",
            t.name("rm_walkthrough_daily")
        ))
        .bind(&k.org)
        .bind(&k.walkthrough)
        .bind(&k.day)
        .bind(&k.server)
        .bind(&k.version)
        .bind(&starts)
        .bind(&restarts)
        .bind(&completions)
        .execute(&mut *conn)
        .await?;
    }
    if !batch.steps.is_empty() {
        let mut k = KeyColumns::default();
        let (mut step, mut index, mut reached, mut completed, mut restarted) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((org, wt, dims, s), d) in &batch.steps {
            k.push(*org, *wt, dims);
            step.push(*s);
            index.push(d.step_index);
            reached.push(d.reached);
            completed.push(d.completed);
            restarted.push(d.restarted);
        }
        sqlx::query(&format!(
            "INSERT INTO {} AS r (org_id, walkthrough_id, day, server_id, version, step_id, \
             step_index, reached, completed, restarted) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::date[], $4::uuid[], $5::int[], \
             $6::uuid[], $7::int[], $8::bigint[], $9::bigint[], $10::bigint[]) \
             ON CONFLICT (org_id, walkthrough_id, day, server_id, version, step_id) DO UPDATE SET \
             step_index = GREATEST(r.step_index, EXCLUDED.step_index), \
             reached = r.reached + EXCLUDED.reached, completed = r.completed + EXCLUDED.completed, \
             restarted = r.restarted + EXCLUDED.restarted",
            t.name("rm_walkthrough_step_daily")
        ))
        .bind(&k.org)
        .bind(&k.walkthrough)
        .bind(&k.day)
        .bind(&k.server)
        .bind(&k.version)
        .bind(&step)
        .bind(&index)
        .bind(&reached)
        .bind(&completed)
        .bind(&restarted)
        .execute(&mut *conn)
        .await?;
    }
    if !batch.times.is_empty() {
        let mut k = KeyColumns::default();
        let (mut step, mut bucket, mut n) = (Vec::new(), Vec::new(), Vec::new());
        for ((org, wt, dims, s, b), count) in &batch.times {
            k.push(*org, *wt, dims);
            step.push(*s);
            bucket.push(*b);
            n.push(*count);
        }
        sqlx::query(&format!(
            "INSERT INTO {} AS r (org_id, walkthrough_id, day, server_id, version, step_id, bucket, n) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::date[], $4::uuid[], $5::int[], \
             $6::uuid[], $7::smallint[], $8::bigint[]) \
             ON CONFLICT (org_id, walkthrough_id, day, server_id, version, step_id, bucket) \
             DO UPDATE SET n = r.n + EXCLUDED.n",
            t.name("rm_walkthrough_step_times")
        ))
        .bind(&k.org)
        .bind(&k.walkthrough)
        .bind(&k.day)
        .bind(&k.server)
        .bind(&k.version)
        .bind(&step)
        .bind(&bucket)
        .bind(&n)
        .execute(&mut *conn)
        .await?;
    }
    if !batch.links.is_empty() {
        let mut k = KeyColumns::default();
        let (mut from, mut to, mut n) = (Vec::new(), Vec::new(), Vec::new());
        for ((org, wt, dims, f, t), count) in &batch.links {
            k.push(*org, *wt, dims);
            from.push(f.as_str());
            to.push(t.as_str());
            n.push(*count);
        }
        sqlx::query(&format!(
            "INSERT INTO {} AS r (org_id, walkthrough_id, day, server_id, version, from_node, to_node, n) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::date[], $4::uuid[], $5::int[], \
             $6::text[], $7::text[], $8::bigint[]) \
             ON CONFLICT (org_id, walkthrough_id, day, server_id, version, from_node, to_node) \
             DO UPDATE SET n = r.n + EXCLUDED.n",
            t.name("rm_walkthrough_transitions")
        ))
        .bind(&k.org)
        .bind(&k.walkthrough)
        .bind(&k.day)
        .bind(&k.server)
        .bind(&k.version)
        .bind(&from)
        .bind(&to)
        .bind(&n)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The rollup rows of a [`Window`]: parameters `$1..$6` are org, walkthrough, first and last
/// day, server (or null) and version (or null), bound in that order by every query below.
const WINDOW: &str = "org_id = $1 AND walkthrough_id = $2 AND day BETWEEN $3 AND $4 \
     AND ($5::uuid IS NULL OR server_id = $5) AND ($6::int IS NULL OR version = $6)";

/// Binds a [`Window`]'s parameters to a query over [`WINDOW`], planned for those values.
///
/// Not a kept prepared statement: after five runs Postgres may settle on a generic plan, and
/// without the values it takes a window for a handful of rows and walks the primary key,
/// where a month of a busy walkthrough is some 20,000 histogram rows better scanned and
/// hashed (measured over a million completions: the median-times query took 38 ms with the
/// generic plan, 20 ms with its own). Planning takes well under a millisecond.
fn windowed<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    org: OrgId,
    walkthrough_id: Uuid,
    w: &Window,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    query
        .persistent(false)
        .bind(org.0)
        .bind(walkthrough_id)
        .bind(w.from)
        .bind(w.to)
        .bind(w.server_id)
        .bind(w.version)
}

/// Which slice of the rollups a query reads: days `from..=to` (UTC), optionally one server
/// and one version.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub server_id: Option<Uuid>,
    pub version: Option<i32>,
}

/// What the analytics route shows: the daily series, the per-step totals and the median time
/// on each step.
#[derive(Debug, Clone)]
pub struct Funnel {
    pub days: Vec<DayRow>,
    pub steps: Vec<StepTotals>,
    pub medians: HashMap<Uuid, f64>,
}

/// What the sankey route shows: step-to-step transitions and the per-step totals.
#[derive(Debug, Clone)]
pub struct Flows {
    pub links: Vec<LinkRow>,
    pub steps: Vec<StepTotals>,
}

/// Runs ever completed, across the org's walkthroughs (a run completed and then restarted
/// still counts): the daily rollup's completions, a row per walkthrough, day, server and
/// version.
pub async fn completed_runs(pool: &PgPool, org: OrgId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(SUM(completions), 0)::bigint FROM rm_walkthrough_daily WHERE org_id = $1",
    )
    .bind(org.0)
    .fetch_one(pool)
    .await
}

/// The funnel of a walkthrough, its rollups read in one snapshot: while completions are being
/// projected, totals, steps and medians still describe the same moment.
pub async fn funnel(
    pool: &PgPool,
    org: OrgId,
    walkthrough_id: Uuid,
    w: &Window,
) -> Result<Funnel, sqlx::Error> {
    let mut tx = snapshot(pool).await?;
    let days = daily(&mut tx, org, walkthrough_id, w).await?;
    let steps = steps(&mut tx, org, walkthrough_id, w).await?;
    let medians = median_times(&mut tx, org, walkthrough_id, w).await?;
    tx.commit().await?;
    Ok(Funnel {
        days,
        steps,
        medians,
    })
}

/// The flows of a walkthrough, read in one snapshot (see [`funnel`]).
pub async fn flows(
    pool: &PgPool,
    org: OrgId,
    walkthrough_id: Uuid,
    w: &Window,
) -> Result<Flows, sqlx::Error> {
    let mut tx = snapshot(pool).await?;
    let links = links(&mut tx, org, walkthrough_id, w).await?;
    let steps = steps(&mut tx, org, walkthrough_id, w).await?;
    tx.commit().await?;
    Ok(Flows { links, steps })
}

/// A read-only transaction whose statements all see the same snapshot.
async fn snapshot(pool: &PgPool) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DayRow {
    pub day: NaiveDate,
    pub starts: i64,
    pub restarts: i64,
    pub completions: i64,
}

async fn daily(
    conn: &mut PgConnection,
    org: OrgId,
    walkthrough_id: Uuid,
    w: &Window,
) -> Result<Vec<DayRow>, sqlx::Error> {
    windowed(
        sqlx::query_as(&format!(
            "SELECT day, SUM(starts)::bigint AS starts, SUM(restarts)::bigint AS restarts, \
         SUM(completions)::bigint AS completions FROM rm_walkthrough_daily \
         WHERE {WINDOW} GROUP BY day ORDER BY day"
        )),
        org,
        walkthrough_id,
        w,
    )
    .fetch_all(conn)
    .await
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct StepTotals {
    pub step_id: Uuid,
    pub step_index: i32,
    pub reached: i64,
    pub completed: i64,
    pub restarted: i64,
}

async fn steps(
    conn: &mut PgConnection,
    org: OrgId,
    walkthrough_id: Uuid,
    w: &Window,
) -> Result<Vec<StepTotals>, sqlx::Error> {
    windowed(
        sqlx::query_as(&format!(
            "SELECT step_id, MAX(step_index) AS step_index, SUM(reached)::bigint AS reached, \
         SUM(completed)::bigint AS completed, SUM(restarted)::bigint AS restarted \
         FROM rm_walkthrough_step_daily \
         WHERE {WINDOW} GROUP BY step_id ORDER BY MAX(step_index), step_id"
        )),
        org,
        walkthrough_id,
        w,
    )
    .fetch_all(conn)
    .await
}

/// Median time on each step, in milliseconds, from the histograms.
async fn median_times(
    conn: &mut PgConnection,
    org: OrgId,
    walkthrough_id: Uuid,
    w: &Window,
) -> Result<HashMap<Uuid, f64>, sqlx::Error> {
    let rows: Vec<(Uuid, i16, i64)> = windowed(
        sqlx::query_as(&format!(
            "SELECT step_id, bucket, SUM(n)::bigint FROM rm_walkthrough_step_times \
         WHERE {WINDOW} GROUP BY step_id, bucket ORDER BY step_id, bucket"
        )),
        org,
        walkthrough_id,
        w,
    )
    .fetch_all(conn)
    .await?;
    let mut histograms: HashMap<Uuid, Vec<(i16, i64)>> = HashMap::new();
    for (step, bucket, n) in rows {
        histograms.entry(step).or_default().push((bucket, n));
    }
    Ok(histograms
        .into_iter()
        .filter_map(|(step, hist)| median_of(&hist).map(|m| (step, m)))
        .collect())
}

/// The median of a histogram sorted by bucket: the middle of the bucket holding the middle
/// observation.
pub fn median_of(hist: &[(i16, i64)]) -> Option<f64> {
    let total: i64 = hist.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let middle = (total + 1) / 2;
    let mut seen = 0;
    for (bucket, n) in hist {
        seen += n;
        if seen >= middle {
            return Some(bucket_middle_ms(*bucket));
        }
    }
    None
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LinkRow {
    pub from_node: String,
    pub to_node: String,
    pub n: i64,
}

async fn links(
    conn: &mut PgConnection,
    org: OrgId,
    walkthrough_id: Uuid,
    w: &Window,
) -> Result<Vec<LinkRow>, sqlx::Error> {
    windowed(
        sqlx::query_as(&format!(
            "SELECT from_node, to_node, SUM(n)::bigint AS n FROM rm_walkthrough_transitions \
         WHERE {WINDOW} GROUP BY from_node, to_node ORDER BY from_node, to_node"
        )),
        org,
        walkthrough_id,
        w,
    )
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_come_from_the_middle_bucket_within_five_percent() {
        for ms in [0u64, 1, 40, 999, 12_345, 3_600_000] {
            let middle = bucket_middle_ms(bucket_of(ms));
            let error = (middle - ms as f64).abs() / (ms as f64 + 1.0);
            assert!(error <= 0.06, "{ms} ms read back as {middle}");
        }
        let hist = [(bucket_of(100), 2), (bucket_of(5_000), 1)];
        assert_eq!(median_of(&hist), Some(bucket_middle_ms(bucket_of(100))));
        assert_eq!(median_of(&[]), None);
    }
}
