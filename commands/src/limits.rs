//! Platform limits: the protections against abuse that hold whatever a customer configures
//! (tickets per end user, new end users per server and per client address, open sessions per
//! end user, orgs per account, signups and logins per client address). Both edges take their
//! values from [`Limits`] (flags with environment fallbacks in the binary's `config.rs`).
//!
//! Rates are kept in this process ([`Guard`], governor's GCRA per key): each instance enforces
//! its own budget, so N instances behind a balancer allow up to N times a rate. Counts (open
//! sessions, orgs) are read from the state. A refusal is recorded as a `LimitRefused` event, at
//! most one per limit and key a minute, so refused requests cannot turn into a flood of writes.

use domain::limit::{LimitCommand, LimitKind, LimitRefusal, Refusal};
use domain::{Aggregate, EventMetadata};
use eventstore::{EventStore, UnitOfWork};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;
use uuid::Uuid;

/// The limits' values. A value of 0 turns that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Support tickets per end user (an anonymous caller: per client address) per day.
    pub tickets_per_end_user_per_day: u32,
    /// New tracking ids (new end users) one server sees per hour.
    pub new_end_users_per_server_per_hour: u32,
    /// New tracking ids (new end users) one client address brings per hour, across servers.
    pub new_end_users_per_address_per_hour: u32,
    /// Open 2025-era protocol sessions per end user (active within [`SESSION_IDLE`]).
    pub sessions_per_end_user: u32,
    /// Orgs one account owns.
    pub orgs_per_account: u32,
    /// Signups per client address per hour.
    pub signups_per_address_per_hour: u32,
    /// Login attempts per client address per minute, whatever the account.
    pub logins_per_address_per_minute: u32,
    /// Login attempts for one account from one client address per minute.
    pub logins_per_account_and_address_per_minute: u32,
    /// Dynamic client registrations (RFC 7591) from one client address per hour, across
    /// servers: clients that register on every connection stay far below it.
    pub client_registrations_per_address_per_hour: u32,
}

impl Default for Limits {
    /// Well above what real use reaches: an end user opening 20 tickets a day, a product
    /// bringing 10,000 new users an hour to one server, or one person owning 20 orgs, is
    /// abuse or a bug.
    fn default() -> Self {
        Self {
            tickets_per_end_user_per_day: 20,
            new_end_users_per_server_per_hour: 10_000,
            new_end_users_per_address_per_hour: 1_000,
            sessions_per_end_user: 50,
            orgs_per_account: 20,
            signups_per_address_per_hour: 20,
            logins_per_address_per_minute: 30,
            logins_per_account_and_address_per_minute: 5,
            client_registrations_per_address_per_hour: 100,
        }
    }
}

/// A session counts as open until it ends or goes this long without activity (a client that
/// never sends `DELETE` leaves its sessions open for ever otherwise).
pub const SESSION_IDLE: Duration = Duration::from_secs(60 * 60);

/// At most one refusal event per limit and key this often.
const RECORD_EVERY: Duration = Duration::from_secs(60);

/// `allowed` per `period` per key: that many at once, then refilled evenly over the period.
/// `allowed = 0` never refuses.
pub struct Rate<K: Hash + Eq + Clone> {
    allowed: u32,
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    clock: DefaultClock,
}

impl<K: Hash + Eq + Clone> Rate<K> {
    pub fn new(allowed: u32, period: Duration) -> Self {
        let limiter = NonZeroU32::new(allowed).map(|n| {
            let quota = Quota::with_period(period / n.get())
                .unwrap_or_else(|| Quota::per_second(n))
                .allow_burst(n);
            RateLimiter::keyed(quota)
        });
        Self {
            allowed,
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one from `key`'s budget, or says how long until one is there.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    pub fn allowed(&self) -> u32 {
        self.allowed
    }

    /// Forgets keys whose budget is full again, so the map stays small.
    pub fn shrink(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
    }
}

/// Whose tickets a budget counts: an end user, or an anonymous caller's client address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TicketKey {
    EndUser(Uuid),
    Address(String),
}

/// A rate limit said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub limit: LimitKind,
    pub allowed: u32,
    /// Seconds to wait (at least 1).
    pub retry_after_secs: u64,
}

fn refused(limit: LimitKind, allowed: u32) -> impl FnOnce(Duration) -> Refused {
    move |wait| Refused {
        limit,
        allowed,
        retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
    }
}

