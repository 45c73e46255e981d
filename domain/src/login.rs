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
        /// As typed (capped), since a failed attempt may not be a valid address at all.
        email: String,
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
            } => LoginEvent::LoginFailed {
                user_id,
                // As typed, but storable: no control characters, bounded.
                email: email
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(254)
                    .collect(),
                reason,
            },
        }])
    }

    fn apply(&mut self, _event: &LoginEvent) {
        self.recorded = true;
    }
}
