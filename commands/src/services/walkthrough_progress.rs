//! End users' progress through walkthroughs, driven by the MCP tools `select_walkthrough` and
//! `next_walkthrough_step`.
//!
//! Which walkthrough an end user is "in" (what `next_walkthrough_step` advances when it names
//! none) is a pointer in the write-side key index (`walkthrough_selected`, one row per end
//! user), written in the same transaction as the start, so it is never behind the events.

use chrono::{DateTime, Utc};
use domain::walkthrough_progress::{
    stream_id, ProgressCommand, ProgressError, ProgressEvent, StartingVersion, WalkthroughProgress,
};
use domain::{Aggregate, EventMetadata};
use eventstore::KeyKind;
use eventstore::{CommitError, ConflictPauses, EventStore, ExecuteError, UnitOfWork, MAX_RETRIES};
use moka::sync::Cache;
use sqlx::Row;
use uuid::Uuid;

type Result<T> = std::result::Result<T, ExecuteError<ProgressError>>;

/// The progress after a command, and what it recorded (nothing for a resume).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub progress: WalkthroughProgress,
    pub events: Vec<ProgressEvent>,
}

/// The key of an end user's walkthrough selection (`walkthrough_selected`).
pub fn pointer_key(org_id: Uuid, end_user_id: Uuid) -> String {
    format!("{org_id}/{end_user_id}")
}

pub async fn load(
    store: &EventStore,
    walkthrough_id: Uuid,
    end_user_id: Uuid,
) -> std::result::Result<WalkthroughProgress, eventstore::StoreError> {
    Ok(load_stream(store, &stream_id(walkthrough_id, end_user_id))
        .await?
        .0)
}

/// Each end user's current run as this process last read or wrote it, with its version.
///
/// `next_walkthrough_step` takes the cached run out and decides on it without reading
/// Postgres: the unit it stages appends at the cached version + 1 and expects the end user's
/// selection to still name the cached walkthrough, so a run that moved on elsewhere (another
/// instance, a restart, a switch to another walkthrough) makes the commit conflict instead of
/// completing the wrong step. The committed result goes back in; after a conflict the entry is
/// gone and the call is decided again on a fresh read. A committed selection updates the entry
/// too. When the entry was read rather than committed here, only the events after its version
/// are read. Bounded: the least used entries are evicted first.
pub struct RunCache {
    runs: Cache<(Uuid, Uuid), CachedRun>,
}

impl Default for RunCache {
    fn default() -> Self {
        Self {
            runs: Cache::new(MAX_CACHED_RUNS),
        }
    }
}

#[derive(Clone)]
struct CachedRun {
    walkthrough_id: Uuid,
    version: i64,
    progress: WalkthroughProgress,
}

const MAX_CACHED_RUNS: u64 = 50_000;

impl RunCache {
    fn get(&self, org_id: Uuid, end_user_id: Uuid) -> Option<CachedRun> {
        self.runs.get(&(org_id, end_user_id))
    }

    fn take(&self, org_id: Uuid, end_user_id: Uuid) -> Option<CachedRun> {
        self.runs.remove(&(org_id, end_user_id))
    }

    /// Records a run as committed: `progress` at `version`, in `walkthrough_id`, the end
    /// user's selection.
    pub fn committed(
        &self,
        org_id: Uuid,
        end_user_id: Uuid,
        walkthrough_id: Uuid,
        version: i64,
        progress: WalkthroughProgress,
    ) {
        self.put(
            org_id,
            end_user_id,
            CachedRun {
                walkthrough_id,
                version,
                progress,
            },
        );
    }

    fn put(&self, org_id: Uuid, end_user_id: Uuid, run: CachedRun) {
        self.runs.insert((org_id, end_user_id), run);
    }
}

/// Where a run came from: decisions on a cached run must be confirmed by a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from Postgres now.
    Read,
    /// Taken out of this process's cache, unread: only a staged write (which the commit
    /// checks, and whose result goes back into the cache) may be decided on it; anything else
    /// is decided again on a fresh read.
    Cache,
}

