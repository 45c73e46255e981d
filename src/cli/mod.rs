//! The verbs of the `mcplatform` binary.

pub mod events;
pub mod projections;
pub mod run;
