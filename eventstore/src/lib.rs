//! The event log: events as stored and their codec, the reader cursor, reading in committed
//! order, units of work with their write-side index entries, the group committers, leader
//! election, and the relay that publishes committed events to NATS JetStream (with the NATS
//! topology both it and the projectors use).
//!
//! It knows aggregates only through `domain::Aggregate`: the command services (`commands`) and
//! the projectors (`projections`) build on it, never the reverse.

mod codec;
pub mod cursor;
pub mod error;
pub mod event;
mod group_commit;
pub mod index;
pub mod kept;
pub mod leader;
pub mod nats;
pub mod reading;
pub mod relay;
pub mod retry;
pub mod store;
pub mod unit_of_work;

pub use cursor::Cursor;
pub use error::{is_unavailable, CommitError, ExecuteError, StoreError};
pub use event::{Appended, Executed, PendingEvent, Recorded, StoredEvent};
pub use index::KeyKind;
pub use reading::EventFilter;
pub use retry::{ConflictPauses, MAX_RETRIES};
pub use store::EventStore;
pub use unit_of_work::{IndexWrite, KeyClaim, Precondition, UnitOfWork};
