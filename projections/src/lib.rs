//! The read side: projections (read models kept up to date from the event stream), the projector
//! runtime that feeds them from JetStream, rebuilds from the Postgres event store, and the
//! org-scoped queries the edges read.

pub mod checkpoint;
pub mod models;
pub mod projection;
pub mod rebuild;
pub mod registry;
pub mod rounding;
pub mod wait;
pub mod worker;

pub use projection::{Projection, ProjectionError, Reads, Tables};
