//! An identity provider of an organization: the customer's OpenID Connect issuer, or a plain
//! OAuth 2.0 provider with explicit endpoints (GitHub-style, where identity comes from a user
//! API), through which end users of the org's `oauth` servers sign in.
//!
//! Events carry the whole configuration (so projections stay thin) but never the client
//! secret: it is sealed in a write-side table by the command service, and events only say
//! that it changed.

use crate::values::{Name, Role};
use crate::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How the provider is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenID Connect: endpoints and keys from the issuer's discovery document; identity from
    /// the ID token.
    Oidc,
    /// Plain OAuth 2.0: explicit endpoints; identity from the userinfo endpoint.
    Oauth2,
}

impl ProviderKind {
    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "oidc" => Some(Self::Oidc),
            "oauth2" => Some(Self::Oauth2),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::Oauth2 => "oauth2",
        }
    }
}

/// The quirks real providers need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderOptions {
    /// Send RFC 8707 `resource` to the provider.
    pub send_resource: bool,
    /// An `audience` parameter instead (Auth0, Cognito).
    pub audience: Option<String>,
    /// Leave `prompt` out of the authorization request.
    pub drop_prompt: bool,
}

/// Longest list of scopes a provider is asked for.
pub const MAX_SCOPES: usize = 32;

/// A provider's configuration as it stands after an event (never the client secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub name: Name,
    pub kind: ProviderKind,
    /// The OpenID issuer (`oidc` only), exactly as its discovery document names it.
    pub issuer: Option<String>,
    /// Configured (`oauth2`) or discovered (`oidc`).
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: Option<String>,
    /// Where the ID token's signing keys are (`oidc`, discovered).
    pub jwks_uri: Option<String>,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub options: ProviderOptions,
}

impl ProviderConfig {
    /// The rules of a configuration whatever its source: which fields its kind needs.
    pub fn check(&self) -> Result<(), ProviderError> {
        let invalid = |field: &'static str, reason: &'static str| {
            Err(ProviderError::Invalid { field, reason })
        };
        match self.kind {
            ProviderKind::Oidc => {
                if self.issuer.is_none() {
                    return invalid("issuer", "an oidc provider needs its issuer");
                }
                if !self.scopes.iter().any(|scope| scope == "openid") {
                    return invalid("scopes", "an oidc provider's scopes include `openid`");
                }
            }
            ProviderKind::Oauth2 => {
                if self.userinfo_endpoint.is_none() {
                    return invalid(
                        "userinfo_endpoint",
                        "an oauth2 provider needs a userinfo endpoint (identity comes from it)",
                    );
                }
            }
        }
        if self.client_id.trim().is_empty() {
            return invalid("client_id", "must not be empty");
        }
        if self.scopes.len() > MAX_SCOPES {
            return invalid("scopes", "at most 32 scopes");
        }
        Ok(())
    }
}

#[derive(Debug, Default, Clone)]
pub struct IdentityProvider {
    pub org_id: Option<Uuid>,
    pub config: Option<ProviderConfig>,
    pub deleted: bool,
}

#[derive(Debug, Clone)]
pub enum ProviderCommand {
    Create {
        org_id: Uuid,
        actor_role: Role,
        config: ProviderConfig,
    },
    /// The whole next configuration (the service merges a change and rediscovers), and
    /// whether a new client secret was sealed with it.
    Update {
        actor_role: Role,
        config: ProviderConfig,
        client_secret_changed: bool,
    },
    /// `used_by`: the org's live servers bound to this provider, looked up by the service.
    Delete {
        actor_role: Role,
        used_by: Vec<Uuid>,
    },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum ProviderEvent {
    IdentityProviderCreated {
        org_id: Uuid,
        #[serde(flatten)]
        config: ProviderConfig,
    },
    IdentityProviderUpdated {
        #[serde(flatten)]
        config: ProviderConfig,
        client_secret_changed: bool,
    },
    IdentityProviderDeleted {
        name: Name,
    },
}

impl DomainEvent for ProviderEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("identity provider not found")]
    NotFound,
    #[error("identity provider already exists")]
    AlreadyExists,
    #[error("only owners and admins manage identity providers")]
    NotAllowed,
    #[error("{field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("the identity provider is used by {} server(s); move them to another provider or auth mode first", servers.len())]
    InUse { servers: Vec<Uuid> },
}

