//! Extractors: JSON bodies with problem+json rejections, the request context that becomes event
//! metadata, and the signed-in platform user.

use crate::error::{plausible_ref, ApiError, ErrorCode, FieldError};
use crate::state::AppState;
use axum::extract::path::ErrorKind as PathErrorKind;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::header;
use axum::http::request::Parts;
use domain::values::{OrgId, Role};
use domain::{text, Actor, EventMetadata};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::net::SocketAddr;
use uuid::Uuid;

/// A JSON object body, for a struct `T` (a body that is any other JSON value is 422 `expected
/// a JSON object`: serde would read a struct from an array). Syntax errors answer 400, type
/// and field errors 422 naming the field, a missing content type 415, an oversize body 413.
/// Text with a NUL character (`\u0000`) is refused with 422 naming its field: no read model
/// could store it (see `domain::text`).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        json_body(req, state, true).await.map(JsonBody)
    }
}

/// A JSON body whose NULs reach the handler, for the one that must see every attempt as sent:
/// a failed login is recorded whatever the email held (the login scrubs it before recording).
pub struct JsonBodyWithNul<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBodyWithNul<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        json_body(req, state, false).await.map(JsonBodyWithNul)
    }
}

/// For a body field that must be sent, though it may be `null` (with `deserialize_with` and no
/// `default`, serde reports it missing instead of reading it as `None`).
pub fn present_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d)
}

/// axum's `Json` reads the body as raw JSON text first (content type, size limit and syntax
/// checked as usual), so that a NUL can be looked for before the typed parse.
async fn json_body<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
    refuse_nul: bool,
) -> Result<T, ApiError> {
    let axum::Json(raw) = axum::Json::<Box<RawValue>>::from_request(req, state)
        .await
        .map_err(json_rejection)?;
    if refuse_nul && text::has_nul_escape(raw.get()) {
        let field = serde_json::from_str::<serde_json::Value>(raw.get())
            .ok()
            .and_then(|value| text::nul_path(&value))
            .unwrap_or_else(|| "body".to_owned());
        return Err(ApiError::validation(vec![FieldError {
            field,
            message: "must not contain the NUL character (\\u0000)".to_owned(),
        }]));
    }
    // Every body we take is an object. serde would also read a struct from an array (its
    // fields in order), so `[]` would pass as a PATCH that changes nothing.
    if !raw.get().trim_start().starts_with('{') {
        return Err(ApiError::field("body", "expected a JSON object"));
    }
    // Parsed here rather than by axum, so the refusal is built from the error's parts: the
    // field's path, and serde's sentence without the parser's position.
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    crate::filters::reading(|| serde_path_to_error::deserialize::<_, T>(&mut deserializer)).map_err(
        |(e, refusal)| {
            let path = e.path().to_string();
            data_error(&path, &e.into_inner(), refusal)
        },
    )
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonSyntaxError(e) => {
            let text = e.body_text();
            let message = text
                .split_once("JSON: ")
                .map_or(text.as_str(), |(_, rest)| rest);
            ApiError::new(
                ErrorCode::MalformedJson,
                format!("the body is not valid JSON: {}", without_position(message)),
            )
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::unsupported_media_type(),
        JsonRejection::BytesRejection(e) => {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large()
            } else {
                ApiError::new(
                    ErrorCode::UnreadableBody,
                    "the request body could not be read",
                )
            }
        }
        _ => ApiError::new(ErrorCode::BadRequest, "the request body could not be read"),
    }
}

/// A body that is JSON but not what the route takes: 422 naming the field (its path, as
/// `inner.on` or `tags[1]`), in serde's words without the parser's position, or with the
/// sentence of the set that refused its value.
fn data_error(path: &str, error: &serde_json::Error, refusal: Option<&str>) -> ApiError {
    let text = error.to_string();
    let message = match refusal {
        Some(refusal) => refusal.to_owned(),
        None => client_terms(without_position(&text)),
    };
    // A missing or unknown field is reported where the object holding it is: name the field.
    let named = field_from_message(&message);
    let field = match (path, named) {
        (".", Some(named)) => named.to_owned(),
        (".", None) => "body".to_owned(),
        (path, Some(named)) if message.starts_with("missing field") => format!("{path}.{named}"),
        (path, _) => path.to_owned(),
    };
    ApiError::validation(vec![FieldError { field, message }])
}

