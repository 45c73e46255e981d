//! HTTP handlers, one file per resource.

pub mod auth;
pub mod dashboard;
pub mod events;
pub mod health;
pub mod orgs;
pub mod servers;
