//! Each end user's current run of each walkthrough. Step completions arrive by the thousand
//! per second, so a batch is folded per (walkthrough, end user) and written with one upsert:
//! every progress event carries absolute values (step index, step count, next step), so the
//! fold needs nothing from the table except the run count.

use crate::projection::{Projection, ProjectionError, Reads, Tables};
use chrono::{DateTime, Utc};
use domain::values::OrgId;
use domain::walkthrough_progress::{ProgressEvent, WalkthroughProgress};
use domain::Aggregate;
use eventstore::StoredEvent;
use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use uuid::Uuid;

pub struct WalkthroughProgressProjection;

/// The row after the batch; `None` fields keep what the table has.
struct Fold {
    org_id: Uuid,
    walkthrough_id: Uuid,
    end_user_id: Uuid,
    server_id: Uuid,
    version: i32,
    status: &'static str,
    current_step_id: Option<Uuid>,
    steps_completed: i32,
    step_count: i32,
    runs: i32,
    /// Set when the batch (re)started the run: the row is replaced, not merged.
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    last_activity_at: DateTime<Utc>,
}

fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Projection for WalkthroughProgressProjection {
    fn name(&self) -> &'static str {
        "walkthrough_progress"
    }

    fn reads(&self) -> Reads {
        Reads::Only(&[WalkthroughProgress::TYPE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_walkthrough_progress"]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        t: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let table = t.name("rm_walkthrough_progress");
            let mut folds: HashMap<&str, Fold> = HashMap::new();
            // Completions whose run started in an earlier batch: (org, walkthrough, end user, at).
            let mut completed_alone: Vec<(Uuid, Uuid, Uuid, DateTime<Utc>)> = Vec::new();
            for event in events {
                let Some(org_id) = event.org_id else { continue };
                match event.decode::<ProgressEvent>()? {
                    ProgressEvent::WalkthroughStarted {
                        walkthrough_id,
                        end_user_id,
                        server_id,
                        version,
                        steps,
                        at,
                        ..
                    } => {
                        let runs = folds.get(event.aggregate_id.as_str()).map_or(0, |f| f.runs);
                        folds.insert(
                            &event.aggregate_id,
                            Fold {
                                org_id,
                                walkthrough_id,
                                end_user_id,
                                server_id,
                                version: count(version),
                                status: "in_progress",
                                current_step_id: steps.first().copied(),
                                steps_completed: 0,
                                step_count: i32::try_from(steps.len()).unwrap_or(i32::MAX),
                                runs: runs + 1,
                                started_at: Some(at),
                                completed_at: None,
                                last_activity_at: at,
                            },
                        );
                    }
                    ProgressEvent::StepCompleted {
                        walkthrough_id,
                        end_user_id,
                        server_id,
                        version,
                        step_index,
                        step_count,
                        next_step_id,
                        at,
                        ..
                    } => {
                        let fold = folds.entry(&event.aggregate_id).or_insert(Fold {
                            org_id,
                            walkthrough_id,
                            end_user_id,
                            server_id,
                            version: count(version),
                            status: "in_progress",
                            current_step_id: None,
                            steps_completed: 0,
                            step_count: count(step_count),
                            runs: 0,
                            started_at: None,
                            completed_at: None,
                            last_activity_at: at,
                        });
                        fold.server_id = server_id;
                        fold.current_step_id = next_step_id;
                        fold.steps_completed = count(step_index + 1);
                        fold.step_count = count(step_count);
                        fold.last_activity_at = at;
                    }
                    ProgressEvent::WalkthroughCompleted {
                        walkthrough_id,
                        end_user_id,
                        at,
                        ..
                    } => match folds.get_mut(event.aggregate_id.as_str()) {
                        Some(fold) => {
                            fold.status = "completed";
                            fold.completed_at = Some(at);
                            fold.last_activity_at = at;
                        }
                        None => completed_alone.push((org_id, walkthrough_id, end_user_id, at)),
                    },
                    // A merged end user's run, carried over to the survivor: replaces the row
                    // like a start (and counts as one of the survivor's runs).
                    ProgressEvent::ProgressCarriedOver {
                        walkthrough_id,
                        end_user_id,
                        server_id,
                        version,
                        steps,
                        current,
                        started_at,
                        shown_at,
                        completed_at,
                        ..
                    } => {
                        let runs = folds.get(event.aggregate_id.as_str()).map_or(0, |f| f.runs);
                        let index = usize::try_from(current).unwrap_or(usize::MAX);
                        folds.insert(
                            &event.aggregate_id,
                            Fold {
                                org_id,
                                walkthrough_id,
                                end_user_id,
                                server_id,
                                version: count(version),
                                status: if completed_at.is_some() {
                                    "completed"
                                } else {
                                    "in_progress"
                                },
                                current_step_id: steps.get(index).copied(),
                                steps_completed: count(current),
                                step_count: i32::try_from(steps.len()).unwrap_or(i32::MAX),
                                runs: runs + 1,
                                started_at: Some(started_at),
                                completed_at,
                                last_activity_at: completed_at.unwrap_or(shown_at).max(shown_at),
                            },
                        );
                    }
                }
            }
            // These precede anything folded for the same run in this batch, so they go first.
            for (org_id, walkthrough_id, end_user_id, at) in completed_alone {
                sqlx::query(&format!(
                    "UPDATE {table} SET status = 'completed', completed_at = $4, \
                     last_activity_at = GREATEST(last_activity_at, $4) \
                     WHERE org_id = $1 AND walkthrough_id = $2 AND end_user_id = $3"
                ))
                .bind(org_id)
                .bind(walkthrough_id)
                .bind(end_user_id)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            if folds.is_empty() {
                return Ok(());
            }
            let mut cols = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for f in folds.values() {
                cols.0.push(f.org_id);
                cols.1.push(f.walkthrough_id);
                cols.2.push(f.end_user_id);
                cols.3.push(f.server_id);
                cols.4.push(f.version);
                cols.5.push(f.status);
                cols.6.push(f.current_step_id);
                cols.7.push(f.steps_completed);
                cols.8.push(f.step_count);
                cols.9.push(f.runs);
                cols.10.push(f.started_at);
                cols.11.push(f.completed_at);
                cols.12.push(f.last_activity_at);
            }
            // A fold without a start continues the stored run; one with a start replaces it.
            sqlx::query(&format!(
                "INSERT INTO {table} AS p (org_id, walkthrough_id, end_user_id, server_id, version, \
                 status, current_step_id, steps_completed, step_count, runs, started_at, \
                 completed_at, last_activity_at) \
                 SELECT o, w, e, s, v, st, c, sc, n, r, COALESCE(sa, la), ca, la FROM UNNEST( \
                 $1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int[], $6::text[], $7::uuid[], \
                 $8::int[], $9::int[], $10::int[], $11::timestamptz[], $12::timestamptz[], \
                 $13::timestamptz[]) AS u(o, w, e, s, v, st, c, sc, n, r, sa, ca, la) \
                 ON CONFLICT (org_id, walkthrough_id, end_user_id) DO UPDATE SET \
                 server_id = EXCLUDED.server_id, version = EXCLUDED.version, \
                 status = CASE WHEN EXCLUDED.status = 'completed' OR EXCLUDED.runs > 0 \
                     THEN EXCLUDED.status ELSE p.status END, \
                 current_step_id = EXCLUDED.current_step_id, \
                 steps_completed = EXCLUDED.steps_completed, step_count = EXCLUDED.step_count, \
                 runs = p.runs + EXCLUDED.runs, \
                 started_at = CASE WHEN EXCLUDED.runs > 0 THEN EXCLUDED.started_at ELSE p.started_at END, \
                 completed_at = CASE WHEN EXCLUDED.runs > 0 THEN EXCLUDED.completed_at \
                     ELSE COALESCE(EXCLUDED.completed_at, p.completed_at) END, \
                 last_activity_at = GREATEST(p.last_activity_at, EXCLUDED.last_activity_at)"
            ))
            .bind(&cols.0)
            .bind(&cols.1)
            .bind(&cols.2)
            .bind(&cols.3)
            .bind(&cols.4)
            .bind(&cols.5)
            .bind(&cols.6)
            .bind(&cols.7)
            .bind(&cols.8)
            .bind(&cols.9)
            .bind(&cols.10)
            .bind(&cols.11)
            .bind(&cols.12)
            .execute(&mut *conn)
            .await?;
            Ok(())
        })
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ProgressRow {
    pub walkthrough_id: Uuid,
    pub title: Option<String>,
    pub server_id: Uuid,
    pub version: i32,
    pub status: String,
    pub current_step_id: Option<Uuid>,
    pub steps_completed: i32,
    pub step_count: i32,
    pub runs: i32,
    #[serde(with = "domain::time::rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339_option")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(with = "domain::time::rfc3339")]
    pub last_activity_at: DateTime<Utc>,
}

/// An end user's walkthroughs, most recently active first.
pub async fn of_end_user(
    pool: &PgPool,
    org: OrgId,
    end_user_id: Uuid,
) -> Result<Vec<ProgressRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.walkthrough_id, w.title, p.server_id, p.version, p.status, p.current_step_id, \
         p.steps_completed, p.step_count, p.runs, p.started_at, p.completed_at, p.last_activity_at \
         FROM rm_walkthrough_progress p LEFT JOIN rm_walkthroughs w \
         ON w.org_id = p.org_id AND w.walkthrough_id = p.walkthrough_id \
         WHERE p.org_id = $1 AND p.end_user_id = $2 ORDER BY p.last_activity_at DESC",
    )
    .bind(org.0)
    .bind(end_user_id)
    .fetch_all(pool)
    .await
}

/// Runs under way now, across the org: end users part-way through a walkthrough.
pub async fn active_runs(pool: &PgPool, org: OrgId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM rm_walkthrough_progress WHERE org_id = $1 AND status = 'in_progress'",
    )
    .bind(org.0)
    .fetch_one(pool)
    .await
}
