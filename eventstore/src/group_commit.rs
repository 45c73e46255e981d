//! The group committers: units of work waiting to be appended are gathered into groups, and
//! each group is written in one transaction (one statement, `append_group`, for plain
//! appends), so the durable-commit cost is paid once per group. Each unit still succeeds or
//! fails on its own: one whose stream moved on or whose expected or required key owner changed
//! is refused whole, the others commit.

use crate::cursor::Cursor;
use crate::error::{is_unavailable, CommitError, StoreError};
use crate::event::{Appended, PendingEvent};
use crate::index::KeyKind;
use crate::kept::KeptConnections;
use crate::store::Job;
use crate::unit_of_work::{IndexWrite, KeyClaim, Precondition, UnitOfWork};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex, Notify};
use uuid::Uuid;

/// Largest number of units of work committed in one transaction.
const MAX_GROUP: usize = 256;
/// Committer tasks: two let one batch be collected while the other waits for its fsync.
const COMMITTERS: usize = 2;
/// A group commit starts beside one still under way only once this many units are waiting, or
/// once they have waited [`JOIN_WAIT`] for it; until then they wait for it to finish and go in
/// the next group. A transaction's fixed cost (its round trips, its commit record and WAL
/// flush: ~120 µs of CPU on a 2-core machine, against a few µs per event) is what a small group
/// pays most for. Under a steady 2,000 or 3,000 step completions/s, units starting a commit of
/// their own beside another as soon as they came cost 7 to 8% more CPU per completion, and at
/// 3,000/s (a machine ~90% busy) the p99 was 53 to 170 ms against 25 to 44 ms.
const OVERLAP_FROM: usize = 16;
/// How long gathered units wait for the commit under way before starting their own beside it.
/// It bounds what a slow disk costs them: where a WAL flush takes milliseconds, two groups'
/// flushes still overlap.
const JOIN_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

/// Units of work per group commit.
pub const GROUP_UNITS: &str = "mcplatform_group_commit_batch_units";
/// Events per group commit.
pub const GROUP_EVENTS: &str = "mcplatform_group_commit_batch_events";
/// Seconds one group's transaction took (its round trips and the commit's WAL flush).
pub const GROUP_DURATION: &str = "mcplatform_group_commit_duration_seconds";

/// Starts the committers on their kept connections; units of work are sent to them as jobs.
pub(crate) fn start(pool: &PgPool) -> mpsc::Sender<Job> {
    metrics::describe_histogram!(GROUP_UNITS, "Units of work committed per group commit");
    metrics::describe_histogram!(GROUP_EVENTS, "Events committed per group commit");
    metrics::describe_histogram!(
        GROUP_DURATION,
        metrics::Unit::Seconds,
        "Time one group commit's transaction took"
    );
    let (jobs, rx) = mpsc::channel::<Job>(4096);
    let rx = Arc::new(Mutex::new(rx));
    let connections = Arc::new(KeptConnections::new(pool.clone(), COMMITTERS));
    let under_way = Arc::new(UnderWay::default());
    for _ in 0..COMMITTERS {
        tokio::spawn(run_committer(
            connections.clone(),
            rx.clone(),
            under_way.clone(),
        ));
    }
    jobs
}

/// The group commits under way, shared by the committers (see [`OVERLAP_FROM`]).
#[derive(Default)]
struct UnderWay {
    commits: AtomicUsize,
    finished: Notify,
}

impl UnderWay {
    /// Counts a commit as under way until the returned guard is dropped, however it ends.
    fn count(&self) -> CommitUnderWay<'_> {
        self.commits.fetch_add(1, Ordering::AcqRel);
        CommitUnderWay(self)
    }
}

struct CommitUnderWay<'a>(&'a UnderWay);

impl Drop for CommitUnderWay<'_> {
    fn drop(&mut self) {
        self.0.commits.fetch_sub(1, Ordering::AcqRel);
        self.0.finished.notify_waiters();
    }
}

