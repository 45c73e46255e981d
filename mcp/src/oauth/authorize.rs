//! The browser part of the authorization server: `/oauth/authorize` (the client's request, our
//! consent page, and the redirect to the customer's identity provider) and `/oauth/callback`
//! (the provider's answer, and the redirect back to the client with our code).
//!
//! The request is judged in the order RFC 6749 §4.1.2.1 sets: a client or redirect URI we
//! cannot trust gets a page (never a redirect, or we would be an open redirector); anything
//! else wrong goes back to the client's redirect URI as an error with its `state` and our
//! `iss` (RFC 9207).
//!
//! Consent comes before the provider (MCP security best practices, against the confused
//! deputy: every client, even one registered a second ago, is named to the end user, who
//! allows it). The consent POST carries a CSRF token tied to a cookie of this browser; the
//! answer is remembered for this browser and client by a signed cookie, so a returning user is
//! not asked again. The redirect to the provider sets a cookie binding the flow to this
//! browser, which the callback requires: a callback link sent to someone else does not sign
//! them in.

use super::endpoints::{self, known_client, metadata, peer};
use super::{pages, Site};
use crate::McpEdge;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use commands::errors::OauthErrorCode;
use commands::services::identity_providers;
use commands::services::oauth::SCOPES_SUPPORTED;
use commands::services::sign_in::{Callback, CallbackRefused, SignInKey, Start, ToClient};
use domain::sign_in::{AuthorizationRequest, ConsentVia};
use domain::values::OrgId;
use std::collections::HashMap;

/// How long a remembered consent lasts.
const CONSENT_DAYS: i64 = 30;
/// How long the browser-binding cookie of a flow lives (the flow's own lifetime).
const BINDING_SECONDS: i64 = 600;
/// Longest `state` taken from a client.
const MAX_STATE: usize = 2048;
const CSRF_COOKIE: &str = "mcp_csrf";

/// The authorization request, judged: what the consent page shows and the flow records.
struct Judged {
    client_name: Option<String>,
    request: AuthorizationRequest,
    prompt: Option<String>,
}

/// Why a request was refused, and where the answer goes.
enum Refused {
    /// Shown to the end user: the client or its redirect URI cannot be trusted.
    Page(StatusCode, &'static str, String),
    /// Sent to the client's redirect URI.
    ToClient(ToClient),
}

impl Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Page(status, title, message) => pages::refusal(status, title, &message),
            Refused::ToClient(to) => see_other(&to.location()),
        }
    }
}

