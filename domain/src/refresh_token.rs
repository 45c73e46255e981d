//! A refresh-token family: the chain of rotating refresh tokens issued from one login.
//!
//! Only hashes of tokens are kept. Presenting a token that was already rotated away means it
//! leaked (or a client raced itself): the whole family is revoked (OAuth 2.0 Security BCP).

use crate::{Aggregate, DomainEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    Logout,
    ReuseDetected,
}

#[derive(Debug, Default, Clone)]
pub struct RefreshTokenFamily {
    pub user_id: Option<Uuid>,
    pub current_hash: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub retired_hashes: Vec<String>,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub enum RefreshTokenCommand {
    Issue {
        user_id: Uuid,
        token_hash: String,
        expires_at: DateTime<Utc>,
    },
    Rotate {
        presented_hash: String,
        new_hash: String,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    /// Logout: only the family's current token may end it.
    Revoke {
        reason: RevokeReason,
        presented_hash: String,
    },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum RefreshTokenEvent {
    RefreshTokenIssued {
        user_id: Uuid,
        token_hash: String,
        #[serde(with = "crate::time::rfc3339")]
        expires_at: DateTime<Utc>,
    },
    RefreshTokenRotated {
        token_hash: String,
        #[serde(with = "crate::time::rfc3339")]
        expires_at: DateTime<Utc>,
    },
    RefreshTokenFamilyRevoked {
        reason: RevokeReason,
    },
}

impl DomainEvent for RefreshTokenEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshTokenError {
    #[error("refresh token is not valid")]
    Unknown,
    #[error("refresh token has expired")]
    Expired,
    #[error("refresh token has been revoked")]
    Revoked,
    #[error("refresh token family already exists")]
    AlreadyIssued,
}

impl Aggregate for RefreshTokenFamily {
    const TYPE: &'static str = "refresh_token_family";
    type Command = RefreshTokenCommand;
    type Event = RefreshTokenEvent;
    type Error = RefreshTokenError;

    fn handle(
        &self,
        command: RefreshTokenCommand,
    ) -> Result<Vec<RefreshTokenEvent>, RefreshTokenError> {
        match command {
            RefreshTokenCommand::Issue {
                user_id,
                token_hash,
                expires_at,
            } => {
                if self.user_id.is_some() {
                    return Err(RefreshTokenError::AlreadyIssued);
                }
                Ok(vec![RefreshTokenEvent::RefreshTokenIssued {
                    user_id,
                    token_hash,
                    expires_at,
                }])
            }
            RefreshTokenCommand::Rotate {
                presented_hash,
                new_hash,
                now,
                expires_at,
            } => {
                if self.user_id.is_none() {
                    return Err(RefreshTokenError::Unknown);
                }
                if self.revoked {
                    return Err(RefreshTokenError::Revoked);
                }
                if self.current_hash.as_deref() == Some(presented_hash.as_str()) {
                    if self.expires_at.is_some_and(|at| now >= at) {
                        return Err(RefreshTokenError::Expired);
                    }
                    return Ok(vec![RefreshTokenEvent::RefreshTokenRotated {
                        token_hash: new_hash,
                        expires_at,
                    }]);
                }
                if self.retired_hashes.contains(&presented_hash) {
                    // Reuse of a rotated token: revoke the family. The caller still refuses the
                    // request; the revocation is the event it records.
                    return Ok(vec![RefreshTokenEvent::RefreshTokenFamilyRevoked {
                        reason: RevokeReason::ReuseDetected,
                    }]);
                }
                Err(RefreshTokenError::Unknown)
            }
            RefreshTokenCommand::Revoke {
                reason,
                presented_hash,
            } => {
                if self.user_id.is_none() {
                    return Err(RefreshTokenError::Unknown);
                }
                if self.revoked {
                    return Err(RefreshTokenError::Revoked);
                }
                if self.current_hash.as_deref() != Some(presented_hash.as_str()) {
                    return Err(RefreshTokenError::Unknown);
                }
                Ok(vec![RefreshTokenEvent::RefreshTokenFamilyRevoked {
                    reason,
                }])
            }
        }
    }

    fn apply(&mut self, event: &RefreshTokenEvent) {
        match event {
            RefreshTokenEvent::RefreshTokenIssued {
                user_id,
                token_hash,
                expires_at,
            } => {
                self.user_id = Some(*user_id);
                self.current_hash = Some(token_hash.clone());
                self.expires_at = Some(*expires_at);
            }
            RefreshTokenEvent::RefreshTokenRotated {
                token_hash,
                expires_at,
            } => {
                if let Some(old) = self.current_hash.replace(token_hash.clone()) {
                    self.retired_hashes.push(old);
                }
                self.expires_at = Some(*expires_at);
            }
            RefreshTokenEvent::RefreshTokenFamilyRevoked { .. } => self.revoked = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given_when;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
    }

    fn issued() -> Vec<RefreshTokenEvent> {
        vec![RefreshTokenEvent::RefreshTokenIssued {
            user_id: Uuid::nil(),
            token_hash: "h1".into(),
            expires_at: at(100),
        }]
    }

    fn rotate(presented: &str, now: i64) -> RefreshTokenCommand {
        RefreshTokenCommand::Rotate {
            presented_hash: presented.into(),
            new_hash: "h2".into(),
            now: at(now),
            expires_at: at(200),
        }
    }

    #[test]
    fn rotates_the_current_token() {
        let events = given_when::<RefreshTokenFamily>(&issued(), rotate("h1", 10));
        assert!(matches!(
            events.as_deref(),
            Ok([RefreshTokenEvent::RefreshTokenRotated { .. }])
        ));
    }

    #[test]
    fn reuse_of_a_rotated_token_revokes_the_family() {
        let mut given = issued();
        given.push(RefreshTokenEvent::RefreshTokenRotated {
            token_hash: "h2".into(),
            expires_at: at(200),
        });
        let events = given_when::<RefreshTokenFamily>(&given, rotate("h1", 10));
        assert!(matches!(
            events.as_deref(),
            Ok([RefreshTokenEvent::RefreshTokenFamilyRevoked {
                reason: RevokeReason::ReuseDetected
            }])
        ));
        given.push(RefreshTokenEvent::RefreshTokenFamilyRevoked {
            reason: RevokeReason::ReuseDetected,
        });
        assert_eq!(
            given_when::<RefreshTokenFamily>(&given, rotate("h2", 10)).err(),
            Some(RefreshTokenError::Revoked)
        );
    }

    #[test]
    fn only_the_current_token_logs_out() {
        let logout = |hash: &str| RefreshTokenCommand::Revoke {
            reason: RevokeReason::Logout,
            presented_hash: hash.into(),
        };
        assert_eq!(
            given_when::<RefreshTokenFamily>(&issued(), logout("other")).err(),
            Some(RefreshTokenError::Unknown)
        );
        let events = given_when::<RefreshTokenFamily>(&issued(), logout("h1")).unwrap();
        assert_eq!(
            given_when::<RefreshTokenFamily>(&events_after(issued(), events), logout("h1")).err(),
            Some(RefreshTokenError::Revoked)
        );
    }

    fn events_after(
        mut given: Vec<RefreshTokenEvent>,
        more: Vec<RefreshTokenEvent>,
    ) -> Vec<RefreshTokenEvent> {
        given.extend(more);
        given
    }

    #[test]
    fn expired_and_unknown_tokens_are_refused() {
        assert_eq!(
            given_when::<RefreshTokenFamily>(&issued(), rotate("h1", 100)).err(),
            Some(RefreshTokenError::Expired)
        );
        assert_eq!(
            given_when::<RefreshTokenFamily>(&issued(), rotate("nope", 10)).err(),
            Some(RefreshTokenError::Unknown)
        );
        assert_eq!(
            given_when::<RefreshTokenFamily>(&[], rotate("h1", 10)).err(),
            Some(RefreshTokenError::Unknown)
        );
    }
}
