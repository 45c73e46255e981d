//! End users signing in through a hosted server's authorization server, which proxies the
//! customer's identity provider: the redirect to the provider, and its callback.
//!
//! [`SignIns::start`] records the flow (`OauthAuthorizationStarted`, with `OauthConsentGiven`
//! when the end user just allowed the client) and answers the provider's authorization URL,
//! carrying our own `state` and PKCE challenge (and, for OpenID Connect, a nonce). The state is
//! `{flow id}.{random}` and only its hash is kept; the PKCE verifier and the nonce are derived
//! from the flow id with the sign-in key, so neither is stored anywhere.
//!
//! [`SignIns::callback`] takes the provider's answer once: it exchanges the code with the
//! `oauth2` crate (`openidconnect` for an OIDC provider, validating the ID token: signature by
//! the provider's published keys, issuer, audience, expiry, nonce), reads the end user's
//! identity (from the ID token, else the user API), signs them in
//! (`end_users::sign_in`: by subject, then by verified email, within the org), keeps the
//! provider's tokens sealed, and issues our single-use code. Every outbound request goes
//! through the guard (`crate::outbound`).

use crate::errors::{OauthErrorCode, OauthFailure};
use crate::outbound::{Options, Outbound};
use crate::sealing::Seal;
use crate::services::oauth::{self, CodeRequest};
use crate::services::{end_users, identity_providers};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::OsRng;
use chrono::{DateTime, Utc};
use domain::identity_provider::ProviderKind;
use domain::sign_in::{
    AuthorizationRequest, ConsentVia, SignInCommand, SignInError, SignInFailure, SignInFlow,
};
use domain::values::{Email, OrgId};
use domain::EventMetadata;
use eventstore::{EventStore, ExecuteError};
use hmac::{Hmac, Mac};
use identity_providers::ProviderForSignIn;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The key the flows' derived values and the consent page's cookies are tagged with (derived
/// from the platform secret by the caller, so every instance agrees).
#[derive(Clone)]
pub struct SignInKey(Arc<Vec<u8>>);

impl fmt::Debug for SignInKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignInKey(..)")
    }
}

impl SignInKey {
    pub fn new(key: Vec<u8>) -> Self {
        Self(Arc::new(key))
    }

    fn mac(&self, label: &str, parts: &[&str]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        // Each part is length-prefixed, so no two lists of parts tag alike.
        for part in std::iter::once(label).chain(parts.iter().copied()) {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// A tag over `label` and `parts` (base64url).
    pub fn tag(&self, label: &str, parts: &[&str]) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(label, parts).finalize().into_bytes())
    }

    /// Whether `tag` is the tag of `label` and `parts` (compared in constant time).
    pub fn verify(&self, label: &str, parts: &[&str], tag: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        self.mac(label, parts).verify_slice(&tag).is_ok()
    }

    /// The PKCE verifier we use with the provider for a flow: 43 characters (RFC 7636 §4.1).
    fn provider_verifier(&self, flow_id: Uuid) -> String {
        self.tag("provider pkce", &[&flow_id.to_string()])
    }

    /// The OpenID nonce of a flow.
    fn nonce(&self, flow_id: Uuid) -> String {
        self.tag("provider nonce", &[&flow_id.to_string()])
    }

    /// What proves, at the callback, that the browser is the one that started the flow (the
    /// value of the cookie set with the redirect to the provider).
    pub fn browser_binding(&self, flow_id: Uuid) -> String {
        self.tag("browser binding", &[&flow_id.to_string()])
    }
}

/// How the provider's answer is read into an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIdentity {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// The provider's tokens, as sealed at rest (never in an event, a log or an answer).
#[derive(Serialize, Deserialize)]
struct ProviderTokens {
    access_token: String,
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

/// What the sign-ins share: keys, seals, the outbound guard, and the providers' signing keys
/// (cached for a few minutes).
#[derive(Clone)]
pub struct SignIns {
    pub key: SignInKey,
    /// Opens identity providers' client secrets.
    pub provider_seal: Seal,
    /// Seals the provider's tokens of an end user.
    pub token_seal: Seal,
    pub outbound: Outbound,
    jwks: moka::future::Cache<String, Arc<openidconnect::core::CoreJsonWebKeySet>>,
}

impl fmt::Debug for SignIns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignIns").finish_non_exhaustive()
    }
}

/// How long a provider's published signing keys are used before they are fetched again.
const JWKS_TTL: Duration = Duration::from_secs(300);

