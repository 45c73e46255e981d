//! The mcplatform domain: aggregates, their commands and events, and validated value types.
//!
//! Nothing here performs I/O or reads the clock: time, ids and secrets (such as password hashes)
//! arrive as command fields, so every rule is a plain, deterministic function.

pub mod aggregate;
pub mod catalogue;
pub mod end_user;
pub mod identity_provider;
pub mod limit;
pub mod login;
pub mod mcp_session;
pub mod metadata;
pub mod oauth;
pub mod organization;
pub mod refresh_token;
pub mod server;
pub mod sign_in;
pub mod text;
pub mod ticket;
pub mod time;
pub mod tool_call;
pub mod user;
pub mod values;
pub mod walkthrough;
pub mod walkthrough_progress;

pub use aggregate::{Aggregate, DomainEvent};
pub use metadata::{Actor, EventMetadata};
