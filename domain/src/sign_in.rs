//! One end user's sign-in through a hosted server's authorization server, from the consent to
//! the code handed back to the client (MCP authorization; the server proxies the customer's
//! identity provider).
//!
//! The flow starts when the end user has consented (now, or earlier in this browser) and we
//! send them to the provider; it is single-use from there: the provider's callback is taken
//! once (`SignInCallbackTaken`, guarded by the stream's version), and then either completes
//! with our code or fails with a reason. Only the hash of the `state` we gave the provider is
//! kept; the PKCE verifier and nonce we used with the provider are derived from the flow's id
//! with a platform key, never stored.

use crate::{Aggregate, DomainEvent};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long the end user may take at the provider.
pub const SIGN_IN_TTL: Duration = Duration::minutes(10);

/// How the end user's consent to the client was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentVia {
    /// They allowed it on the consent page just now.
    Given,
    /// This browser allowed this client before (a signed cookie).
    Remembered,
}

/// Why a sign-in did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInFailure {
    /// The provider answered with an error (the end user declined, or the provider refused).
    ProviderError,
    /// The code could not be exchanged, the ID token did not validate, or the user API failed.
    ProviderExchange,
    /// The provider named no email for the end user.
    NoEmail,
    /// The provider does not say the email is verified.
    UnverifiedEmail,
    /// The callback came after the flow expired.
    Expired,
    /// The callback's `iss` names another issuer (RFC 9207: a mix-up).
    IssuerMismatch,
}

impl SignInFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInFailure::ProviderError => "provider_error",
            SignInFailure::ProviderExchange => "provider_exchange",
            SignInFailure::NoEmail => "no_email",
            SignInFailure::UnverifiedEmail => "unverified_email",
            SignInFailure::Expired => "expired",
            SignInFailure::IssuerMismatch => "issuer_mismatch",
        }
    }
}

/// The authorization request as the client made it, already judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    /// Our issuer as the client reached it (host or path form): the callback must come back
    /// to it, and the code answer names it (`iss`, RFC 9207).
    pub issuer: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// The resource (RFC 8707) the tokens will be for.
    pub resource: String,
    pub code_challenge: String,
    /// The client's `state`, handed back unchanged (opaque to us).
    pub client_state: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct SignInFlow {
    pub org_id: Option<Uuid>,
    pub server_id: Option<Uuid>,
    pub provider_id: Option<Uuid>,
    pub request: Option<AuthorizationRequest>,
    /// sha256 (hex) of the `state` sent to the provider.
    pub state_hash: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub callback_taken: bool,
    pub outcome: Option<Result<Uuid, SignInFailure>>,
}

#[derive(Debug, Clone)]
// `Start` carries the whole request; commands are built once and moved, never stored.
#[allow(clippy::large_enum_variant)]
pub enum SignInCommand {
    Start {
        org_id: Uuid,
        server_id: Uuid,
        provider_id: Uuid,
        request: AuthorizationRequest,
        consent: ConsentVia,
        state_hash: String,
        now: DateTime<Utc>,
    },
    /// The provider's callback arrived with this flow's state.
    TakeCallback {
        now: DateTime<Utc>,
    },
    /// The callback came again with a state already taken (a replayed or leaked link).
    RecordReplay {
        now: DateTime<Utc>,
    },
    Complete {
        end_user_id: Uuid,
        grant_id: Uuid,
    },
    Fail {
        reason: SignInFailure,
        /// What the provider or the check said, for the security team (never a token).
        detail: String,
    },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum SignInEvent {
    /// The end user allowed the client on the consent page (not when remembered).
    OauthConsentGiven {
        org_id: Uuid,
        server_id: Uuid,
        client_id: String,
        scopes: Vec<String>,
    },
    /// We sent the end user to the provider.
    OauthAuthorizationStarted {
        org_id: Uuid,
        server_id: Uuid,
        provider_id: Uuid,
        request: AuthorizationRequest,
        consent: ConsentVia,
        state_hash: String,
        #[serde(with = "crate::time::rfc3339")]
        expires_at: DateTime<Utc>,
    },
    SignInCallbackTaken {
        #[serde(with = "crate::time::rfc3339")]
        at: DateTime<Utc>,
    },
    /// The callback came again with this flow's state, and was refused.
    SignInCallbackReplayed {
        #[serde(with = "crate::time::rfc3339")]
        at: DateTime<Utc>,
    },
    /// The end user signed in (their `EndUserSignedIn` says who) and the client got a code.
    SignInCompleted { end_user_id: Uuid, grant_id: Uuid },
    SignInFailed {
        reason: SignInFailure,
        detail: String,
    },
}

impl DomainEvent for SignInEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    #[error("the sign-in exists already")]
    AlreadyStarted,
    #[error("no sign-in has this state")]
    Unknown,
    #[error("the sign-in's callback was taken already")]
    CallbackTaken,
    #[error("the sign-in expired")]
    Expired,
    #[error("the sign-in is not waiting for an outcome")]
    NotWaiting,
}

