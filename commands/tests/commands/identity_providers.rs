//! identity_providers: the client secret sealed in the write-side table and opened only for a
//! sign-in within its org; a provider in use stays; a server binds only its org's providers.

use crate::given::*;
use commands::errors::{ErrorCode, Failure};
use commands::outbound::{parse_allow, Outbound, OutboundConfig};
use commands::sealing::{Purpose, Seal};
use commands::services::identity_providers::{self, ProviderInput};
use commands::services::servers;
use domain::identity_provider::{ProviderKind, ProviderOptions};
use domain::server::ServerChanges;
use domain::values::{AuthMode, Name, OrgId};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

const SECRET: &str = "client-secret-of-the-provider-42";

fn guard() -> Outbound {
    Outbound::new(OutboundConfig {
        allow: parse_allow("127.0.0.0/8").unwrap(),
        ..OutboundConfig::default()
    })
    .unwrap()
}

fn seal() -> Seal {
    Seal::derive(
        b"platform-secret-for-tests-0123",
        Purpose::ProviderClientSecrets,
    )
    .unwrap()
}

fn github() -> ProviderInput {
    ProviderInput {
        name: Name::parse("GitHub").unwrap(),
        kind: ProviderKind::Oauth2,
        issuer: None,
        authorization_endpoint: Some("http://127.0.0.1:9/authorize".into()),
        token_endpoint: Some("http://127.0.0.1:9/token".into()),
        userinfo_endpoint: Some("http://127.0.0.1:9/user".into()),
        client_id: "gh".into(),
        client_secret: SecretString::from(SECRET),
        scopes: Some(vec!["read:user".into()]),
        options: ProviderOptions {
            send_resource: false,
            audience: Some("https://api.example.com".into()),
            drop_prompt: true,
        },
    }
}

fn code(result: Result<impl Sized, Failure>) -> Option<ErrorCode> {
    result.err().map(|f| f.code)
}

#[tokio::test]
async fn the_secret_is_sealed_and_opened_only_for_its_org() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;
    let globex = given.org(owner, "owner@acme.dev", "globex").await;
    let id = Uuid::new_v4();
    identity_providers::create(
        &given.store,
        &guard(),
        &seal(),
        acme,
        id,
        owner,
        github(),
        &as_user(owner),
    )
    .await
    .unwrap();

    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT sealed FROM identity_provider_secrets WHERE provider_id = $1")
            .bind(id)
            .fetch_one(given.store.pool())
            .await
            .unwrap();
    assert!(!sealed.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    let payloads: Vec<String> =
        sqlx::query_scalar("SELECT payload::text FROM events WHERE aggregate_id = $1")
            .bind(id.to_string())
            .fetch_all(given.store.pool())
            .await
            .unwrap();
    assert!(!payloads.is_empty() && payloads.iter().all(|p| !p.contains(SECRET)));

    let opened = identity_providers::for_sign_in(&given.store, &seal(), OrgId(acme), id)
        .await
        .unwrap();
    assert_eq!(opened.client_secret.expose_secret(), SECRET);
    assert_eq!(opened.kind, ProviderKind::Oauth2);
    assert_eq!(opened.token_endpoint, "http://127.0.0.1:9/token");
    assert_eq!(
        opened.options.audience.as_deref(),
        Some("https://api.example.com")
    );
    assert!(!format!("{opened:?}").contains(SECRET));
    assert_eq!(
        code(identity_providers::for_sign_in(&given.store, &seal(), OrgId(globex), id).await),
        Some(ErrorCode::IdentityProviderNotFound)
    );
    let other_key = Seal::derive(
        b"another-platform-secret-0123",
        Purpose::ProviderClientSecrets,
    )
    .unwrap();
    assert_eq!(
        code(identity_providers::for_sign_in(&given.store, &other_key, OrgId(acme), id).await),
        Some(ErrorCode::Internal)
    );
}

#[tokio::test]
async fn servers_bind_their_orgs_providers_and_a_used_one_stays() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;
    let globex = given.org(owner, "owner@acme.dev", "globex").await;
    let id = Uuid::new_v4();
    identity_providers::create(
        &given.store,
        &guard(),
        &seal(),
        acme,
        id,
        owner,
        github(),
        &as_user(owner),
    )
    .await
    .unwrap();
    let server = given.server(acme, owner, "guide").await;
    let bind = |provider: Uuid| ServerChanges {
        auth_mode: Some(AuthMode::Oauth),
        identity_provider_id: Some(Some(provider)),
        ..ServerChanges::default()
    };
    servers::update(&given.store, acme, server, owner, bind(id), &as_user(owner))
        .await
        .unwrap();
    let elsewhere = given.server(globex, owner, "elsewhere").await;
    let refused = servers::update(
        &given.store,
        globex,
        elsewhere,
        owner,
        bind(id),
        &as_user(owner),
    )
    .await
    .map_err(Failure::from);
    assert_eq!(
        refused.err().and_then(|f| f.field),
        Some("identity_provider_id".to_owned())
    );

    let in_use = identity_providers::delete(&given.store, acme, id, owner, &as_user(owner)).await;
    assert_eq!(code(in_use), Some(ErrorCode::IdentityProviderInUse));
    servers::archive(&given.store, acme, server, owner, &as_user(owner))
        .await
        .unwrap();
    identity_providers::delete(&given.store, acme, id, owner, &as_user(owner))
        .await
        .unwrap();
    assert_eq!(
        code(identity_providers::for_sign_in(&given.store, &seal(), OrgId(acme), id).await),
        Some(ErrorCode::IdentityProviderNotFound)
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM identity_provider_secrets")
        .fetch_one(given.store.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
}