/// A sign-in to start: the judged authorization request, whose consent is known.
#[derive(Debug, Clone)]
pub struct Start {
    pub org: OrgId,
    pub server_id: Uuid,
    pub provider_id: Uuid,
    pub request: AuthorizationRequest,
    pub consent: ConsentVia,
    /// Our callback, as registered with the provider (`{issuer}/oauth/callback`).
    pub callback_url: String,
    /// The client's `prompt`, passed on unless the provider's options drop it.
    pub prompt: Option<String>,
}

/// A started sign-in: where to send the browser, and the flow's id (for the browser-binding
/// cookie).
#[derive(Debug, Clone)]
pub struct Started {
    pub flow_id: Uuid,
    pub provider_url: String,
}

/// The provider's callback as it came.
#[derive(Debug, Clone, Default)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub iss: Option<String>,
    /// The browser-binding cookie's value, if the browser sent it.
    pub binding: Option<String>,
}

/// Where the browser goes after the callback: back to the client, with our code or an error.
#[derive(Debug, Clone)]
pub struct ToClient {
    pub redirect_uri: String,
    pub params: Vec<(String, String)>,
}

impl ToClient {
    /// An answer to the client: `params`, then the client's `state` (if it sent one) and our
    /// `iss` (RFC 9207), which every answer carries, errors too.
    pub fn new(
        redirect_uri: &str,
        client_state: Option<&str>,
        issuer: &str,
        mut params: Vec<(String, String)>,
    ) -> Self {
        if let Some(state) = client_state {
            params.push(("state".into(), state.to_owned()));
        }
        params.push(("iss".into(), issuer.to_owned()));
        Self {
            redirect_uri: redirect_uri.to_owned(),
            params,
        }
    }

    /// An error answer (RFC 6749 §4.1.2.1).
    pub fn error(
        redirect_uri: &str,
        client_state: Option<&str>,
        issuer: &str,
        code: OauthErrorCode,
        description: impl Into<String>,
    ) -> Self {
        Self::new(
            redirect_uri,
            client_state,
            issuer,
            vec![
                ("error".into(), code.as_str().to_owned()),
                ("error_description".into(), description.into()),
            ],
        )
    }

    /// The redirect URI with the answer's parameters added to its query (RFC 6749 §4.1.2).
    pub fn location(&self) -> String {
        match url::Url::parse(&self.redirect_uri) {
            Ok(mut url) => {
                {
                    let mut query = url.query_pairs_mut();
                    for (name, value) in &self.params {
                        query.append_pair(name, value);
                    }
                }
                url.to_string()
            }
            // Judged at registration, so it parses; kept total all the same.
            Err(_) => self.redirect_uri.clone(),
        }
    }
}

/// A callback that cannot be answered to the client: shown to the end user as a page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackRefused {
    #[error("this sign-in link is not known here: start again from your MCP client")]
    UnknownState,
    #[error("this sign-in was finished already: start again from your MCP client")]
    Replayed,
    #[error(
        "this sign-in was started in another browser: finish it in the browser that opened it"
    )]
    OtherBrowser,
    #[error("the sign-in could not be recorded; try again shortly")]
    Unavailable,
}

/// The error answered to the client when a sign-in fails, with what is recorded.
struct Failed {
    reason: SignInFailure,
    detail: String,
    code: OauthErrorCode,
    description: String,
}

impl Failed {
    fn new(
        reason: SignInFailure,
        detail: impl Into<String>,
        code: OauthErrorCode,
        description: &str,
    ) -> Self {
        Self {
            reason,
            detail: detail.into(),
            code,
            description: description.to_owned(),
        }
    }

    fn exchange(detail: impl Into<String>) -> Self {
        Self::new(
            SignInFailure::ProviderExchange,
            detail,
            OauthErrorCode::ServerError,
            "the identity provider's answer could not be used to sign in",
        )
    }
}

fn flow_failure(e: ExecuteError<SignInError>) -> OauthFailure {
    match e {
        ExecuteError::Store(e) => e.into(),
        ExecuteError::Domain(e) => OauthFailure::new(OauthErrorCode::InvalidRequest, e.to_string()),
        _ => OauthFailure::unavailable(),
    }
}

impl SignIns {
    pub fn new(key: SignInKey, provider_seal: Seal, token_seal: Seal, outbound: Outbound) -> Self {
        Self {
            key,
            provider_seal,
            token_seal,
            outbound,
            jwks: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(JWKS_TTL)
                .build(),
        }
    }

