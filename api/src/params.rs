//! The path parameters of the org-scoped routes: read by the handlers and described in the
//! OpenAPI document from the same struct (`params(...)`).

use crate::error::{ApiError, ErrorCode};
use crate::refusals::NamesSomething;
use serde::Deserialize;
use utoipa::IntoParams;

/// What a path segment that can name nothing is answered (one that is not UTF-8 once
/// percent-decoded, as `%FF`): the `*_not_found` of the resource the parameter names, as a
/// segment naming no such resource is.
pub fn names_nothing(param: &str) -> ApiError {
    let code = match param {
        "org" => ErrorCode::OrgNotFound,
        "member" => ErrorCode::MemberNotFound,
        "server" => ErrorCode::ServerNotFound,
        "ticket" => ErrorCode::TicketNotFound,
        "user" => ErrorCode::EndUserNotFound,
        "session" => ErrorCode::SessionNotFound,
        "walkthrough" => ErrorCode::WalkthroughNotFound,
        "provider" => ErrorCode::IdentityProviderNotFound,
        "step" => ErrorCode::StepNotFound,
        "token" => ErrorCode::InvitationNotFound,
        "code" => return ApiError::new(ErrorCode::RouteNotFound, "no such problem type"),
        _ => ErrorCode::RouteNotFound,
    };
    ApiError::not_found(code)
}

/// A problem page's code.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProblemPath {
    /// An error code, e.g. org_not_found
    pub code: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrgPath {
    /// Org id or slug
    pub org: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemberPath {
    /// Org id or slug
    pub org: String,
    /// Member user id or email
    pub member: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InvitationPath {
    /// The invitation's token, as `POST /api/v1/orgs/{org}/members` answered it
    pub token: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServerPath {
    /// Org id or slug
    pub org: String,
    /// Server id or slug
    pub server: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdentityProviderPath {
    /// Org id or slug
    pub org: String,
    /// Identity provider id
    #[param(value_type = uuid::Uuid)]
    pub provider: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TicketPath {
    /// Org id or slug
    pub org: String,
    /// Ticket id, or its TCK- reference
    pub ticket: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EndUserPath {
    /// Org id or slug
    pub org: String,
    /// End user id, or a tracking id the org's servers have seen
    pub user: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionPath {
    /// Org id or slug
    pub org: String,
    /// Session id
    pub session: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WalkthroughPath {
    /// Org id or slug
    pub org: String,
    /// Walkthrough id
    #[param(value_type = uuid::Uuid)]
    pub walkthrough: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StepPath {
    /// Org id or slug
    pub org: String,
    /// Walkthrough id
    #[param(value_type = uuid::Uuid)]
    pub walkthrough: String,
    /// Step id
    #[param(value_type = uuid::Uuid)]
    pub step: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AssignmentPath {
    /// Org id or slug
    pub org: String,
    /// Server id or slug
    pub server: String,
    /// Walkthrough id
    #[param(value_type = uuid::Uuid)]
    pub walkthrough: String,
}

impl NamesSomething for OrgPath {
    const NOT_FOUND: &'static str = "No such org (or not a member)";
}

impl NamesSomething for MemberPath {
    const NOT_FOUND: &'static str = "No such member or invitation";
}

impl NamesSomething for InvitationPath {
    const NOT_FOUND: &'static str =
        "No pending invitation has this token (never issued, used, revoked or replaced)";
}

impl NamesSomething for ServerPath {
    const NOT_FOUND: &'static str = "No such server";
}

impl NamesSomething for IdentityProviderPath {
    const NOT_FOUND: &'static str = "No such identity provider";
}

impl NamesSomething for TicketPath {
    const NOT_FOUND: &'static str = "No such ticket";
}

impl NamesSomething for EndUserPath {
    const NOT_FOUND: &'static str = "No such end user";
}

impl NamesSomething for SessionPath {
    const NOT_FOUND: &'static str = "No such session";
}

impl NamesSomething for WalkthroughPath {
    const NOT_FOUND: &'static str = "No such walkthrough";
}

impl NamesSomething for StepPath {
    const NOT_FOUND: &'static str = "No such walkthrough or step";
}

impl NamesSomething for AssignmentPath {
    const NOT_FOUND: &'static str = "No such server, walkthrough or assignment";
}

impl NamesSomething for ProblemPath {
    const NOT_FOUND: &'static str = "No such code";
}