/// Records a refusal (see `oauth::Refusals`) and answers it.
async fn refuse(
    edge: &McpEdge,
    site: &Site,
    event_metadata: &domain::EventMetadata,
    endpoint: &str,
    client_id: Option<&str>,
    refused: Refused,
) -> Response {
    let (error, reason) = match &refused {
        Refused::Page(status, _, message) => (
            (*status != StatusCode::SERVICE_UNAVAILABLE).then(|| "page".to_owned()),
            message.clone(),
        ),
        Refused::ToClient(to) => {
            let param = |name: &str| {
                to.params
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let error = param("error");
            (
                (!matches!(error.as_str(), "consent_required" | "server_error")).then_some(error),
                param("error_description"),
            )
        }
    };
    if let Some(error) = error {
        edge.record_refusal(site, event_metadata, endpoint, &error, &reason, client_id)
            .await;
    }
    refused.into_response()
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A query string or form body as parameters; one given twice is refused (RFC 6749 §3.1).
pub(crate) fn parameters(raw: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut params = HashMap::new();
    for (name, value) in form_urlencoded::parse(raw) {
        if params.insert(name.to_string(), value.to_string()).is_some() {
            return Err(format!("the parameter {name:?} is given more than once"));
        }
    }
    Ok(params)
}

/// The value of a cookie the browser sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

fn set_cookie(
    response: &mut Response,
    site: &Site,
    name: &str,
    value: &str,
    path: &str,
    extra: &str,
) {
    let secure = if site.origin.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{name}={value}; Path={path}; HttpOnly{secure}{extra}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The name of the cookie remembering consent to one client (a client id may be a long URL).
fn consent_cookie_name(client_id: &str) -> String {
    format!(
        "mcp_consent_{}",
        &commands::services::oauth::token_hash(client_id)[..16]
    )
}

fn consent_parts<'a>(site: &'a Site, request: &'a AuthorizationRequest) -> [String; 3] {
    [
        site.tenant.server_id.to_string(),
        request.client_id.clone(),
        request.scopes.join(" "),
    ]
}

/// Whether this browser allowed this client these scopes before (and not too long ago).
fn consent_remembered(
    key: &SignInKey,
    headers: &HeaderMap,
    site: &Site,
    request: &AuthorizationRequest,
) -> bool {
    let Some(value) = cookie(headers, &consent_cookie_name(&request.client_id)) else {
        return false;
    };
    let Some((expires, tag)) = value.split_once('.') else {
        return false;
    };
    let Ok(expires_at) = expires.parse::<i64>() else {
        return false;
    };
    if expires_at <= Utc::now().timestamp() {
        return false;
    }
    let [server, client, scopes] = consent_parts(site, request);
    key.verify("consent", &[&server, &client, &scopes, expires], tag)
}

fn remember_consent(
    response: &mut Response,
    key: &SignInKey,
    site: &Site,
    request: &AuthorizationRequest,
) {
    let expires = (Utc::now() + chrono::Duration::days(CONSENT_DAYS))
        .timestamp()
        .to_string();
    let [server, client, scopes] = consent_parts(site, request);
    let tag = key.tag("consent", &[&server, &client, &scopes, &expires]);
    set_cookie(
        response,
        site,
        &consent_cookie_name(&request.client_id),
        &format!("{expires}.{tag}"),
        &format!("{}/oauth/authorize", site.prefix),
        &format!("; SameSite=Lax; Max-Age={}", CONSENT_DAYS * 86_400),
    );
}

fn csrf_token(key: &SignInKey, browser: &str, site: &Site, client_id: &str) -> String {
    key.tag(
        "consent csrf",
        &[browser, &site.tenant.server_id.to_string(), client_id],
    )
}

/// Judges an authorization request's parameters (RFC 6749 §4.1.1, RFC 7636, RFC 8707).
async fn judge(
    edge: &McpEdge,
    site: &Site,
    params: &HashMap<String, String>,
    event_metadata: &domain::EventMetadata,
) -> Result<Judged, Refused> {
    let page = |message: String| {
        Refused::Page(
            StatusCode::BAD_REQUEST,
            "This sign-in request cannot be used",
            message,
        )
    };
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let Some(client_id) = get("client_id") else {
        return Err(page("The request names no client (client_id).".into()));
    };
    let Some(redirect_uri) = get("redirect_uri") else {
        return Err(page(
            "The request names no redirect URI (redirect_uri).".into(),
        ));
    };
    let client = match known_client(edge, site, client_id, event_metadata).await {
        Ok(client) => client,
        Err(failure) if failure.code == OauthErrorCode::TemporarilyUnavailable => {
            return Err(Refused::Page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                failure.description,
            ))
        }
        Err(failure) => {
            return Err(page(format!(
                "The client is not known to this server: {}",
                failure.description
            )))
        }
    };
    if !client
        .redirect_uris
        .iter()
        .any(|registered| super::redirects::matches(registered, redirect_uri))
    {
        return Err(page(
            "The redirect URI is not one the client registered.".into(),
        ));
    }
    let state = get("state").map(str::to_owned);
    let to_client = |code: OauthErrorCode, description: &str| {
        Refused::ToClient(ToClient::error(
            redirect_uri,
            state.as_deref(),
            &site.issuer(),
            code,
            description,
        ))
    };
    if state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
        return Err(to_client(
            OauthErrorCode::InvalidRequest,
            "the state is too long",
        ));
    }
    match get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(to_client(
                OauthErrorCode::UnsupportedResponseType,
                "this server answers the response type code only",
            ))
        }
        None => {
            return Err(to_client(
                OauthErrorCode::InvalidRequest,
                "response_type is required (code)",
            ))
        }
    }
    let Some(challenge) = get("code_challenge") else {
        return Err(to_client(
            OauthErrorCode::InvalidRequest,
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        ));
    };
    if get("code_challenge_method") != Some("S256") {
        return Err(to_client(
            OauthErrorCode::InvalidRequest,
            "PKCE must use code_challenge_method=S256 (plain is not accepted)",
        ));
    }
    let challenge_ok = challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !challenge_ok {
        return Err(to_client(
            OauthErrorCode::InvalidRequest,
            "the code_challenge is not a base64url SHA-256 digest",
        ));
    }
    let resource = match get("resource") {
        Some(resource)
            if site.names_this_server(
                resource,
                &edge.core.config.base_domain,
                &edge.core.config.extra_hosts,
            ) =>
        {
            resource.to_owned()
        }
        Some(_) => {
            return Err(to_client(
                OauthErrorCode::InvalidTarget,
                "the resource does not name this server",
            ))
        }
        None => site.resource(None),
    };
    let scopes: Vec<String> = match get("scope") {
        Some(scope) => {
            let mut scopes: Vec<String> = Vec::new();
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                if !SCOPES_SUPPORTED.contains(&s) {
                    return Err(to_client(
                        OauthErrorCode::InvalidScope,
                        &format!(
                            "unknown scope {:?}: this server knows {}",
                            s.chars().take(64).collect::<String>(),
                            SCOPES_SUPPORTED.join(", ")
                        ),
                    ));
                }
                if !scopes.iter().any(|known| known == s) {
                    scopes.push(s.to_owned());
                }
            }
            scopes
        }
        None => vec![commands::services::oauth::SCOPE_MCP.to_owned()],
    };
    if scopes.is_empty() {
        return Err(to_client(
            OauthErrorCode::InvalidScope,
            "the scope is empty",
        ));
    }
    let prompt = get("prompt").map(str::to_owned);
    Ok(Judged {
        client_name: client.client_name,
        request: AuthorizationRequest {
            issuer: site.issuer(),
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            scopes,
            resource,
            code_challenge: challenge.to_owned(),
            client_state: state,
        },
        prompt,
    })
}

