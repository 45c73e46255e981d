//! Command services: each looks up what its command needs (key index, other aggregates), runs
//! the aggregate, and commits everything it writes as one unit of work.

pub mod accounts;
pub mod end_users;
pub mod identity_providers;
pub mod mcp_sessions;
pub mod oauth;
pub mod organizations;
pub mod servers;
pub mod sign_in;
pub mod tickets;
pub mod tool_calls;
pub mod walkthrough_progress;
pub mod walkthroughs;
