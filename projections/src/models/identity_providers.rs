//! Identity providers of an org: what the REST edge lists and shows (never a client secret,
//! which events do not carry).

use crate::projection::{Projection, ProjectionError, Reads, Tables};
use chrono::{DateTime, Utc};
use domain::identity_provider::{IdentityProvider, ProviderConfig, ProviderEvent};
use domain::values::OrgId;
use domain::Aggregate;
use eventstore::StoredEvent;
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub struct IdentityProvidersProjection;

impl Projection for IdentityProvidersProjection {
    fn name(&self) -> &'static str {
        "identity_providers"
    }

    fn reads(&self) -> Reads {
        Reads::Only(&[IdentityProvider::TYPE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_identity_providers"]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        t: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let table = t.name("rm_identity_providers");
            for event in events {
                let provider_id: Uuid = event.aggregate_id.parse().unwrap_or_default();
                let at = event.recorded_at;
                match event.decode::<ProviderEvent>()? {
                    ProviderEvent::IdentityProviderCreated { org_id, config } => {
                        upsert(conn, &table, provider_id, Some(org_id), &config, at).await?;
                    }
                    ProviderEvent::IdentityProviderUpdated { config, .. } => {
                        upsert(conn, &table, provider_id, None, &config, at).await?;
                    }
                    ProviderEvent::IdentityProviderDeleted { .. } => {
                        sqlx::query(&format!("DELETE FROM {table} WHERE provider_id = $1"))
                            .bind(provider_id)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// Creates (with `org_id`) or updates the row with the whole configuration.
async fn upsert(
    conn: &mut PgConnection,
    table: &str,
    provider_id: Uuid,
    org_id: Option<Uuid>,
    config: &ProviderConfig,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let scopes = serde_json::to_value(&config.scopes).unwrap_or_default();
    let sql = match org_id {
        Some(_) => format!(
            "INSERT INTO {table} (provider_id, org_id, name, kind, issuer, \
             authorization_endpoint, token_endpoint, userinfo_endpoint, jwks_uri, client_id, \
             scopes, send_resource, audience, drop_prompt, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
             ON CONFLICT DO NOTHING"
        ),
        None => format!(
            "UPDATE {table} SET name = $3, kind = $4, issuer = $5, authorization_endpoint = $6, \
             token_endpoint = $7, userinfo_endpoint = $8, jwks_uri = $9, client_id = $10, \
             scopes = $11, send_resource = $12, audience = $13, drop_prompt = $14, \
             updated_at = $15 WHERE provider_id = $1 AND ($2::uuid IS NULL OR org_id = $2)"
        ),
    };
    sqlx::query(&sql)
        .bind(provider_id)
        .bind(org_id)
        .bind(config.name.as_str())
        .bind(config.kind.as_str())
        .bind(&config.issuer)
        .bind(&config.authorization_endpoint)
        .bind(&config.token_endpoint)
        .bind(&config.userinfo_endpoint)
        .bind(&config.jwks_uri)
        .bind(&config.client_id)
        .bind(scopes)
        .bind(config.options.send_resource)
        .bind(&config.options.audience)
        .bind(config.options.drop_prompt)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProviderRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub kind: String,
    pub issuer: Option<String>,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub client_id: String,
    pub scopes: sqlx::types::Json<Vec<String>>,
    pub send_resource: bool,
    pub audience: Option<String>,
    pub drop_prompt: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "provider_id AS id, org_id, name, kind, issuer, authorization_endpoint, \
    token_endpoint, userinfo_endpoint, jwks_uri, client_id, scopes, send_resource, audience, \
    drop_prompt, created_at, updated_at";

/// An org's identity providers, oldest first.
pub async fn list(pool: &PgPool, org: OrgId) -> Result<Vec<ProviderRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rm_identity_providers WHERE org_id = $1 \
         ORDER BY created_at, provider_id"
    ))
    .bind(org.0)
    .fetch_all(pool)
    .await
}

/// One provider of an org; another org's is not found.
pub async fn get(
    pool: &PgPool,
    org: OrgId,
    provider_id: Uuid,
) -> Result<Option<ProviderRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rm_identity_providers WHERE org_id = $1 AND provider_id = $2"
    ))
    .bind(org.0)
    .bind(provider_id)
    .fetch_optional(pool)
    .await
}
