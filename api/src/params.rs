//! The path parameters of the org-scoped routes: read by the handlers and described in the
//! OpenAPI document from the same struct (`params(...)`).

use serde::Deserialize;
use utoipa::IntoParams;

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
pub struct ServerPath {
    /// Org id or slug
    pub org: String,
    /// Server id or slug
    pub server: String,
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