/// The walkthrough the end user is in and their progress on it (with its version):
/// `next_walkthrough_step` needs both on every call. With `trust_cache`, a cached run is taken
/// out of the cache and returned as it is (see [`RunCache`]); otherwise both are read in one
/// round trip, and with a cached run of the walkthrough the pointer names only the events
/// after its version.
pub async fn current(
    store: &EventStore,
    cache: &RunCache,
    org_id: Uuid,
    end_user_id: Uuid,
    trust_cache: bool,
) -> std::result::Result<Option<(Uuid, WalkthroughProgress, i64, Source)>, eventstore::StoreError> {
    if let Some(c) = trust_cache
        .then(|| cache.take(org_id, end_user_id))
        .flatten()
    {
        return Ok(Some((
            c.walkthrough_id,
            c.progress,
            c.version,
            Source::Cache,
        )));
    }
    let cached = cache.get(org_id, end_user_id);
    let key = pointer_key(org_id, end_user_id);
    let end_user = end_user_id.to_string();
    let (cached_id, cached_version) = (
        cached.as_ref().map(|c| c.walkthrough_id),
        cached.as_ref().map_or(0, |c| c.version),
    );
    let query = async |mut conn: sqlx::PgConnection| {
        let rows = sqlx::query(
            "SELECT k.owner_id, e.sequence, e.event_type, e.payload FROM unique_keys k \
             LEFT JOIN LATERAL ( \
                 SELECT sequence, event_type, payload FROM events \
                 WHERE aggregate_type = $3 AND aggregate_id = k.owner_id::text || ':' || $4 \
                 AND sequence > CASE WHEN k.owner_id = $6 THEN $7 ELSE COALESCE(( \
                     SELECT sequence FROM events WHERE aggregate_type = $3 \
                     AND aggregate_id = k.owner_id::text || ':' || $4 AND event_type = ANY($5) \
                     ORDER BY sequence DESC LIMIT 1), 1) - 1 END \
             ) e ON true \
             WHERE k.kind = $1 AND k.key = $2 ORDER BY e.sequence",
        )
        .bind(KeyKind::WalkthroughSelected.as_str())
        .bind(&key)
        .bind(WalkthroughProgress::TYPE)
        .bind(&end_user)
        .bind(WalkthroughProgress::reset_events())
        .bind(cached_id)
        .bind(cached_version)
        .fetch_all(&mut conn)
        .await?;
        Ok((conn, rows))
    };
    let rows = store.hot_reads().run(query).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let walkthrough_id: Uuid = first.try_get("owner_id")?;
    let stream = stream_id(walkthrough_id, end_user_id);
    let (from, version) = match cached {
        Some(c) if c.walkthrough_id == walkthrough_id => (c.progress, c.version),
        _ => (WalkthroughProgress::default(), 0),
    };
    let (progress, version) = store.replay_rows_onto(from, version, &stream, rows)?;
    cache.put(
        org_id,
        end_user_id,
        CachedRun {
            walkthrough_id,
            version,
            progress: progress.clone(),
        },
    );
    Ok(Some((walkthrough_id, progress, version, Source::Read)))
}

/// The progress and its version, read from the current run's start on.
async fn load_stream(
    store: &EventStore,
    stream: &str,
) -> std::result::Result<(WalkthroughProgress, i64), eventstore::StoreError> {
    store
        .load_since_reset::<WalkthroughProgress>(stream, WalkthroughProgress::reset_events())
        .await
}

/// Who is selecting what, where.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub org_id: Uuid,
    pub server_id: Uuid,
    pub end_user_id: Uuid,
    pub walkthrough_id: Uuid,
}

