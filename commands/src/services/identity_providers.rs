//! Identity providers of an org: the customer's OpenID Connect issuer (endpoints and keys from
//! its discovery document, fetched through the outbound guard when saved, its `issuer` checked
//! against the configured one) or a plain OAuth 2.0 provider with explicit endpoints.
//!
//! The client secret is sealed (`crate::sealing`, purpose `ProviderClientSecrets`, the org and
//! provider ids as associated data) into the write-side table `identity_provider_secrets` in
//! the same commit as the provider's events, which only say that it changed. It is opened only
//! for a sign-in ([`for_sign_in`]).
//!
//! While a provider exists its id is a key owned by its org (`KeyKind::IdentityProvider`): a
//! server binding to it requires that owner, so a server never binds a deleted provider or
//! another org's. Deleting a provider that live servers use is refused
//! (`identity_provider_in_use`), those servers read from the event log itself.

use crate::errors::{ErrorCode, Failure};
use crate::outbound::{Outbound, OutboundError};
use crate::sealing::Seal;
use crate::services::organizations;
use domain::identity_provider::{
    IdentityProvider, ProviderCommand, ProviderConfig, ProviderError, ProviderEvent, ProviderKind,
    ProviderOptions,
};
use domain::server::Server;
use domain::values::{Name, OrgId, Role};
use domain::{Aggregate, EventMetadata};
use eventstore::{EventStore, Executed, KeyKind, StoreError};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use url::Url;
use uuid::Uuid;

/// Longest client id, secret, audience and URL taken.
const MAX_CLIENT_ID: usize = 512;
const MAX_SECRET: usize = 4096;
const MAX_URL: usize = 2048;
const MAX_SCOPE: usize = 128;

/// A provider as a new one is asked for (from `POST .../identity-providers`).
pub struct ProviderInput {
    pub name: Name,
    pub kind: ProviderKind,
    pub issuer: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scopes: Option<Vec<String>>,
    pub options: ProviderOptions,
}

/// What a `PATCH` changes; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Default)]
pub struct ProviderPatch {
    pub name: Option<Name>,
    pub kind: Option<ProviderKind>,
    pub issuer: Option<Option<String>>,
    pub authorization_endpoint: Option<Option<String>>,
    pub token_endpoint: Option<Option<String>>,
    pub userinfo_endpoint: Option<Option<String>>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub scopes: Option<Vec<String>>,
    pub send_resource: Option<bool>,
    pub audience: Option<Option<String>>,
    pub drop_prompt: Option<bool>,
}

/// What the sign-in flow needs of a provider, its client secret opened.
#[derive(Clone)]
pub struct ProviderForSignIn {
    pub provider_id: Uuid,
    pub org_id: OrgId,
    pub name: String,
    pub kind: ProviderKind,
    /// The OpenID issuer (`oidc`), exactly as discovery named it: the ID token's `iss`.
    pub issuer: Option<String>,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: Option<String>,
    /// The ID token's signing keys (`oidc`).
    pub jwks_uri: Option<String>,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scopes: Vec<String>,
    pub options: ProviderOptions,
}

impl fmt::Debug for ProviderForSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderForSignIn")
            .field("provider_id", &self.provider_id)
            .field("org_id", &self.org_id)
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The associated data a provider's sealed secret is bound to: its org and its id.
fn aad(org_id: Uuid, provider_id: Uuid) -> Vec<u8> {
    [
        org_id.as_bytes().as_slice(),
        provider_id.as_bytes().as_slice(),
    ]
    .concat()
}

async fn actor_role(store: &EventStore, org_id: Uuid, actor_id: Uuid) -> Result<Role, Failure> {
    organizations::load(store, org_id)
        .await?
        .and_then(|org| org.role_of(actor_id))
        .ok_or_else(|| Failure::not_found(ErrorCode::OrgNotFound))
}

/// Refuses a member (not an owner or admin) before any outbound fetch is made for them.
fn must_manage(role: Role) -> Result<(), Failure> {
    if role.can_manage() {
        Ok(())
    } else {
        Err(ProviderError::NotAllowed.into())
    }
}

/// A URL field: absolute http(s), within length, and one the outbound guard would fetch.
async fn url_field(outbound: &Outbound, field: &str, value: &str) -> Result<String, Failure> {
    let value = value.trim();
    if value.len() > MAX_URL {
        return Err(Failure::invalid(field, "at most 2048 characters"));
    }
    let url = Url::parse(value).map_err(|_| Failure::invalid(field, "not an absolute URL"))?;
    if url.cannot_be_a_base() || !url.username().is_empty() || url.password().is_some() {
        return Err(Failure::invalid(
            field,
            "not an http(s) URL without credentials",
        ));
    }
    outbound
        .vet_url(&url)
        .await
        .map_err(|e| Failure::invalid(field, e))?;
    Ok(value.to_owned())
}