/// serde_json ends a message with where the parser was (`at line 1 column 56`): a position in
/// text the client wrote, no help to anyone reading the field's name.
fn without_position(message: &str) -> &str {
    let Some((before, position)) = message.rsplit_once(" at line ") else {
        return message;
    };
    let is_position = position
        .split_once(" column ")
        .is_some_and(|(line, column)| {
            [line, column]
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
    if is_position {
        before
    } else {
        message
    }
}

/// serde names our Rust types (`expected struct CreateBody`), which mean nothing to a client.
fn client_terms(message: &str) -> String {
    match message.split_once("expected struct ") {
        Some((before, after)) => {
            let rest = after.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
            // A JSON array is read as the struct's fields in order: "... with 2 elements".
            let rest = match rest.strip_prefix(" with ") {
                Some(count) => count
                    .trim_start_matches(|c: char| c.is_ascii_digit())
                    .trim_start_matches(" elements")
                    .trim_start_matches(" element"),
                None => rest,
            };
            let before = before
                .replace("invalid length 0, ", "invalid type: empty array, ")
                .replace("invalid type: sequence, ", "invalid type: array, ");
            format!("{before}expected a JSON object{rest}")
        }
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, client_terms, without_position};

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR  t0k "] {
            assert_eq!(bearer_token(header), Some("t0k"), "{header:?}");
        }
        for header in ["Basic t0k", "Bearert0k", "Bearer", "t0k"] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
    }

    #[test]
    fn serde_messages_never_name_our_types_nor_a_position() {
        assert_eq!(
            client_terms(without_position(
                "invalid type: sequence, expected struct CreateBody at line 1 column 0"
            )),
            "invalid type: array, expected a JSON object"
        );
        assert_eq!(
            client_terms("missing field `title`"),
            "missing field `title`"
        );
        assert_eq!(
            without_position("unknown variant `at line 2 column 3`"),
            "unknown variant `at line 2 column 3`",
            "only a position ends a message"
        );
    }
}

/// serde names the field in "missing field `x`" / "unknown field `x`" messages.
fn field_from_message(text: &str) -> Option<&str> {
    if !(text.starts_with("missing field `") || text.starts_with("unknown field `")) {
        return None;
    }
    text.split('`').nth(1)
}

/// Who is asking and from where: becomes the metadata of the events a request appends.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// Groups every event one request causes, across streams.
    pub correlation_id: Uuid,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl RequestContext {
    pub fn metadata(&self, actor: Actor) -> EventMetadata {
        EventMetadata {
            request_id: Some(self.request_id.clone()),
            client_ip: self.client_ip.clone(),
            user_agent: self.user_agent.clone(),
            correlation_id: Some(self.correlation_id),
            causation_id: None,
            ..EventMetadata::by(actor)
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let request_id = parts
            .headers
            .get(crate::X_REQUEST_ID)
            .and_then(crate::usable_request_id)
            .map(str::to_owned)
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect());
        Ok(Self {
            correlation_id: Uuid::parse_str(&request_id).unwrap_or_else(|_| Uuid::new_v4()),
            request_id,
            client_ip,
            user_agent,
        })
    }
}

/// A platform user authenticated by a bearer access token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub email: String,
    /// When the access token expires (unix seconds); long-lived responses end then.
    pub expires_at: i64,
}

impl AuthUser {
    pub fn actor(&self) -> Actor {
        Actor::PlatformUser { id: self.user_id }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let not_bearer = || {
            ApiError::new(
                ErrorCode::InvalidToken,
                "the Authorization header must be `Bearer <access_token>`",
            )
        };
        // A header that is there but not text is a malformed token, not a missing one.
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::MissingToken,
                    "send `Authorization: Bearer <access_token>`",
                )
            })?
            .to_str()
            .map_err(|_| not_bearer())?;
        let token = bearer_token(header).ok_or_else(not_bearer)?;
        let claims = state.tokens.verify_access(token)?;
        tracing::Span::current().record("actor", tracing::field::display(claims.sub));
        Ok(AuthUser {
            user_id: claims.sub,
            email: claims.email,
            expires_at: claims.exp,
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is case-insensitive and
/// may be followed by more than one space (RFC 9110, section 11.4).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Query parameters; a malformed one answers 400 problem+json naming it, a value outside a
/// fixed set (see [`crate::filters`]) 422 naming it.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        refuse_nul_in_query(query)?;
        parse_query(query).map(QueryParams)
    }
}

/// Reads a query string into `T`. serde_urlencoded's own errors do not say which parameter they
/// are about, so serde_path_to_error finds it.
pub(crate) fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    crate::filters::reading(|| serde_path_to_error::deserialize::<_, T>(pairs)).map_err(
        |(e, refusal)| {
            let parameter = e.path().to_string();
            if let Some(refusal) = refusal {
                return ApiError::field(&parameter, refusal);
            }
            let inner = e.inner().to_string();
            let detail = if parameter == "." {
                format!("invalid query: {inner}")
            } else {
                format!("invalid query parameter `{parameter}`: {inner}")
            };
            ApiError::new(ErrorCode::InvalidQuery, detail)
        },
    )
}

