//! Hosted MCP servers.

use crate::projection::{Projection, ProjectionError, Reads, Tables};
use chrono::{DateTime, Utc};
use domain::server::{Server, ServerConfig, ServerEvent};
use domain::values::OrgId;
use domain::Aggregate;
use eventstore::StoredEvent;
use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub struct ServersProjection;

impl Projection for ServersProjection {
    fn name(&self) -> &'static str {
        "servers"
    }

    fn reads(&self) -> Reads {
        Reads::Only(&[Server::TYPE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_servers"]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        t: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let servers = t.name("rm_servers");
            for event in events {
                let server_id: Uuid = event.aggregate_id.parse().unwrap_or_default();
                let at = event.recorded_at;
                match event.decode::<ServerEvent>()? {
                    ServerEvent::ServerCreated { org_id, config } => {
                        let ServerConfig {
                            name,
                            slug,
                            auth_mode,
                            support_tool,
                            walkthrough_tools,
                            conformance_fixtures,
                            require_signed_tracking,
                            identity_provider_id,
                        } = config;
                        sqlx::query(&format!(
                            "INSERT INTO {servers} (server_id, org_id, name, slug, auth_mode, \
                             support_tool, walkthrough_tools, conformance_fixtures, status, created_at, updated_at, \
                             require_signed_tracking, identity_provider_id) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $9, 'active', $8, $8, $10, $11) \
                             ON CONFLICT DO NOTHING"
                        ))
                        .bind(server_id)
                        .bind(org_id)
                        .bind(name.as_str())
                        .bind(slug.as_str())
                        .bind(auth_mode.as_str())
                        .bind(support_tool)
                        .bind(walkthrough_tools)
                        .bind(at)
                        .bind(conformance_fixtures)
                        .bind(require_signed_tracking)
                        .bind(identity_provider_id)
                        .execute(&mut *conn)
                        .await?;
                    }
                    ServerEvent::ServerUpdated { config } => {
                        sqlx::query(&format!(
                            "UPDATE {servers} SET name = $2, slug = $3, auth_mode = $4, \
                             support_tool = $5, walkthrough_tools = $6, updated_at = $7, \
                             conformance_fixtures = $8, require_signed_tracking = $9, \
                             identity_provider_id = $10 WHERE server_id = $1"
                        ))
                        .bind(server_id)
                        .bind(config.name.as_str())
                        .bind(config.slug.as_str())
                        .bind(config.auth_mode.as_str())
                        .bind(config.support_tool)
                        .bind(config.walkthrough_tools)
                        .bind(at)
                        .bind(config.conformance_fixtures)
                        .bind(config.require_signed_tracking)
                        .bind(config.identity_provider_id)
                        .execute(&mut *conn)
                        .await?;
                    }
                    // Tracking secrets are listed from the write model.
                    ServerEvent::TrackingSecretCreated { .. }
                    | ServerEvent::TrackingSecretRevoked { .. } => {}
                    ServerEvent::ServerArchived { .. } => {
                        sqlx::query(&format!(
                            "UPDATE {servers} SET status = 'archived', updated_at = $2 WHERE server_id = $1"
                        ))
                        .bind(server_id)
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
            }
            Ok(())
        })
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ServerRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub slug: String,
    pub auth_mode: String,
    pub support_tool: bool,
    pub walkthrough_tools: bool,
    pub conformance_fixtures: bool,
    /// Tracking ids must be signed with one of the server's tracking secrets.
    pub require_signed_tracking: bool,
    /// The org's identity provider end users sign in with (`oauth` mode).
    pub identity_provider_id: Option<Uuid>,
    pub status: String,
    #[serde(with = "domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "server_id AS id, org_id, name, slug, auth_mode, support_tool, \
    walkthrough_tools, conformance_fixtures, require_signed_tracking, identity_provider_id, \
    status, created_at, updated_at";

/// An org's servers, oldest first; archived ones only when asked.
pub async fn list(
    pool: &PgPool,
    org: OrgId,
    include_archived: bool,
) -> Result<Vec<ServerRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rm_servers WHERE org_id = $1 AND ($2 OR status = 'active') \
         ORDER BY created_at, server_id"
    ))
    .bind(org.0)
    .bind(include_archived)
    .fetch_all(pool)
    .await
}

/// One server of an org by id or slug. A server of another org is not found.
pub async fn get(
    pool: &PgPool,
    org: OrgId,
    server_ref: &str,
) -> Result<Option<ServerRow>, sqlx::Error> {
    // An id when it parses as one, otherwise a slug (slugs are never UUID-shaped).
    let by_id: Option<Uuid> = server_ref.parse().ok();
    let by_slug = by_id.is_none().then_some(server_ref);
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rm_servers WHERE org_id = $1 AND (server_id = $2 OR slug = $3) \
         ORDER BY (status = 'active') DESC, created_at DESC LIMIT 1"
    ))
    .bind(org.0)
    .bind(by_id)
    .bind(by_slug)
    .fetch_optional(pool)
    .await
}
