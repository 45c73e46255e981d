//! HTTP handlers, one file per resource.

pub mod auth;
pub mod dashboard;
pub mod end_users;
pub mod events;
pub mod health;
pub mod orgs;
pub mod servers;
pub mod sessions;
pub mod tickets;
pub mod tool_calls;
pub mod walkthrough_analytics;
pub mod walkthroughs;