/// For a route that takes no query parameters: any is refused with 400, as routes that take
/// some refuse those they do not know, so a mistyped or unsupported `limit` is not silently
/// ignored.
pub struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        match form_urlencoded::parse(query.as_bytes()).next() {
            None => Ok(NoQuery),
            Some((name, _)) => Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("unknown query parameter `{name}`: this route takes none"),
            )),
        }
    }
}

/// Every `(name, value)` pair of the query string, for repeated parameters like `type=a&type=b`.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        refuse_nul_in_query(query)?;
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(QueryPairs)
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("invalid query string: {e}"),
                )
            })
    }
}

/// A `%00` in a query would reach Postgres as text it refuses: answered 400 here instead. (A
/// literal `%` is sent as `%25`, so `%00` in the raw query is always an encoded NUL.)
pub(crate) fn refuse_nul_in_query(query: &str) -> Result<(), ApiError> {
    match query.split('&').find(|pair| pair.contains("%00")) {
        Some(pair) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!(
                "invalid query parameter `{}`: must not contain the NUL character (%00)",
                pair.split('=').next().unwrap_or(pair)
            ),
        )),
        None => Ok(()),
    }
}

/// The org named by `{org}` in the path (its id or slug) and the signed-in caller's role in it,
/// for every org-scoped route. Not a member and no such org look the same: 404 `org_not_found`.
/// It signs the caller in first, so an anonymous request is 401 whatever it names.
pub struct Membership {
    pub user: AuthUser,
    pub org: OrgId,
    pub role: Role,
}

impl FromRequestParts<AppState> for Membership {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        let org_ref = org_segment(parts).await?;
        if !plausible_ref(&org_ref) {
            return Err(ApiError::not_found(ErrorCode::OrgNotFound));
        }
        let (org, role) =
            projections::models::organizations::membership(&state.pool, user.user_id, &org_ref)
                .await?
                .ok_or_else(|| ApiError::not_found(ErrorCode::OrgNotFound))?;
        let role = Role::parse(&role).map_err(ApiError::internal)?;
        tracing::Span::current().record("org", tracing::field::display(org));
        Ok(Self { user, org, role })
    }
}

/// The `{org}` segment, first of a route's parameters to be answered: a caller who is not a
/// member of the org is told only that, whatever the rest of the path names.
async fn org_segment(parts: &mut Parts) -> Result<String, ApiError> {
    match read_path::<crate::params::OrgPath>(parts).await {
        Ok(crate::params::OrgPath { org }) => return Ok(org),
        Err(PathError::NamesNothing(param)) if param == "org" => {
            return Err(crate::params::names_nothing(&param))
        }
        Err(PathError::NamesNothing(_)) => {}
        Err(PathError::Unreadable(e)) => return Err(ApiError::internal(e)),
    }
    // Another segment is not UTF-8, so axum kept none of them: read `{org}` from the path
    // itself, where the route's template has it, decoded as axum decodes a segment.
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .ok_or_else(|| ApiError::internal("an org route without its matched path"))?;
    let segment = template
        .as_str()
        .split('/')
        .zip(parts.uri.path().split('/'))
        .find_map(|(template, segment)| (template == "{org}").then_some(segment))
        .ok_or_else(|| ApiError::internal("an org route without an {org} segment"))?;
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|org| org.into_owned())
        .map_err(|_| crate::params::names_nothing("org"))
}

/// Path parameters, read as axum's `Path` reads them, except that a segment which names
/// nothing (not UTF-8 once percent-decoded, as `%FF`) is the 404 of what it would name
/// ([`crate::params::names_nothing`]) rather than axum's plain-text 400.
pub struct Path<T>(pub T);

enum PathError {
    /// The parameter whose segment is not UTF-8.
    NamesNothing(String),
    /// The route's parameters do not fit `T`: a bug.
    Unreadable(PathRejection),
}

async fn read_path<T: DeserializeOwned + Send>(parts: &mut Parts) -> Result<T, PathError> {
    match axum::extract::Path::<T>::from_request_parts(parts, &()).await {
        Ok(axum::extract::Path(value)) => Ok(value),
        Err(PathRejection::FailedToDeserializePathParams(e)) => match e.kind() {
            PathErrorKind::InvalidUtf8InPathParam { key } => {
                Err(PathError::NamesNothing(key.clone()))
            }
            _ => Err(PathError::Unreadable(e.into())),
        },
        Err(e) => Err(PathError::Unreadable(e)),
    }
}

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match read_path(parts).await {
            Ok(value) => Ok(Path(value)),
            Err(PathError::NamesNothing(param)) => Err(crate::params::names_nothing(&param)),
            Err(PathError::Unreadable(e)) => Err(ApiError::internal(e)),
        }
    }
}

