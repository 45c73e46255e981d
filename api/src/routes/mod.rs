//! HTTP handlers, one file per resource.

pub mod auth;
pub mod dashboard;
pub mod end_users;
pub mod events;
pub mod health;
pub mod orgs;
pub mod problems;
pub mod servers;
pub mod sessions;
pub mod tickets;
pub mod tool_calls;
pub mod walkthrough_analytics;
pub mod walkthroughs;

use crate::error::ApiError;
use chrono::{DateTime, Utc};
use eventstore::Executed;
use serde::Serialize;

/// The answer to a write: the resource as the read models show it once they include the write
/// (`Read`), or, when they lag (NATS away), what the write model knows (`Pending`), so that a
/// successful write never answers 404. The two are told apart by their fields.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Written<R, P> {
    Read(R),
    Pending(P),
}

/// When a write that created something was recorded: the time its answer gives as the new
/// resource's `created_at` (or `joined_at`, `invited_at`, `assigned_at`), whether the read
/// models have it yet or not.
pub(crate) fn recorded_at<E>(done: &Executed<E>) -> Result<DateTime<Utc>, ApiError> {
    done.recorded_at()
        .ok_or_else(|| ApiError::internal("a create was committed without an event"))
}
