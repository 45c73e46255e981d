//! The one error table of both edges: every code either edge answers ([`ErrorCode`]) with its
//! kind and description, and each domain and store error mapped to its code and detail
//! ([`Failure`]). The REST edge turns a kind into an HTTP status (in one match, in `api`); the MCP
//! edge words a tool error with the same code and detail. Both edges depend on this crate, and
//! neither the domain (which does no I/O) nor the event store knows about edges, so the table
//! lives here.

use domain::end_user::EndUserError;
use domain::identity_provider::ProviderError;
use domain::login::LoginError;
use domain::mcp_session::McpSessionError;
use domain::organization::OrganizationError;
use domain::refresh_token::RefreshTokenError;
use domain::server::ServerError;
use domain::ticket::TicketError;
use domain::tool_call::ToolCallError;
use domain::user::UserError;
use domain::walkthrough::WalkthroughError;
use domain::walkthrough_progress::ProgressError;
use eventstore::{CommitError, ExecuteError, KeyKind, StoreError};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// What kind of refusal a code is; the REST edge maps each kind to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request cannot be read: malformed, or a parameter of the wrong form.
    BadRequest,
    /// A field or value is invalid.
    Invalid,
    /// The caller is not signed in, or their credentials are not valid.
    Unauthenticated,
    /// Signed in, but not allowed to do this.
    Forbidden,
    /// No such thing, or not one the caller may see.
    NotFound,
    /// The route does not take this method.
    MethodNotAllowed,
    /// The current state does not allow it, or it exists already.
    Conflict,
    /// The request body is too large.
    TooLarge,
    /// The request body is not of a type the route takes.
    UnsupportedMediaType,
    /// The request body did not arrive in the time allowed.
    RequestTimeout,
    /// Too many attempts in a short time.
    RateLimited,
    /// A dependency is unavailable; retrying shortly may succeed.
    Unavailable,
    /// A bug: the cause is logged, never shown.
    Internal,
}

