//! Walkthroughs as authored (the draft), their published versions, and which servers offer
//! them. Authoring events are rare, so they are applied one by one.

use crate::projection::{Projection, ProjectionError, Reads, Tables};
use chrono::{DateTime, Utc};
use domain::values::OrgId;
use domain::walkthrough::{edit_draft, Step, Walkthrough, WalkthroughEvent, WalkthroughStatus};
use domain::Aggregate;
use eventstore::StoredEvent;
use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub struct WalkthroughsProjection;

impl Projection for WalkthroughsProjection {
    fn name(&self) -> &'static str {
        "walkthroughs"
    }

    fn reads(&self) -> Reads {
        Reads::Only(&[Walkthrough::TYPE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_walkthroughs",
            "rm_walkthrough_versions",
            "rm_server_walkthroughs",
        ]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        t: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let walkthroughs = t.name("rm_walkthroughs");
            let versions = t.name("rm_walkthrough_versions");
            let assigned = t.name("rm_server_walkthroughs");
            for event in events {
                let Some(org_id) = event.org_id else { continue };
                let id: Uuid = event.aggregate_id.parse().unwrap_or_default();
                let at = event.recorded_at;
                let event_data = event.decode::<WalkthroughEvent>()?;
                use WalkthroughEvent as E;
                match event_data {
                    E::WalkthroughCreated {
                        title, description, ..
                    } => {
                        sqlx::query(&format!(
                            "INSERT INTO {walkthroughs} (org_id, walkthrough_id, title, description, \
                             status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                             ON CONFLICT DO NOTHING"
                        ))
                        .bind(org_id)
                        .bind(id)
                        .bind(&title)
                        .bind(&description)
                        .bind(WalkthroughStatus::Draft.as_str())
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                    }
                    E::WalkthroughDetailsChanged { title, description } => {
                        sqlx::query(&format!(
                            "UPDATE {walkthroughs} SET title = $3, description = $4, updated_at = $5 \
                             WHERE org_id = $1 AND walkthrough_id = $2"
                        ))
                        .bind(org_id)
                        .bind(id)
                        .bind(&title)
                        .bind(&description)
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                    }
                    E::StepAdded { .. }
                    | E::StepEdited { .. }
                    | E::StepRemoved { .. }
                    | E::StepMoved { .. } => {
                        let current: Option<Json<Vec<Step>>> = sqlx::query_scalar(&format!(
                            "SELECT steps FROM {walkthroughs} WHERE org_id = $1 AND walkthrough_id = $2"
                        ))
                        .bind(org_id)
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                        let Some(Json(mut steps)) = current else {
                            continue;
                        };
                        edit_draft(&mut steps, &event_data);
                        sqlx::query(&format!(
                            "UPDATE {walkthroughs} SET steps = $3, updated_at = $4 \
                             WHERE org_id = $1 AND walkthrough_id = $2"
                        ))
                        .bind(org_id)
                        .bind(id)
                        .bind(Json(&steps))
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                    }
                    E::WalkthroughPublished {
                        version,
                        title,
                        description,
                        steps,
                    } => {
                        let by = event.typed_metadata().actor.id();
                        sqlx::query(&format!(
                            "INSERT INTO {versions} (org_id, walkthrough_id, version, title, description, \
                             steps, published_at, published_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                             ON CONFLICT DO NOTHING"
                        ))
                        .bind(org_id)
                        .bind(id)
                        .bind(i64::from(version) as i32)
                        .bind(&title)
                        .bind(&description)
                        .bind(Json(&steps))
                        .bind(at)
                        .bind(by)
                        .execute(&mut *conn)
                        .await?;
                        set_status(
                            conn,
                            &walkthroughs,
                            org_id,
                            id,
                            WalkthroughStatus::Published,
                            Some(version),
                            at,
                        )
                        .await?;
                    }
                    E::WalkthroughRepublished { version } => {
                        set_status(
                            conn,
                            &walkthroughs,
                            org_id,
                            id,
                            WalkthroughStatus::Published,
                            Some(version),
                            at,
                        )
                        .await?;
                    }
                    E::WalkthroughUnpublished { .. } => {
                        set_status(
                            conn,
                            &walkthroughs,
                            org_id,
                            id,
                            WalkthroughStatus::Unpublished,
                            None,
                            at,
                        )
                        .await?;
                    }
                    E::WalkthroughArchived => {
                        set_status(
                            conn,
                            &walkthroughs,
                            org_id,
                            id,
                            WalkthroughStatus::Archived,
                            None,
                            at,
                        )
                        .await?;
                    }
                    E::WalkthroughAssigned {
                        server_id,
                        display_order,
                        enabled,
                    }
                    | E::WalkthroughAssignmentChanged {
                        server_id,
                        display_order,
                        enabled,
                    } => {
                        sqlx::query(&format!(
                            "INSERT INTO {assigned} (org_id, server_id, walkthrough_id, display_order, \
                             enabled, assigned_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                             ON CONFLICT (org_id, server_id, walkthrough_id) DO UPDATE SET \
                             display_order = EXCLUDED.display_order, enabled = EXCLUDED.enabled, \
                             updated_at = EXCLUDED.updated_at"
                        ))
                        .bind(org_id)
                        .bind(server_id)
                        .bind(id)
                        .bind(display_order)
                        .bind(enabled)
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                    }
                    E::WalkthroughUnassigned { server_id } => {
                        sqlx::query(&format!(
                            "DELETE FROM {assigned} WHERE org_id = $1 AND server_id = $2 AND walkthrough_id = $3"
                        ))
                        .bind(org_id)
                        .bind(server_id)
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
            }
            Ok(())
        })
    }
}

