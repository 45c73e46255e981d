//! People: the end users of an org as persons after identity stitching, with every identity
//! they were known by. Written by the `usage` projection (its end-user events are folded here,
//! in order), read by the users routes and the dashboard.
//!
//! Merges re-point nothing but the end users' rows: each end user keeps its own counters and
//! identities and names its person (`rm_end_users.person_id`, itself unless merged, and
//! `merged_into`, the survivor of its merge). A person's row (`rm_people`) is the sum of its end
//! users', recomputed from them whenever an end-user event touches it and incremented by
//! activity. Sessions, tool calls and tickets keep the end user their event named, and a filter
//! by person reads the person's end users (`rm_end_users_person` index): an unmerge moves only
//! `person_id` back, and a rebuild, applying the same events in the same order, ends identical.

use crate::projection::Tables;
use chrono::{DateTime, Duration, DurationRound, Utc};
use domain::end_user::EndUserEvent;
use domain::values::OrgId;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The physical names of the tables end-user events write, for one run.
pub(crate) struct Names {
    pub end_users: String,
    pub people: String,
    pub identities: String,
    pub sign_ins: String,
}

impl Names {
    pub(crate) fn of(t: Tables) -> Self {
        Self {
            end_users: t.name("rm_end_users"),
            people: t.name("rm_people"),
            identities: t.name("rm_end_user_identities"),
            sign_ins: t.name("rm_sign_ins_hourly"),
        }
    }
}

/// An identity row to upsert.
struct Said<'a> {
    kind: &'a str,
    value: &'a str,
    provider_id: Option<Uuid>,
    server_id: Option<Uuid>,
    verified: bool,
    source: &'a str,
}

impl Said<'_> {
    fn key(&self) -> String {
        match (self.kind, self.provider_id) {
            ("provider_subject", Some(p)) => format!("provider_subject:{p}/{}", self.value),
            ("email", _) => format!("email:{}:{}", self.source, self.value),
            (kind, _) => format!("{kind}:{}", self.value),
        }
    }
}