impl Aggregate for SignInFlow {
    const TYPE: &'static str = "sign_in";
    type Command = SignInCommand;
    type Event = SignInEvent;
    type Error = SignInError;

    fn handle(&self, command: SignInCommand) -> Result<Vec<SignInEvent>, SignInError> {
        match command {
            SignInCommand::Start {
                org_id,
                server_id,
                provider_id,
                request,
                consent,
                state_hash,
                now,
            } => {
                if self.server_id.is_some() {
                    return Err(SignInError::AlreadyStarted);
                }
                let mut events = vec![];
                if consent == ConsentVia::Given {
                    events.push(SignInEvent::OauthConsentGiven {
                        org_id,
                        server_id,
                        client_id: request.client_id.clone(),
                        scopes: request.scopes.clone(),
                    });
                }
                events.push(SignInEvent::OauthAuthorizationStarted {
                    org_id,
                    server_id,
                    provider_id,
                    request,
                    consent,
                    state_hash,
                    expires_at: now + SIGN_IN_TTL,
                });
                Ok(events)
            }
            SignInCommand::TakeCallback { now } => {
                if self.server_id.is_none() {
                    return Err(SignInError::Unknown);
                }
                if self.callback_taken {
                    return Err(SignInError::CallbackTaken);
                }
                if self.expires_at.is_none_or(|at| now >= at) {
                    return Err(SignInError::Expired);
                }
                Ok(vec![SignInEvent::SignInCallbackTaken { at: now }])
            }
            SignInCommand::RecordReplay { now } => {
                if self.server_id.is_none() {
                    return Err(SignInError::Unknown);
                }
                Ok(vec![SignInEvent::SignInCallbackReplayed { at: now }])
            }
            SignInCommand::Complete {
                end_user_id,
                grant_id,
            } => {
                if !self.callback_taken || self.outcome.is_some() {
                    return Err(SignInError::NotWaiting);
                }
                Ok(vec![SignInEvent::SignInCompleted {
                    end_user_id,
                    grant_id,
                }])
            }
            SignInCommand::Fail { reason, detail } => {
                if self.server_id.is_none() {
                    return Err(SignInError::Unknown);
                }
                if self.outcome.is_some() {
                    return Err(SignInError::NotWaiting);
                }
                let detail = detail.chars().take(500).collect();
                Ok(vec![SignInEvent::SignInFailed { reason, detail }])
            }
        }
    }