async fn run_committer(
    connections: Arc<KeptConnections>,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    under_way: Arc<UnderWay>,
) {
    // Made once per committer (the recorder is installed before the store opens): recording a
    // group is then two atomic pushes.
    let units = metrics::histogram!(GROUP_UNITS);
    let events = metrics::histogram!(GROUP_EVENTS);
    let took = metrics::histogram!(GROUP_DURATION);
    loop {
        let batch = {
            let mut rx = jobs.lock().await;
            match rx.recv().await {
                Some(job) => gather(&mut rx, vec![job], &under_way, JOIN_WAIT).await,
                None => return,
            }
        };
        let uows: Vec<&UnitOfWork> = batch.iter().map(|j| &j.uow).collect();
        units.record(uows.len() as f64);
        events.record(uows.iter().map(|u| u.events.len()).sum::<usize>() as f64);
        let started = std::time::Instant::now();
        let committed = {
            let _counted = under_way.count();
            connections.run(|conn| commit_on(conn, &uows)).await
        };
        took.record(started.elapsed().as_secs_f64());
        match committed {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) if is_unavailable(&e) => unreachable_store(batch, &e),
            Err(e) => {
                // Something in the group failed the shared transaction (a deadlock, a value
                // Postgres refused). Commit each unit alone, so only the culprit fails, with
                // its own error.
                tracing::debug!(error = %e, units = batch.len(), "group commit failed; committing units one by one");
                for job in batch {
                    let alone = [&job.uow];
                    let result = match connections.run(|conn| commit_on(conn, &alone)).await {
                        Ok(mut results) => results.pop().unwrap_or(Err(CommitError::Conflict)),
                        Err(e) if is_retryable(&e) => Err(CommitError::Conflict),
                        Err(e) => Err(CommitError::Store(StoreError::Database(e))),
                    };
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

/// Adds what is waiting to `batch`; while another group commit is under way and fewer than
/// [`OVERLAP_FROM`] units are gathered, keeps gathering until it finishes (at most
/// `join_wait`).
async fn gather(
    rx: &mut mpsc::Receiver<Job>,
    mut batch: Vec<Job>,
    under_way: &UnderWay,
    join_wait: std::time::Duration,
) -> Vec<Job> {
    let give_up = tokio::time::sleep(join_wait);
    tokio::pin!(give_up);
    let mut waited_out = false;
    loop {
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if batch.len() >= OVERLAP_FROM || waited_out {
            return batch;
        }
        // Registered before the count is read, so a commit finishing in between still wakes us.
        let finished = under_way.finished.notified();
        tokio::pin!(finished);
        finished.as_mut().enable();
        if under_way.commits.load(Ordering::Acquire) == 0 {
            return batch;
        }
        // Whatever ends the wait, the next round takes what came meanwhile.
        tokio::select! {
            job = rx.recv() => match job {
                Some(job) => batch.push(job),
                None => return batch,
            },
            () = &mut finished => {}
            () = &mut give_up => waited_out = true,
        }
    }
}

/// [`commit_group`] on a kept connection, handed back with the results.
async fn commit_on(
    mut conn: PgConnection,
    uows: &[&UnitOfWork],
) -> Result<(PgConnection, Vec<Result<Vec<Appended>, CommitError>>), sqlx::Error> {
    let results = commit_group(&mut conn, uows).await?;
    Ok((conn, results))
}

/// Answers a batch that could not reach Postgres: unavailable, so the edge says 503.
fn unreachable_store(batch: Vec<Job>, error: &sqlx::Error) {
    tracing::warn!(%error, units = batch.len(), "event store unreachable");
    for job in batch {
        let _ = job.reply.send(Err(CommitError::Store(StoreError::Database(
            sqlx::Error::PoolTimedOut,
        ))));
    }
}

/// Deadlocks and serialization failures: the unit may simply be tried again.
fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// Writes a group of units of work in one transaction. A group of plain appends (the hot path:
/// tool calls, step completions) is one statement, [`append_group`]. A group with index writes
/// (rare: key claims, credentials, invitations) runs in an explicit transaction with a savepoint
/// per such unit; its plain appends go in one multi-row insert, and a unit that lost a sequence
/// race has its partial rows removed before commit.
async fn commit_group(
    conn: &mut PgConnection,
    uows: &[&UnitOfWork],
) -> Result<Vec<Result<Vec<Appended>, CommitError>>, sqlx::Error> {
    if !uows.iter().any(|uow| uow.has_index_writes()) {
        return append_group(conn, uows).await;
    }
    let mut tx = conn.begin().await?;
    match write_group(&mut tx, uows).await {
        Ok(results) => {
            tx.commit().await?;
            Ok(results)
        }
        Err(e) => {
            // Ended at once: a kept connection is closed after a failure, but a transaction
            // left open until then would hold every event reader back.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// The hot path: a group of plain appends (and expected or required owners) in one round trip,
/// through the `append_group` function (migrations 0008, 0009 and 0013), whose single
/// statement is its own transaction.
async fn append_group(
    conn: &mut PgConnection,
    uows: &[&UnitOfWork],
) -> Result<Vec<Result<Vec<Appended>, CommitError>>, sqlx::Error> {
    let mut events: Vec<(i32, &PendingEvent)> = uows
        .iter()
        .enumerate()
        .flat_map(|(i, uow)| uow.events.iter().map(move |e| (i as i32, e)))
        .collect();
    events.sort_by(|(_, a), (_, b)| in_lock_order(a, b));
    let mut units = Vec::with_capacity(events.len());
    let mut columns = EventColumns::with_capacity(events.len());
    for (unit, e) in &events {
        units.push(*unit);
        columns.push(e);
    }
    let expected = ExpectedOwners::of(uows);
    // The statement is its own transaction, so `now()` is the `recorded_at` (a default of
    // `now()`) of every event it inserts.
    let query = sqlx::query(
        "SELECT event_id, tx, global_position, refused_unit, moved_owner, now() AS recorded_at \
         FROM append_group(\
         $1::int[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::json[], \
         $8::json[], $9::uuid[], $10::uuid[], $11::int[], $12::text[], $13::text[], $14::uuid[])",
    )
    .bind(&units);
    let rows = expected
        .bind_to(columns.bind_to(query))
        .fetch_all(&mut *conn)
        .await?;
    let mut refused = vec![false; uows.len()];
    let mut moved = Vec::new();
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        match row.try_get::<Option<i32>, _>("refused_unit")? {
            Some(unit) => {
                if let Some(r) = usize::try_from(unit).ok().and_then(|u| refused.get_mut(u)) {
                    *r = true;
                }
                if let Some(entry) = row.try_get::<Option<i32>, _>("moved_owner")? {
                    moved.push(entry);
                }
            }
            None => {
                let event_id: Uuid = row.try_get("event_id")?;
                let cursor = Cursor::new(row.try_get("tx")?, row.try_get("global_position")?);
                let recorded_at = row.try_get("recorded_at")?;
                stored.insert(
                    event_id,
                    Appended {
                        event_id,
                        cursor,
                        recorded_at,
                    },
                );
            }
        }
    }
    let mut owners = expected.refusals(&moved, uows.len()).into_iter();
    Ok(uows
        .iter()
        .zip(refused)
        .map(|(uow, refused)| {
            let appended: Option<Vec<Appended>> = uow
                .events
                .iter()
                .map(|e| stored.get(&e.event_id).copied())
                .collect();
            let owner = owners.next().flatten();
            match (appended, owner) {
                (_, Some(refusal)) => Err(refusal),
                (Some(appended), None) if !refused => Ok(appended),
                _ => Err(CommitError::Conflict),
            }
        })
        .collect())
}

async fn write_group(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    uows: &[&UnitOfWork],
) -> Result<Vec<Result<Vec<Appended>, CommitError>>, sqlx::Error> {
    let mut results: Vec<Option<Result<Vec<Appended>, CommitError>>> =
        (0..uows.len()).map(|_| None).collect();

    // Units decided on keys they did not read, or written for their owners: one check for the
    // whole group, first.
    let expected = ExpectedOwners::of(uows);
    if !expected.units.is_empty() {
        let moved: Vec<i32> =
            sqlx::query("SELECT moved_owners($1::text[], $2::text[], $3::uuid[])")
                .bind(&expected.kinds)
                .bind(&expected.keys)
                .bind(&expected.owner_ids)
                .fetch_one(&mut **tx)
                .await?
                .try_get(0)?;
        for (result, refusal) in results
            .iter_mut()
            .zip(expected.refusals(&moved, uows.len()))
        {
            if let Some(refusal) = refusal {
                *result = Some(Err(refusal));
            }
        }
    }

    for (i, uow) in uows.iter().enumerate() {
        if results[i].is_none() && uow.has_index_writes() {
            results[i] = Some(commit_with_savepoint(tx, uow).await?);
        }
    }

    let plain: Vec<usize> = (0..uows.len()).filter(|i| results[*i].is_none()).collect();
    if !plain.is_empty() {
        let mut events: Vec<&PendingEvent> =
            plain.iter().flat_map(|i| uows[*i].events.iter()).collect();
        events.sort_by(|a, b| in_lock_order(a, b));
        let inserted = insert_events(tx, &events, true).await?;
        let mut to_delete: Vec<&PendingEvent> = Vec::new();
        for i in plain {
            let uow = uows[i];
            let got: Vec<Option<Appended>> = uow
                .events
                .iter()
                .map(|e| inserted.get(&e.event_id).copied())
                .collect();
            if got.iter().all(Option::is_some) {
                results[i] = Some(Ok(got.into_iter().flatten().collect()));
            } else {
                to_delete.extend(
                    uow.events
                        .iter()
                        .zip(&got)
                        .filter(|(_, g)| g.is_some())
                        .map(|(e, _)| e),
                );
                results[i] = Some(Err(CommitError::Conflict));
            }
        }
        if !to_delete.is_empty() {
            delete_events(tx, &to_delete).await?;
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Err(CommitError::Conflict)))
        .collect())
}

async fn commit_with_savepoint(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    uow: &UnitOfWork,
) -> Result<Result<Vec<Appended>, CommitError>, sqlx::Error> {
    sqlx::query("SAVEPOINT unit_of_work")
        .execute(&mut **tx)
        .await?;
    match write_unit(tx, uow).await {
        Ok(appended) => {
            sqlx::query("RELEASE SAVEPOINT unit_of_work")
                .execute(&mut **tx)
                .await?;
            Ok(Ok(appended))
        }
        Err(UnitFailure::Refused(e)) => {
            sqlx::query("ROLLBACK TO SAVEPOINT unit_of_work")
                .execute(&mut **tx)
                .await?;
            Ok(Err(e))
        }
        Err(UnitFailure::Db(e)) => Err(e),
    }
}

enum UnitFailure {
    Refused(CommitError),
    Db(sqlx::Error),
}

impl From<sqlx::Error> for UnitFailure {
    fn from(e: sqlx::Error) -> Self {
        UnitFailure::Db(e)
    }
}

async fn write_unit(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    uow: &UnitOfWork,
) -> Result<Vec<Appended>, UnitFailure> {
    for condition in &uow.preconditions {
        if !holds(tx, condition).await? {
            return Err(UnitFailure::Refused(CommitError::Conflict));
        }
    }
    for write in &uow.index {
        write_index(tx, write).await?;
    }
    let events: Vec<&PendingEvent> = uow.events.iter().collect();
    let inserted = insert_events(tx, &events, true).await?;
    let mut appended = Vec::with_capacity(events.len());
    for e in &events {
        match inserted.get(&e.event_id) {
            Some(a) => appended.push(*a),
            None => return Err(UnitFailure::Refused(CommitError::Conflict)),
        }
    }
    Ok(appended)
}

/// Checks a precondition under a transaction-scoped lock on what it is about.
async fn holds(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    condition: &Precondition,
) -> Result<bool, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('mcplatform:email:' || $1, 0))")
        .bind(condition.email())
        .execute(&mut **tx)
        .await?;
    Ok(match condition {
        Precondition::EmailHasNoAccount(email) => {
            !sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM unique_keys WHERE kind = $1 AND key = $2)",
            )
            .bind(KeyKind::UserEmail.as_str())
            .bind(email)
            .fetch_one(&mut **tx)
            .await?
        }
        Precondition::EmailInvitedBy(email, expected) => {
            let pending: Vec<Uuid> = sqlx::query_scalar(
                "SELECT org_id FROM pending_invitations WHERE email = $1 ORDER BY org_id",
            )
            .bind(email)
            .fetch_all(&mut **tx)
            .await?;
            &pending == expected
        }
    })
}

async fn write_index(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    write: &IndexWrite,
) -> Result<(), UnitFailure> {
    match write {
        IndexWrite::Release(claim) => {
            sqlx::query("DELETE FROM unique_keys WHERE kind = $1 AND key = $2 AND owner_id = $3")
                .bind(claim.kind.as_str())
                .bind(&claim.key)
                .bind(claim.owner_id)
                .execute(&mut **tx)
                .await?;
        }
        IndexWrite::Claim(claim) => {
            let inserted = sqlx::query(
                "INSERT INTO unique_keys (kind, key, owner_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (kind, key) DO UPDATE SET owner_id = EXCLUDED.owner_id \
                 WHERE unique_keys.owner_id = EXCLUDED.owner_id",
            )
            .bind(claim.kind.as_str())
            .bind(&claim.key)
            .bind(claim.owner_id)
            .execute(&mut **tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(UnitFailure::Refused(CommitError::KeyTaken {
                    kind: claim.kind,
                }));
            }
        }
        IndexWrite::InvitationAdded { email, org_id } => {
            sqlx::query(
                "INSERT INTO pending_invitations (email, org_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(email)
            .bind(org_id)
            .execute(&mut **tx)
            .await?;
        }
        IndexWrite::InvitationRemoved { email, org_id } => {
            sqlx::query("DELETE FROM pending_invitations WHERE email = $1 AND org_id = $2")
                .bind(email)
                .bind(org_id)
                .execute(&mut **tx)
                .await?;
        }
        IndexWrite::Credential {
            user_id,
            password_hash,
        } => {
            sqlx::query(
                "INSERT INTO user_credentials (user_id, password_hash) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, \
                 updated_at = now()",
            )
            .bind(user_id)
            .bind(password_hash)
            .execute(&mut **tx)
            .await?;
        }
        IndexWrite::TrackingSecretAdded {
            server_id,
            secret_id,
            sealed,
        } => {
            sqlx::query(
                "INSERT INTO tracking_secrets (secret_id, server_id, sealed) VALUES ($1, $2, $3)",
            )
            .bind(secret_id)
            .bind(server_id)
            .bind(sealed)
            .execute(&mut **tx)
            .await?;
        }
        IndexWrite::TrackingSecretRemoved {
            server_id,
            secret_id,
        } => {
            sqlx::query("DELETE FROM tracking_secrets WHERE secret_id = $1 AND server_id = $2")
                .bind(secret_id)
                .bind(server_id)
                .execute(&mut **tx)
                .await?;
        }
        IndexWrite::ProviderSecretSet {
            provider_id,
            org_id,
            sealed,
        } => {
            sqlx::query(
                "INSERT INTO identity_provider_secrets (provider_id, org_id, sealed) \
                 VALUES ($1, $2, $3) ON CONFLICT (provider_id) DO UPDATE \
                 SET sealed = EXCLUDED.sealed, updated_at = now() \
                 WHERE identity_provider_secrets.org_id = EXCLUDED.org_id",
            )
            .bind(provider_id)
            .bind(org_id)
            .bind(sealed)
            .execute(&mut **tx)
            .await?;
        }
        IndexWrite::ProviderSecretRemoved { provider_id } => {
            sqlx::query("DELETE FROM identity_provider_secrets WHERE provider_id = $1")
                .bind(provider_id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// One lock order for the events of every group (their primary key order), so two committers
/// never deadlock on each other.
fn in_lock_order(a: &PendingEvent, b: &PendingEvent) -> std::cmp::Ordering {
    (a.aggregate_type, &a.aggregate_id, a.sequence).cmp(&(
        b.aggregate_type,
        &b.aggregate_id,
        b.sequence,
    ))
}

/// The expected and required key owners of a group's units, each with its unit's index, as
/// the arrays the owner check binds (`moved_owners`, migration 0013).
struct ExpectedOwners<'a> {
    units: Vec<i32>,
    kinds: Vec<&'a str>,
    keys: Vec<&'a str>,
    owner_ids: Vec<Uuid>,
    /// The required owner of each entry, if it is one (else it is an expected one).
    required: Vec<Option<&'a KeyClaim>>,
}

impl<'a> ExpectedOwners<'a> {
    fn of(uows: &[&'a UnitOfWork]) -> Self {
        let mut expected = Self {
            units: Vec::new(),
            kinds: Vec::new(),
            keys: Vec::new(),
            owner_ids: Vec::new(),
            required: Vec::new(),
        };
        for (i, uow) in uows.iter().enumerate() {
            let entries = uow.expected_owners.iter().map(|c| (c, false));
            for (claim, required) in entries.chain(uow.required_owners.iter().map(|c| (c, true))) {
                expected.units.push(i as i32);
                expected.kinds.push(claim.kind.as_str());
                expected.keys.push(claim.key.as_str());
                expected.owner_ids.push(claim.owner_id);
                expected.required.push(required.then_some(claim));
            }
        }
        expected
    }

    /// Each unit's refusal, given the (1-based) entries whose owner moved: a moved required
    /// owner refuses it as `OwnerMoved` (whatever else failed: a retry cannot help), a moved
    /// expected one as a conflict.
    fn refusals(&self, moved: &[i32], units: usize) -> Vec<Option<CommitError>> {
        let mut refusals: Vec<Option<CommitError>> = (0..units).map(|_| None).collect();
        for entry in moved.iter().filter_map(|m| usize::try_from(*m - 1).ok()) {
            let (Some(unit), Some(required)) = (self.units.get(entry), self.required.get(entry))
            else {
                continue;
            };
            let Some(refusal) = usize::try_from(*unit)
                .ok()
                .and_then(|u| refusals.get_mut(u))
            else {
                continue;
            };
            match required {
                Some(claim) if !matches!(refusal, Some(CommitError::OwnerMoved { .. })) => {
                    *refusal = Some(CommitError::OwnerMoved {
                        kind: claim.kind,
                        key: claim.key.clone(),
                    });
                }
                None if refusal.is_none() => *refusal = Some(CommitError::Conflict),
                _ => {}
            }
        }
        refusals
    }

    /// Binds units, kinds, keys and owner ids as the next four parameters.
    fn bind_to<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.units)
            .bind(&self.kinds)
            .bind(&self.keys)
            .bind(&self.owner_ids)
    }
}

/// Events as the column arrays a multi-row insert binds.
struct EventColumns<'a> {
    event_ids: Vec<Uuid>,
    aggregate_types: Vec<&'a str>,
    aggregate_ids: Vec<&'a str>,
    sequences: Vec<i64>,
    event_types: Vec<&'a str>,
    versions: Vec<&'a str>,
    /// Sent as text and cast to `json` in SQL (`json[]` is not a type sqlx binds).
    payloads: Vec<&'a str>,
    metadatas: Vec<&'a str>,
    org_ids: Vec<Option<Uuid>>,
}

impl<'a> EventColumns<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            event_ids: Vec::with_capacity(n),
            aggregate_types: Vec::with_capacity(n),
            aggregate_ids: Vec::with_capacity(n),
            sequences: Vec::with_capacity(n),
            event_types: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            metadatas: Vec::with_capacity(n),
            org_ids: Vec::with_capacity(n),
        }
    }

    /// Binds the columns, in this order, as the next nine parameters: aggregate types and ids,
    /// sequences, event types, versions, payloads, metadata, org ids and event ids.
    fn bind_to<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.aggregate_types)
            .bind(&self.aggregate_ids)
            .bind(&self.sequences)
            .bind(&self.event_types)
            .bind(&self.versions)
            .bind(&self.payloads)
            .bind(&self.metadatas)
            .bind(&self.org_ids)
            .bind(&self.event_ids)
    }

    fn push(&mut self, e: &'a PendingEvent) {
        self.event_ids.push(e.event_id);
        self.aggregate_types.push(e.aggregate_type);
        self.aggregate_ids.push(e.aggregate_id.as_str());
        self.sequences.push(e.sequence);
        self.event_types.push(e.event_type);
        self.versions.push(e.event_version);
        self.payloads.push(e.payload.get());
        self.metadatas.push(e.metadata.get());
        self.org_ids.push(e.org_id);
    }
}