async fn set_status(
    conn: &mut PgConnection,
    table: &str,
    org_id: Uuid,
    id: Uuid,
    status: WalkthroughStatus,
    version: Option<u32>,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {table} SET status = $3, published_version = COALESCE($4, published_version), \
         updated_at = $5 WHERE org_id = $1 AND walkthrough_id = $2"
    ))
    .bind(org_id)
    .bind(id)
    .bind(status.as_str())
    .bind(version.map(|v| i64::from(v) as i32))
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WalkthroughRow {
    #[sqlx(rename = "walkthrough_id")]
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub status: String,
    #[serde(skip)]
    pub steps: Json<Vec<Step>>,
    pub published_version: Option<i32>,
    #[serde(with = "domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "walkthrough_id, title, description, status, steps, published_version, created_at, updated_at";

/// The org's walkthroughs, newest first, before the `(created_at, id)` cursor.
pub async fn list(
    pool: &PgPool,
    org: OrgId,
    status: Option<&str>,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<WalkthroughRow>, sqlx::Error> {
    let (before_at, before_id) = before.unzip();
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rm_walkthroughs WHERE org_id = $1 \
         AND ($2::text IS NULL AND status <> 'archived' OR status = $2) \
         AND ($3::timestamptz IS NULL OR (created_at, walkthrough_id) < ($3, $4)) \
         ORDER BY created_at DESC, walkthrough_id DESC LIMIT $5"
    ))
    .bind(org.0)
    .bind(status)
    .bind(before_at)
    .bind(before_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn get(
    pool: &PgPool,
    org: OrgId,
    id: Uuid,
) -> Result<Option<WalkthroughRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rm_walkthroughs WHERE org_id = $1 AND walkthrough_id = $2"
    ))
    .bind(org.0)
    .bind(id)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct VersionRow {
    pub version: i32,
    pub title: String,
    pub description: Option<String>,
    pub steps: Json<Vec<Step>>,
    #[serde(with = "domain::time::rfc3339")]
    pub published_at: DateTime<Utc>,
    pub published_by: Option<Uuid>,
}

/// Every published version, newest first.
pub async fn versions(pool: &PgPool, org: OrgId, id: Uuid) -> Result<Vec<VersionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT version, title, description, steps, published_at, published_by \
         FROM rm_walkthrough_versions WHERE org_id = $1 AND walkthrough_id = $2 ORDER BY version DESC",
    )
    .bind(org.0)
    .bind(id)
    .fetch_all(pool)
    .await
}

pub async fn version(
    pool: &PgPool,
    org: OrgId,
    id: Uuid,
    version: i32,
) -> Result<Option<VersionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT version, title, description, steps, published_at, published_by \
         FROM rm_walkthrough_versions WHERE org_id = $1 AND walkthrough_id = $2 AND version = $3",
    )
    .bind(org.0)
    .bind(id)
    .bind(version)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AssignmentRow {
    pub server_id: Uuid,
    pub walkthrough_id: Uuid,
    pub display_order: i32,
    pub enabled: bool,
    #[serde(with = "domain::time::rfc3339")]
    pub assigned_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// The servers a walkthrough is assigned to.
pub async fn assignments_of_walkthrough(
    pool: &PgPool,
    org: OrgId,
    id: Uuid,
) -> Result<Vec<AssignmentRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT server_id, walkthrough_id, display_order, enabled, assigned_at, updated_at \
         FROM rm_server_walkthroughs WHERE org_id = $1 AND walkthrough_id = $2 \
         ORDER BY assigned_at, server_id",
    )
    .bind(org.0)
    .bind(id)
    .fetch_all(pool)
    .await
}

/// A server's walkthroughs as its admins see them: every assignment, with the walkthrough.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ServerWalkthroughRow {
    pub walkthrough_id: Uuid,
    pub title: String,
    pub status: String,
    pub published_version: Option<i32>,
    pub display_order: i32,
    pub enabled: bool,
    #[serde(with = "domain::time::rfc3339")]
    pub assigned_at: DateTime<Utc>,
}

pub async fn assignments_of_server(
    pool: &PgPool,
    org: OrgId,
    server_id: Uuid,
) -> Result<Vec<ServerWalkthroughRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.walkthrough_id, w.title, w.status, w.published_version, a.display_order, \
         a.enabled, a.assigned_at FROM rm_server_walkthroughs a \
         JOIN rm_walkthroughs w ON w.org_id = a.org_id AND w.walkthrough_id = a.walkthrough_id \
         WHERE a.org_id = $1 AND a.server_id = $2 ORDER BY a.display_order, a.assigned_at",
    )
    .bind(org.0)
    .bind(server_id)
    .fetch_all(pool)
    .await
}

/// What a server offers end users: enabled assignments of published walkthroughs, in display
/// order, each with its newest version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OfferedRow {
    pub walkthrough_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub version: i32,
    pub steps: Json<Vec<Step>>,
}

pub async fn offered(
    pool: &PgPool,
    org: OrgId,
    server_id: Uuid,
) -> Result<Vec<OfferedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT v.walkthrough_id, v.title, v.description, v.version, v.steps \
         FROM rm_server_walkthroughs a \
         JOIN rm_walkthroughs w ON w.org_id = a.org_id AND w.walkthrough_id = a.walkthrough_id \
         JOIN rm_walkthrough_versions v ON v.org_id = w.org_id AND v.walkthrough_id = w.walkthrough_id \
              AND v.version = w.published_version \
         WHERE a.org_id = $1 AND a.server_id = $2 AND a.enabled AND w.status = 'published' \
         ORDER BY a.display_order, a.assigned_at, a.walkthrough_id",
    )
    .bind(org.0)
    .bind(server_id)
    .fetch_all(pool)
    .await
}
