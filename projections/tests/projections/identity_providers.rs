//! identity_providers: an org's identity providers, never their secret.

use crate::given::*;
use domain::identity_provider::{
    IdentityProvider, ProviderConfig, ProviderEvent, ProviderKind, ProviderOptions,
};
use domain::server::{Server, ServerEvent};
use domain::values::{AuthMode, Name};
use projections::models::{identity_providers, servers};
use uuid::Uuid;

fn oidc(name: &str) -> ProviderConfig {
    ProviderConfig {
        name: Name::parse(name).unwrap(),
        kind: ProviderKind::Oidc,
        issuer: Some("https://idp.example.com".into()),
        authorization_endpoint: "https://idp.example.com/auth".into(),
        token_endpoint: "https://idp.example.com/token".into(),
        userinfo_endpoint: Some("https://idp.example.com/me".into()),
        jwks_uri: Some("https://idp.example.com/jwks".into()),
        client_id: "platform".into(),
        scopes: vec!["openid".into(), "email".into()],
        options: ProviderOptions::default(),
    }
}

#[tokio::test]
async fn providers_are_listed_within_their_org_updated_and_deleted() {
    let mut given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    let other = given.org(owner, "owner@acme.dev", "other").await;
    let (sso, github, theirs) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for (id, in_org, config) in [
        (sso, org, oidc("Corp SSO")),
        (github, org, oidc("Second")),
        (theirs, other, oidc("Theirs")),
    ] {
        given
            .append::<IdentityProvider>(
                id,
                &by(owner, in_org.0),
                &[ProviderEvent::IdentityProviderCreated {
                    org_id: in_org.0,
                    config,
                }],
            )
            .await;
    }
    let mut changed = oidc("Corp SSO 2");
    changed.options = ProviderOptions {
        send_resource: true,
        audience: Some("https://api.acme.dev".into()),
        drop_prompt: true,
    };
    given
        .append::<IdentityProvider>(
            sso,
            &by(owner, org.0),
            &[ProviderEvent::IdentityProviderUpdated {
                config: changed,
                client_secret_changed: true,
            }],
        )
        .await;
    given
        .append::<IdentityProvider>(
            github,
            &by(owner, org.0),
            &[ProviderEvent::IdentityProviderDeleted {
                name: Name::parse("Second").unwrap(),
            }],
        )
        .await;
    // A server bound to the provider shows it.
    let docs = given.server(org, owner, "guide").await;
    let mut bound = config("guide");
    bound.auth_mode = AuthMode::Oauth;
    bound.identity_provider_id = Some(sso);
    given
        .append::<Server>(
            docs,
            &by(owner, org.0),
            &[ServerEvent::ServerUpdated { config: bound }],
        )
        .await;
    given.project().await;
    let pool = given.pool();

    let listed = identity_providers::list(pool, org).await.unwrap();
    assert_eq!(listed.len(), 1);
    let row = &listed[0];
    assert_eq!(row.id, sso);
    assert_eq!(row.name, "Corp SSO 2");
    assert_eq!(row.kind, "oidc");
    assert_eq!(row.scopes.0, ["openid", "email"]);
    assert!(row.send_resource && row.drop_prompt);
    assert_eq!(row.audience.as_deref(), Some("https://api.acme.dev"));
    assert_eq!(
        row.jwks_uri.as_deref(),
        Some("https://idp.example.com/jwks")
    );
    assert!(identity_providers::get(pool, org, github)
        .await
        .unwrap()
        .is_none());
    assert!(
        identity_providers::get(pool, org, theirs)
            .await
            .unwrap()
            .is_none(),
        "another org's provider is not found"
    );
    assert_eq!(
        identity_providers::list(pool, other).await.unwrap().len(),
        1
    );
    let server = servers::get(pool, org, "guide").await.unwrap().unwrap();
    assert_eq!(server.identity_provider_id, Some(sso));
    assert_eq!(server.auth_mode, "oauth");
}