/// One multi-row insert. With `skip_conflicts`, rows whose (aggregate, sequence) exists are
/// skipped and simply missing from the result.
async fn insert_events(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    events: &[&PendingEvent],
    skip_conflicts: bool,
) -> Result<HashMap<Uuid, Appended>, sqlx::Error> {
    if events.is_empty() {
        return Ok(HashMap::new());
    }
    let mut columns = EventColumns::with_capacity(events.len());
    for e in events {
        columns.push(e);
    }
    let sql = format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata, org_id, event_id) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
         $6::json[], $7::json[], $8::uuid[], $9::uuid[]) {} \
         RETURNING event_id, transaction_id::text::bigint AS tx, global_position, recorded_at",
        if skip_conflicts {
            "ON CONFLICT (aggregate_type, aggregate_id, sequence) DO NOTHING"
        } else {
            ""
        }
    );
    let rows = columns
        .bind_to(sqlx::query(&sql))
        .fetch_all(&mut **tx)
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let event_id: Uuid = row.try_get("event_id")?;
        out.insert(
            event_id,
            Appended {
                event_id,
                cursor: Cursor::new(row.try_get("tx")?, row.try_get("global_position")?),
                recorded_at: row.try_get("recorded_at")?,
            },
        );
    }
    Ok(out)
}