async fn say(
    conn: &mut PgConnection,
    n: &Names,
    org_id: Uuid,
    end_user_id: Uuid,
    at: DateTime<Utc>,
    said: Said<'_>,
) -> Result<(), sqlx::Error> {
    let table = &n.identities;
    sqlx::query(&format!(
        "INSERT INTO {table} AS i (org_id, end_user_id, identity_key, kind, value, provider_id, \
         server_id, verified, source, first_at, last_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
         ON CONFLICT (org_id, end_user_id, identity_key) DO UPDATE SET \
         verified = i.verified OR EXCLUDED.verified, last_at = GREATEST(i.last_at, EXCLUDED.last_at)"
    ))
    .bind(org_id)
    .bind(end_user_id)
    .bind(said.key())
    .bind(said.kind)
    .bind(said.value)
    .bind(said.provider_id)
    .bind(said.server_id)
    .bind(said.verified)
    .bind(said.source)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The end user's row, created on first sight (by tracking id or by sign-in).
async fn seen(
    conn: &mut PgConnection,
    n: &Names,
    org_id: Uuid,
    end_user_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let table = &n.end_users;
    sqlx::query(&format!(
        "INSERT INTO {table} (org_id, end_user_id, first_seen, last_seen, person_id) \
         VALUES ($1, $2, $3, $3, $2) ON CONFLICT (org_id, end_user_id) DO NOTHING"
    ))
    .bind(org_id)
    .bind(end_user_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Recomputes a person's row from their end users' (or removes it when nobody is that person).
async fn recount(
    conn: &mut PgConnection,
    n: &Names,
    org_id: Uuid,
    person_id: Uuid,
) -> Result<(), sqlx::Error> {
    let (end_users, people) = (&n.end_users, &n.people);
    sqlx::query(&format!(
        "DELETE FROM {people} WHERE org_id = $1 AND person_id = $2"
    ))
    .bind(org_id)
    .bind(person_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {people} (org_id, person_id, first_seen, last_seen, sessions, tool_calls, \
         identified) SELECT org_id, person_id, min(first_seen), max(last_seen), \
         sum(sessions)::bigint, sum(tool_calls)::bigint, bool_or(signed_in) FROM {end_users} \
         WHERE org_id = $1 AND person_id = $2 GROUP BY org_id, person_id"
    ))
    .bind(org_id)
    .bind(person_id)
    .execute(conn)
    .await?;
    Ok(())
}

async fn person_of(
    conn: &mut PgConnection,
    n: &Names,
    org_id: Uuid,
    end_user_id: Uuid,
) -> Result<Uuid, sqlx::Error> {
    let table = &n.end_users;
    let person: Option<Uuid> = sqlx::query_scalar(&format!(
        "SELECT person_id FROM {table} WHERE org_id = $1 AND end_user_id = $2"
    ))
    .bind(org_id)
    .bind(end_user_id)
    .fetch_optional(conn)
    .await?;
    Ok(person.unwrap_or(end_user_id))
}

/// Folds one end-user event (rare: applied one by one, in order).
pub(crate) async fn apply(
    conn: &mut PgConnection,
    n: &Names,
    org_id: Uuid,
    end_user_id: Uuid,
    at: DateTime<Utc>,
    event: &EndUserEvent,
) -> Result<(), sqlx::Error> {
    let end_users = &n.end_users;
    match event {
        EndUserEvent::EndUserIdentified {
            tracking_id,
            server_id,
            ..
        } => {
            seen(conn, n, org_id, end_user_id, at).await?;
            sqlx::query(&format!(
                "UPDATE {end_users} SET tracking_ids = array_append(tracking_ids, $3) \
                 WHERE org_id = $1 AND end_user_id = $2 AND NOT ($3 = ANY(tracking_ids))"
            ))
            .bind(org_id)
            .bind(end_user_id)
            .bind(tracking_id.as_str())
            .execute(&mut *conn)
            .await?;
            let said = Said {
                kind: "tracking_id",
                value: tracking_id.as_str(),
                provider_id: None,
                server_id: Some(*server_id),
                verified: false,
                source: "tracking_id",
            };
            say(conn, n, org_id, end_user_id, at, said).await?;
        }
        EndUserEvent::EndUserEmailRecorded {
            email,
            verified,
            source,
        } => {
            sqlx::query(&format!(
                "UPDATE {end_users} SET emails = array_append(emails, $3) \
                 WHERE org_id = $1 AND end_user_id = $2 AND NOT ($3 = ANY(emails))"
            ))
            .bind(org_id)
            .bind(end_user_id)
            .bind(email.as_str())
            .execute(&mut *conn)
            .await?;
            let source = match source {
                domain::end_user::EmailSource::GetSupport => "get_support",
                domain::end_user::EmailSource::SignIn => "sign_in",
            };
            let said = Said {
                kind: "email",
                value: email.as_str(),
                provider_id: None,
                server_id: None,
                verified: *verified,
                source,
            };
            say(conn, n, org_id, end_user_id, at, said).await?;
        }
        EndUserEvent::EndUserSignedIn {
            server_id,
            provider_id,
            subject,
            email,
            email_verified,
            name,
            ..
        } => {
            seen(conn, n, org_id, end_user_id, at).await?;
            sqlx::query(&format!(
                "UPDATE {end_users} SET signed_in = true, last_sign_in_at = $3, \
                 last_seen = GREATEST(last_seen, date_trunc('second', $3)), \
                 name = COALESCE($4, name), \
                 emails = CASE WHEN $5::text IS NULL OR $5 = ANY(emails) THEN emails \
                 ELSE array_append(emails, $5) END \
                 WHERE org_id = $1 AND end_user_id = $2"
            ))
            .bind(org_id)
            .bind(end_user_id)
            .bind(at)
            .bind(name)
            .bind(email.as_ref().map(|e| e.as_str()))
            .execute(&mut *conn)
            .await?;
            let said = Said {
                kind: "provider_subject",
                value: subject,
                provider_id: Some(*provider_id),
                server_id: Some(*server_id),
                verified: true,
                source: "sign_in",
            };
            say(conn, n, org_id, end_user_id, at, said).await?;
            if let Some(email) = email {
                let said = Said {
                    kind: "email",
                    value: email.as_str(),
                    provider_id: Some(*provider_id),
                    server_id: Some(*server_id),
                    verified: *email_verified,
                    source: "sign_in",
                };
                say(conn, n, org_id, end_user_id, at, said).await?;
            }
            let hour = at.duration_trunc(Duration::hours(1)).unwrap_or(at);
            let sign_ins = &n.sign_ins;
            sqlx::query(&format!(
                "INSERT INTO {sign_ins} AS s (org_id, hour, sign_ins) VALUES ($1, $2, 1) \
                 ON CONFLICT (org_id, hour) DO UPDATE SET sign_ins = s.sign_ins + 1"
            ))
            .bind(org_id)
            .bind(hour)
            .execute(&mut *conn)
            .await?;
        }
        EndUserEvent::EndUsersMerged {
            survivor, merged, ..
        } => {
            // The merged end user's whole person (it and whoever was merged into it before).
            sqlx::query(&format!(
                "UPDATE {end_users} SET merged_into = $3 WHERE org_id = $1 AND end_user_id = $2"
            ))
            .bind(org_id)
            .bind(merged)
            .bind(survivor)
            .execute(&mut *conn)
            .await?;
            let to = person_of(conn, n, org_id, *survivor).await?;
            sqlx::query(&format!(
                "UPDATE {end_users} SET person_id = $3 WHERE org_id = $1 AND person_id = $2"
            ))
            .bind(org_id)
            .bind(merged)
            .bind(to)
            .execute(&mut *conn)
            .await?;
            recount(conn, n, org_id, *merged).await?;
            recount(conn, n, org_id, to).await?;
            return Ok(());
        }
        EndUserEvent::EndUserUnmerged {
            survivor, merged, ..
        } => {
            let from = person_of(conn, n, org_id, *survivor).await?;
            sqlx::query(&format!(
                "UPDATE {end_users} SET merged_into = NULL WHERE org_id = $1 AND end_user_id = $2"
            ))
            .bind(org_id)
            .bind(merged)
            .execute(&mut *conn)
            .await?;
            // The merged end user and everyone merged into it, directly or not.
            sqlx::query(&format!(
                "WITH RECURSIVE tree(end_user_id) AS ( \
                     SELECT $2::uuid \
                     UNION SELECT e.end_user_id FROM {end_users} e JOIN tree \
                     ON e.org_id = $1 AND e.merged_into = tree.end_user_id) \
                 UPDATE {end_users} SET person_id = $2 \
                 WHERE org_id = $1 AND end_user_id IN (SELECT end_user_id FROM tree)"
            ))
            .bind(org_id)
            .bind(merged)
            .execute(&mut *conn)
            .await?;
            recount(conn, n, org_id, from).await?;
            recount(conn, n, org_id, *merged).await?;
            return Ok(());
        }
        EndUserEvent::EndUserMergedAway { .. } | EndUserEvent::EndUserRestored { .. } => {
            return Ok(());
        }
    }
    let person = person_of(conn, n, org_id, end_user_id).await?;
    recount(conn, n, org_id, person).await
}

// ---- Queries (every one takes the org) ----

/// Whether a person has signed in (`identified`) or is known only by tracking ids and typed
/// emails (`anonymous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PersonStatus {
    Anonymous,
    Identified,
}

/// One identity of a person.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Identity {
    /// `tracking_id`, `provider_subject` or `email`.
    pub kind: String,
    pub value: String,
    /// The identity provider, for a provider subject and an email it returned.
    pub provider_id: Option<Uuid>,
    /// The server where it was first seen, when known.
    pub server_id: Option<Uuid>,
    /// Provider subjects, and emails the provider said are verified.
    pub verified: bool,
    /// Who said it: `tracking_id` (the server URL), `sign_in` (the identity provider) or
    /// `get_support` (typed by the end user).
    pub source: String,
    /// The end user (of the person's) it was said of.
    pub end_user_id: Uuid,
    /// When it was first said.
    #[serde(with = "domain::time::rfc3339")]
    pub first_seen_at: DateTime<Utc>,
    /// When it was last said.
    #[serde(with = "domain::time::rfc3339")]
    pub last_seen_at: DateTime<Utc>,
}