const HOUR: Duration = Duration::from_secs(60 * 60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The rate limits of this process, and the recording of refusals.
pub struct Guard {
    pub limits: Limits,
    tickets: Rate<TicketKey>,
    new_end_users_per_server: Rate<Uuid>,
    new_end_users_per_address: Rate<String>,
    signups_per_address: Rate<String>,
    client_registrations_per_address: Rate<String>,
    recorded: Rate<(LimitKind, String)>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Guard {
    pub fn new(limits: Limits) -> Self {
        Self {
            tickets: Rate::new(limits.tickets_per_end_user_per_day, DAY),
            new_end_users_per_server: Rate::new(limits.new_end_users_per_server_per_hour, HOUR),
            new_end_users_per_address: Rate::new(limits.new_end_users_per_address_per_hour, HOUR),
            signups_per_address: Rate::new(limits.signups_per_address_per_hour, HOUR),
            client_registrations_per_address: Rate::new(
                limits.client_registrations_per_address_per_hour,
                HOUR,
            ),
            recorded: Rate::new(1, RECORD_EVERY),
            limits,
        }
    }

    /// One more ticket for this caller.
    pub fn ticket(&self, key: &TicketKey) -> Result<(), Refused> {
        self.tickets.check(key).map_err(refused(
            LimitKind::TicketsPerEndUser,
            self.tickets.allowed(),
        ))
    }

    /// One more new end user on this server from this address (the address first, so one
    /// address refused does not use up the server's budget).
    pub fn new_end_user(&self, server_id: Uuid, address: Option<&str>) -> Result<(), Refused> {
        if let Some(address) = address {
            self.new_end_users_per_address
                .check(&address.to_owned())
                .map_err(refused(
                    LimitKind::NewEndUsersPerAddress,
                    self.new_end_users_per_address.allowed(),
                ))?;
        }
        self.new_end_users_per_server
            .check(&server_id)
            .map_err(refused(
                LimitKind::NewEndUsersPerServer,
                self.new_end_users_per_server.allowed(),
            ))
    }

    /// One more signup from this address.
    pub fn signup(&self, address: Option<&str>) -> Result<(), Refused> {
        let Some(address) = address else {
            return Ok(());
        };
        self.signups_per_address
            .check(&address.to_owned())
            .map_err(refused(
                LimitKind::SignupsPerAddress,
                self.signups_per_address.allowed(),
            ))
    }

    /// One more dynamic client registration from this address.
    pub fn client_registration(&self, address: Option<&str>) -> Result<(), Refused> {
        let Some(address) = address else {
            return Ok(());
        };
        self.client_registrations_per_address
            .check(&address.to_owned())
            .map_err(refused(
                LimitKind::ClientRegistrationsPerAddress,
                self.client_registrations_per_address.allowed(),
            ))
    }

    /// Records a refusal as a `LimitRefused` event (with the org's id in its metadata when it
    /// has one), unless one was recorded for this limit and `key` within the last minute.
    /// Never fails the request: a refusal that cannot be recorded is logged.
    pub async fn record(
        &self,
        store: &EventStore,
        refusal: Refusal,
        key: &str,
        metadata: &EventMetadata,
    ) {
        tracing::info!(limit = %refusal.limit, allowed = refusal.allowed, "platform limit refused a request");
        if self
            .recorded
            .check(&(refusal.limit, key.to_owned()))
            .is_err()
        {
            return;
        }
        let mut metadata = metadata.clone();
        if let Some(org_id) = refusal.org_id {
            metadata = metadata.for_org(org_id);
        }
        if let Err(e) = record_refusal(store, refusal, &metadata).await {
            tracing::warn!(error = %e, "recording a limit refusal failed");
        }
    }

    /// Forgets keys whose budgets are full again; called periodically.
    pub fn shrink(&self) {
        self.tickets.shrink();
        self.new_end_users_per_server.shrink();
        self.new_end_users_per_address.shrink();
        self.signups_per_address.shrink();
        self.client_registrations_per_address.shrink();
        self.recorded.shrink();
    }
}

/// Appends one `LimitRefused` event, its own one-event stream (time-ordered id).
pub async fn record_refusal(
    store: &EventStore,
    refusal: Refusal,
    metadata: &EventMetadata,
) -> Result<(), eventstore::CommitError> {
    let events = LimitRefusal::default()
        .handle(LimitCommand::Record(refusal))
        .map_err(|_| eventstore::CommitError::Conflict)?;
    let mut uow = UnitOfWork::new();
    uow.append::<LimitRefusal>(Uuid::now_v7().to_string(), 0, &events, metadata)?;
    store.commit(uow).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_refuses_past_its_budget_and_says_how_long() {
        let rate = Rate::<u8>::new(2, HOUR);
        assert!(rate.check(&1).is_ok());
        assert!(rate.check(&1).is_ok());
        let wait = rate.check(&1).err();
        assert!(wait.is_some_and(|w| w > Duration::from_secs(60 * 29)));
        assert!(rate.check(&2).is_ok(), "another key has its own budget");
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let rate = Rate::<u8>::new(0, HOUR);
        for _ in 0..1000 {
            assert!(rate.check(&1).is_ok());
        }
    }

    #[test]
    fn new_end_users_are_refused_per_address_before_the_server_budget_is_used() {
        let guard = Guard::new(Limits {
            new_end_users_per_address_per_hour: 1,
            new_end_users_per_server_per_hour: 2,
            ..Limits::default()
        });
        let server = Uuid::nil();
        assert!(guard.new_end_user(server, Some("10.0.0.1")).is_ok());
        let refused = guard.new_end_user(server, Some("10.0.0.1"));
        assert_eq!(
            refused.map_err(|r| r.limit),
            Err(LimitKind::NewEndUsersPerAddress)
        );
        assert!(guard.new_end_user(server, Some("10.0.0.2")).is_ok());
        let refused = guard.new_end_user(server, Some("10.0.0.3"));
        assert_eq!(
            refused.map_err(|r| r.limit),
            Err(LimitKind::NewEndUsersPerServer)
        );
        assert!(refused.is_err_and(|r| r.retry_after_secs >= 1));
    }
}
