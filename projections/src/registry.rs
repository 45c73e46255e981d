//! Every projection mcplatform runs. Add a new one here and it is consumed, rebuilt, listed and
//! waited for like the others.

use crate::models::{
    audit::AuditProjection, dashboard::DashboardProjection, organizations::OrganizationsProjection,
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