fn text_field(field: &str, value: &str, max: usize) -> Result<String, Failure> {
    let value = value.trim();
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(Failure::invalid(
            field,
            format!("1 to {max} characters, no control characters"),
        ));
    }
    Ok(value.to_owned())
}

fn secret_field(secret: &SecretString) -> Result<(), Failure> {
    let value = secret.expose_secret();
    if value.is_empty() || value.len() > MAX_SECRET || value.chars().any(char::is_control) {
        return Err(Failure::invalid(
            "client_secret",
            "1 to 4096 characters, no control characters",
        ));
    }
    Ok(())
}

/// Scope tokens as RFC 6749 §3.3 spells them; an OpenID provider always gets `openid`.
fn scopes_field(kind: ProviderKind, scopes: Option<Vec<String>>) -> Result<Vec<String>, Failure> {
    let mut scopes = scopes.unwrap_or_else(|| match kind {
        ProviderKind::Oidc => vec!["openid".into(), "email".into(), "profile".into()],
        ProviderKind::Oauth2 => Vec::new(),
    });
    for scope in &scopes {
        let token = !scope.is_empty()
            && scope.len() <= MAX_SCOPE
            && scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !token {
            return Err(Failure::invalid(
                "scopes",
                "each scope is 1 to 128 printable characters without spaces, quotes or backslashes",
            ));
        }
    }
    if kind == ProviderKind::Oidc && !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let mut seen = std::collections::HashSet::new();
    scopes.retain(|scope| seen.insert(scope.clone()));
    Ok(scopes)
}

fn options_field(options: ProviderOptions) -> Result<ProviderOptions, Failure> {
    let audience = options
        .audience
        .map(|a| text_field("options.audience", &a, MAX_URL))
        .transpose()?;
    Ok(ProviderOptions {
        audience,
        ..options
    })
}

/// What discovery found.
struct Discovered {
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
}

/// Fetches the issuer's discovery document (and its keys) through the guard; its `issuer` must
/// equal the configured one, exactly.
async fn discover(outbound: &Outbound, issuer: &str) -> Result<Discovered, Failure> {
    use openidconnect::core::CoreProviderMetadata;
    use openidconnect::DiscoveryError;
    let issuer_url = openidconnect::IssuerUrl::new(issuer.to_owned())
        .map_err(|_| Failure::invalid("issuer", "not an absolute URL"))?;
    let failed = |why: String| Failure {
        field: Some("issuer".into()),
        ..Failure::new(
            ErrorCode::ProviderDiscoveryFailed,
            format!("discovery of {issuer} failed: {why}"),
        )
    };
    let metadata = CoreProviderMetadata::discover_async(issuer_url, &outbound.oauth())
        .await
        .map_err(|e| {
            failed(match e {
                DiscoveryError::Request(refused) => refused.to_string(),
                DiscoveryError::Response(status, _, _) => format!("answered HTTP {status}"),
                DiscoveryError::Parse(parse) => {
                    format!(
                        "the document is not OpenID provider metadata ({})",
                        parse.path()
                    )
                }
                DiscoveryError::Validation(why) => why,
                DiscoveryError::UrlParse(_) => "the discovery URL is not valid".into(),
                DiscoveryError::Other(why) => why,
                other => other.to_string(),
            })
        })?;
    let token_endpoint = metadata
        .token_endpoint()
        .map(|u| u.url().to_string())
        .ok_or_else(|| failed("the document names no token endpoint".into()))?;
    let found = Discovered {
        authorization_endpoint: metadata.authorization_endpoint().url().to_string(),
        token_endpoint,
        userinfo_endpoint: metadata.userinfo_endpoint().map(|u| u.url().to_string()),
        jwks_uri: metadata.jwks_uri().url().to_string(),
    };
    // The endpoints it names are fetched through the guard later: refuse them now if it would.
    for (what, url) in [
        (
            "authorization endpoint",
            Some(&found.authorization_endpoint),
        ),
        ("token endpoint", Some(&found.token_endpoint)),
        ("userinfo endpoint", found.userinfo_endpoint.as_ref()),
        ("jwks_uri", Some(&found.jwks_uri)),
    ] {
        if let Some(url) = url {
            let parsed = Url::parse(url).map_err(|_| failed(format!("its {what} is not a URL")))?;
            outbound
                .check_url(&parsed)
                .map_err(|e: OutboundError| failed(format!("its {what}: {e}")))?;
        }
    }
    Ok(found)
}

