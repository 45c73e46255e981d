//! The one API error type. Its code comes from the catalogue (`commands::errors`), which gives
//! the code's kind; the kind gives the HTTP status here, in [`status`]. It renders RFC 9457
//! problem+json whose `type` is the code's page ([`problem_type`]) and never shows an internal
//! cause to the client: that is logged, once, with its source chain.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
pub use commands::errors::ErrorCode;
use commands::errors::{BoxError, Chain, ErrorKind, Failure};
use domain::values::ValueError;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    /// For `validation_failed`: each invalid field and why.
    errors: Vec<FieldError>,
    retry_after_secs: Option<u64>,
    /// For an internal or unavailable error: the cause, logged when rendered, never sent.
    source: Option<BoxError>,
}

/// The HTTP status of each kind of error: the only place statuses are chosen.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The problem `type` of a code: a page describing it, served by `GET /problems/{code}`.
pub fn problem_type(code: ErrorCode) -> String {
    format!("/problems/{code}")
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_secs: None,
            source: None,
        }
    }

    /// 422 `validation_failed` naming each field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(ErrorCode::ValidationFailed, String::new())
        }
    }

    pub fn field(field: &str, message: impl ToString) -> Self {
        Self::validation(vec![FieldError {
            field: field.to_owned(),
            message: message.to_string(),
        }])
    }

    pub fn value(field: &str, e: ValueError) -> Self {
        Self::field(field, e)
    }

    /// A `*_not_found` code with its usual detail (`server not found`).
    pub fn not_found(code: ErrorCode) -> Self {
        Failure::not_found(code).into()
    }

    /// A bug. The cause keeps its source chain and is logged when the error is rendered.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Failure::internal(source).into()
    }

    pub fn route_not_found() -> Self {
        Self::new(ErrorCode::RouteNotFound, "no such route")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            ErrorCode::MethodNotAllowed,
            "this route does not accept that method; the Allow header lists those it does",
        )
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than the limit",
        )
    }

    /// The request body was not received within the body timeout (answered by the server
    /// loop, whatever the handler made of the cut-short body).
    pub fn request_timeout() -> Self {
        Self::new(
            ErrorCode::RequestTimeout,
            "the request body did not arrive within the time allowed",
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            ErrorCode::UnsupportedMediaType,
            "send JSON with `Content-Type: application/json`",
        )
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                ErrorCode::RateLimited,
                format!("too many attempts; retry in {retry_after_secs} s"),
            )
        }
    }

    /// 429 `limit_reached`: a platform limit (see `commands::limits`) refused; a rate says
    /// when to retry.
    pub fn limit_reached(detail: impl Into<String>, retry_after_secs: Option<u64>) -> Self {
        Self {
            retry_after_secs,
            ..Self::new(ErrorCode::LimitReached, detail)
        }
    }

    /// The same error with a `Retry-After` of `secs` seconds.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        status(self.code.kind())
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        let errors = match f.field {
            Some(field) => vec![FieldError {
                field,
                message: f.detail.clone(),
            }],
            None => Vec::new(),
        };
        Self {
            code: f.code,
            detail: f.detail,
            errors,
            retry_after_secs: None,
            source: f.source,
        }
    }
}

/// Every error a handler meets converts through the one table in `commands::errors`.
macro_rules! through_the_table {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                Failure::from(e).into()
            }
        })*
    };
}

through_the_table!(
    sqlx::Error,
    eventstore::StoreError,
    eventstore::CommitError,
    eventstore::cursor::BadCursor,
    domain::walkthrough::WalkthroughError,
    commands::services::tickets::AssignError,
    commands::services::walkthroughs::AssignError,
);

impl<E> From<eventstore::ExecuteError<E>> for ApiError
where
    Failure: From<E>,
{
    fn from(e: eventstore::ExecuteError<E>) -> Self {
        <Failure as From<eventstore::ExecuteError<E>>>::from(e).into()
    }
}

/// An RFC 9457 problem, as every error is rendered (`application/problem+json`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `/problems/{code}`: a page describing the code.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// What went wrong, for programs: one of the catalogue's codes, stable.
    #[schema(schema_with = error_code_ref)]
    pub code: ErrorCode,
    /// For `validation_failed`: each invalid field and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

fn error_code_ref() -> utoipa::openapi::Ref {
    utoipa::openapi::Ref::from_schema_name("ErrorCode")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match self.code.kind() {
            ErrorKind::Internal => {
                // The one place an internal error is logged: with its whole chain.
                match &self.source {
                    Some(source) => {
                        tracing::error!(error = %Chain(source.as_ref()), "internal error")
                    }
                    None => tracing::error!(error = %self.detail, "internal error"),
                }
                "an internal error occurred".to_owned()
            }
            _ if !self.errors.is_empty() => self
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            _ => self.detail,
        };
        let retry_after = match self.code.kind() {
            ErrorKind::Unavailable => Some(self.retry_after_secs.unwrap_or(1)),
            _ => self.retry_after_secs,
        };
        let errors = (self.code == ErrorCode::ValidationFailed).then_some(self.errors);
        let body = Problem {
            kind: problem_type(self.code),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: self.code,
            errors,
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// Whether a path segment can name anything at all (an id, slug or email): no control
/// characters, bounded length. Anything else is simply not found.
pub fn plausible_ref(segment: &str) -> bool {
    !segment.is_empty() && segment.len() <= 254 && !segment.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_status_of_its_kind() {
        for &code in ErrorCode::all() {
            let status = status(code.kind());
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code}: {status}"
            );
        }
        assert_eq!(
            ApiError::not_found(ErrorCode::OrgNotFound).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::field("name", "is required").status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }

    #[tokio::test]
    async fn an_internal_error_keeps_its_cause_and_shows_none_of_it() {
        let error = ApiError::internal("secret database detail");
        assert!(error.source.is_some(), "the cause is kept, not flattened");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["code"], "internal");
        assert_eq!(problem["type"], "/problems/internal");
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }
}
