//! The command services: each looks up what its command needs (the write-side index, other
//! aggregates), runs the domain aggregate, and commits everything it writes as one unit of
//! work on the event store (`eventstore`).

pub mod errors;
pub mod limits;
pub mod outbound;
pub mod sealing;
pub mod services;
pub mod tracking;