    /// Starts a sign-in: records it and answers the provider's authorization URL.
    pub async fn start(
        &self,
        store: &EventStore,
        metadata: &EventMetadata,
        start: Start,
        now: DateTime<Utc>,
    ) -> Result<Started, OauthFailure> {
        let provider = identity_providers::for_sign_in(
            store,
            &self.provider_seal,
            start.org,
            start.provider_id,
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "a sign-in found no usable identity provider");
            OauthFailure::new(
                OauthErrorCode::ServerError,
                "this server's identity provider is not configured",
            )
        })?;
        let flow_id = Uuid::new_v4();
        let mut random = [0u8; 32];
        OsRng.fill_bytes(&mut random);
        let state = format!("{}.{}", flow_id.simple(), URL_SAFE_NO_PAD.encode(random));
        let provider_url = self.provider_url(&provider, &start, flow_id, &state)?;
        let metadata = metadata.clone().for_org(start.org.0);
        store
            .run::<SignInFlow>(&flow_id.to_string(), &metadata, |_| SignInCommand::Start {
                org_id: start.org.0,
                server_id: start.server_id,
                provider_id: start.provider_id,
                request: start.request.clone(),
                consent: start.consent,
                state_hash: oauth::token_hash(&state),
                now,
            })
            .await
            .map_err(flow_failure)?;
        Ok(Started {
            flow_id,
            provider_url,
        })
    }

    fn provider_url(
        &self,
        provider: &ProviderForSignIn,
        start: &Start,
        flow_id: Uuid,
        state: &str,
    ) -> Result<String, OauthFailure> {
        let misconfigured = |what: &str| {
            OauthFailure::new(
                OauthErrorCode::ServerError,
                format!("this server's identity provider has an invalid {what}"),
            )
        };
        let client = oauth2::basic::BasicClient::new(ClientId::new(provider.client_id.clone()))
            .set_auth_uri(
                AuthUrl::new(provider.authorization_endpoint.clone())
                    .map_err(|_| misconfigured("authorization endpoint"))?,
            )
            .set_redirect_uri(
                RedirectUrl::new(start.callback_url.clone())
                    .map_err(|_| misconfigured("callback URL"))?,
            );
        let verifier = PkceCodeVerifier::new(self.key.provider_verifier(flow_id));
        let state = state.to_owned();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier));
        let mut scopes = provider.scopes.clone();
        if provider.kind == ProviderKind::Oidc && !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".to_owned());
        }
        for scope in scopes {
            request = request.add_scope(Scope::new(scope));
        }
        if provider.kind == ProviderKind::Oidc {
            request = request.add_extra_param("nonce", self.key.nonce(flow_id));
        }
        if provider.options.send_resource {
            request = request.add_extra_param("resource", start.request.resource.clone());
        }
        if let Some(audience) = &provider.options.audience {
            request = request.add_extra_param("audience", audience.clone());
        }
        if let Some(prompt) = start
            .prompt
            .as_ref()
            .filter(|_| !provider.options.drop_prompt)
        {
            request = request.add_extra_param("prompt", prompt.clone());
        }
        Ok(request.url().0.to_string())
    }

    /// Takes the provider's callback for a server: the answer to send the client (our code, or
    /// an error), or a refusal to show the end user.
    pub async fn callback(
        &self,
        store: &EventStore,
        metadata: &EventMetadata,
        server_id: Uuid,
        issuer: &str,
        callback: Callback,
        now: DateTime<Utc>,
    ) -> Result<ToClient, CallbackRefused> {
        let Some((flow_id, state)) = callback.state.as_deref().and_then(|state| {
            let (id, _) = state.split_once('.')?;
            Some((Uuid::try_parse(id).ok()?, state))
        }) else {
            return Err(CallbackRefused::UnknownState);
        };
        let (flow, _) = store
            .load::<SignInFlow>(&flow_id.to_string())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "a sign-in callback could not read the store");
                CallbackRefused::Unavailable
            })?;
        let Some(request) = flow.request.clone().filter(|request| {
            flow.server_id == Some(server_id)
                && request.issuer == issuer
                && flow.state_hash == oauth::token_hash(state)
        }) else {
            // Nothing to attribute it to: a forged or mistyped link is only logged, or anyone
            // could fill the log with events.
            tracing::warn!("a sign-in callback came with an unknown state");
            return Err(CallbackRefused::UnknownState);
        };
        let (Some(org_id), Some(provider_id)) = (flow.org_id, flow.provider_id) else {
            return Err(CallbackRefused::UnknownState);
        };
        let metadata = metadata.clone().for_org(org_id);
        let record = |command: SignInCommand| {
            let metadata = metadata.clone();
            async move {
                store
                    .run::<SignInFlow>(&flow_id.to_string(), &metadata, |_| command.clone())
                    .await
            }
        };
        if flow.callback_taken {
            let _ = record(SignInCommand::RecordReplay { now }).await;
            return Err(CallbackRefused::Replayed);
        }
        let bound = callback.binding.as_deref().is_some_and(|b| {
            self.key
                .verify("browser binding", &[&flow_id.to_string()], b)
        });
        if !bound {
            // Not taken: the browser that started it may still finish it.
            tracing::warn!(%flow_id, "a sign-in callback came from another browser");
            return Err(CallbackRefused::OtherBrowser);
        }
        let answer = |params: Vec<(String, String)>| {
            ToClient::new(
                &request.redirect_uri,
                request.client_state.as_deref(),
                &request.issuer,
                params,
            )
        };
        let fail = |failed: Failed| {
            let answer = &answer;
            let record = &record;
            async move {
                tracing::info!(%flow_id, reason = failed.reason.as_str(), "a sign-in failed");
                let _ = record(SignInCommand::Fail {
                    reason: failed.reason,
                    detail: failed.detail,
                })
                .await;
                answer(vec![
                    ("error".into(), failed.code.as_str().to_owned()),
                    ("error_description".into(), failed.description),
                ])
            }
        };
        match record(SignInCommand::TakeCallback { now }).await {
            Ok(_) => {}
            Err(ExecuteError::Domain(SignInError::CallbackTaken)) => {
                let _ = record(SignInCommand::RecordReplay { now }).await;
                return Err(CallbackRefused::Replayed);
            }
            Err(ExecuteError::Domain(SignInError::Expired)) => {
                return Ok(fail(Failed::new(
                    SignInFailure::Expired,
                    "the callback came after the sign-in expired",
                    OauthErrorCode::AccessDenied,
                    "the sign-in took too long: start again",
                ))
                .await);
            }
            Err(e) => {
                tracing::warn!(error = %e, "a sign-in callback could not be recorded");
                return Err(CallbackRefused::Unavailable);
            }
        }
        let provider = match identity_providers::for_sign_in(
            store,
            &self.provider_seal,
            OrgId(org_id),
            provider_id,
        )
        .await
        {
            Ok(provider) => provider,
            Err(e) => {
                return Ok(fail(Failed::new(
                    SignInFailure::ProviderExchange,
                    format!("the identity provider is gone: {e}"),
                    OauthErrorCode::ServerError,
                    "this server's identity provider is not configured",
                ))
                .await)
            }
        };
        if let Some(error) = &callback.error {
            // The provider's own words for the end user's refusal pass through; anything else
            // is the provider's failure, not the client's.
            let code = match error.as_str() {
                "access_denied" => OauthErrorCode::AccessDenied,
                "temporarily_unavailable" => OauthErrorCode::TemporarilyUnavailable,
                _ => OauthErrorCode::AccessDenied,
            };
            let detail = format!(
                "{}: {}",
                clip(error, 100),
                clip(callback.error_description.as_deref().unwrap_or(""), 300)
            );
            return Ok(fail(Failed::new(
                SignInFailure::ProviderError,
                detail,
                code,
                "the identity provider did not sign you in",
            ))
            .await);
        }
        if let (Some(iss), Some(expected)) = (&callback.iss, &provider.issuer) {
            if iss != expected {
                return Ok(fail(Failed::new(
                    SignInFailure::IssuerMismatch,
                    format!(
                        "the callback's iss {:?} is not the provider's",
                        clip(iss, 200)
                    ),
                    OauthErrorCode::AccessDenied,
                    "the sign-in answer came from another identity provider",
                ))
                .await);
            }
        }
        let Some(code) = callback.code.filter(|c| !c.is_empty()) else {
            return Ok(fail(Failed::exchange("the callback carried no code")).await);
        };
        let callback_url = format!("{}/oauth/callback", request.issuer);
        let exchanged = match self.exchange(&provider, flow_id, &callback_url, code).await {
            Ok(exchanged) => exchanged,
            Err(failed) => return Ok(fail(failed).await),
        };
        let identity = exchanged.identity;
        let Some(email) = identity.email.as_deref() else {
            return Ok(fail(Failed::new(
                SignInFailure::NoEmail,
                format!("subject {:?} has no email", clip(&identity.subject, 200)),
                OauthErrorCode::AccessDenied,
                "the identity provider gave no email address for this account",
            ))
            .await);
        };
        let Ok(email) = Email::parse(email) else {
            return Ok(fail(Failed::new(
                SignInFailure::NoEmail,
                "the email given is not a valid address",
                OauthErrorCode::AccessDenied,
                "the identity provider gave no valid email address for this account",
            ))
            .await);
        };
        if !identity.email_verified {
            return Ok(fail(Failed::new(
                SignInFailure::UnverifiedEmail,
                format!(
                    "subject {:?}: the email is not verified",
                    clip(&identity.subject, 200)
                ),
                OauthErrorCode::AccessDenied,
                "the identity provider does not say this account's email address is verified",
            ))
            .await);
        }
        let end_user_id = match end_users::sign_in(
            store,
            &metadata,
            end_users::SignIn {
                org_id: OrgId(org_id),
                server_id,
                provider_id,
                subject: identity.subject.clone(),
                email: Some(email),
                email_verified: true,
                name: identity.name.clone(),
            },
        )
        .await
        {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "a sign-in could not record the end user");
                return Ok(answer(vec![
                    ("error".into(), "temporarily_unavailable".into()),
                    (
                        "error_description".into(),
                        "the sign-in could not be recorded; try again shortly".into(),
                    ),
                ]));
            }
        };
        let mut metadata = metadata.clone();
        metadata.actor = domain::Actor::EndUser { id: end_user_id };
        if let Err(e) = self
            .keep_tokens(
                store,
                org_id,
                provider_id,
                end_user_id,
                exchanged.tokens,
                exchanged.expires_at,
            )
            .await
        {
            tracing::warn!(error = %e, "the provider's tokens could not be kept");
        }
        let issued = oauth::issue_code(
            store,
            &metadata,
            CodeRequest {
                org_id,
                server_id,
                client_id: request.client_id.clone(),
                end_user_id,
                scopes: request.scopes.clone(),
                resource: request.resource.clone(),
                redirect_uri: request.redirect_uri.clone(),
                code_challenge: request.code_challenge.clone(),
            },
            now,
        )
        .await;
        let (grant_id, code) = match issued {
            Ok(issued) => issued,
            Err(failure) => {
                return Ok(answer(vec![
                    ("error".into(), failure.code.as_str().to_owned()),
                    ("error_description".into(), failure.description),
                ]))
            }
        };
        if let Ok(client_id) = Uuid::parse_str(&request.client_id) {
            // A DCR client that signed someone in keeps its registration.
            let _ = oauth::client_used(store, &metadata, client_id, now).await;
        }
        let _ = store
            .run::<SignInFlow>(&flow_id.to_string(), &metadata, |_| {
                SignInCommand::Complete {
                    end_user_id,
                    grant_id,
                }
            })
            .await;
        Ok(answer(vec![("code".into(), code)]))
    }

    /// Exchanges the provider's code (with our PKCE verifier) and reads who signed in.
    async fn exchange(
        &self,
        provider: &ProviderForSignIn,
        flow_id: Uuid,
        callback_url: &str,
        code: String,
    ) -> Result<Exchanged, Failed> {
        let http = self.outbound.oauth();
        let verifier = PkceCodeVerifier::new(self.key.provider_verifier(flow_id));
        let secret = ClientSecret::new(provider.client_secret.expose_secret().to_owned());
        let token_url = TokenUrl::new(provider.token_endpoint.clone())
            .map_err(|_| Failed::exchange("the token endpoint is not a URL"))?;
        let redirect = RedirectUrl::new(callback_url.to_owned())
            .map_err(|_| Failed::exchange("the callback URL is not a URL"))?;
        match provider.kind {
            ProviderKind::Oidc => {
                use openidconnect::core::CoreClient;
                use openidconnect::{IssuerUrl, Nonce};
                let issuer = provider
                    .issuer
                    .clone()
                    .ok_or_else(|| Failed::exchange("the provider has no issuer"))?;
                let jwks_uri = provider
                    .jwks_uri
                    .clone()
                    .ok_or_else(|| Failed::exchange("the provider published no signing keys"))?;
                let jwks = self.jwks(&jwks_uri).await?;
                let client = CoreClient::new(
                    openidconnect::ClientId::new(provider.client_id.clone()),
                    IssuerUrl::new(issuer).map_err(|_| Failed::exchange("invalid issuer"))?,
                    (*jwks).clone(),
                )
                .set_client_secret(openidconnect::ClientSecret::new(
                    provider.client_secret.expose_secret().to_owned(),
                ))
                .set_token_uri(
                    openidconnect::TokenUrl::new(provider.token_endpoint.clone())
                        .map_err(|_| Failed::exchange("the token endpoint is not a URL"))?,
                )
                .set_redirect_uri(
                    openidconnect::RedirectUrl::new(callback_url.to_owned())
                        .map_err(|_| Failed::exchange("the callback URL is not a URL"))?,
                );
                let response = client
                    .exchange_code(openidconnect::AuthorizationCode::new(code))
                    .set_pkce_verifier(openidconnect::PkceCodeVerifier::new(
                        verifier.secret().to_owned(),
                    ))
                    .request_async(&http)
                    .await
                    .map_err(|e| Failed::exchange(format!("token request: {}", describe(&e))))?;
                use openidconnect::TokenResponse as _;
                let id_token = response
                    .id_token()
                    .ok_or_else(|| Failed::exchange("the provider answered no ID token"))?;
                let nonce = Nonce::new(self.key.nonce(flow_id));
                let claims = id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|e| Failed::exchange(format!("the ID token is not valid: {e}")))?;
                let mut identity = ProviderIdentity {
                    subject: claims.subject().as_str().to_owned(),
                    email: claims.email().map(|e| e.as_str().to_owned()),
                    email_verified: claims.email_verified().unwrap_or(false),
                    name: claims
                        .name()
                        .and_then(|n| n.get(None))
                        .map(|n| n.as_str().to_owned()),
                };
                let access_token = response.access_token().secret().to_owned();
                if identity.email.is_none() {
                    // Some providers keep the email to the user API.
                    if let Some(userinfo) = &provider.userinfo_endpoint {
                        if let Ok(info) = self.user_api(userinfo, &access_token).await {
                            if info.subject == identity.subject {
                                identity.email = info.email;
                                identity.email_verified = info.email_verified;
                                identity.name = identity.name.or(info.name);
                            }
                        }
                    }
                }
                Ok(Exchanged {
                    identity,
                    expires_at: expiry(response.expires_in(), Utc::now()),
                    tokens: ProviderTokens {
                        access_token,
                        refresh_token: response.refresh_token().map(|t| t.secret().to_owned()),
                        id_token: Some(id_token.to_string()),
                    },
                })
            }
            ProviderKind::Oauth2 => {
                let client =
                    oauth2::basic::BasicClient::new(ClientId::new(provider.client_id.clone()))
                        .set_client_secret(secret)
                        .set_token_uri(token_url)
                        .set_redirect_uri(redirect);
                let response = client
                    .exchange_code(AuthorizationCode::new(code))
                    .set_pkce_verifier(verifier)
                    .request_async(&http)
                    .await
                    .map_err(|e| Failed::exchange(format!("token request: {}", describe(&e))))?;
                let access_token = response.access_token().secret().to_owned();
                let userinfo = provider
                    .userinfo_endpoint
                    .as_deref()
                    .ok_or_else(|| Failed::exchange("the provider has no user API"))?;
                let identity = self.user_api(userinfo, &access_token).await?;
                Ok(Exchanged {
                    identity,
                    expires_at: expiry(response.expires_in(), Utc::now()),
                    tokens: ProviderTokens {
                        access_token,
                        refresh_token: response.refresh_token().map(|t| t.secret().to_owned()),
                        id_token: None,
                    },
                })
            }
        }
    }

    async fn jwks(&self, uri: &str) -> Result<Arc<openidconnect::core::CoreJsonWebKeySet>, Failed> {
        let outbound = self.outbound.clone();
        let url = uri.to_owned();
        self.jwks
            .try_get_with(uri.to_owned(), async move {
                let url = openidconnect::JsonWebKeySetUrl::new(url)
                    .map_err(|_| "the signing keys' URL is not a URL".to_owned())?;
                openidconnect::core::CoreJsonWebKeySet::fetch_async(&url, &outbound.oauth())
                    .await
                    .map(Arc::new)
                    .map_err(|e| format!("the signing keys could not be fetched: {e}"))
            })
            .await
            .map_err(|e: Arc<String>| Failed::exchange(e.as_str()))
    }

    /// Reads the end user from a user API (OpenID userinfo, or a GitHub-style `/user`): `sub`
    /// or `id`, `email`, `email_verified` (or `verified_email`), `name` (or `login`).
    async fn user_api(&self, url: &str, access_token: &str) -> Result<ProviderIdentity, Failed> {
        let request = http::Request::get(url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {access_token}"),
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|_| Failed::exchange("the user API's URL is not valid"))?;
        let response = self
            .outbound
            .send(
                request,
                Options {
                    follow_redirects: false,
                    max_body_bytes: Some(256 * 1024),
                },
            )
            .await
            .map_err(|e| Failed::exchange(format!("user API: {e}")))?;
        if !response.status().is_success() {
            return Err(Failed::exchange(format!(
                "user API answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let body: serde_json::Value = serde_json::from_slice(response.body())
            .map_err(|_| Failed::exchange("the user API's answer is not JSON"))?;
        identity_from_user_api(&body)
            .ok_or_else(|| Failed::exchange("the user API named no subject (`sub` or `id`)"))
    }

    async fn keep_tokens(
        &self,
        store: &EventStore,
        org_id: Uuid,
        provider_id: Uuid,
        end_user_id: Uuid,
        tokens: ProviderTokens,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let plain = SecretString::from(serde_json::to_string(&tokens)?);
        let sealed = self.token_seal.seal(
            &token_aad(org_id, provider_id, end_user_id),
            plain.expose_secret().as_bytes(),
        );
        eventstore::index::put_provider_tokens(
            store.pool(),
            org_id,
            provider_id,
            end_user_id,
            &sealed,
            expires_at,
        )
        .await?;
        Ok(())
    }
}

/// Where an end user's sign-in at their provider stands, as far as their tokens there tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStanding {
    /// The provider's access token is still valid, or cannot be refreshed (no refresh token).
    Current,
    /// It had expired and was refreshed.
    Refreshed,
    /// The provider refused the refresh (`invalid_grant`): the end user is signed out there.
    Refused(String),
    /// Nothing kept, or the provider could not be asked now (not held against the end user).
    Unknown,
}

/// A provider's access token is refreshed when it has less than this left.
const PROVIDER_REFRESH_MARGIN: chrono::Duration = chrono::Duration::seconds(30);

impl SignIns {
    /// Refreshes an end user's provider tokens when the access token has expired (or is about
    /// to), and keeps the new ones sealed. Asked when the client refreshes our tokens: an end
    /// user the provider has signed out stops being able to renew ours.
    pub async fn refresh_provider_tokens(
        &self,
        store: &EventStore,
        org: OrgId,
        provider_id: Uuid,
        end_user_id: Uuid,
        now: DateTime<Utc>,
    ) -> ProviderStanding {
        let row =
            match eventstore::index::provider_tokens(store.pool(), org.0, provider_id, end_user_id)
                .await
            {
                Ok(Some(row)) => row,
                Ok(None) => return ProviderStanding::Unknown,
                Err(e) => {
                    tracing::warn!(error = %e, "provider tokens could not be read");
                    return ProviderStanding::Unknown;
                }
            };
        let (sealed, expires_at) = row;
        if expires_at.is_none_or(|at| at - PROVIDER_REFRESH_MARGIN > now) {
            return ProviderStanding::Current;
        }
        let Ok(opened) = self
            .token_seal
            .open(&token_aad(org.0, provider_id, end_user_id), &sealed)
        else {
            tracing::warn!("provider tokens could not be opened");
            return ProviderStanding::Unknown;
        };
        let Ok(tokens) = serde_json::from_slice::<ProviderTokens>(&opened) else {
            return ProviderStanding::Unknown;
        };
        let Some(refresh_token) = tokens.refresh_token.clone() else {
            return ProviderStanding::Current;
        };
        let Ok(provider) =
            identity_providers::for_sign_in(store, &self.provider_seal, org, provider_id).await
        else {
            return ProviderStanding::Unknown;
        };
        let Ok(token_url) = TokenUrl::new(provider.token_endpoint.clone()) else {
            return ProviderStanding::Unknown;
        };
        let client = oauth2::basic::BasicClient::new(ClientId::new(provider.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                provider.client_secret.expose_secret().to_owned(),
            ))
            .set_token_uri(token_url);
        let http = self.outbound.oauth();
        let answer = client
            .exchange_refresh_token(&oauth2::RefreshToken::new(refresh_token.clone()))
            .request_async(&http)
            .await;
        match answer {
            Ok(response) => {
                let renewed = ProviderTokens {
                    access_token: response.access_token().secret().to_owned(),
                    refresh_token: Some(
                        response
                            .refresh_token()
                            .map(|t| t.secret().to_owned())
                            .unwrap_or(refresh_token),
                    ),
                    id_token: tokens.id_token,
                };
                let expires_at = expiry(response.expires_in(), now);
                if let Err(e) = self
                    .keep_tokens(store, org.0, provider_id, end_user_id, renewed, expires_at)
                    .await
                {
                    tracing::warn!(error = %e, "refreshed provider tokens could not be kept");
                }
                ProviderStanding::Refreshed
            }
            Err(oauth2::RequestTokenError::ServerResponse(response))
                if *response.error() == oauth2::basic::BasicErrorResponseType::InvalidGrant =>
            {
                ProviderStanding::Refused(clip(&response.to_string(), 300))
            }
            Err(e) => {
                tracing::warn!(error = %describe(&e), "the provider could not refresh its tokens now");
                ProviderStanding::Unknown
            }
        }
    }
}

struct Exchanged {
    identity: ProviderIdentity,
    tokens: ProviderTokens,
    expires_at: Option<DateTime<Utc>>,
}

/// When a provider's token expires, from the `expires_in` it answered.
fn expiry(expires_in: Option<Duration>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    expires_in
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| now + d)
}

/// The associated data a provider token row is sealed with: a row copied to another end user
/// does not open.
fn token_aad(org_id: Uuid, provider_id: Uuid, end_user_id: Uuid) -> Vec<u8> {
    format!("provider tokens:{org_id}:{provider_id}:{end_user_id}").into_bytes()
}

/// The identity a user API's JSON names.
pub fn identity_from_user_api(body: &serde_json::Value) -> Option<ProviderIdentity> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let subject = body
        .get("sub")
        .and_then(text)
        .or_else(|| body.get("id").and_then(text))?;
    let flag = |name: &str| match body.get(name) {
        Some(serde_json::Value::Bool(b)) => Some(*b),
        Some(serde_json::Value::String(s)) => Some(s.eq_ignore_ascii_case("true")),
        _ => None,
    };
    Some(ProviderIdentity {
        subject: clip(&subject, 255),
        email: body.get("email").and_then(text),
        email_verified: flag("email_verified")
            .or_else(|| flag("verified_email"))
            .unwrap_or(false),
        name: body
            .get("name")
            .and_then(text)
            .or_else(|| body.get("login").and_then(text))
            .map(|n| clip(&n, 200)),
    })
}