impl Aggregate for IdentityProvider {
    const TYPE: &'static str = "identity_provider";
    type Command = ProviderCommand;
    type Event = ProviderEvent;
    type Error = ProviderError;

    fn handle(&self, command: ProviderCommand) -> Result<Vec<ProviderEvent>, ProviderError> {
        match command {
            ProviderCommand::Create {
                org_id,
                actor_role,
                config,
            } => {
                if self.config.is_some() {
                    return Err(ProviderError::AlreadyExists);
                }
                if !actor_role.can_manage() {
                    return Err(ProviderError::NotAllowed);
                }
                config.check()?;
                Ok(vec![ProviderEvent::IdentityProviderCreated {
                    org_id,
                    config,
                }])
            }
            ProviderCommand::Update {
                actor_role,
                config,
                client_secret_changed,
            } => {
                let current = self.live(actor_role)?;
                config.check()?;
                if &config == current && !client_secret_changed {
                    return Ok(vec![]);
                }
                Ok(vec![ProviderEvent::IdentityProviderUpdated {
                    config,
                    client_secret_changed,
                }])
            }
            ProviderCommand::Delete {
                actor_role,
                used_by,
            } => {
                let current = self.live(actor_role)?;
                if !used_by.is_empty() {
                    return Err(ProviderError::InUse { servers: used_by });
                }
                Ok(vec![ProviderEvent::IdentityProviderDeleted {
                    name: current.name.clone(),
                }])
            }
        }
    }

    fn apply(&mut self, event: &ProviderEvent) {
        match event {
            ProviderEvent::IdentityProviderCreated { org_id, config } => {
                self.org_id = Some(*org_id);
                self.config = Some(config.clone());
            }
            ProviderEvent::IdentityProviderUpdated { config, .. } => {
                self.config = Some(config.clone());
            }
            ProviderEvent::IdentityProviderDeleted { .. } => self.deleted = true,
        }
    }
}

impl IdentityProvider {
    fn live(&self, actor_role: Role) -> Result<&ProviderConfig, ProviderError> {
        let config = self.config.as_ref().ok_or(ProviderError::NotFound)?;
        if self.deleted {
            return Err(ProviderError::NotFound);
        }
        if !actor_role.can_manage() {
            return Err(ProviderError::NotAllowed);
        }
        Ok(config)
    }