/// Every error code an edge answers, as sent on the wire (`snake_case`). Renaming a variant
/// renames the code; tests assert the codes by their wire names.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    MalformedJson,
    UnreadableBody,
    InvalidQuery,
    InvalidLimit,
    InvalidCursor,
    InvalidType,
    InvalidInput,
    ValidationFailed,
    MissingToken,
    InvalidToken,
    TokenExpired,
    InvalidCredentials,
    InvalidRefreshToken,
    RefreshTokenExpired,
    RefreshTokenRevoked,
    RefreshTokenReused,
    IdentityRequired,
    Forbidden,
    RouteNotFound,
    OrgNotFound,
    MemberNotFound,
    ServerNotFound,
    TicketNotFound,
    EndUserNotFound,
    SessionNotFound,
    WalkthroughNotFound,
    StepNotFound,
    AssignmentNotFound,
    TrackingSecretNotFound,
    IdentityProviderNotFound,
    MethodNotAllowed,
    Conflict,
    ConcurrentModification,
    EmailTaken,
    SlugTaken,
    AlreadyMember,
    InvitationPending,
    InvitationNotFound,
    InvitationExpired,
    InvitationEmailMismatch,
    LastOwner,
    TooManyTrackingSecrets,
    LastTrackingSecret,
    IdentityProviderInUse,
    ProviderDiscoveryFailed,
    ServerArchived,
    IllegalTransition,
    AmbiguousReference,
    WalkthroughArchived,
    NoSteps,
    NothingToPublish,
    NotPublished,
    AlreadyAssigned,
    NotMerged,
    MergeLater,
    NoWalkthroughSelected,
    WalkthroughCompleted,
    StaleStep,
    PayloadTooLarge,
    UnsupportedMediaType,
    RequestTimeout,
    RateLimited,
    LimitReached,
    TooManyStreams,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The wire name, e.g. `org_not_found`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Every code, in catalogue order.
    pub fn all() -> &'static [ErrorCode] {
        <Self as strum::VariantArray>::VARIANTS
    }

    pub fn kind(self) -> ErrorKind {
        self.entry().0
    }

    /// One sentence saying what the code means, for the OpenAPI catalogue and the problem pages.
    pub fn description(self) -> &'static str {
        self.entry().1
    }

    /// The catalogue: each code's kind and description.
    const fn entry(self) -> (ErrorKind, &'static str) {
        use ErrorCode::*;
        use ErrorKind as K;
        match self {
            BadRequest => (K::BadRequest, "The request could not be read."),
            MalformedJson => (K::BadRequest, "The request body is not valid JSON."),
            UnreadableBody => (K::BadRequest, "The request body could not be read."),
            InvalidQuery => (
                K::BadRequest,
                "A query parameter is one the route does not take, or its value is not of the \
                 parameter's type (or holds a NUL character); the detail names it.",
            ),
            InvalidLimit => (
                K::BadRequest,
                "`limit` is not an integer in the range the list allows (1 to 500; 1 to 1000 for \
                 events).",
            ),
            InvalidCursor => (
                K::BadRequest,
                "The cursor is not one this API handed out: pass the `next_cursor` of an earlier \
                 page (or an event's `cursor`).",
            ),
            InvalidType => (
                K::BadRequest,
                "An event type filter is not a type name (letters, digits and `_`).",
            ),
            InvalidInput => (
                K::BadRequest,
                "A value in the request cannot be stored or searched by the database.",
            ),
            ValidationFailed => (
                K::Invalid,
                "A field is missing, of the wrong type or invalid; `errors` names each field and \
                 says why.",
            ),
            MissingToken => (
                K::Unauthenticated,
                "No `Authorization: Bearer <access_token>` header was sent.",
            ),
            InvalidToken => (
                K::Unauthenticated,
                "The access token is malformed or forged, or its account no longer exists.",
            ),
            TokenExpired => (
                K::Unauthenticated,
                "The access token has expired: get a new pair with `POST /api/v1/auth/refresh`.",
            ),
            InvalidCredentials => (K::Unauthenticated, "The email or the password is wrong."),
            InvalidRefreshToken => (
                K::Unauthenticated,
                "The refresh token is not one this API issued; log in again.",
            ),
            RefreshTokenExpired => (
                K::Unauthenticated,
                "The refresh token has expired; log in again.",
            ),
            RefreshTokenRevoked => (
                K::Unauthenticated,
                "The refresh token was revoked (its login logged out); log in again.",
            ),
            RefreshTokenReused => (
                K::Unauthenticated,
                "A refresh token was used twice, so every token of its login is revoked; log in \
                 again.",
            ),
            IdentityRequired => (
                K::Unauthenticated,
                "MCP tools only: the connection does not say who the end user is; connect with \
                 the personal server URL ending in `/t/{tracking_id}/mcp`.",
            ),
            Forbidden => (
                K::Forbidden,
                "The caller's role does not allow this: owners and admins manage members, \
                 servers and walkthroughs, and only owners manage owners.",
            ),
            RouteNotFound => (K::NotFound, "No route has this path."),
            OrgNotFound => (
                K::NotFound,
                "No such organization, or the caller is not a member of it.",
            ),
            MemberNotFound => (
                K::NotFound,
                "No member or invitation of the organization has this user id or email.",
            ),
            ServerNotFound => (K::NotFound, "No such server in the organization."),
            TicketNotFound => (
                K::NotFound,
                "No ticket of the organization has this id or reference.",
            ),
            EndUserNotFound => (
                K::NotFound,
                "No end user of the organization has this id or tracking id.",
            ),
            SessionNotFound => (K::NotFound, "No such session in the organization."),
            WalkthroughNotFound => (
                K::NotFound,
                "No such walkthrough in the organization (for MCP tools: none offered on this \
                 server).",
            ),
            StepNotFound => (K::NotFound, "No such step in the walkthrough."),
            AssignmentNotFound => (
                K::NotFound,
                "The walkthrough is not assigned to this server.",
            ),
            TrackingSecretNotFound => (
                K::NotFound,
                "No active tracking secret of the server has this id (it may have been revoked).",
            ),
            IdentityProviderNotFound => (
                K::NotFound,
                "No identity provider of the organization has this id.",
            ),
            MethodNotAllowed => (
                K::MethodNotAllowed,
                "The route does not take this method; the `Allow` header lists those it does.",
            ),
            Conflict => (K::Conflict, "It exists already."),
            ConcurrentModification => (
                K::Conflict,
                "Other requests kept changing the resource at the same time; retry.",
            ),
            EmailTaken => (K::Conflict, "An account with this email already exists."),
            SlugTaken => (
                K::Conflict,
                "The slug is taken: organization and server slugs are unique platform-wide.",
            ),
            AlreadyMember => (
                K::Conflict,
                "The person is already a member of the organization.",
            ),
            InvitationPending => (
                K::Conflict,
                "The person has not accepted the invitation yet: invite them again with the new \
                 role (which replaces the earlier invitation and its link).",
            ),
            InvitationNotFound => (
                K::NotFound,
                "No pending invitation has this token: it was never issued, or it was already \
                 used, revoked, or replaced by a newer invitation of the same email.",
            ),
            InvitationExpired => (
                K::Conflict,
                "The invitation has expired: ask the organization for a new one.",
            ),
            InvitationEmailMismatch => (
                K::Forbidden,
                "The invitation is for another email address: accept it signed in as (or \
                 signing up with) the invited address.",
            ),
            LastOwner => (
                K::Conflict,
                "The organization's last owner cannot be removed or demoted.",
            ),
            TooManyTrackingSecrets => (
                K::Conflict,
                "The server already has two active tracking secrets (the most it holds, enough to \
                 rotate with an overlap): revoke one first.",
            ),
            LastTrackingSecret => (
                K::Conflict,
                "The server requires signed tracking ids, so its last active tracking secret \
                 cannot be revoked: create the next one first, or stop requiring them.",
            ),
            IdentityProviderInUse => (
                K::Conflict,
                "Servers sign their end users in with this identity provider: move them to \
                 another provider or auth mode first (the detail lists them).",
            ),
            ProviderDiscoveryFailed => (
                K::Invalid,
                "The issuer's OpenID discovery document could not be fetched through the \
                 outbound guard, or it does not name the configured issuer; the detail says \
                 why.",
            ),
            ServerArchived => (
                K::Conflict,
                "The server is archived: it can no longer change, and nothing new can be assigned \
                 to it.",
            ),
            IllegalTransition => (
                K::Conflict,
                "A ticket cannot go from its status to the one asked; the detail lists the \
                 allowed ones.",
            ),
            AmbiguousReference => (
                K::Conflict,
                "The ticket reference names more than one ticket; use one of the ids the detail \
                 lists.",
            ),
            WalkthroughArchived => (
                K::Conflict,
                "The walkthrough is archived and can no longer change.",
            ),
            NoSteps => (
                K::Conflict,
                "The walkthrough has no steps (to publish, or to run).",
            ),
            NothingToPublish => (K::Conflict, "Nothing changed since the published version."),
            NotPublished => (
                K::Conflict,
                "The walkthrough is not published: only a published one can be unpublished or \
                 assigned to a server.",
            ),
            AlreadyAssigned => (
                K::Conflict,
                "The walkthrough is already assigned to this server.",
            ),
            NotMerged => (
                K::Conflict,
                "The end user named in an unmerge was not merged into this person.",
            ),
            MergeLater => (
                K::Conflict,
                "The merge cannot be undone yet: the end user it merged into was merged into \
                 another since; undo that later merge first (the detail names it).",
            ),
            NoWalkthroughSelected => (
                K::Conflict,
                "MCP tools only: no walkthrough is selected for this end user; call \
                 `select_walkthrough` first.",
            ),
            WalkthroughCompleted => (
                K::Conflict,
                "MCP tools only: the end user has completed this walkthrough; select it with \
                 `resume_if_exists: false` to start over.",
            ),
            StaleStep => (
                K::Conflict,
                "MCP tools only: the step named is not the end user's current one; nothing was \
                 marked done.",
            ),
            PayloadTooLarge => (K::TooLarge, "The request body is larger than the limit."),
            RequestTimeout => (
                K::RequestTimeout,
                "The request body did not arrive within the time allowed; send it again, faster.",
            ),
            UnsupportedMediaType => (
                K::UnsupportedMediaType,
                "The body must be JSON sent with `Content-Type: application/json`.",
            ),
            RateLimited => (
                K::RateLimited,
                "Too many attempts; retry after the seconds in `Retry-After`.",
            ),
            LimitReached => (
                K::RateLimited,
                "A platform limit was reached (tickets per end user, new end users per server or \
                 per address, open sessions per end user, orgs per account, signups per \
                 address); the detail names it. A rate says when to retry (`Retry-After`, or \
                 `retryAfter` in an MCP tool result); a count frees up when something ends.",
            ),
            TooManyStreams => (
                K::RateLimited,
                "Too many live event streams are open (for this user, organization or server \
                 instance); close one, or retry after the seconds in `Retry-After`.",
            ),
            Unavailable => (
                K::Unavailable,
                "A dependency (the database) is unavailable; retry after the seconds in \
                 `Retry-After`.",
            ),
            Internal => (
                K::Internal,
                "An internal error; it is logged with its cause, which is never shown.",
            ),
        }
    }

    /// What a `*_not_found` code's detail says is missing.
    fn missing(self) -> &'static str {
        match self {
            ErrorCode::OrgNotFound => "organization",
            ErrorCode::MemberNotFound => "member",
            ErrorCode::InvitationNotFound => "invitation",
            ErrorCode::ServerNotFound => "server",
            ErrorCode::TicketNotFound => "ticket",
            ErrorCode::EndUserNotFound => "end user",
            ErrorCode::SessionNotFound => "session",
            ErrorCode::WalkthroughNotFound => "walkthrough",
            ErrorCode::StepNotFound => "step",
            ErrorCode::AssignmentNotFound => "assignment",
            ErrorCode::TrackingSecretNotFound => "tracking secret",
            ErrorCode::IdentityProviderNotFound => "identity provider",
            ErrorCode::RouteNotFound => "route",
            _ => "resource",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure as an edge tells it: its code, a detail for the caller, the field it is about (for
/// `validation_failed`), and, for an internal or unavailable failure, the cause with its source
/// chain, which is logged and never shown.
#[derive(Debug)]
pub struct Failure {
    pub code: ErrorCode,
    pub detail: String,
    pub field: Option<String>,
    pub source: Option<BoxError>,
}

impl Failure {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            field: None,
            source: None,
        }
    }

    /// `validation_failed` about one field.
    pub fn invalid(field: impl Into<String>, message: impl ToString) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(ErrorCode::ValidationFailed, message.to_string())
        }
    }

    /// A `*_not_found` code, with the detail every lookup answers (`ticket not found`).
    pub fn not_found(code: ErrorCode) -> Self {
        Self::new(code, format!("{} not found", code.missing()))
    }

    /// A bug: `source` is logged with its chain by whoever renders the failure.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(ErrorCode::Internal, "an internal error occurred")
        }
    }

    /// The database cannot be reached; retrying shortly may succeed.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(
                ErrorCode::Unavailable,
                "the service is temporarily unavailable; retry shortly",
            )
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.code.kind()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.detail, self.code)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// An error with its whole source chain on one line (`a: b: c`), each cause once: for the one
/// log line an internal error gets, and the CLI's error line. An error whose text ends with its
/// source's (thiserror's `#[error("database: {0}")]` with `#[from]`, sqlx's and io's errors)
/// contributes only what precedes it, and a part equal to the one before it is not repeated.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = std::iter::successors(Some(self.0), |e| e.source())
            .map(ToString::to_string)
            .collect();
        let mut shown: Option<&str> = None;
        for (i, text) in texts.iter().enumerate() {
            let own = match texts.get(i + 1) {
                Some(source) if !source.is_empty() && text.ends_with(source.as_str()) => text
                    [..text.len() - source.len()]
                    .trim_end_matches(|c: char| c == ':' || c.is_whitespace()),
                _ => text.as_str(),
            };
            if own.is_empty() || shown == Some(own) {
                continue;
            }
            if shown.is_some() {
                f.write_str(": ")?;
            }
            f.write_str(own)?;
            shown = Some(own);
        }
        Ok(())
    }
}

