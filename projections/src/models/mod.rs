//! Read models: each file holds one projection and the org-scoped queries that read it.

pub mod audit;
pub mod dashboard;
pub mod organizations;
pub mod people;
pub mod servers;
pub mod tickets;
pub mod usage;
pub mod walkthrough_analytics;
pub mod walkthrough_progress;
pub mod walkthroughs;