/// An `oauth2` token request's failure, worded without the answer's body.
fn describe<RE, T>(e: &oauth2::RequestTokenError<RE, T>) -> String
where
    RE: std::error::Error + 'static,
    T: oauth2::ErrorResponse + fmt::Display + 'static,
{
    match e {
        oauth2::RequestTokenError::ServerResponse(response) => response.to_string(),
        oauth2::RequestTokenError::Request(e) => e.to_string(),
        oauth2::RequestTokenError::Parse(e, _) => {
            format!("the answer is not a token response: {e}")
        }
        oauth2::RequestTokenError::Other(e) => e.clone(),
    }
}

fn clip(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags_verify_only_their_own_parts() {
        let key = SignInKey::new(vec![7; 32]);
        let tag = key.tag("consent", &["a", "b"]);
        assert!(key.verify("consent", &["a", "b"], &tag));
        assert!(!key.verify("consent", &["ab", ""], &tag));
        assert!(!key.verify("csrf", &["a", "b"], &tag));
        assert!(!key.verify("consent", &["a", "b"], "not base64!"));
        let verifier = key.provider_verifier(Uuid::nil());
        assert_eq!(verifier.len(), 43);
        assert_ne!(verifier, key.nonce(Uuid::nil()));
    }

    #[test]
    fn user_apis_of_both_shapes_are_read() {
        let github = json!({"id": 583231, "login": "octocat", "email": "o@example.com"});
        let identity = identity_from_user_api(&github).unwrap_or_else(|| panic!("read"));
        assert_eq!(identity.subject, "583231");
        assert_eq!(identity.name.as_deref(), Some("octocat"));
        assert!(!identity.email_verified);
        let oidc = json!({"sub": "u1", "email": "a@example.com", "email_verified": true});
        assert!(identity_from_user_api(&oidc).is_some_and(|i| i.email_verified));
        assert!(identity_from_user_api(&json!({"email": "x@example.com"})).is_none());
    }

    #[test]
    fn the_answer_keeps_the_redirect_uris_query() {
        let answer = ToClient {
            redirect_uri: "http://127.0.0.1:9/cb?x=1".into(),
            params: vec![("code".into(), "c d".into()), ("state".into(), "s".into())],
        };
        assert_eq!(
            answer.location(),
            "http://127.0.0.1:9/cb?x=1&code=c+d&state=s"
        );
    }
}