/// What a database error means to the caller: one classification, whoever holds the error
/// (its owner, or each caller a shared cache hands the error of one load to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatabaseFailure {
    /// The database cannot be reached; retrying shortly may succeed.
    Unavailable,
    /// Postgres refused a value (class 22: data exception), so the input was bad. The edges
    /// validate first; this is the safety net that keeps it a 400, never a 500.
    DataException,
    /// Anything else: a bug.
    Internal,
}

impl DatabaseFailure {
    fn of(e: &sqlx::Error) -> Self {
        if eventstore::is_unavailable(e) {
            Self::Unavailable
        } else if matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")))
        {
            Self::DataException
        } else {
            Self::Internal
        }
    }

    fn failure(self, source: impl Into<BoxError>) -> Failure {
        match self {
            Self::Unavailable => Failure::unavailable(source),
            Self::DataException => Failure::new(
                ErrorCode::InvalidInput,
                "a value in the request cannot be stored or searched",
            ),
            Self::Internal => Failure::internal(source),
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        DatabaseFailure::of(&e).failure(e)
    }
}

/// As a shared cache hands back the error of a load it ran once for every waiting caller.
impl From<std::sync::Arc<sqlx::Error>> for Failure {
    fn from(e: std::sync::Arc<sqlx::Error>) -> Self {
        DatabaseFailure::of(&e).failure(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            Failure::unavailable(e)
        } else {
            Failure::internal(e)
        }
    }
}

impl From<CommitError> for Failure {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Conflict => concurrent_modification(),
            CommitError::KeyTaken { kind } => kind.into(),
            CommitError::OwnerMoved { kind, .. } => owner_moved(kind),
            CommitError::Store(s) => s.into(),
        }
    }
}

