//! Login attempt limits per account and per client ip (governor, GCRA). In-process: each
//! instance enforces its own budget, which bounds guessing per instance.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

pub struct LoginLimiter {
    per_account: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

fn quota(burst: u32, replenish_every: Duration) -> Quota {
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(replenish_every)
        .unwrap_or_else(|| Quota::per_minute(burst))
        .allow_burst(burst)
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self {
            // 5 attempts at once, then one every 12 s per account.
            per_account: RateLimiter::keyed(quota(5, Duration::from_secs(12))),
            // 30 at once, then one a second per client ip.
            per_ip: RateLimiter::keyed(quota(30, Duration::from_secs(1))),
            clock: DefaultClock::default(),
        }
    }
}

impl LoginLimiter {
    /// Takes one attempt from both budgets, or says how long to wait.
    pub fn check(&self, account: &str, ip: Option<&str>) -> Result<(), Duration> {
        let now = self.clock.now();
        if let Some(ip) = ip {
            self.per_ip
                .check_key(&ip.to_owned())
                .map_err(|not_until| not_until.wait_time_from(now))?;
        }
        self.per_account
            .check_key(&account.to_lowercase())
            .map_err(|not_until| not_until.wait_time_from(now))?;
        Ok(())
    }

    /// Forgets idle keys; called periodically so the maps stay small.
    pub fn shrink(&self) {
        self.per_account.retain_recent();
        self.per_ip.retain_recent();
    }
}