/// Starts, resumes or restarts a walkthrough and makes it the end user's current one.
pub async fn select(
    store: &EventStore,
    cache: &RunCache,
    target: Target,
    resume_if_exists: bool,
    newest: &StartingVersion,
    at: DateTime<Utc>,
    metadata: &EventMetadata,
) -> Result<Outcome> {
    let metadata = metadata.clone().for_org(target.org_id);
    let stream = stream_id(target.walkthrough_id, target.end_user_id);
    let key = pointer_key(target.org_id, target.end_user_id);
    let mut pauses = ConflictPauses::new();
    for _ in 0..MAX_RETRIES {
        // The end user's selection and, when it names this walkthrough (a resume or restart,
        // the usual case), the run: one read on a kept connection, of only the events after
        // the run this instance last saw. Another walkthrough's run is read on its own.
        let (mut progress, version, pointed) =
            match current(store, cache, target.org_id, target.end_user_id, false).await? {
                Some((selected, progress, version, _)) if selected == target.walkthrough_id => {
                    (progress, version, Some(selected))
                }
                other => {
                    let (progress, version) = load_stream(store, &stream).await?;
                    (progress, version, other.map(|(selected, ..)| selected))
                }
            };
        let events = progress
            .handle(ProgressCommand::Select {
                org_id: target.org_id,
                walkthrough_id: target.walkthrough_id,
                end_user_id: target.end_user_id,
                server_id: target.server_id,
                resume_if_exists,
                newest: newest.clone(),
                at,
            })
            .map_err(ExecuteError::Domain)?;
        let mut uow = UnitOfWork::new();
        uow.append::<WalkthroughProgress>(stream.clone(), version, &events, &metadata)?;
        if pointed == Some(target.walkthrough_id) {
            // A start or restart commits only while this walkthrough is still the selected one
            // (otherwise it conflicts and is decided again). A resume writes nothing: the store
            // answers it without a round trip.
            if !events.is_empty() {
                uow.expect_owner(
                    KeyKind::WalkthroughSelected,
                    key.clone(),
                    target.walkthrough_id,
                );
            }
        } else {
            if let Some(old) = pointed {
                uow.release(KeyKind::WalkthroughSelected, key.clone(), old);
            }
            uow.claim(
                KeyKind::WalkthroughSelected,
                key.clone(),
                target.walkthrough_id,
            );
        }
        match store.commit(uow).await {
            Ok(_) => {
                for event in &events {
                    progress.apply(event);
                }
                cache.committed(
                    target.org_id,
                    target.end_user_id,
                    target.walkthrough_id,
                    version + events.len() as i64,
                    progress.clone(),
                );
                return Ok(Outcome { progress, events });
            }
            // Another select of the same end user moved the pointer meanwhile: decide again.
            Err(CommitError::Conflict | CommitError::KeyTaken { .. }) => pauses.pause().await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ExecuteError::Conflict)
}

/// Decides the completion of the caller's current step against `loaded` and returns it with
/// the unit of work to commit, uncommitted: the MCP edge commits it together with the call's
/// own record. The unit expects the end user's selection to still be this walkthrough. If
/// that commit conflicts (another client of the same end user advanced, restarted or switched
/// meanwhile), the caller decides again on fresh state, passing the step it was completing as
/// `expected_step_id`: the retry then answers with the real current step instead of
/// completing a step nobody was shown.
pub fn stage_step(
    target: Target,
    expected_step_id: Option<Uuid>,
    loaded: (WalkthroughProgress, i64),
    at: DateTime<Utc>,
    metadata: &EventMetadata,
) -> Result<(Outcome, UnitOfWork)> {
    let metadata = metadata.clone().for_org(target.org_id);
    let (mut progress, version) = loaded;
    let pinned = expected_step_id.or_else(|| progress.run.as_ref().and_then(|r| r.current_step()));
    let events = progress
        .handle(ProgressCommand::CompleteStep {
            expected_step_id: pinned,
            server_id: target.server_id,
            at,
        })
        .map_err(ExecuteError::Domain)?;
    let mut uow = UnitOfWork::new();
    uow.append::<WalkthroughProgress>(
        stream_id(target.walkthrough_id, target.end_user_id),
        version,
        &events,
        &metadata,
    )?;
    // Decided on the run of this walkthrough: only while it is still the one selected.
    uow.expect_owner(
        KeyKind::WalkthroughSelected,
        pointer_key(target.org_id, target.end_user_id),
        target.walkthrough_id,
    );
    for event in &events {
        progress.apply(event);
    }
    Ok((Outcome { progress, events }, uow))
}