impl<E> From<ExecuteError<E>> for Failure
where
    Failure: From<E>,
{
    fn from(e: ExecuteError<E>) -> Self {
        match e {
            ExecuteError::Domain(d) => d.into(),
            ExecuteError::Conflict => concurrent_modification(),
            ExecuteError::KeyTaken { kind } => kind.into(),
            ExecuteError::OwnerMoved { kind, .. } => owner_moved(kind),
            ExecuteError::Store(s) => s.into(),
        }
    }
}

fn concurrent_modification() -> Failure {
    Failure::new(
        ErrorCode::ConcurrentModification,
        "the resource was changed concurrently; retry",
    )
}

/// What a write was for has gone: the org or server its slug named was archived or renamed (or
/// the slug taken by another) since the request was resolved.
fn owner_moved(kind: KeyKind) -> Failure {
    match kind {
        KeyKind::ServerSlug => Failure::new(
            ErrorCode::ServerNotFound,
            "the server was archived or renamed; nothing was written",
        ),
        KeyKind::OrgSlug => Failure::new(
            ErrorCode::OrgNotFound,
            "the organization was archived or renamed; nothing was written",
        ),
        // A server bound to a provider requires the provider's key owned by its org.
        KeyKind::IdentityProvider => unknown_provider(),
        KeyKind::UserEmail
        | KeyKind::EndUserTracking
        | KeyKind::EndUserSubject
        | KeyKind::EndUserEmail
        | KeyKind::WalkthroughSelected
        | KeyKind::InvitationToken
        | KeyKind::OauthCode
        | KeyKind::OauthAccessToken
        | KeyKind::OauthRefreshToken => concurrent_modification(),
    }
}

