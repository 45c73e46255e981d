//! A platform user (a customer who signs in to the dashboard).

use crate::values::{Email, Name};
use crate::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone)]
pub struct User {
    pub signed_up: bool,
    pub email: Option<Email>,
    pub name: Option<Name>,
}

#[derive(Debug, Clone)]
pub enum UserCommand {
    SignUp { email: Email, name: Name },
}

/// Events carry no credential: they are published to NATS and exported to analysts. The
/// password hash lives in a write-side table, written in the same commit as the signup.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum UserEvent {
    UserSignedUp { email: Email, name: Name },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("this user has already signed up")]
    AlreadySignedUp,
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;

    fn handle(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        match command {
            UserCommand::SignUp { email, name } => {
                if self.signed_up {
                    return Err(UserError::AlreadySignedUp);
                }
                Ok(vec![UserEvent::UserSignedUp { email, name }])
            }
        }
    }

    fn apply(&mut self, event: &UserEvent) {
        match event {
            UserEvent::UserSignedUp { email, name } => {
                self.signed_up = true;
                self.email = Some(email.clone());
                self.name = Some(name.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given_when;

    fn signup() -> UserCommand {
        UserCommand::SignUp {
            email: Email::parse("ada@example.com").unwrap_or_else(|_| unreachable!()),
            name: Name::parse("Ada").unwrap_or_else(|_| unreachable!()),
        }
    }

    #[test]
    fn signs_up_once() {
        let events = given_when::<User>(&[], signup()).unwrap_or_default();
        assert_eq!(events.len(), 1);
        assert_eq!(
            given_when::<User>(&events, signup()).err(),
            Some(UserError::AlreadySignedUp)
        );
    }
}