#[cfg(test)]
mod body_refusals {
    use super::JsonBody;
    use axum::extract::{FromRequest, Request};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use serde::Deserialize;
    use serde_json::Value;

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
        count: u32,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        on: bool,
    }

    async fn refused(body: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method("POST")
            .uri("/")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        let Err(e) = JsonBody::<Body>::from_request(request, &()).await else {
            panic!("{body} was accepted");
        };
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Every way serde refuses a body: never a parser position, and the field when there is one.
    #[tokio::test]
    async fn a_refused_body_names_the_field_and_never_a_parser_position() {
        let syntax = [
            r#"{"name": }"#,
            r#"{"name": "a", "count": 1} trailing"#,
            r#"{"name": "a", "count": 1}{}"#,
            r#"{"name": "a""#,
            r#"{"name": "a", "count": tru}"#,
            "{\n\"name\": \"a\",\n\"count\": 1,\n}",
        ];
        for body in syntax {
            let (status, problem) = refused(body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
            assert_eq!(problem["code"], "malformed_json", "{body}: {problem}");
            let detail = problem["detail"].as_str().unwrap();
            assert!(
                !detail.contains(" line ") && !detail.contains("column"),
                "{body}: {detail}"
            );
        }
        let fields = [
            (
                r#"{"name": 5, "count": 1}"#,
                "name",
                "invalid type: integer `5`, expected a string",
            ),
            (
                r#"{"name": "a", "count": -1}"#,
                "count",
                "invalid value: integer `-1`, expected u32",
            ),
            (
                r#"{"name": "a", "count": 1, "tags": ["x", 2]}"#,
                "tags[1]",
                "invalid type: integer `2`, expected a string",
            ),
            (
                r#"{"name": "a", "count": 1, "inner": {"on": "yes"}}"#,
                "inner.on",
                "invalid type: string \"yes\", expected a boolean",
            ),
            (r#"{"name": "a"}"#, "count", "missing field `count`"),
            (
                r#"{"name": "a", "count": 1, "inner": {}}"#,
                "inner.on",
                "missing field `on`",
            ),
            (
                r#"{"name": "a", "count": 1, "extra": true}"#,
                "extra",
                "unknown field `extra`, expected one of `name`, `count`, `tags`, `inner`",
            ),
            (
                r#"{"name": "a", "count": 1, "inner": {"on": true, "off": 1}}"#,
                "inner.off",
                "unknown field `off`, expected `on`",
            ),
        ];
        for (body, field, message) in fields {
            let (status, problem) = refused(body).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{body}: {problem}"
            );
            assert_eq!(
                (
                    problem["errors"][0]["field"].as_str(),
                    problem["errors"][0]["message"].as_str()
                ),
                (Some(field), Some(message)),
                "{body}: {problem}"
            );
        }
    }

    /// A key the body does not take is refused in serde's words whatever it holds, and only a
    /// value outside a set gets the set's sentence.
    #[tokio::test]
    async fn a_body_refusal_cannot_be_forged_by_a_key() {
        #[allow(dead_code)]
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Status {
            #[serde(deserialize_with = "crate::filters::one_of")]
            status: domain::ticket::TicketStatus,
        }
        let refused = |body: &'static str| async move {
            let request = Request::builder()
                .method("POST")
                .uri("/")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let Err(e) = JsonBody::<Status>::from_request(request, &()).await else {
                panic!("{body} was accepted");
            };
            let response = e.into_response();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let problem: Value = serde_json::from_slice(&bytes).unwrap();
            (status, problem["errors"][0].clone())
        };
        let (status, error) = refused(r#"{"status": "new", "\u001ebogus": 1}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error["field"], "\u{1e}bogus", "{error}");
        assert_eq!(
            error["message"], "unknown field `\u{1e}bogus`, expected `status`",
            "{error}"
        );
        let (status, error) = refused(r#"{"status": "bogus"}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error["field"], "status", "{error}");
        assert_eq!(
            error["message"],
            "must be one of new, in_progress, awaiting_customer, resolved, closed"
        );
    }

    /// A query parameter the route does not take is 400 `invalid_query`, whatever its name
    /// holds; a value outside a set is 422 naming its parameter.
    #[test]
    fn a_query_refusal_cannot_be_forged_by_a_parameter_name() {
        use crate::error::ErrorCode;
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Query {
            #[serde(default, deserialize_with = "crate::filters::optional_one_of")]
            #[allow(dead_code)]
            status: Option<domain::ticket::TicketStatus>,
        }
        for query in ["bogus=1", "%1Ebogus=1", "%1E=1"] {
            let refused = super::parse_query::<Query>(query).unwrap_err();
            assert_eq!(refused.code(), ErrorCode::InvalidQuery, "{query}");
        }
        let refused = super::parse_query::<Query>("status=bogus").unwrap_err();
        assert_eq!(refused.code(), ErrorCode::ValidationFailed);
    }
}