/// A unique key someone else holds.
impl From<KeyKind> for Failure {
    fn from(kind: KeyKind) -> Self {
        let (code, detail) = match kind {
            KeyKind::UserEmail => (
                ErrorCode::EmailTaken,
                "an account with this email already exists",
            ),
            KeyKind::OrgSlug => (
                ErrorCode::SlugTaken,
                "this organization slug is already taken",
            ),
            KeyKind::ServerSlug => (ErrorCode::SlugTaken, "this server slug is already taken"),
            KeyKind::EndUserTracking
            | KeyKind::EndUserSubject
            | KeyKind::EndUserEmail
            | KeyKind::WalkthroughSelected
            | KeyKind::InvitationToken
            | KeyKind::IdentityProvider
            | KeyKind::OauthCode
            | KeyKind::OauthAccessToken
            | KeyKind::OauthRefreshToken => (ErrorCode::Conflict, "already taken"),
        };
        Failure::new(code, detail)
    }
}

impl From<OrganizationError> for Failure {
    fn from(e: OrganizationError) -> Self {
        use OrganizationError as E;
        let code = match e {
            E::NotFound | E::NotAMember => return Failure::not_found(ErrorCode::OrgNotFound),
            E::NoSuchMember | E::NoInvitation => {
                return Failure::not_found(ErrorCode::MemberNotFound)
            }
            E::NotAllowed => ErrorCode::Forbidden,
            E::AlreadyExists => ErrorCode::Conflict,
            E::AlreadyMember => ErrorCode::AlreadyMember,
            E::UnknownInvitation => ErrorCode::InvitationNotFound,
            E::InvitationExpired => ErrorCode::InvitationExpired,
            E::InvitationForAnotherEmail => ErrorCode::InvitationEmailMismatch,
            E::LastOwner => ErrorCode::LastOwner,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<ServerError> for Failure {
    fn from(e: ServerError) -> Self {
        let code = match e {
            ServerError::NotFound => return Failure::not_found(ErrorCode::ServerNotFound),
            ServerError::NotAllowed => ErrorCode::Forbidden,
            ServerError::AlreadyExists => ErrorCode::Conflict,
            ServerError::Archived => ErrorCode::ServerArchived,
            ServerError::TrackingSecretNotFound => {
                return Failure::not_found(ErrorCode::TrackingSecretNotFound)
            }
            ServerError::TooManyTrackingSecrets => ErrorCode::TooManyTrackingSecrets,
            ServerError::SignedTrackingNeedsSecret => {
                return Failure::invalid("require_signed_tracking", e)
            }
            ServerError::LastTrackingSecret => ErrorCode::LastTrackingSecret,
            ServerError::OauthNeedsProvider => return Failure::invalid("identity_provider_id", e),
            ServerError::UnknownProvider => return unknown_provider(),
        };
        Failure::new(code, e.to_string())
    }
}

/// A server named an identity provider its org does not have (another org's, or deleted).
pub fn unknown_provider() -> Failure {
    Failure::invalid(
        "identity_provider_id",
        "no identity provider of this organization has this id",
    )
}

impl From<ProviderError> for Failure {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::NotFound => Failure::not_found(ErrorCode::IdentityProviderNotFound),
            ProviderError::AlreadyExists => Failure::new(ErrorCode::Conflict, e.to_string()),
            ProviderError::NotAllowed => Failure::new(ErrorCode::Forbidden, e.to_string()),
            ProviderError::Invalid { field, reason } => Failure::invalid(field, reason),
            ProviderError::InUse { ref servers } => {
                let ids: Vec<String> = servers.iter().map(Uuid::to_string).collect();
                Failure::new(
                    ErrorCode::IdentityProviderInUse,
                    format!("{e}: {}", ids.join(", ")),
                )
            }
        }
    }
}

impl From<TicketError> for Failure {
    fn from(e: TicketError) -> Self {
        let code = match e {
            TicketError::NotFound => return Failure::not_found(ErrorCode::TicketNotFound),
            TicketError::Length { field, .. } => return Failure::invalid(field, e),
            TicketError::IllegalTransition { .. } => ErrorCode::IllegalTransition,
            TicketError::AlreadyOpened => ErrorCode::Conflict,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<WalkthroughError> for Failure {
    fn from(e: WalkthroughError) -> Self {
        use WalkthroughError as W;
        let code = match e {
            W::NotFound => return Failure::not_found(ErrorCode::WalkthroughNotFound),
            W::StepNotFound => return Failure::not_found(ErrorCode::StepNotFound),
            W::NotAssigned => return Failure::not_found(ErrorCode::AssignmentNotFound),
            W::AnchorNotFound | W::MoveAfterItself => return Failure::invalid("after_step_id", e),
            W::Length { field, .. } | W::TooMany { field, .. } => {
                return Failure::invalid(field, e)
            }
            W::NotAllowed => ErrorCode::Forbidden,
            W::AlreadyExists => ErrorCode::Conflict,
            W::Archived => ErrorCode::WalkthroughArchived,
            W::NoSteps => ErrorCode::NoSteps,
            W::NothingToPublish(_) => ErrorCode::NothingToPublish,
            W::NotPublished | W::AssignUnpublished => ErrorCode::NotPublished,
            W::AlreadyAssigned => ErrorCode::AlreadyAssigned,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<ProgressError> for Failure {
    fn from(e: ProgressError) -> Self {
        let code = match e {
            ProgressError::NoWalkthroughSelected => ErrorCode::NoWalkthroughSelected,
            ProgressError::AlreadyCompleted => ErrorCode::WalkthroughCompleted,
            ProgressError::StaleStep { .. } => ErrorCode::StaleStep,
            ProgressError::NoSteps => ErrorCode::NoSteps,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<RefreshTokenError> for Failure {
    fn from(e: RefreshTokenError) -> Self {
        match e {
            RefreshTokenError::Expired => Failure::new(
                ErrorCode::RefreshTokenExpired,
                "the refresh token has expired; log in again",
            ),
            RefreshTokenError::Revoked => Failure::new(
                ErrorCode::RefreshTokenRevoked,
                "the refresh token has been revoked; log in again",
            ),
            RefreshTokenError::Unknown | RefreshTokenError::AlreadyIssued => {
                invalid_refresh_token()
            }
        }
    }
}

/// A cursor that is not one the API handed out (the events page's `after`, the audit log's
/// `before`).
impl From<eventstore::cursor::BadCursor> for Failure {
    fn from(_: eventstore::cursor::BadCursor) -> Self {
        Failure::new(
            ErrorCode::InvalidCursor,
            "not a cursor: expected the `cursor` value of an earlier event or page",
        )
    }
}

/// `invalid_token` for a signed-in caller whose account is gone (its token outlived it).
pub fn account_gone() -> Failure {
    Failure::new(ErrorCode::InvalidToken, "the account no longer exists")
}

/// `invalid_refresh_token`, as any refresh token the API cannot use is answered.
pub fn invalid_refresh_token() -> Failure {
    Failure::new(
        ErrorCode::InvalidRefreshToken,
        "the refresh token is not valid; log in again",
    )
}

impl From<crate::services::accounts::SignUpError> for Failure {
    fn from(e: crate::services::accounts::SignUpError) -> Self {
        use crate::services::accounts::SignUpError as E;
        match e {
            E::User(e) => e.into(),
            E::Invitation(e) => e.into(),
        }
    }
}

impl From<UserError> for Failure {
    fn from(e: UserError) -> Self {
        match e {
            UserError::AlreadySignedUp => Failure::new(ErrorCode::EmailTaken, e.to_string()),
        }
    }
}

impl From<EndUserError> for Failure {
    fn from(e: EndUserError) -> Self {
        match e {
            // Another org's end user is not one this caller may see.
            EndUserError::NotFound | EndUserError::OtherOrg => {
                Failure::not_found(ErrorCode::EndUserNotFound)
            }
            EndUserError::MergedAway { survivor } => Failure::new(
                ErrorCode::MergeLater,
                format!(
                    "that end user was merged into {survivor} since; unmerge it from there first"
                ),
            ),
            EndUserError::NotMerged | EndUserError::SameEndUser => {
                Failure::new(ErrorCode::NotMerged, e.to_string())
            }
        }
    }
}

impl From<McpSessionError> for Failure {
    fn from(e: McpSessionError) -> Self {
        match e {
            McpSessionError::NotFound => Failure::not_found(ErrorCode::SessionNotFound),
            McpSessionError::AlreadyStarted => Failure::new(ErrorCode::Conflict, e.to_string()),
        }
    }
}

impl From<ToolCallError> for Failure {
    fn from(e: ToolCallError) -> Self {
        match e {
            ToolCallError::AlreadyRecorded => Failure::new(ErrorCode::Conflict, e.to_string()),
        }
    }
}

impl From<LoginError> for Failure {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::AlreadyRecorded => Failure::new(ErrorCode::Conflict, e.to_string()),
        }
    }
}

impl From<crate::services::tickets::AssignError> for Failure {
    fn from(e: crate::services::tickets::AssignError) -> Self {
        use crate::services::tickets::AssignError;
        match e {
            AssignError::NotAMember(_) => Failure::invalid("member", e),
            AssignError::Execute(e) => e.into(),
        }
    }
}

impl From<crate::services::walkthroughs::AssignError> for Failure {
    fn from(e: crate::services::walkthroughs::AssignError) -> Self {
        use crate::services::walkthroughs::AssignError;
        match e {
            AssignError::ServerNotFound => Failure::not_found(ErrorCode::ServerNotFound),
            AssignError::ServerArchived => Failure::new(ErrorCode::ServerArchived, e.to_string()),
            AssignError::Execute(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_the_serde_names_and_round_trip() {
        for &code in ErrorCode::all() {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str(), "{code:?}");
            assert_eq!(code.as_str().parse::<ErrorCode>().unwrap(), code);
            assert!(code.description().ends_with('.'), "{code}: one sentence");
        }
        assert_eq!(ErrorCode::OrgNotFound.as_str(), "org_not_found");
        assert_eq!(ErrorCode::EndUserNotFound.as_str(), "end_user_not_found");
    }

    #[test]
    fn domain_errors_map_to_their_codes() {
        let f = Failure::from(ExecuteError::<OrganizationError>::Domain(
            OrganizationError::NotAMember,
        ));
        assert_eq!(
            (f.code, f.detail.as_str()),
            (ErrorCode::OrgNotFound, "organization not found")
        );
        let f = Failure::from(ExecuteError::<ServerError>::KeyTaken {
            kind: KeyKind::ServerSlug,
        });
        assert_eq!(f.code, ErrorCode::SlugTaken);
        let f = Failure::from(TicketError::Length {
            field: "title",
            max: 200,
        });
        assert_eq!(
            (f.code, f.field.as_deref()),
            (ErrorCode::ValidationFailed, Some("title"))
        );
        let f = Failure::from(ProgressError::AlreadyCompleted);
        assert_eq!(f.code.kind(), ErrorKind::Conflict);
    }

    /// A Postgres error with only a SQLSTATE, as a query refused by the server is.
    #[derive(Debug)]
    struct Refused(&'static str);

    impl fmt::Display for Refused {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "refused with {}", self.0)
        }
    }

    impl std::error::Error for Refused {}

    impl sqlx::error::DatabaseError for Refused {
        fn message(&self) -> &str {
            "refused"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    /// A database error means the same whether the caller owns it or shares it with the
    /// other callers of a cached load.
    #[test]
    fn a_shared_database_error_is_classified_as_an_owned_one() {
        let error = |code| sqlx::Error::Database(Box::new(Refused(code)));
        for (code, expected) in [
            ("22P05", ErrorCode::InvalidInput),
            ("22021", ErrorCode::InvalidInput),
            ("42P01", ErrorCode::Internal),
        ] {
            assert_eq!(Failure::from(error(code)).code, expected, "{code}");
            assert_eq!(
                Failure::from(std::sync::Arc::new(error(code))).code,
                expected,
                "{code}, shared"
            );
        }
        let shared = Failure::from(std::sync::Arc::new(sqlx::Error::PoolTimedOut));
        assert_eq!(shared.code, ErrorCode::Unavailable);
    }

    /// An error whose text repeats its source's, as sqlx's and io's do.
    #[derive(Debug)]
    struct Wraps(&'static str, Option<Box<Wraps>>);

    impl fmt::Display for Wraps {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match &self.1 {
                Some(source) => write!(f, "{}: {source}", self.0),
                None => f.write_str(self.0),
            }
        }
    }

    impl std::error::Error for Wraps {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_chain_shows_each_cause_once() {
        let leaf = |text| Some(Box::new(Wraps(text, None)));
        // sqlx: a configuration error wrapping one, wrapping the cause.
        let config = Wraps(
            "error with configuration",
            Some(Box::new(Wraps(
                "error with configuration",
                leaf("unknown value \"bogus\" for `ssl_mode`"),
            ))),
        );
        assert_eq!(
            Chain(&config).to_string(),
            "error with configuration: unknown value \"bogus\" for `ssl_mode`"
        );
        let refused = Wraps(
            "error communicating with database",
            leaf("Connection refused (os error 111)"),
        );
        assert_eq!(
            Chain(&refused).to_string(),
            "error communicating with database: Connection refused (os error 111)"
        );
        // A context that does not repeat its source, as anyhow's, is followed by it.
        let context = Wraps("cannot connect", Some(Box::new(config)));
        let text = Chain(&context).to_string();
        assert!(
            text.starts_with("cannot connect: error with configuration: unknown"),
            "{text}"
        );
    }

    #[test]
    fn an_internal_failure_keeps_its_source_chain() {
        let f = Failure::from(StoreError::Encode(
            serde_json::from_str::<u8>("x").unwrap_err(),
        ));
        assert_eq!(f.code, ErrorCode::Internal);
        let chain = Chain(&f).to_string();
        assert!(chain.contains("event cannot be encoded"), "{chain}");
        assert!(
            !f.detail.contains("encoded"),
            "the cause is never the detail"
        );
    }
}

/// The errors the OAuth endpoints of the hosted servers' authorization servers answer, with the
/// wire names RFC 6749 (§4.1.2.1, §5.2), RFC 6750 (§3.1), RFC 7591 (§3.2.2) and RFC 8707 define.
/// They are answered as `{"error", "error_description"}`, never as problems: OAuth clients read
/// these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum OauthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    /// RFC 8707: the `resource` names no resource of this authorization server.
    InvalidTarget,
    /// RFC 7591.
    InvalidRedirectUri,
    InvalidClientMetadata,
    /// RFC 6750: the bearer token is missing, expired, revoked or malformed.
    InvalidToken,
    /// RFC 6750: the token lacks a scope the request needs (step-up).
    InsufficientScope,
    ServerError,
    TemporarilyUnavailable,
}

impl OauthErrorCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The HTTP status a token, registration or revocation endpoint answers it with.
    pub fn status(self) -> u16 {
        match self {
            OauthErrorCode::InvalidClient | OauthErrorCode::InvalidToken => 401,
            OauthErrorCode::InsufficientScope | OauthErrorCode::AccessDenied => 403,
            OauthErrorCode::ServerError => 500,
            OauthErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

impl fmt::Display for OauthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth refusal: its code and a description for the client's developer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OauthFailure {
    pub code: OauthErrorCode,
    pub description: String,
}

impl OauthFailure {
    pub fn new(code: OauthErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    /// The store could not be reached (logged by the caller).
    pub fn unavailable() -> Self {
        Self::new(
            OauthErrorCode::TemporarilyUnavailable,
            "the service is temporarily unavailable; retry shortly",
        )
    }
}

impl fmt::Display for OauthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for OauthFailure {}

impl From<domain::oauth::OauthGrantError> for OauthFailure {
    fn from(e: domain::oauth::OauthGrantError) -> Self {
        use domain::oauth::OauthGrantError as E;
        let code = match e {
            E::AlreadyIssued => OauthErrorCode::InvalidRequest,
            E::InvalidCode
            | E::WrongVerifier
            | E::RedirectMismatch
            | E::InvalidRefresh
            | E::Revoked => OauthErrorCode::InvalidGrant,
            E::OtherClient => OauthErrorCode::UnauthorizedClient,
        };
        Self::new(code, e.to_string())
    }
}

impl<E> From<ExecuteError<E>> for OauthFailure
where
    E: Into<OauthFailure>,
{
    fn from(e: ExecuteError<E>) -> Self {
        match e {
            ExecuteError::Domain(e) => e.into(),
            ExecuteError::Store(e) => e.into(),
            // A conflict that outlasted the retries, or a key that moved: retrying may succeed.
            ExecuteError::Conflict
            | ExecuteError::KeyTaken { .. }
            | ExecuteError::OwnerMoved { .. } => Self::unavailable(),
        }
    }
}

impl From<StoreError> for OauthFailure {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %Chain(&e), "OAuth endpoint could not read the store");
        Self::unavailable()
    }
}
