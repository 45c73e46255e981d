//! The one API error type. It owns every HTTP mapping, renders RFC 9457 problem+json with a
//! stable `code`, and never shows an internal cause to the client (it is logged instead).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::organization::OrganizationError;
use domain::server::ServerError;
use domain::values::ValueError;
use eventstore::ExecuteError;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request could not be read at all.
    BadRequest {
        code: &'static str,
        detail: String,
    },
    /// 422: a field is missing, of the wrong type or invalid.
    Validation(Vec<FieldError>),
    Unauthorized {
        code: &'static str,
        detail: String,
    },
    Forbidden {
        detail: String,
    },
    NotFound {
        code: &'static str,
        detail: String,
    },
    Conflict {
        code: &'static str,
        detail: String,
    },
    /// 405: the route exists but not with this method (axum adds `Allow`).
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests {
        retry_after_secs: u64,
    },
    /// 503: a dependency (Postgres) is unavailable; retry later.
    Unavailable,
    /// 500: a bug. The cause is logged, never sent.
    Internal(String),
}

impl ApiError {
    pub fn field(field: &str, message: impl ToString) -> Self {
        ApiError::Validation(vec![FieldError {
            field: field.to_owned(),
            message: message.to_string(),
        }])
    }

    pub fn value(field: &str, e: ValueError) -> Self {
        Self::field(field, e)
    }

    pub fn not_found(what: &'static str) -> Self {
        let code = match what {
            "organization" => "org_not_found",
            "server" => "server_not_found",
            "member" => "member_not_found",
            "ticket" => "ticket_not_found",
            "end user" => "end_user_not_found",
            "session" => "session_not_found",
            "walkthrough" => "walkthrough_not_found",
            "step" => "step_not_found",
            "assignment" => "assignment_not_found",
            _ => "not_found",
        };
        ApiError::NotFound {
            code,
            detail: format!("{what} not found"),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldError>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail, errors, retry_after) = match self {
            ApiError::BadRequest { code, detail } => {
                (StatusCode::BAD_REQUEST, code, detail, None, None)
            }
            ApiError::Validation(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    detail,
                    Some(errors),
                    None,
                )
            }
            ApiError::Unauthorized { code, detail } => {
                (StatusCode::UNAUTHORIZED, code, detail, None, None)
            }
            ApiError::Forbidden { detail } => {
                (StatusCode::FORBIDDEN, "forbidden", detail, None, None)
            }
            ApiError::NotFound { code, detail } => {
                (StatusCode::NOT_FOUND, code, detail, None, None)
            }
            ApiError::Conflict { code, detail } => (StatusCode::CONFLICT, code, detail, None, None),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method; the Allow header lists those it does"
                    .to_owned(),
                None,
                None,
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the limit".to_owned(),
                None,
                None,
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON with `Content-Type: application/json`".to_owned(),
                None,
                None,
            ),
            ApiError::TooManyRequests { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many attempts; retry in {retry_after_secs} s"),
                None,
                Some(retry_after_secs),
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is temporarily unavailable; retry shortly".to_owned(),
                None,
                Some(1),
            ),
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred".to_owned(),
                    None,
                    None,
                )
            }
        };
        let body = Problem {
            kind: format!("/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code,
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

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if eventstore::is_unavailable(&e) {
            ApiError::Unavailable
        } else if is_data_exception(&e) {
            // Postgres refused a value (class 22: data exception), so the input was bad. The
            // edges validate first; this is the safety net that keeps it a 400, never a 500.
            ApiError::BadRequest {
                code: "invalid_input",
                detail: "a value in the request cannot be stored or searched".to_owned(),
            }
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

fn is_data_exception(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")))
}

/// Whether a path segment can name anything at all (an id, slug or email): no control
/// characters, bounded length. Anything else is simply not found.
pub fn plausible_ref(segment: &str) -> bool {
    !segment.is_empty() && segment.len() <= 254 && !segment.chars().any(char::is_control)
}

impl From<eventstore::StoreError> for ApiError {
    fn from(e: eventstore::StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::Unavailable
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<eventstore::CommitError> for ApiError {
    fn from(e: eventstore::CommitError) -> Self {
        match e {
            eventstore::CommitError::Conflict => conflict(),
            eventstore::CommitError::KeyTaken { kind } => key_taken(kind),
            eventstore::CommitError::Store(s) => s.into(),
        }
    }
}

fn conflict() -> ApiError {
    ApiError::Conflict {
        code: "concurrent_modification",
        detail: "the resource was changed concurrently; retry".to_owned(),
    }
}

fn key_taken(kind: eventstore::KeyKind) -> ApiError {
    use eventstore::KeyKind;
    let (code, detail) = match kind {
        KeyKind::UserEmail => ("email_taken", "an account with this email already exists"),
        KeyKind::OrgSlug => ("slug_taken", "this organization slug is already taken"),
        KeyKind::ServerSlug => ("slug_taken", "this server slug is already taken"),
        KeyKind::EndUserTracking | KeyKind::WalkthroughSelected => ("conflict", "already taken"),
    };
    ApiError::Conflict {
        code,
        detail: detail.to_owned(),
    }
}

/// Maps a command's failure: its domain error by `domain`, the rest uniformly.
pub fn from_execute<E>(e: ExecuteError<E>, domain: impl FnOnce(E) -> ApiError) -> ApiError {
    match e {
        ExecuteError::Domain(d) => domain(d),
        ExecuteError::Conflict => conflict(),
        ExecuteError::KeyTaken { kind } => key_taken(kind),
        ExecuteError::Store(s) => s.into(),
    }
}

impl From<ExecuteError<OrganizationError>> for ApiError {
    fn from(e: ExecuteError<OrganizationError>) -> Self {
        from_execute(e, |d| {
            let detail = d.to_string();
            match d {
                OrganizationError::NotFound | OrganizationError::NotAMember => {
                    ApiError::not_found("organization")
                }
                OrganizationError::NotAllowed => ApiError::Forbidden { detail },
                OrganizationError::NoSuchMember | OrganizationError::NoInvitation => {
                    ApiError::not_found("member")
                }
                OrganizationError::AlreadyExists => ApiError::Conflict {
                    code: "conflict",
                    detail,
                },
                OrganizationError::AlreadyMember => ApiError::Conflict {
                    code: "already_member",
                    detail,
                },
                OrganizationError::AlreadyInvited => ApiError::Conflict {
                    code: "already_invited",
                    detail,
                },
                OrganizationError::LastOwner => ApiError::Conflict {
                    code: "last_owner",
                    detail,
                },
            }
        })
    }
}

impl From<ExecuteError<ServerError>> for ApiError {
    fn from(e: ExecuteError<ServerError>) -> Self {
        from_execute(e, |d| {
            let detail = d.to_string();
            match d {
                ServerError::NotFound => ApiError::not_found("server"),
                ServerError::NotAllowed => ApiError::Forbidden { detail },
                ServerError::AlreadyExists => ApiError::Conflict {
                    code: "conflict",
                    detail,
                },
                ServerError::Archived => ApiError::Conflict {
                    code: "server_archived",
                    detail,
                },
            }
        })
    }
}
