//! The aggregate contract every write model implements.
//!
//! We keep our own small, synchronous trait instead of `cqrs_es::Aggregate`: that one makes
//! `handle` async and carries a services object, while our aggregates receive every external
//! fact (ids, time, looked-up roles) inside the command, which keeps them pure.

use serde::{de::DeserializeOwned, Serialize};

/// An event of one aggregate type. Serialized externally tagged (`{"Variant": {...}}`); the
/// store keeps the variant name as `event_type` and the inner object as `payload`.
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync
{
    /// The variant name, stored as `event_type`.
    fn event_type(&self) -> &'static str;
    /// Schema version of this event type's payload.
    fn event_version(&self) -> &'static str {
        "1"
    }
}

/// A consistency boundary: it decides on commands against its current state and evolves by
/// applying its own events.
pub trait Aggregate: Default + Send + Sync {
    /// Stable name of the stream type, stored as `aggregate_type`. Never change it.
    const TYPE: &'static str;
    type Command;
    type Event: DomainEvent;
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides which events a command produces, or why it is refused. Pure.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Evolves the state by one event. Must accept every event `handle` ever produced.
    fn apply(&mut self, event: &Self::Event);
}

/// Replays events into a fresh aggregate; what the event store does on load and what tests use.
pub fn replay<A: Aggregate>(events: &[A::Event]) -> A {
    let mut aggregate = A::default();
    for event in events {
        aggregate.apply(event);
    }
    aggregate
}

/// Given / when / then helper for aggregate tests (after cqrs-es' `TestFramework`).
#[cfg(test)]
pub(crate) fn given_when<A: Aggregate>(
    given: &[A::Event],
    command: A::Command,
) -> Result<Vec<A::Event>, A::Error> {
    replay::<A>(given).handle(command)
}