/// The fields a configuration is made of before its endpoints are settled.
struct Draft {
    name: Name,
    kind: ProviderKind,
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    client_id: String,
    scopes: Vec<String>,
    options: ProviderOptions,
}

/// Settles a draft: an OpenID provider's endpoints from discovery, an OAuth 2.0 provider's
/// as given (each required).
async fn settle(outbound: &Outbound, draft: Draft) -> Result<ProviderConfig, Failure> {
    let client_id = text_field("client_id", &draft.client_id, MAX_CLIENT_ID)?;
    let options = options_field(draft.options)?;
    match draft.kind {
        ProviderKind::Oidc => {
            let issuer = draft
                .issuer
                .ok_or_else(|| Failure::invalid("issuer", "an oidc provider needs its issuer"))?;
            let issuer = url_field(outbound, "issuer", &issuer).await?;
            let found = discover(outbound, &issuer).await?;
            Ok(ProviderConfig {
                name: draft.name,
                kind: ProviderKind::Oidc,
                issuer: Some(issuer),
                authorization_endpoint: found.authorization_endpoint,
                token_endpoint: found.token_endpoint,
                userinfo_endpoint: found.userinfo_endpoint,
                jwks_uri: Some(found.jwks_uri),
                client_id,
                scopes: draft.scopes,
                options,
            })
        }
        ProviderKind::Oauth2 => {
            if draft.issuer.is_some() {
                return Err(Failure::invalid(
                    "issuer",
                    "only an oidc provider has an issuer; give the endpoints instead",
                ));
            }
            async fn required(
                outbound: &Outbound,
                field: &str,
                value: Option<String>,
            ) -> Result<String, Failure> {
                let value = value.ok_or_else(|| {
                    Failure::invalid(field, "an oauth2 provider needs this endpoint")
                })?;
                url_field(outbound, field, &value).await
            }
            Ok(ProviderConfig {
                name: draft.name,
                kind: ProviderKind::Oauth2,
                issuer: None,
                authorization_endpoint: required(
                    outbound,
                    "authorization_endpoint",
                    draft.authorization_endpoint,
                )
                .await?,
                token_endpoint: required(outbound, "token_endpoint", draft.token_endpoint).await?,
                userinfo_endpoint: Some(
                    required(outbound, "userinfo_endpoint", draft.userinfo_endpoint).await?,
                ),
                jwks_uri: None,
                client_id,
                scopes: draft.scopes,
                options,
            })
        }
    }
}

/// Refuses endpoints given for an OpenID provider: they come from its discovery document.
fn no_explicit_endpoints(kind: ProviderKind, given: [(&str, bool); 3]) -> Result<(), Failure> {
    if kind == ProviderKind::Oidc {
        if let Some((field, _)) = given.iter().find(|(_, set)| *set) {
            return Err(Failure::invalid(
                *field,
                "an oidc provider's endpoints come from its issuer's discovery document",
            ));
        }
    }
    Ok(())
}

/// Registers a provider: validated, discovered (`oidc`), its secret sealed.
#[allow(clippy::too_many_arguments)]
pub async fn create(
    store: &EventStore,
    outbound: &Outbound,
    seal: &Seal,
    org_id: Uuid,
    provider_id: Uuid,
    actor_id: Uuid,
    input: ProviderInput,
    metadata: &EventMetadata,
) -> Result<Executed<ProviderEvent>, Failure> {
    let actor_role = actor_role(store, org_id, actor_id).await?;
    must_manage(actor_role)?;
    secret_field(&input.client_secret)?;
    no_explicit_endpoints(
        input.kind,
        [
            (
                "authorization_endpoint",
                input.authorization_endpoint.is_some(),
            ),
            ("token_endpoint", input.token_endpoint.is_some()),
            ("userinfo_endpoint", input.userinfo_endpoint.is_some()),
        ],
    )?;
    let config = settle(
        outbound,
        Draft {
            name: input.name,
            kind: input.kind,
            issuer: input.issuer,
            authorization_endpoint: input.authorization_endpoint,
            token_endpoint: input.token_endpoint,
            userinfo_endpoint: input.userinfo_endpoint,
            client_id: input.client_id,
            scopes: scopes_field(input.kind, input.scopes)?,
            options: input.options,
        },
    )
    .await?;
    let sealed = seal.seal(
        &aad(org_id, provider_id),
        input.client_secret.expose_secret().as_bytes(),
    );
    let metadata = metadata.clone().for_org(org_id);
    Ok(store
        .execute::<IdentityProvider, _, _>(
            &provider_id.to_string(),
            &metadata,
            |provider| {
                provider.handle(ProviderCommand::Create {
                    org_id,
                    actor_role,
                    config: config.clone(),
                })
            },
            |_, events, uow| {
                if !events.is_empty() {
                    uow.claim(KeyKind::IdentityProvider, provider_id.to_string(), org_id);
                    uow.set_provider_secret(provider_id, org_id, sealed.clone());
                }
            },
        )
        .await?)
}

