//! The verbs of the `mcplatform` binary.

pub mod events;
pub mod output;
pub mod projections;
pub mod run;
