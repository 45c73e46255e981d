//! A support ticket, opened by an end user through a server's `get_support` tool and worked by
//! the org's members. (The MCP edge and REST routes that drive it come with issue 3.)

use crate::{Actor, Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::VariantArray)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    New,
    InProgress,
    AwaitingCustomer,
    Resolved,
    Closed,
}

impl TicketStatus {
    pub fn parse(input: &str) -> Option<Self> {
        Some(match input {
            "new" => Self::New,
            "in_progress" => Self::InProgress,
            "awaiting_customer" => Self::AwaitingCustomer,
            "resolved" => Self::Resolved,
            "closed" => Self::Closed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::InProgress => "in_progress",
            Self::AwaitingCustomer => "awaiting_customer",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
        }
    }

    /// The one lifecycle: new → in_progress → awaiting_customer → in_progress → resolved →
    /// closed, and reopening from resolved back to in_progress.
    pub fn allowed_next(self) -> &'static [TicketStatus] {
        use TicketStatus::*;
        match self {
            New => &[InProgress],
            InProgress => &[AwaitingCustomer, Resolved],
            AwaitingCustomer => &[InProgress],
            Resolved => &[Closed, InProgress],
            Closed => &[],
        }
    }
}

impl fmt::Display for TicketStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reference end users are given and quote back: `TCK-` and the id's first 8 hex digits.
pub fn reference(ticket_id: Uuid) -> String {
    let simple = ticket_id.simple().to_string();
    format!("TCK-{}", simple[..8].to_ascii_uppercase())
}

/// The ids a quoted reference (`TCK-1A2B3C4D`, any case) can stand for: every id whose first
/// 8 hex digits are the reference's, as an inclusive range in the order Postgres sorts `uuid`.
pub fn reference_range(quoted: &str) -> Option<(Uuid, Uuid)> {
    let hex = quoted
        .get(..4)
        .filter(|prefix| prefix.eq_ignore_ascii_case("TCK-"))
        .map(|_| &quoted[4..])?;
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let high = u128::from(u32::from_str_radix(hex, 16).ok()?) << 96;
    Some((
        Uuid::from_u128(high),
        Uuid::from_u128(high | ((1u128 << 96) - 1)),
    ))
}

