//! HTTP handlers, one file per resource.

pub mod auth;
pub mod dashboard;
pub mod end_users;
pub mod events;
pub mod health;
pub mod identity_providers;
pub mod invitations;
pub mod orgs;
pub mod problems;
pub mod servers;
pub mod sessions;
pub mod tickets;
pub mod tool_calls;
pub mod tracking_secrets;
pub mod walkthrough_analytics;
pub mod walkthroughs;

use crate::error::ApiError;
use chrono::{DateTime, Utc};
use eventstore::Executed;
use serde::Serialize;
use std::borrow::Cow;
use utoipa::openapi::schema::{AnyOfBuilder, Schema};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// The answer to a write: the resource as the read models show it once they include the write
/// (`Read`), or, when they lag (NATS away), what the write model knows (`Pending`), so that a
/// successful write never answers 404.
///
/// Documented as `anyOf` the two shapes, not `oneOf` (what utoipa derives for an untagged
/// enum): neither shape forbids the other's fields, so a real answer matches both, and `oneOf`
/// requires exactly one.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Written<R, P> {
    Read(R),
    Pending(P),
}

const WRITTEN: &str = "The resource as the read models show it once they include the write, or, \
    while they lag, what the write model knows: an answer may match both shapes.";

impl<R: ToSchema, P: ToSchema> utoipa::__dev::ComposeSchema for Written<R, P> {
    /// `generics` are the shapes of `R` and `P` as the route names them.
    fn compose(generics: Vec<RefOr<Schema>>) -> RefOr<Schema> {
        let mut generics = generics.into_iter();
        let read = generics.next().unwrap_or_else(R::schema);
        let pending = generics.next().unwrap_or_else(P::schema);
        AnyOfBuilder::new()
            .item(read)
            .item(pending)
            .description(Some(WRITTEN))
            .into()
    }
}

impl<R: ToSchema, P: ToSchema> ToSchema for Written<R, P> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Written")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        R::schemas(schemas);
        P::schemas(schemas);
    }
}

/// When a write that created something was recorded: the time its answer gives as the new
/// resource's `created_at` (or `joined_at`, `invited_at`, `assigned_at`), whether the read
/// models have it yet or not.
pub(crate) fn recorded_at<E>(done: &Executed<E>) -> Result<DateTime<Utc>, ApiError> {
    done.recorded_at()
        .ok_or_else(|| ApiError::internal("a create was committed without an event"))
}