/// An end user merged into a person.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct MergedEndUser {
    pub id: Uuid,
    /// The end user it was merged into (`POST .../users/{that}/unmerge` undoes it).
    pub merged_into: Uuid,
}

/// A person: one end user, or several merged into one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Person {
    /// The survivor's end user id.
    pub id: Uuid,
    pub status: PersonStatus,
    /// The name the identity provider gave at the latest sign-in.
    pub name: Option<String>,
    #[serde(with = "domain::time::rfc3339")]
    pub first_seen_at: DateTime<Utc>,
    /// To the second (it moves with every call).
    #[serde(with = "domain::time::rfc3339")]
    pub last_seen_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339_option")]
    pub last_sign_in_at: Option<DateTime<Utc>>,
    /// Every tracking id of the person's end users.
    pub tracking_ids: Vec<String>,
    /// Every email, verified or not.
    pub emails: Vec<String>,
    /// Every identity, with who said it and when, oldest first.
    pub identities: Vec<Identity>,
    /// End users merged into this person.
    pub merged: Vec<MergedEndUser>,
    pub sessions: i64,
    pub tool_calls: i64,
}

#[derive(sqlx::FromRow)]
struct PersonRow {
    person_id: Uuid,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    sessions: i64,
    tool_calls: i64,
    identified: bool,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    person_id: Uuid,
    end_user_id: Uuid,
    merged_into: Option<Uuid>,
    name: Option<String>,
    last_sign_in_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct IdentityRow {
    person_id: Uuid,
    #[sqlx(flatten)]
    identity: Identity,
}

/// The people of these rows, with their end users and identities (two reads for a page).
async fn people_of(
    pool: &PgPool,
    org: OrgId,
    rows: Vec<PersonRow>,
) -> Result<Vec<Person>, sqlx::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.person_id).collect();
    let members: Vec<MemberRow> = sqlx::query_as(
        "SELECT person_id, end_user_id, merged_into, name, last_sign_in_at FROM rm_end_users \
         WHERE org_id = $1 AND person_id = ANY($2) ORDER BY first_seen, end_user_id",
    )
    .bind(org.0)
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let identities: Vec<IdentityRow> = sqlx::query_as(
        "SELECT e.person_id, i.kind, i.value, i.provider_id, i.server_id, i.verified, i.source, \
         i.end_user_id, i.first_at AS first_seen_at, i.last_at AS last_seen_at \
         FROM rm_end_users e JOIN rm_end_user_identities i \
         ON i.org_id = e.org_id AND i.end_user_id = e.end_user_id \
         WHERE e.org_id = $1 AND e.person_id = ANY($2) ORDER BY i.first_at, i.identity_key",
    )
    .bind(org.0)
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut by_person: BTreeMap<Uuid, (Vec<MemberRow>, Vec<Identity>)> = BTreeMap::new();
    for m in members {
        by_person.entry(m.person_id).or_default().0.push(m);
    }
    for i in identities {
        by_person.entry(i.person_id).or_default().1.push(i.identity);
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let (members, identities) = by_person.remove(&r.person_id).unwrap_or_default();
            let latest = members
                .iter()
                .filter(|m| m.last_sign_in_at.is_some())
                .max_by_key(|m| m.last_sign_in_at);
            let mut tracking_ids = Vec::new();
            let mut emails = Vec::new();
            for i in &identities {
                let list = match i.kind.as_str() {
                    "tracking_id" => &mut tracking_ids,
                    "email" => &mut emails,
                    _ => continue,
                };
                if !list.contains(&i.value) {
                    list.push(i.value.clone());
                }
            }
            Person {
                id: r.person_id,
                status: if r.identified {
                    PersonStatus::Identified
                } else {
                    PersonStatus::Anonymous
                },
                name: latest.and_then(|m| m.name.clone()),
                first_seen_at: r.first_seen,
                last_seen_at: r.last_seen,
                last_sign_in_at: latest.and_then(|m| m.last_sign_in_at),
                tracking_ids,
                emails,
                merged: members
                    .iter()
                    .filter_map(|m| {
                        m.merged_into.map(|into| MergedEndUser {
                            id: m.end_user_id,
                            merged_into: into,
                        })
                    })
                    .collect(),
                identities,
                sessions: r.sessions,
                tool_calls: r.tool_calls,
            }
        })
        .collect())
}