#[derive(Debug, Default, Clone)]
pub struct Ticket {
    pub opened: bool,
    pub org_id: Option<Uuid>,
    pub status: Option<TicketStatus>,
    pub assignee: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub enum TicketCommand {
    Open {
        org_id: Uuid,
        server_id: Uuid,
        end_user_id: Option<Uuid>,
        title: String,
        description: String,
        email: Option<String>,
        context: Option<String>,
    },
    ChangeStatus {
        to: TicketStatus,
        by: Actor,
    },
    Comment {
        by: Actor,
        body: String,
    },
    Assign {
        member_id: Uuid,
        by: Actor,
    },
    Unassign {
        by: Actor,
    },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum TicketEvent {
    TicketOpened {
        org_id: Uuid,
        server_id: Uuid,
        #[serde(default)]
        end_user_id: Option<Uuid>,
        title: String,
        description: String,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        context: Option<String>,
    },
    TicketStatusChanged {
        from: TicketStatus,
        to: TicketStatus,
        by: Actor,
    },
    TicketCommented {
        by: Actor,
        body: String,
    },
    TicketAssigned {
        member_id: Uuid,
        by: Actor,
    },
    TicketUnassigned {
        by: Actor,
    },
}

impl DomainEvent for TicketEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket not found")]
    NotFound,
    #[error("ticket already exists")]
    AlreadyOpened,
    #[error("a ticket cannot go from {from} to {to}; allowed: {}", allowed_list(.allowed))]
    IllegalTransition {
        from: TicketStatus,
        to: TicketStatus,
        allowed: Vec<TicketStatus>,
    },
    #[error("{field} must be between 1 and {max} characters")]
    Length { field: &'static str, max: usize },
}

fn allowed_list(allowed: &[TicketStatus]) -> String {
    if allowed.is_empty() {
        return "none (the ticket is closed)".to_owned();
    }
    allowed
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<String, TicketError> {
    let trimmed = value.trim();
    let len = trimmed.chars().count();
    if len == 0 || len > max {
        return Err(TicketError::Length { field, max });
    }
    Ok(trimmed.to_owned())
}

impl Aggregate for Ticket {
    const TYPE: &'static str = "ticket";
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Error = TicketError;

    fn handle(&self, command: TicketCommand) -> Result<Vec<TicketEvent>, TicketError> {
        if !self.opened && !matches!(command, TicketCommand::Open { .. }) {
            return Err(TicketError::NotFound);
        }
        match command {
            TicketCommand::Open {
                org_id,
                server_id,
                end_user_id,
                title,
                description,
                email,
                context,
            } => {
                if self.opened {
                    return Err(TicketError::AlreadyOpened);
                }
                Ok(vec![TicketEvent::TicketOpened {
                    org_id,
                    server_id,
                    end_user_id,
                    title: bounded("title", &title, 200)?,
                    description: bounded("description", &description, 10_000)?,
                    email,
                    context: context.map(|c| c.chars().take(10_000).collect()),
                }])
            }
            TicketCommand::ChangeStatus { to, by } => {
                let from = self.status.unwrap_or(TicketStatus::New);
                if from == to {
                    return Ok(vec![]);
                }
                let allowed = from.allowed_next();
                if !allowed.contains(&to) {
                    return Err(TicketError::IllegalTransition {
                        from,
                        to,
                        allowed: allowed.to_vec(),
                    });
                }
                Ok(vec![TicketEvent::TicketStatusChanged { from, to, by }])
            }
            TicketCommand::Comment { by, body } => Ok(vec![TicketEvent::TicketCommented {
                by,
                body: bounded("body", &body, 10_000)?,
            }]),
            TicketCommand::Assign { member_id, by } => {
                if self.assignee == Some(member_id) {
                    return Ok(vec![]);
                }
                Ok(vec![TicketEvent::TicketAssigned { member_id, by }])
            }
            TicketCommand::Unassign { by } => {
                if self.assignee.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![TicketEvent::TicketUnassigned { by }])
            }
        }
    }

    fn apply(&mut self, event: &TicketEvent) {
        match event {
            TicketEvent::TicketOpened { org_id, .. } => {
                self.opened = true;
                self.org_id = Some(*org_id);
                self.status = Some(TicketStatus::New);
            }
            TicketEvent::TicketStatusChanged { to, .. } => self.status = Some(*to),
            TicketEvent::TicketCommented { .. } => {}
            TicketEvent::TicketAssigned { member_id, .. } => self.assignee = Some(*member_id),
            TicketEvent::TicketUnassigned { .. } => self.assignee = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{given_when, replay};
    use TicketStatus::*;

    #[test]
    fn a_ticket_is_assigned_and_taken_off_its_assignee_once_each() {
        let by = Actor::System;
        let member_id = Uuid::from_u128(7);
        let mut history = opened();
        assert_eq!(
            given_when::<Ticket>(&history, TicketCommand::Unassign { by: by.clone() }),
            Ok(vec![]),
            "nobody to take it off"
        );
        history.extend(
            given_when::<Ticket>(
                &history,
                TicketCommand::Assign {
                    member_id,
                    by: by.clone(),
                },
            )
            .unwrap(),
        );
        assert_eq!(replay::<Ticket>(&history).assignee, Some(member_id));
        let off = given_when::<Ticket>(&history, TicketCommand::Unassign { by: by.clone() });
        assert_eq!(off, Ok(vec![TicketEvent::TicketUnassigned { by }]));
        history.extend(off.unwrap());
        assert_eq!(replay::<Ticket>(&history).assignee, None);
    }

    #[test]
    fn a_reference_stands_for_the_ids_that_start_with_its_digits() {
        let id: Uuid = "1a2b3c4d-5e6f-4000-8000-00000000abcd".parse().unwrap();
        let quoted = reference(id);
        assert_eq!(quoted, "TCK-1A2B3C4D");
        for form in [quoted.as_str(), "tck-1a2b3c4d", "Tck-1A2b3C4d"] {
            let (low, high) = reference_range(form).unwrap();
            assert_eq!(low.to_string(), "1a2b3c4d-0000-0000-0000-000000000000");
            assert_eq!(high.to_string(), "1a2b3c4d-ffff-ffff-ffff-ffffffffffff");
            assert!(low <= id && id <= high);
        }
        for bad in [
            "",
            "TCK-",
            "TCK-1A2B3C4",
            "TCK-1A2B3C4D5",
            "TCK-1A2B3C4G",
            "TKT-1A2B3C4D",
            "TCK-+A2B3C4D",
            "TCK-é2B3C4D",
        ] {
            assert_eq!(reference_range(bad), None, "{bad:?}");
        }
    }

    fn opened() -> Vec<TicketEvent> {
        vec![TicketEvent::TicketOpened {
            org_id: Uuid::nil(),
            server_id: Uuid::nil(),
            end_user_id: None,
            title: "Webhooks fail".into(),
            description: "401 on every delivery".into(),
            email: None,
            context: None,
        }]
    }

    fn to(status: TicketStatus) -> TicketCommand {
        TicketCommand::ChangeStatus {
            to: status,
            by: Actor::System,
        }
    }

    /// Events that bring a ticket to `status` along the lifecycle.
    fn at(status: TicketStatus) -> Vec<TicketEvent> {
        let path: &[TicketStatus] = match status {
            New => &[],
            InProgress => &[InProgress],
            AwaitingCustomer => &[InProgress, AwaitingCustomer],
            Resolved => &[InProgress, Resolved],
            Closed => &[InProgress, Resolved, Closed],
        };
        let mut events = opened();
        for next in path {
            let more = given_when::<Ticket>(&events, to(*next)).unwrap_or_default();
            events.extend(more);
        }
        assert_eq!(replay::<Ticket>(&events).status, Some(status));
        events
    }

    #[test]
    fn every_legal_transition_is_accepted_and_every_illegal_one_names_the_allowed() {
        let all = [New, InProgress, AwaitingCustomer, Resolved, Closed];
        for from in all {
            for target in all {
                if from == target {
                    continue;
                }
                let result = given_when::<Ticket>(&at(from), to(target));
                if from.allowed_next().contains(&target) {
                    assert!(
                        matches!(
                            result.as_deref(),
                            Ok([TicketEvent::TicketStatusChanged { .. }])
                        ),
                        "{from} -> {target}: {result:?}"
                    );
                } else {
                    assert_eq!(
                        result.err(),
                        Some(TicketError::IllegalTransition {
                            from,
                            to: target,
                            allowed: from.allowed_next().to_vec()
                        }),
                        "{from} -> {target}"
                    );
                }
            }
        }
    }

    #[test]
    fn resolved_tickets_reopen_and_closed_ones_stay_closed() {
        let reopened = given_when::<Ticket>(&at(Resolved), to(InProgress));
        assert!(reopened.is_ok());
        let err = given_when::<Ticket>(&at(Closed), to(InProgress)).err();
        assert!(
            matches!(err, Some(TicketError::IllegalTransition { ref allowed, .. }) if allowed.is_empty())
        );
    }

    #[test]
    fn tickets_need_a_title_and_exist_before_anything_else() {
        let open = TicketCommand::Open {
            org_id: Uuid::nil(),
            server_id: Uuid::nil(),
            end_user_id: None,
            title: "  ".into(),
            description: "d".into(),
            email: None,
            context: None,
        };
        assert_eq!(
            given_when::<Ticket>(&[], open).err(),
            Some(TicketError::Length {
                field: "title",
                max: 200
            })
        );
        assert_eq!(
            given_when::<Ticket>(&[], to(InProgress)).err(),
            Some(TicketError::NotFound)
        );
    }
}