/// Starts the sign-in (consent known) and sends the browser to the provider, with the cookie
/// binding the flow to this browser.
async fn to_provider(
    edge: &McpEdge,
    site: &Site,
    event_metadata: &domain::EventMetadata,
    judged: Judged,
    consent: ConsentVia,
) -> Result<Response, Refused> {
    let Some(provider_id) = site.tenant.identity_provider_id else {
        return Err(Refused::Page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is not set up",
            format!(
                "{} has no identity provider yet: its administrators must choose one.",
                site.tenant.name
            ),
        ));
    };
    let request = judged.request.clone();
    let started = edge
        .core
        .oauth
        .sign_ins
        .start(
            &edge.core.store,
            event_metadata,
            Start {
                org: OrgId(site.tenant.org_id),
                server_id: site.tenant.server_id,
                provider_id,
                request: judged.request,
                consent,
                callback_url: site.endpoint("callback"),
                prompt: judged.prompt,
            },
            Utc::now(),
        )
        .await;
    let started = match started {
        Ok(started) => started,
        Err(failure) => {
            return Err(Refused::ToClient(ToClient::error(
                &request.redirect_uri,
                request.client_state.as_deref(),
                &site.issuer(),
                failure.code,
                failure.description,
            )));
        }
    };
    let mut response = see_other(&started.provider_url);
    let key = &edge.core.oauth.sign_ins.key;
    set_cookie(
        &mut response,
        site,
        &binding_cookie_name(started.flow_id),
        &key.browser_binding(started.flow_id),
        &format!("{}/oauth/callback", site.prefix),
        &format!("; SameSite=Lax; Max-Age={BINDING_SECONDS}"),
    );
    Ok(response)
}

fn binding_cookie_name(flow_id: uuid::Uuid) -> String {
    format!("mcp_signin_{}", flow_id.simple())
}