    fn apply(&mut self, event: &SignInEvent) {
        match event {
            SignInEvent::OauthConsentGiven { .. } => {}
            SignInEvent::OauthAuthorizationStarted {
                org_id,
                server_id,
                provider_id,
                request,
                state_hash,
                expires_at,
                ..
            } => {
                self.org_id = Some(*org_id);
                self.server_id = Some(*server_id);
                self.provider_id = Some(*provider_id);
                self.request = Some(request.clone());
                self.state_hash.clone_from(state_hash);
                self.expires_at = Some(*expires_at);
            }
            SignInEvent::SignInCallbackTaken { .. } => self.callback_taken = true,
            SignInEvent::SignInCallbackReplayed { .. } => {}
            SignInEvent::SignInCompleted { end_user_id, .. } => {
                self.outcome = Some(Ok(*end_user_id));
            }
            SignInEvent::SignInFailed { reason, .. } => {
                // A failure before the callback (an expired flow) also ends it.
                self.callback_taken = true;
                self.outcome = Some(Err(*reason));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given_when;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_000_000 + secs, 0)
            .single()
            .unwrap_or_default()
    }

    fn started() -> SignInEvent {
        SignInEvent::OauthAuthorizationStarted {
            org_id: Uuid::nil(),
            server_id: Uuid::nil(),
            provider_id: Uuid::nil(),
            request: AuthorizationRequest {
                issuer: "https://acme.example".into(),
                client_id: "c".into(),
                redirect_uri: "http://127.0.0.1/cb".into(),
                scopes: vec!["mcp".into()],
                resource: "https://acme.example/mcp".into(),
                code_challenge: "ch".into(),
                client_state: Some("s".into()),
            },
            consent: ConsentVia::Given,
            state_hash: "h".into(),
            expires_at: at(0) + SIGN_IN_TTL,
        }
    }

    #[test]
    fn consent_given_is_recorded_but_not_a_remembered_one() {
        let start = |consent| SignInCommand::Start {
            org_id: Uuid::nil(),
            server_id: Uuid::nil(),
            provider_id: Uuid::nil(),
            request: AuthorizationRequest {
                issuer: "https://acme.example".into(),
                client_id: "c".into(),
                redirect_uri: "r".into(),
                scopes: vec![],
                resource: "x".into(),
                code_challenge: "ch".into(),
                client_state: None,
            },
            consent,
            state_hash: "h".into(),
            now: at(0),
        };
        assert_eq!(
            given_when::<SignInFlow>(&[], start(ConsentVia::Given))
                .map(|e| e.len())
                .ok(),
            Some(2)
        );
        assert_eq!(
            given_when::<SignInFlow>(&[], start(ConsentVia::Remembered))
                .map(|e| e.len())
                .ok(),
            Some(1)
        );
    }

    #[test]
    fn the_callback_is_taken_once_and_only_in_time() {
        let given = [started()];
        assert!(
            given_when::<SignInFlow>(&given, SignInCommand::TakeCallback { now: at(5) }).is_ok()
        );
        assert_eq!(
            given_when::<SignInFlow>(&given, SignInCommand::TakeCallback { now: at(601) }).err(),
            Some(SignInError::Expired)
        );
        let taken = [started(), SignInEvent::SignInCallbackTaken { at: at(5) }];
        assert_eq!(
            given_when::<SignInFlow>(&taken, SignInCommand::TakeCallback { now: at(6) }).err(),
            Some(SignInError::CallbackTaken)
        );
        assert_eq!(
            given_when::<SignInFlow>(&[], SignInCommand::TakeCallback { now: at(6) }).err(),
            Some(SignInError::Unknown)
        );
    }

    #[test]
    fn a_flow_ends_once() {
        let taken = [started(), SignInEvent::SignInCallbackTaken { at: at(5) }];
        assert!(given_when::<SignInFlow>(
            &taken,
            SignInCommand::Complete {
                end_user_id: Uuid::nil(),
                grant_id: Uuid::nil()
            }
        )
        .is_ok());
        let ended = [
            started(),
            SignInEvent::SignInCallbackTaken { at: at(5) },
            SignInEvent::SignInFailed {
                reason: SignInFailure::NoEmail,
                detail: String::new(),
            },
        ];
        assert_eq!(
            given_when::<SignInFlow>(
                &ended,
                SignInCommand::Complete {
                    end_user_id: Uuid::nil(),
                    grant_id: Uuid::nil()
                }
            )
            .err(),
            Some(SignInError::NotWaiting)
        );
        // Before the callback, only a failure (expiry) ends it.
        assert_eq!(
            given_when::<SignInFlow>(
                &[started()],
                SignInCommand::Complete {
                    end_user_id: Uuid::nil(),
                    grant_id: Uuid::nil()
                }
            )
            .err(),
            Some(SignInError::NotWaiting)
        );
    }
}