/// The provider of `org_id` as the write model has it.
async fn live(
    store: &EventStore,
    org_id: Uuid,
    provider_id: Uuid,
) -> Result<ProviderConfig, Failure> {
    let (provider, _) = store
        .load::<IdentityProvider>(&provider_id.to_string())
        .await?;
    provider
        .of_org(org_id)
        .cloned()
        .ok_or_else(|| Failure::not_found(ErrorCode::IdentityProviderNotFound))
}

/// Changes a provider: the change merged into its configuration, which is settled again (an
/// OpenID provider rediscovered), and a new secret sealed if one is given.
#[allow(clippy::too_many_arguments)]
pub async fn update(
    store: &EventStore,
    outbound: &Outbound,
    seal: &Seal,
    org_id: Uuid,
    provider_id: Uuid,
    actor_id: Uuid,
    patch: ProviderPatch,
    metadata: &EventMetadata,
) -> Result<Executed<ProviderEvent>, Failure> {
    let actor_role = actor_role(store, org_id, actor_id).await?;
    let current = live(store, org_id, provider_id).await?;
    must_manage(actor_role)?;
    if let Some(secret) = &patch.client_secret {
        secret_field(secret)?;
    }
    let kind = patch.kind.unwrap_or(current.kind);
    no_explicit_endpoints(
        kind,
        [
            (
                "authorization_endpoint",
                matches!(patch.authorization_endpoint, Some(Some(_))),
            ),
            (
                "token_endpoint",
                matches!(patch.token_endpoint, Some(Some(_))),
            ),
            (
                "userinfo_endpoint",
                matches!(patch.userinfo_endpoint, Some(Some(_))),
            ),
        ],
    )?;
    // Moving from one kind to the other keeps nothing of the other's endpoints or issuer.
    let same_kind = kind == current.kind;
    let keep = |patched: Option<Option<String>>, now: Option<String>| match patched {
        Some(value) => value,
        None if same_kind => now,
        None => None,
    };
    let scopes = match patch.scopes {
        Some(scopes) => scopes_field(kind, Some(scopes))?,
        None => scopes_field(kind, Some(current.scopes.clone()))?,
    };
    let draft = Draft {
        name: patch.name.unwrap_or_else(|| current.name.clone()),
        kind,
        issuer: keep(patch.issuer, current.issuer.clone()),
        authorization_endpoint: keep(
            patch.authorization_endpoint,
            Some(current.authorization_endpoint.clone()),
        ),
        token_endpoint: keep(patch.token_endpoint, Some(current.token_endpoint.clone())),
        userinfo_endpoint: keep(patch.userinfo_endpoint, current.userinfo_endpoint.clone()),
        client_id: patch.client_id.unwrap_or_else(|| current.client_id.clone()),
        scopes,
        options: ProviderOptions {
            send_resource: patch.send_resource.unwrap_or(current.options.send_resource),
            audience: patch
                .audience
                .unwrap_or_else(|| current.options.audience.clone()),
            drop_prompt: patch.drop_prompt.unwrap_or(current.options.drop_prompt),
        },
    };
    let config = settle(outbound, draft).await?;
    let sealed = patch
        .client_secret
        .as_ref()
        .map(|secret| seal.seal(&aad(org_id, provider_id), secret.expose_secret().as_bytes()));
    let metadata = metadata.clone().for_org(org_id);
    Ok(store
        .execute::<IdentityProvider, _, _>(
            &provider_id.to_string(),
            &metadata,
            |provider| {
                if provider.org_id != Some(org_id) {
                    return Err(ProviderError::NotFound);
                }
                provider.handle(ProviderCommand::Update {
                    actor_role,
                    config: config.clone(),
                    client_secret_changed: sealed.is_some(),
                })
            },
            |_, events, uow| {
                if let (false, Some(sealed)) = (events.is_empty(), &sealed) {
                    uow.set_provider_secret(provider_id, org_id, sealed.clone());
                }
            },
        )
        .await?)
}