/// `GET …/oauth/authorize`: the consent page, or straight to the provider when this browser
/// allowed this client before.
pub async fn authorize_get(edge: &McpEdge, site: Site, request: Request) -> Response {
    let event_metadata = metadata(request.headers(), peer(&request), &site);
    let params = match parameters(request.uri().query().unwrap_or("").as_bytes()) {
        Ok(params) => params,
        Err(message) => {
            return pages::refusal(
                StatusCode::BAD_REQUEST,
                "This sign-in request cannot be used",
                &message,
            )
        }
    };
    let client_id = params.get("client_id").map(String::as_str);
    let judged = match judge(edge, &site, &params, &event_metadata).await {
        Ok(judged) => judged,
        Err(refused) => {
            return refuse(
                edge,
                &site,
                &event_metadata,
                "authorize",
                client_id,
                refused,
            )
            .await
        }
    };
    let key = &edge.core.oauth.sign_ins.key;
    let headers = request.headers();
    let forced = judged
        .prompt
        .as_deref()
        .is_some_and(|p| p.split(' ').any(|p| p == "consent"));
    if !forced && consent_remembered(key, headers, &site, &judged.request) {
        let client_id = judged.request.client_id.clone();
        return match to_provider(edge, &site, &event_metadata, judged, ConsentVia::Remembered).await
        {
            Ok(response) => response,
            Err(refused) => {
                refuse(
                    edge,
                    &site,
                    &event_metadata,
                    "authorize",
                    Some(&client_id),
                    refused,
                )
                .await
            }
        };
    }
    if judged
        .prompt
        .as_deref()
        .is_some_and(|p| p.split(' ').any(|p| p == "none"))
    {
        // No page may be shown, and consent is not known.
        // (`consent_required` is OpenID Connect's, not among RFC 6749's codes.)
        return Refused::ToClient(ToClient::new(
            &judged.request.redirect_uri,
            judged.request.client_state.as_deref(),
            &site.issuer(),
            vec![
                ("error".into(), "consent_required".into()),
                (
                    "error_description".into(),
                    "the end user has not allowed this client yet".into(),
                ),
            ],
        ))
        .into_response();
    }
    // A browser keeps one random CSRF cookie; each form's token is tied to it and the client.
    let browser = match cookie(headers, CSRF_COOKIE).filter(|v| v.len() >= 32 && v.len() <= 64) {
        Some(existing) => existing.to_owned(),
        None => commands::services::oauth::new_token(""),
    };
    let provider_name = match site.tenant.identity_provider_id {
        Some(id) => identity_providers::name_of(&edge.core.store, site.tenant.org_id, id)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let mut hidden: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| {
            matches!(
                name.as_str(),
                "response_type"
                    | "client_id"
                    | "redirect_uri"
                    | "scope"
                    | "state"
                    | "code_challenge"
                    | "code_challenge_method"
                    | "resource"
                    | "prompt"
            )
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    hidden.sort();
    hidden.push((
        "csrf_token".into(),
        csrf_token(key, &browser, &site, &judged.request.client_id),
    ));
    let redirect_host = url::Url::parse(&judged.request.redirect_uri)
        .ok()
        .map(|u| match u.host_str() {
            Some(host) => host.to_owned(),
            None => format!("{}:", u.scheme()),
        })
        .unwrap_or_default();
    let mut response = pages::consent(&pages::Consent {
        server_name: &site.tenant.name,
        client_name: judged.client_name.as_deref(),
        client_id: &judged.request.client_id,
        redirect_host: &redirect_host,
        resource: &judged.request.resource,
        scopes: &judged.request.scopes,
        provider_name: provider_name
            .as_deref()
            .unwrap_or("your organization's sign-in"),
        action: &site.endpoint("authorize"),
        hidden: &hidden,
    });
    set_cookie(
        &mut response,
        &site,
        CSRF_COOKIE,
        &browser,
        &format!("{}/oauth/authorize", site.prefix),
        "; SameSite=Strict",
    );
    response
}

/// `POST …/oauth/authorize`: the consent page's answer.
pub async fn authorize_post(edge: &McpEdge, site: Site, request: Request) -> Response {
    let peer = peer(&request);
    let (headers, bytes) = match endpoints::body(request).await {
        Ok(read) => read,
        Err(failure) => {
            return pages::refusal(
                StatusCode::BAD_REQUEST,
                "This answer cannot be used",
                &failure.description,
            )
        }
    };
    let event_metadata = metadata(&headers, peer, &site);
    // A form posted from another origin is refused whatever it carries.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        if !origin.eq_ignore_ascii_case(&site.origin) {
            let reason = format!("consent posted from another origin: {origin}");
            edge.record_refusal(&site, &event_metadata, "consent", "page", &reason, None)
                .await;
            return pages::refusal(
                StatusCode::FORBIDDEN,
                "This answer cannot be used",
                "The consent was sent from another site.",
            );
        }
    }
    let params = match parameters(&bytes) {
        Ok(params) => params,
        Err(message) => {
            return pages::refusal(
                StatusCode::BAD_REQUEST,
                "This answer cannot be used",
                &message,
            )
        }
    };
    let judged = match judge(edge, &site, &params, &event_metadata).await {
        Ok(judged) => judged,
        Err(refused) => {
            let client_id = params.get("client_id").map(String::as_str);
            return refuse(edge, &site, &event_metadata, "consent", client_id, refused).await;
        }
    };
    let key = &edge.core.oauth.sign_ins.key;
    let csrf_ok = match (cookie(&headers, CSRF_COOKIE), params.get("csrf_token")) {
        (Some(browser), Some(token)) => key.verify(
            "consent csrf",
            &[
                browser,
                &site.tenant.server_id.to_string(),
                &judged.request.client_id,
            ],
            token,
        ),
        _ => false,
    };
    if !csrf_ok {
        edge.record_refusal(
            &site,
            &event_metadata,
            "consent",
            "page",
            "consent posted without its CSRF token",
            Some(&judged.request.client_id),
        )
        .await;
        return pages::refusal(
            StatusCode::FORBIDDEN,
            "This answer cannot be used",
            "The consent form expired or did not come from this page: start again from your \
             MCP client.",
        );
    }
    match params.get("decision").map(String::as_str) {
        Some("allow") => {}
        Some("deny") => {
            return see_other(
                &ToClient::error(
                    &judged.request.redirect_uri,
                    judged.request.client_state.as_deref(),
                    &site.issuer(),
                    OauthErrorCode::AccessDenied,
                    "the end user did not allow this client",
                )
                .location(),
            );
        }
        _ => {
            return pages::refusal(
                StatusCode::BAD_REQUEST,
                "This answer cannot be used",
                "The answer is neither allow nor deny.",
            )
        }
    }
    let request = judged.request.clone();
    match to_provider(edge, &site, &event_metadata, judged, ConsentVia::Given).await {
        Ok(mut response) => {
            remember_consent(&mut response, key, &site, &request);
            response
        }
        Err(refused) => {
            refuse(
                edge,
                &site,
                &event_metadata,
                "consent",
                Some(&request.client_id),
                refused,
            )
            .await
        }
    }
}

