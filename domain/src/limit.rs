//! A platform limit refusing something (too many tickets, new end users, sessions, orgs,
//! signups, login attempts). A fact with no invariant across refusals, so each refusal is its
//! own one-event stream and recording it never contends with anything. These are the
//! platform's protections against abuse, not the quotas customers configure on their tools.
//!
//! The client address a per-address limit keys on is not in the event (it is in the
//! metadata, as for every event of a request, and shown to whom metadata is shown).

use crate::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which limit refused.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum LimitKind {
    /// Support tickets one end user (or one anonymous address) opens per day.
    TicketsPerEndUser,
    /// New tracking ids (new end users) one server sees per hour.
    NewEndUsersPerServer,
    /// New tracking ids (new end users) one client address brings per hour.
    NewEndUsersPerAddress,
    /// Open protocol sessions of one end user.
    SessionsPerEndUser,
    /// Orgs one account owns.
    OrgsPerAccount,
    /// Signups from one client address per hour.
    SignupsPerAddress,
    /// Login attempts from one client address.
    LoginsPerAddress,
    /// Login attempts for one account from one client address.
    LoginsPerAccountAndAddress,
    /// Dynamic client registrations from one client address.
    ClientRegistrationsPerAddress,
}

/// What was refused, by which limit, for whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub limit: LimitKind,
    /// The limit's value when it refused (per its period, or the count).
    pub allowed: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user_id: Option<Uuid>,
    /// The platform account (orgs per account, logins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// Seconds until a retry can succeed; none for a count that only drops when something
    /// ends (sessions, orgs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

#[derive(Debug, Default, Clone)]
pub struct LimitRefusal {
    pub recorded: bool,
}

#[derive(Debug, Clone)]
pub enum LimitCommand {
    Record(Refusal),
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum LimitEvent {
    LimitRefused(Refusal),
}

impl DomainEvent for LimitEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("this refusal is already recorded")]
    AlreadyRecorded,
}

impl Aggregate for LimitRefusal {
    const TYPE: &'static str = "limit_refusal";
    type Command = LimitCommand;
    type Event = LimitEvent;
    type Error = LimitError;

    fn handle(&self, command: LimitCommand) -> Result<Vec<LimitEvent>, LimitError> {
        if self.recorded {
            return Err(LimitError::AlreadyRecorded);
        }
        let LimitCommand::Record(refusal) = command;
        Ok(vec![LimitEvent::LimitRefused(refusal)])
    }

    fn apply(&mut self, _event: &LimitEvent) {
        self.recorded = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given_when;

    fn refusal() -> Refusal {
        Refusal {
            limit: LimitKind::TicketsPerEndUser,
            allowed: 20,
            org_id: Some(Uuid::nil()),
            server_id: None,
            end_user_id: Some(Uuid::nil()),
            user_id: None,
            retry_after_secs: Some(30),
        }
    }

    #[test]
    fn a_refusal_is_recorded_once() {
        let events = given_when::<LimitRefusal>(&[], LimitCommand::Record(refusal()));
        assert_eq!(events, Ok(vec![LimitEvent::LimitRefused(refusal())]));
        let again = given_when::<LimitRefusal>(
            &[LimitEvent::LimitRefused(refusal())],
            LimitCommand::Record(refusal()),
        );
        assert_eq!(again, Err(LimitError::AlreadyRecorded));
    }

    #[test]
    fn kinds_are_snake_case_on_the_wire() {
        let json = serde_json::to_value(refusal()).unwrap_or_default();
        assert_eq!(json["limit"], "tickets_per_end_user");
        assert_eq!(
            LimitKind::SignupsPerAddress.to_string(),
            "signups_per_address"
        );
        assert!(json.get("server_id").is_none());
    }
}
