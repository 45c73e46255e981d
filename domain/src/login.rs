//! A login attempt: a fact with no invariant across attempts, so each attempt is its own
//! one-event stream and recording it never contends with anything.

use crate::values::Email;
use crate::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    UnknownEmail,
    WrongPassword,
    RateLimited,
}

#[derive(Debug, Default, Clone)]
pub struct LoginAttempt {
    pub recorded: bool,
}

#[derive(Debug, Clone)]
pub enum LoginCommand {
    RecordSuccess {
        user_id: Uuid,
        email: Email,
    },
    RecordFailure {
        user_id: Option<Uuid>,
        /// As typed: the aggregate keeps it only if it is an email address.
        email: String,
        reason: LoginFailure,
    },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum LoginEvent {
    LoginSucceeded {
        user_id: Uuid,
        email: Email,
    },
    LoginFailed {
        #[serde(default)]
        user_id: Option<Uuid>,
        /// What was typed in the email field, only when it is an email address (control
        /// characters dropped): anything else, a password typed in the wrong field for one,
        /// is never stored. Events recorded before kept what was typed.
        #[serde(default)]
        email: Option<Email>,
        /// Something was typed that is not an email address (and was not kept).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        not_an_email: bool,
        reason: LoginFailure,
    },
}

impl DomainEvent for LoginEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("this login attempt is already recorded")]
    AlreadyRecorded,
}

impl Aggregate for LoginAttempt {
    const TYPE: &'static str = "login_attempt";
    type Command = LoginCommand;
    type Event = LoginEvent;
    type Error = LoginError;

    fn handle(&self, command: LoginCommand) -> Result<Vec<LoginEvent>, LoginError> {
        if self.recorded {
            return Err(LoginError::AlreadyRecorded);
        }
        Ok(vec![match command {
            LoginCommand::RecordSuccess { user_id, email } => {
                LoginEvent::LoginSucceeded { user_id, email }
            }
            LoginCommand::RecordFailure {
                user_id,
                email,
                reason,
            } => {
                let typed: String = email.chars().filter(|c| !c.is_control()).collect();
                let email = Email::parse(&typed).ok();
                LoginEvent::LoginFailed {
                    user_id,
                    not_an_email: email.is_none() && !typed.trim().is_empty(),
                    email,
                    reason,
                }
            }
        }])
    }

    fn apply(&mut self, _event: &LoginEvent) {
        self.recorded = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given_when;

    fn failed(typed: &str) -> LoginEvent {
        let events = given_when::<LoginAttempt>(
            &[],
            LoginCommand::RecordFailure {
                user_id: None,
                email: typed.to_owned(),
                reason: LoginFailure::UnknownEmail,
            },
        )
        .unwrap_or_default();
        assert_eq!(events.len(), 1);
        events.into_iter().next().unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn a_failed_login_keeps_the_typed_email_only_when_it_is_an_email() {
        let LoginEvent::LoginFailed {
            email,
            not_an_email,
            ..
        } = failed(" Who@Example.com ")
        else {
            unreachable!()
        };
        assert_eq!(email.as_ref().map(Email::as_str), Some("who@example.com"));
        assert!(!not_an_email);
        // A NUL typed inside an address is dropped, the address kept.
        let LoginEvent::LoginFailed { email, .. } = failed("own\u{0}er@acme.dev") else {
            unreachable!()
        };
        assert_eq!(email.as_ref().map(Email::as_str), Some("owner@acme.dev"));
    }

    #[test]
    fn a_password_typed_in_the_email_field_is_never_stored() {
        let event = failed("hunter2-Correct-Horse!");
        let LoginEvent::LoginFailed {
            email,
            not_an_email,
            ..
        } = &event
        else {
            unreachable!()
        };
        assert_eq!((email, *not_an_email), (&None, true));
        let stored = serde_json::to_string(&event).unwrap_or_default();
        assert!(!stored.contains("hunter2"), "{stored}");
        assert!(!stored.contains("Horse"), "{stored}");
    }

    #[test]
    fn failures_recorded_before_still_read() {
        let old: LoginEvent = serde_json::from_value(serde_json::json!({
            "LoginFailed": { "user_id": null, "email": "who@example.com", "reason": "unknown_email" }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            old,
            LoginEvent::LoginFailed {
                email: Some(_),
                not_an_email: false,
                ..
            }
        ));
    }
}