/// `GET …/oauth/callback`: the provider's answer.
pub async fn callback(edge: &McpEdge, site: Site, request: Request) -> Response {
    let event_metadata = metadata(request.headers(), peer(&request), &site);
    let params = match parameters(request.uri().query().unwrap_or("").as_bytes()) {
        Ok(params) => params,
        Err(message) => {
            return pages::refusal(
                StatusCode::BAD_REQUEST,
                "This sign-in cannot be finished",
                &message,
            )
        }
    };
    let get = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let state = get("state");
    let flow_id = state
        .as_deref()
        .and_then(|s| s.split_once('.'))
        .and_then(|(id, _)| uuid::Uuid::try_parse(id).ok());
    let binding = flow_id
        .and_then(|id| cookie(request.headers(), &binding_cookie_name(id)).map(str::to_owned));
    let outcome = edge
        .core
        .oauth
        .sign_ins
        .callback(
            &edge.core.store,
            &event_metadata,
            site.tenant.server_id,
            &site.issuer(),
            Callback {
                state,
                code: get("code"),
                error: get("error"),
                error_description: get("error_description"),
                iss: get("iss"),
                binding,
            },
            Utc::now(),
        )
        .await;
    match outcome {
        Ok(to_client) => {
            let mut response = see_other(&to_client.location());
            if let Some(id) = flow_id {
                set_cookie(
                    &mut response,
                    &site,
                    &binding_cookie_name(id),
                    "",
                    &format!("{}/oauth/callback", site.prefix),
                    "; SameSite=Lax; Max-Age=0",
                );
            }
            response
        }
        Err(refused) => {
            let status = match refused {
                CallbackRefused::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            if refused != CallbackRefused::Unavailable {
                let reason = match refused {
                    CallbackRefused::UnknownState => "callback with an unknown state",
                    CallbackRefused::Replayed => "callback replayed",
                    _ => "callback from another browser than the one that started the sign-in",
                };
                edge.record_refusal(&site, &event_metadata, "callback", "page", reason, None)
                    .await;
            }
            pages::refusal(
                status,
                "This sign-in cannot be finished",
                &refused.to_string(),
            )
        }
    }
}
