//! The write side: the Postgres event store (with group commit), the command services that run
//! domain aggregates against it, and the relay that publishes committed events to NATS.

pub mod cursor;
pub mod kept;
pub mod keys;
pub mod leader;
pub mod nats;
pub mod relay;
pub mod services;
pub mod store;

pub use cursor::Cursor;
pub use store::{
    CommitError, EmailGuard, EventFilter, EventStore, ExecuteError, Executed, PendingEvent,
    StoreError, StoredEvent, UnitOfWork,
};