/// The org's live servers bound to the provider, from the event log (not a read model).
async fn servers_using(
    store: &EventStore,
    org_id: Uuid,
    provider_id: Uuid,
) -> Result<Vec<Uuid>, Failure> {
    let ids = eventstore::index::aggregate_ids_of_org(store.pool(), org_id, Server::TYPE).await?;
    let mut using = Vec::new();
    for id in ids {
        let (server, _) = store.load::<Server>(&id).await?;
        let bound = server
            .config
            .as_ref()
            .is_some_and(|c| c.identity_provider_id == Some(provider_id));
        if bound && !server.archived && server.org_id == Some(org_id) {
            using.push(id.parse().unwrap_or_default());
        }
    }
    using.sort_unstable();
    Ok(using)
}

/// Deletes a provider no live server uses (else `identity_provider_in_use`), with its secret.
pub async fn delete(
    store: &EventStore,
    org_id: Uuid,
    provider_id: Uuid,
    actor_id: Uuid,
    metadata: &EventMetadata,
) -> Result<Executed<ProviderEvent>, Failure> {
    let actor_role = actor_role(store, org_id, actor_id).await?;
    live(store, org_id, provider_id).await?;
    must_manage(actor_role)?;
    let used_by = servers_using(store, org_id, provider_id).await?;
    let metadata = metadata.clone().for_org(org_id);
    Ok(store
        .execute::<IdentityProvider, _, _>(
            &provider_id.to_string(),
            &metadata,
            |provider| {
                if provider.org_id != Some(org_id) {
                    return Err(ProviderError::NotFound);
                }
                provider.handle(ProviderCommand::Delete {
                    actor_role,
                    used_by: used_by.clone(),
                })
            },
            |_, events, uow| {
                if !events.is_empty() {
                    uow.release(KeyKind::IdentityProvider, provider_id.to_string(), org_id);
                    uow.remove_provider_secret(provider_id);
                }
            },
        )
        .await?)
}

/// Whether `provider_id` names a live provider of `org_id`, for a server binding to it.
pub async fn exists(
    store: &EventStore,
    org_id: Uuid,
    provider_id: Uuid,
) -> Result<bool, StoreError> {
    let (provider, _) = store
        .load::<IdentityProvider>(&provider_id.to_string())
        .await?;
    Ok(provider.of_org(org_id).is_some())
}

/// The name of a live provider of `org_id` (for the consent page).
pub async fn name_of(
    store: &EventStore,
    org_id: Uuid,
    provider_id: Uuid,
) -> Result<Option<String>, StoreError> {
    let (provider, _) = store
        .load::<IdentityProvider>(&provider_id.to_string())
        .await?;
    Ok(provider.of_org(org_id).map(|c| c.name.as_str().to_owned()))
}

/// The provider a server of `org` signs its end users in with, its client secret opened: for
/// the authorization server's redirect to the provider and its callback. Another org's
/// provider, or a deleted one, is `identity_provider_not_found`.
pub async fn for_sign_in(
    store: &EventStore,
    seal: &Seal,
    org: OrgId,
    provider_id: Uuid,
) -> Result<ProviderForSignIn, Failure> {
    let config = live(store, org.0, provider_id).await?;
    let sealed = eventstore::index::sealed_provider_secret(store.pool(), org.0, provider_id)
        .await?
        .ok_or_else(|| Failure::not_found(ErrorCode::IdentityProviderNotFound))?;
    let opened = seal
        .open(&aad(org.0, provider_id), &sealed)
        .map_err(Failure::internal)?;
    let secret = String::from_utf8(opened).map_err(Failure::internal)?;
    Ok(ProviderForSignIn {
        provider_id,
        org_id: org,
        name: config.name.as_str().to_owned(),
        kind: config.kind,
        issuer: config.issuer,
        authorization_endpoint: config.authorization_endpoint,
        token_endpoint: config.token_endpoint,
        userinfo_endpoint: config.userinfo_endpoint,
        jwks_uri: config.jwks_uri,
        client_id: config.client_id,
        client_secret: SecretString::from(secret),
        scopes: config.scopes,
        options: config.options,
    })
}