/// An org's people, most recently seen first; `identified` filters; `before` is the last row
/// of the previous page.
pub async fn list(
    pool: &PgPool,
    org: OrgId,
    identified: Option<bool>,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Person>, sqlx::Error> {
    let (at, id) = before.unzip();
    let rows: Vec<PersonRow> = sqlx::query_as(
        "SELECT person_id, first_seen, last_seen, sessions, tool_calls, identified FROM rm_people \
         WHERE org_id = $1 AND ($2::boolean IS NULL OR identified = $2) \
         AND ($3::timestamptz IS NULL OR (last_seen, person_id) < ($3, $4)) \
         ORDER BY last_seen DESC, person_id DESC LIMIT $5",
    )
    .bind(org.0)
    .bind(identified)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    people_of(pool, org, rows).await
}

/// The person an end user of the org belongs to (the survivor, for a merged-away end user).
pub async fn person_of_end_user(
    pool: &PgPool,
    org: OrgId,
    end_user_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT person_id FROM rm_end_users WHERE org_id = $1 AND end_user_id = $2")
        .bind(org.0)
        .bind(end_user_id)
        .fetch_optional(pool)
        .await
}

/// The person an end user of the org belongs to, whole.
pub async fn get(
    pool: &PgPool,
    org: OrgId,
    end_user_id: Uuid,
) -> Result<Option<Person>, sqlx::Error> {
    let Some(person_id) = person_of_end_user(pool, org, end_user_id).await? else {
        return Ok(None);
    };
    let rows: Vec<PersonRow> = sqlx::query_as(
        "SELECT person_id, first_seen, last_seen, sessions, tool_calls, identified FROM rm_people \
         WHERE org_id = $1 AND person_id = $2",
    )
    .bind(org.0)
    .bind(person_id)
    .fetch_all(pool)
    .await?;
    Ok(people_of(pool, org, rows).await?.pop())
}

/// The dashboard's people counts.
#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
pub struct Counts {
    pub people: i64,
    pub identified: i64,
}

pub async fn counts(pool: &PgPool, org: OrgId) -> Result<Counts, sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) AS people, count(*) FILTER (WHERE identified) AS identified \
         FROM rm_people WHERE org_id = $1",
    )
    .bind(org.0)
    .fetch_one(pool)
    .await
}

/// Sign-ins of the org since `since` (hour-granular, like tool calls).
pub async fn sign_ins_since(
    pool: &PgPool,
    org: OrgId,
    since: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let since = since.duration_trunc(Duration::hours(1)).unwrap_or(since);
    sqlx::query_scalar(
        "SELECT COALESCE(sum(sign_ins), 0)::bigint FROM rm_sign_ins_hourly \
         WHERE org_id = $1 AND hour >= $2",
    )
    .bind(org.0)
    .bind(since)
    .fetch_one(pool)
    .await
}

/// The SQL condition "the row's `end_user_id` is the person `$n` or one of their end users",
/// for filters by end user (which mean the person it belongs to). The person themselves is
/// named apart, for rows whose end user the usage projection has not seen yet.
pub fn of_person(param: usize) -> String {
    format!(
        "(end_user_id = ${param} OR end_user_id IN (SELECT p.end_user_id FROM rm_end_users p \
         WHERE p.org_id = $1 AND p.person_id = ${param}))"
    )
}
