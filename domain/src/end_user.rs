//! An end user of an org's hosted MCP servers, identified by a tracking id in their server URL
//! (and later by signing in through the org's OAuth provider). (The MCP edge that creates and
//! attributes them comes with issue 3.)

use crate::values::Email;
use crate::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A tracking id as it appears in `/t/{tracking_id}/mcp`: 1 to 128 characters of letters,
/// digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrackingId(String);

impl TrackingId {
    pub fn parse(input: &str) -> Option<Self> {
        let ok = !input.is_empty()
            && input.len() <= 128
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        ok.then(|| Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Default, Clone)]
pub struct EndUser {
    pub org_id: Option<Uuid>,
    pub tracking_ids: Vec<TrackingId>,
    pub emails: Vec<Email>,
}

#[derive(Debug, Clone)]
pub enum EndUserCommand {
    /// First sight of a tracking id in an org.
    Identify {
        org_id: Uuid,
        server_id: Uuid,
        tracking_id: TrackingId,
    },
    /// An email the user gave (for example in `get_support`).
    RecordEmail { email: Email },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum EndUserEvent {
    EndUserIdentified {
        org_id: Uuid,
        server_id: Uuid,
        tracking_id: TrackingId,
    },
    EndUserEmailRecorded {
        email: Email,
    },
}

impl DomainEvent for EndUserEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndUserError {
    #[error("end user not found")]
    NotFound,
    #[error("this end user belongs to another organization")]
    OtherOrg,
}

impl Aggregate for EndUser {
    const TYPE: &'static str = "end_user";
    type Command = EndUserCommand;
    type Event = EndUserEvent;
    type Error = EndUserError;

    fn handle(&self, command: EndUserCommand) -> Result<Vec<EndUserEvent>, EndUserError> {
        match command {
            EndUserCommand::Identify {
                org_id,
                server_id,
                tracking_id,
            } => {
                if self.org_id.is_some_and(|o| o != org_id) {
                    return Err(EndUserError::OtherOrg);
                }
                if self.tracking_ids.contains(&tracking_id) {
                    return Ok(vec![]);
                }
                Ok(vec![EndUserEvent::EndUserIdentified {
                    org_id,
                    server_id,
                    tracking_id,
                }])
            }
            EndUserCommand::RecordEmail { email } => {
                if self.org_id.is_none() {
                    return Err(EndUserError::NotFound);
                }
                if self.emails.contains(&email) {
                    return Ok(vec![]);
                }
                Ok(vec![EndUserEvent::EndUserEmailRecorded { email }])
            }
        }
    }

    fn apply(&mut self, event: &EndUserEvent) {
        match event {
            EndUserEvent::EndUserIdentified {
                org_id,
                tracking_id,
                ..
            } => {
                self.org_id = Some(*org_id);
                self.tracking_ids.push(tracking_id.clone());
            }
            EndUserEvent::EndUserEmailRecorded { email } => self.emails.push(email.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given_when;

    fn tid(s: &str) -> TrackingId {
        TrackingId::parse(s).unwrap()
    }

    fn identify(org: u128, t: &str) -> EndUserCommand {
        EndUserCommand::Identify {
            org_id: Uuid::from_u128(org),
            server_id: Uuid::nil(),
            tracking_id: tid(t),
        }
    }

    #[test]
    fn tracking_ids_are_url_safe_tokens() {
        assert!(TrackingId::parse("user-42_a.b").is_some());
        assert!(TrackingId::parse("").is_none());
        assert!(TrackingId::parse("a/b").is_none());
        assert!(TrackingId::parse("a b").is_none());
        assert!(TrackingId::parse(&"x".repeat(129)).is_none());
    }

    #[test]
    fn identification_and_emails_are_idempotent_and_org_bound() {
        let first = given_when::<EndUser>(&[], identify(1, "u1")).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(given_when::<EndUser>(&first, identify(1, "u1")), Ok(vec![]));
        assert_eq!(
            given_when::<EndUser>(&first, identify(2, "u1")).err(),
            Some(EndUserError::OtherOrg)
        );
        let email = || EndUserCommand::RecordEmail {
            email: Email::parse("dev@example.com").unwrap(),
        };
        assert_eq!(
            given_when::<EndUser>(&[], email()).err(),
            Some(EndUserError::NotFound)
        );
        let mut events = first.clone();
        events.extend(given_when::<EndUser>(&first, email()).unwrap());
        assert_eq!(given_when::<EndUser>(&events, email()), Ok(vec![]));
    }
}
