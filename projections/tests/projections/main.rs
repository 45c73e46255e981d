//! The middle tier of the read side: each projection given events (appended through the real
//! event store and read back as the projectors read them) and the rows its own queries then
//! return, on a database of the test's own. No NATS, no HTTP: changing a projection shows here.
//! One test binary, to keep link time down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod given;

mod audit;
mod dashboard;
mod organizations;
mod people;
mod rebuild;
mod servers;
mod tickets;
mod usage;
mod walkthrough_analytics;
mod walkthrough_progress;
mod walkthroughs;
