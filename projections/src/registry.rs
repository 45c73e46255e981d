//! Every projection mcplatform runs. Add a new one here and it is consumed, rebuilt, listed and
//! waited for like the others.

use crate::models::{
    audit::AuditProjection, dashboard::DashboardProjection,
    identity_providers::IdentityProvidersProjection, organizations::OrganizationsProjection,
    servers::ServersProjection, tickets::TicketsProjection, usage::UsageProjection,
    walkthrough_analytics::WalkthroughAnalyticsProjection,
    walkthrough_progress::WalkthroughProgressProjection, walkthroughs::WalkthroughsProjection,
};
use crate::projection::Projection;
use std::sync::Arc;

pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(OrganizationsProjection),
        Arc::new(ServersProjection),
        Arc::new(IdentityProvidersProjection),
        Arc::new(DashboardProjection),
        Arc::new(AuditProjection),
        Arc::new(UsageProjection),
        Arc::new(TicketsProjection),
        Arc::new(WalkthroughsProjection),
        Arc::new(WalkthroughProgressProjection),
        Arc::new(WalkthroughAnalyticsProjection),
    ]
}

pub fn by_name(name: &str) -> Option<Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}

#[cfg(test)]
mod tests {
    use crate::projection::Reads;

    /// SQL reads an empty list of types as "no limit" (`Reads::sql_condition`): a projection
    /// reading `Only` no type would be counted as reading every event.
    #[test]
    fn a_projection_reading_only_some_types_names_at_least_one() {
        for projection in super::all() {
            if let Reads::Only(types) = projection.reads() {
                assert!(!types.is_empty(), "{}", projection.name());
            }
        }
    }
}