/// Removes rows this group inserted for a unit that lost a race, by their primary key (the
/// rows are this transaction's own: the key was free when they went in).
async fn delete_events(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    events: &[&PendingEvent],
) -> Result<(), sqlx::Error> {
    let types: Vec<&str> = events.iter().map(|e| e.aggregate_type).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    sqlx::query(
        "DELETE FROM events e USING UNNEST($1::text[], $2::text[], $3::bigint[]) AS k(t, i, s) \
         WHERE e.aggregate_type = k.t AND e.aggregate_id = k.i AND e.sequence = k.s",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn job() -> Job {
        Job {
            uow: UnitOfWork::new(),
            reply: oneshot::channel().0,
        }
    }

    /// Gathers from one new unit with no wait of its own to run out; a gathering that waits
    /// when it should not (or misses its wake-up) fails after a generous timeout instead.
    async fn gather_without_giving_up(
        rx: &mut mpsc::Receiver<Job>,
        under_way: &UnderWay,
        expected: &str,
    ) -> Vec<Job> {
        let forever = std::time::Duration::from_secs(3600);
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            gather(rx, vec![job()], under_way, forever),
        )
        .await
        .expect(expected)
    }

    #[test]
    fn a_moved_required_owner_refuses_its_unit_as_such_and_an_expected_one_as_a_conflict() {
        let (owner, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut both = UnitOfWork::new();
        both.expect_owner(KeyKind::WalkthroughSelected, "w", owner)
            .require_owner(KeyKind::ServerSlug, "s", owner);
        let mut expecting = UnitOfWork::new();
        expecting.expect_owner(KeyKind::WalkthroughSelected, "w", other);
        let mut requiring = UnitOfWork::new();
        requiring.require_owner(KeyKind::ServerSlug, "s", other);
        let plain = UnitOfWork::new();
        let uows = [&both, &expecting, &requiring, &plain];
        let entries = ExpectedOwners::of(&uows);
        assert_eq!(entries.units, [0, 0, 1, 2]);

        // Entries are numbered from 1, expected owners before required ones.
        let refusals = entries.refusals(&[1, 2, 3], uows.len());
        assert!(matches!(
            &refusals[0],
            Some(CommitError::OwnerMoved { kind: KeyKind::ServerSlug, key }) if key == "s"
        ));
        assert!(matches!(refusals[1], Some(CommitError::Conflict)));
        assert!(refusals[2].is_none() && refusals[3].is_none());
        let refusals = entries.refusals(&[4], uows.len());
        assert!(matches!(refusals[2], Some(CommitError::OwnerMoved { .. })));
        assert!(refusals[0].is_none());
    }

    #[tokio::test]
    async fn with_no_commit_under_way_a_group_goes_at_once_with_what_is_waiting() {
        let (tx, mut rx) = mpsc::channel(64);
        for _ in 0..3 {
            tx.try_send(job()).unwrap();
        }
        let batch = gather(&mut rx, vec![job()], &UnderWay::default(), JOIN_WAIT).await;
        assert_eq!(batch.len(), 4);
    }

    #[tokio::test]
    async fn a_small_group_waits_for_the_commit_under_way_and_takes_what_came_meanwhile() {
        let (tx, mut rx) = mpsc::channel(64);
        let under_way = Arc::new(UnderWay::default());
        let finishing = {
            let under_way = under_way.clone();
            tokio::spawn(async move {
                let commit = under_way.count();
                tokio::task::yield_now().await;
                tx.send(job()).await.unwrap();
                tx.send(job()).await.unwrap();
                drop(commit);
            })
        };
        tokio::task::yield_now().await;
        // Only the commit's end can end this wait.
        let batch = gather_without_giving_up(&mut rx, &under_way, "woken when it finished").await;
        finishing.await.unwrap();
        assert_eq!(batch.len(), 3);
    }

    #[tokio::test]
    async fn a_full_enough_group_or_a_long_wait_starts_beside_the_commit_under_way() {
        let (tx, mut rx) = mpsc::channel(64);
        let under_way = UnderWay::default();
        let _commit = under_way.count();
        for _ in 1..OVERLAP_FROM {
            tx.try_send(job()).unwrap();
        }
        let batch = gather_without_giving_up(&mut rx, &under_way, "a full group goes").await;
        assert_eq!(batch.len(), OVERLAP_FROM);

        // The commit under way never finishes: the lone unit goes when its wait runs out.
        let started = std::time::Instant::now();
        let batch = gather(&mut rx, vec![job()], &under_way, JOIN_WAIT).await;
        assert_eq!(batch.len(), 1);
        assert!(started.elapsed() >= JOIN_WAIT);
    }
}
