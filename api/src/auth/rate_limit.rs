//! Login throttles (governor, GCRA, in-process: each instance enforces its own budget).
//!
//! Attempts are limited per client address and per (account, address), never per account
//! alone: a budget per account let anyone lock its owner out by spending it from anywhere.
//! Instead, failures on an account raise a small, bounded delay before further failures are
//! answered, unless they come from an address the account signed in from; a correct password
//! is never delayed or refused because others guessed. What bounds a distributed guesser is
//! each of its addresses' budget, and the argon2 gate (`passwords::ArgonGate`) bounds the work
//! any one address can cause.

use commands::limits::{Limits, Rate, Refused};
use domain::limit::LimitKind;
use moka::sync::Cache;
use std::time::Duration;

/// Failures on an account are forgotten after this long without another.
const FAILURES_FORGOTTEN: Duration = Duration::from_secs(15 * 60);
/// Failures on an account answered without delay.
const FREE_FAILURES: u32 = 3;
/// Added per failure beyond the free ones, up to [`MAX_DELAY`].
const DELAY_STEP: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(2);
/// How long an address an account signed in from counts as its owner's.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);
const MAX_TRACKED: u64 = 100_000;
const MINUTE: Duration = Duration::from_secs(60);

pub struct LoginLimiter {
    per_address: Rate<String>,
    per_account_and_address: Rate<(String, String)>,
    failures: Cache<String, u32>,
    known: Cache<(String, String), ()>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(&Limits::default())
    }
}

impl LoginLimiter {
    pub fn new(limits: &Limits) -> Self {
        Self {
            per_address: Rate::new(limits.logins_per_address_per_minute, MINUTE),
            per_account_and_address: Rate::new(
                limits.logins_per_account_and_address_per_minute,
                MINUTE,
            ),
            failures: Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_idle(FAILURES_FORGOTTEN)
                .build(),
            known: Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(KNOWN_FOR)
                .build(),
        }
    }

    /// Takes one attempt from the address's budget and the (account, address) one, or says
    /// which refused and how long to wait.
    pub fn check(&self, account: &str, address: Option<&str>) -> Result<(), Refused> {
        let address = address.unwrap_or_default().to_owned();
        let refused = |limit, allowed| {
            move |wait: Duration| Refused {
                limit,
                allowed,
                retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
            }
        };
        self.per_address.check(&address).map_err(refused(
            LimitKind::LoginsPerAddress,
            self.per_address.allowed(),
        ))?;
        self.per_account_and_address
            .check(&(account.to_lowercase(), address))
            .map_err(refused(
                LimitKind::LoginsPerAccountAndAddress,
                self.per_account_and_address.allowed(),
            ))
    }

    /// Counts a failed attempt; returns how long to hold its answer: nothing for the first
    /// few failures on the account or from an address the account signed in from, then a
    /// little more per failure, bounded.
    pub fn failed(&self, account: &str, address: Option<&str>) -> Duration {
        let account = account.to_lowercase();
        let failures = self
            .failures
            .get(&account)
            .unwrap_or_default()
            .saturating_add(1);
        self.failures.insert(account.clone(), failures);
        let known = self
            .known
            .contains_key(&(account, address.unwrap_or_default().to_owned()));
        if known {
            return Duration::ZERO;
        }
        delay_after(failures)
    }

    /// A successful login: the address becomes one of the account's known ones.
    pub fn succeeded(&self, account: &str, address: Option<&str>) {
        self.known.insert(
            (
                account.to_lowercase(),
                address.unwrap_or_default().to_owned(),
            ),
            (),
        );
    }

    /// Forgets idle keys; called periodically so the maps stay small.
    pub fn shrink(&self) {
        self.per_address.shrink();
        self.per_account_and_address.shrink();
        self.failures.run_pending_tasks();
        self.known.run_pending_tasks();
    }
}

fn delay_after(failures: u32) -> Duration {
    DELAY_STEP
        .saturating_mul(failures.saturating_sub(FREE_FAILURES))
        .min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_limited_per_account_and_address_not_per_account() {
        let limiter = LoginLimiter::new(&Limits {
            logins_per_account_and_address_per_minute: 2,
            ..Limits::default()
        });
        for _ in 0..2 {
            assert!(limiter.check("Carol@x.io", Some("10.0.0.1")).is_ok());
        }
        let refused = limiter.check("carol@x.io", Some("10.0.0.1"));
        assert_eq!(
            refused.map_err(|r| r.limit),
            Err(LimitKind::LoginsPerAccountAndAddress)
        );
        // Another address still gets in: the account itself is never locked.
        assert!(limiter.check("carol@x.io", Some("10.0.0.2")).is_ok());
    }

    #[test]
    fn attempts_are_limited_per_address_across_accounts() {
        let limiter = LoginLimiter::new(&Limits {
            logins_per_address_per_minute: 3,
            ..Limits::default()
        });
        for i in 0..3 {
            assert!(limiter
                .check(&format!("u{i}@x.io"), Some("10.0.0.1"))
                .is_ok());
        }
        let refused = limiter.check("u9@x.io", Some("10.0.0.1"));
        assert!(refused.is_err_and(|r| r.limit == LimitKind::LoginsPerAddress));
    }

    #[test]
    fn failures_slow_down_boundedly_except_from_known_addresses() {
        let limiter = LoginLimiter::default();
        limiter.succeeded("carol@x.io", Some("10.0.0.9"));
        let delays: Vec<_> = (0..20)
            .map(|_| limiter.failed("carol@x.io", Some("10.0.0.1")))
            .collect();
        assert_eq!(delays[0], Duration::ZERO);
        assert!(delays[5] > Duration::ZERO);
        assert_eq!(delays[19], MAX_DELAY);
        assert_eq!(
            limiter.failed("carol@x.io", Some("10.0.0.9")),
            Duration::ZERO
        );
    }
}