    /// The configuration of a live provider of `org_id`.
    pub fn of_org(&self, org_id: Uuid) -> Option<&ProviderConfig> {
        (self.org_id == Some(org_id) && !self.deleted)
            .then_some(self.config.as_ref())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given_when;

    fn oidc() -> ProviderConfig {
        ProviderConfig {
            name: Name::parse("Corp SSO").unwrap_or_else(|_| unreachable!()),
            kind: ProviderKind::Oidc,
            issuer: Some("https://idp.example.com".into()),
            authorization_endpoint: "https://idp.example.com/auth".into(),
            token_endpoint: "https://idp.example.com/token".into(),
            userinfo_endpoint: Some("https://idp.example.com/me".into()),
            jwks_uri: Some("https://idp.example.com/jwks".into()),
            client_id: "platform".into(),
            scopes: vec!["openid".into(), "email".into()],
            options: ProviderOptions::default(),
        }
    }

    fn created() -> Vec<ProviderEvent> {
        vec![ProviderEvent::IdentityProviderCreated {
            org_id: Uuid::nil(),
            config: oidc(),
        }]
    }

    #[test]
    fn owners_and_admins_create_members_do_not() {
        let create = |role| {
            given_when::<IdentityProvider>(
                &[],
                ProviderCommand::Create {
                    org_id: Uuid::nil(),
                    actor_role: role,
                    config: oidc(),
                },
            )
        };
        assert_eq!(create(Role::Member).err(), Some(ProviderError::NotAllowed));
        assert_eq!(create(Role::Admin), Ok(created()));
        assert_eq!(create(Role::Owner), Ok(created()));
    }

    #[test]
    fn each_kind_needs_its_fields() {
        let no_issuer = ProviderConfig {
            issuer: None,
            ..oidc()
        };
        assert!(matches!(
            no_issuer.check(),
            Err(ProviderError::Invalid {
                field: "issuer",
                ..
            })
        ));
        let no_openid = ProviderConfig {
            scopes: vec!["email".into()],
            ..oidc()
        };
        assert!(matches!(
            no_openid.check(),
            Err(ProviderError::Invalid {
                field: "scopes",
                ..
            })
        ));
        let github = ProviderConfig {
            kind: ProviderKind::Oauth2,
            issuer: None,
            jwks_uri: None,
            userinfo_endpoint: None,
            scopes: vec!["read:user".into()],
            ..oidc()
        };
        assert!(matches!(
            github.check(),
            Err(ProviderError::Invalid {
                field: "userinfo_endpoint",
                ..
            })
        ));
        let github = ProviderConfig {
            userinfo_endpoint: Some("https://api.github.com/user".into()),
            ..github
        };
        assert_eq!(github.check(), Ok(()));
    }

    #[test]
    fn an_update_with_nothing_new_is_no_event_but_a_new_secret_is() {
        let same = given_when::<IdentityProvider>(
            &created(),
            ProviderCommand::Update {
                actor_role: Role::Admin,
                config: oidc(),
                client_secret_changed: false,
            },
        );
        assert_eq!(same, Ok(vec![]));
        let secret = given_when::<IdentityProvider>(
            &created(),
            ProviderCommand::Update {
                actor_role: Role::Admin,
                config: oidc(),
                client_secret_changed: true,
            },
        );
        assert_eq!(
            secret,
            Ok(vec![ProviderEvent::IdentityProviderUpdated {
                config: oidc(),
                client_secret_changed: true
            }])
        );
    }

    #[test]
    fn a_provider_in_use_is_not_deleted_and_a_deleted_one_is_gone() {
        let in_use = given_when::<IdentityProvider>(
            &created(),
            ProviderCommand::Delete {
                actor_role: Role::Owner,
                used_by: vec![Uuid::from_u128(7)],
            },
        );
        assert_eq!(
            in_use.err(),
            Some(ProviderError::InUse {
                servers: vec![Uuid::from_u128(7)]
            })
        );
        let mut given = created();
        given.push(ProviderEvent::IdentityProviderDeleted { name: oidc().name });
        let again = given_when::<IdentityProvider>(
            &given,
            ProviderCommand::Delete {
                actor_role: Role::Owner,
                used_by: vec![],
            },
        );
        assert_eq!(again.err(), Some(ProviderError::NotFound));
        let provider = crate::aggregate::replay::<IdentityProvider>(&given);
        assert!(provider.of_org(Uuid::nil()).is_none());
        let live = crate::aggregate::replay::<IdentityProvider>(&created());
        assert!(live.of_org(Uuid::nil()).is_some());
        assert!(live.of_org(Uuid::from_u128(1)).is_none());
    }

    #[test]
    fn events_never_carry_a_secret_field() {
        let event = serde_json::to_value(&created()[0]).unwrap_or_default();
        let text = event.to_string();
        assert!(!text.contains("secret\":\""), "{text}");
        assert!(text.contains("\"kind\":\"oidc\""));
    }
}
