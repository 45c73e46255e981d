//! The retry policies of the event log's users, one named policy per kind of retry (backon's
//! builders; each `build()` is a fresh iterator of pauses).
//!
//! - [`WORKERS`]: a long-running worker (the relay, a projector) that lost its database or
//!   NATS: exponential from 200 ms, doubling, capped at 5 s, forever.
//! - [`CONFLICTS`]: a command or tool call whose commit lost an optimistic-concurrency race:
//!   short random pauses (0.5 ms upwards, doubling, jittered, capped at 8 ms) so contenders
//!   spread out, at most [`MAX_RETRIES`] times before answering conflict.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;

/// Optimistic-concurrency retries of a command before answering conflict.
pub const MAX_RETRIES: usize = 20;

/// Workers reconnecting to what they depend on.
pub const WORKERS: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(200))
    .with_factor(2.0)
    .with_max_delay(Duration::from_secs(5))
    .without_max_times();

/// Optimistic-concurrency conflicts. The jitter adds up to the pause again, so the first retry
/// waits 0.5 to 1 ms and later ones at most 8 ms.
pub const CONFLICTS: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_micros(500))
    .with_factor(2.0)
    .with_max_delay(Duration::from_millis(4))
    .with_jitter()
    .with_max_times(MAX_RETRIES);

/// The pauses between a command's attempts after conflicts; built on the first conflict, so an
/// attempt that commits pays nothing for it.
#[derive(Default)]
pub struct ConflictPauses(Option<ExponentialBackoff>);

impl ConflictPauses {
    pub fn new() -> Self {
        Self(None)
    }

    /// Waits before the next attempt (callers bound their attempts by [`MAX_RETRIES`]).
    pub async fn pause(&mut self) {
        if let Some(pause) = self.0.get_or_insert_with(|| CONFLICTS.build()).next() {
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_pause_briefly_and_give_up() {
        let pauses: Vec<Duration> = CONFLICTS.build().collect();
        assert_eq!(pauses.len(), MAX_RETRIES);
        assert!(pauses[0] >= Duration::from_micros(500) && pauses[0] <= Duration::from_millis(1));
        assert!(pauses.iter().all(|p| *p <= Duration::from_millis(8)));
    }

    #[test]
    fn workers_back_off_to_five_seconds_and_never_give_up() {
        let pauses: Vec<Duration> = WORKERS.build().take(30).collect();
        // (backon multiplies by an f32 factor: equal to within a microsecond)
        let near =
            |d: Duration, ms: u64| d.abs_diff(Duration::from_millis(ms)) < Duration::from_micros(1);
        assert!(near(pauses[0], 200), "{pauses:?}");
        assert!(near(pauses[1], 400), "{pauses:?}");
        assert!(near(pauses[29], 5000), "{pauses:?}");
    }
}
