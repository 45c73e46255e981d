//! The middle tier of the write side: the command services in-process, on the real event store
//! over a database of the test's own. What each service decides, writes to the key index and
//! refuses, without HTTP or MCP. One test binary, to keep link time down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod given;

mod accounts;
mod end_users;
mod organizations;
mod outbound;
mod recorded_times;
mod servers;
mod tickets;
mod walkthrough_progress;
mod walkthroughs;
