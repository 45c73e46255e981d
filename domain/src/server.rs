//! A hosted MCP server of an organization, served at `{slug}.{base domain}`.

use crate::values::{AuthMode, Name, Role, Slug};
use crate::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A server's configuration as it stands after an event; events carry all of it so read models
/// never need to merge partial updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerConfig {
    pub name: Name,
    pub slug: Slug,
    pub auth_mode: AuthMode,
    pub support_tool: bool,
    pub walkthrough_tools: bool,
    /// Serves the fixtures the official MCP conformance suite expects, so that suite can run
    /// against a real tenant. Off unless an admin switches it on.
    #[serde(default)]
    pub conformance_fixtures: bool,
    /// Tracking ids must be signed (`{id}.{signature}`) with one of the server's active
    /// tracking secrets; unsigned or badly signed ones are refused. Needs an active secret.
    #[serde(default)]
    pub require_signed_tracking: bool,
    /// The org's identity provider end users sign in with; `oauth` mode needs one.
    #[serde(default)]
    pub identity_provider_id: Option<Uuid>,
}

/// The fields a client asked to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ServerChanges {
    pub name: Option<Name>,
    pub slug: Option<Slug>,
    pub auth_mode: Option<AuthMode>,
    pub support_tool: Option<bool>,
    pub walkthrough_tools: Option<bool>,
    pub conformance_fixtures: Option<bool>,
    pub require_signed_tracking: Option<bool>,
    /// `Some(None)` unbinds the provider.
    pub identity_provider_id: Option<Option<Uuid>>,
}

/// How many tracking secrets a server holds at once: two, so one can be rotated with an
/// overlap (create the new one, move the backend to it, revoke the old one).
pub const MAX_TRACKING_SECRETS: usize = 2;

/// An active tracking secret as events know it: its id and a short non-secret prefix by
/// which people recognise it. The secret itself never travels in an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackingSecretRef {
    pub secret_id: Uuid,
    pub prefix: String,
}

#[derive(Debug, Default, Clone)]
pub struct Server {
    pub org_id: Option<Uuid>,
    pub config: Option<ServerConfig>,
    pub archived: bool,
    /// The active tracking secrets, oldest first.
    pub tracking_secrets: Vec<TrackingSecretRef>,
}

#[derive(Debug, Clone)]
pub enum ServerCommand {
    Create {
        org_id: Uuid,
        actor_role: Role,
        config: ServerConfig,
    },
    Update {
        actor_role: Role,
        changes: ServerChanges,
    },
    Archive {
        actor_role: Role,
    },
    /// A new tracking secret (made and sealed by the caller; only its id and prefix arrive).
    CreateTrackingSecret {
        actor_role: Role,
        secret: TrackingSecretRef,
    },
    RevokeTrackingSecret {
        actor_role: Role,
        secret_id: Uuid,
    },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum ServerEvent {
    ServerCreated {
        org_id: Uuid,
        #[serde(flatten)]
        config: ServerConfig,
    },
    ServerUpdated {
        #[serde(flatten)]
        config: ServerConfig,
    },
    ServerArchived {
        slug: Slug,
    },
    TrackingSecretCreated {
        #[serde(flatten)]
        secret: TrackingSecretRef,
    },
    TrackingSecretRevoked {
        secret_id: Uuid,
    },
}

impl DomainEvent for ServerEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    #[error("server not found")]
    NotFound,
    #[error("server already exists")]
    AlreadyExists,
    #[error("only owners and admins change servers")]
    NotAllowed,
    #[error("server is archived")]
    Archived,
    #[error("no active tracking secret of this server has this id")]
    TrackingSecretNotFound,
    #[error(
        "the server already has {MAX_TRACKING_SECRETS} active tracking secrets; revoke one first"
    )]
    TooManyTrackingSecrets,
    #[error(
        "signed tracking ids cannot be required before the server has an active tracking \
         secret: create one first (POST .../tracking-secrets)"
    )]
    SignedTrackingNeedsSecret,
    #[error(
        "the server requires signed tracking ids, so its last active tracking secret cannot be \
         revoked: create the next one first, or stop requiring them"
    )]
    LastTrackingSecret,
    #[error(
        "`auth_mode: oauth` needs `identity_provider_id`: one of the organization's identity \
         providers (POST .../identity-providers)"
    )]
    OauthNeedsProvider,
    #[error("no identity provider of the organization has this id")]
    UnknownProvider,
}

impl Aggregate for Server {
    const TYPE: &'static str = "mcp_server";
    type Command = ServerCommand;
    type Event = ServerEvent;
    type Error = ServerError;

    fn handle(&self, command: ServerCommand) -> Result<Vec<ServerEvent>, ServerError> {
        match command {
            ServerCommand::Create {
                org_id,
                actor_role,
                config,
            } => {
                if self.config.is_some() {
                    return Err(ServerError::AlreadyExists);
                }
                if !actor_role.can_manage() {
                    return Err(ServerError::NotAllowed);
                }
                if config.require_signed_tracking {
                    // A new server has no tracking secret yet.
                    return Err(ServerError::SignedTrackingNeedsSecret);
                }
                if config.auth_mode == AuthMode::Oauth && config.identity_provider_id.is_none() {
                    return Err(ServerError::OauthNeedsProvider);
                }
                Ok(vec![ServerEvent::ServerCreated { org_id, config }])
            }
            ServerCommand::Update {
                actor_role,
                changes,
            } => {
                let current = self.live_config(actor_role)?;
                let touches_auth =
                    changes.auth_mode.is_some() || changes.identity_provider_id.is_some();
                let next = ServerConfig {
                    name: changes.name.unwrap_or_else(|| current.name.clone()),
                    slug: changes.slug.unwrap_or_else(|| current.slug.clone()),
                    auth_mode: changes.auth_mode.unwrap_or(current.auth_mode),
                    support_tool: changes.support_tool.unwrap_or(current.support_tool),
                    walkthrough_tools: changes
                        .walkthrough_tools
                        .unwrap_or(current.walkthrough_tools),
                    conformance_fixtures: changes
                        .conformance_fixtures
                        .unwrap_or(current.conformance_fixtures),
                    require_signed_tracking: changes
                        .require_signed_tracking
                        .unwrap_or(current.require_signed_tracking),
                    identity_provider_id: changes
                        .identity_provider_id
                        .unwrap_or(current.identity_provider_id),
                };
                if &next == current {
                    return Ok(vec![]);
                }
                // A server set to `oauth` before providers existed keeps its other settings
                // changeable; setting the mode or the provider needs a provider.
                if touches_auth
                    && next.auth_mode == AuthMode::Oauth
                    && next.identity_provider_id.is_none()
                {
                    return Err(ServerError::OauthNeedsProvider);
                }
                if next.require_signed_tracking && self.tracking_secrets.is_empty() {
                    return Err(ServerError::SignedTrackingNeedsSecret);
                }
                Ok(vec![ServerEvent::ServerUpdated { config: next }])
            }
            ServerCommand::Archive { actor_role } => {
                let current = self.live_config(actor_role)?;
                Ok(vec![ServerEvent::ServerArchived {
                    slug: current.slug.clone(),
                }])
            }
            ServerCommand::CreateTrackingSecret { actor_role, secret } => {
                self.live_config(actor_role)?;
                if self.tracking_secrets.len() >= MAX_TRACKING_SECRETS {
                    return Err(ServerError::TooManyTrackingSecrets);
                }
                Ok(vec![ServerEvent::TrackingSecretCreated { secret }])
            }
            ServerCommand::RevokeTrackingSecret {
                actor_role,
                secret_id,
            } => {
                let current = self.live_config(actor_role)?;
                if !self
                    .tracking_secrets
                    .iter()
                    .any(|s| s.secret_id == secret_id)
                {
                    return Err(ServerError::TrackingSecretNotFound);
                }
                if current.require_signed_tracking && self.tracking_secrets.len() == 1 {
                    return Err(ServerError::LastTrackingSecret);
                }
                Ok(vec![ServerEvent::TrackingSecretRevoked { secret_id }])
            }
        }
    }

    fn apply(&mut self, event: &ServerEvent) {
        match event {
            ServerEvent::ServerCreated { org_id, config } => {
                self.org_id = Some(*org_id);
                self.config = Some(config.clone());
            }
            ServerEvent::ServerUpdated { config } => self.config = Some(config.clone()),
            ServerEvent::ServerArchived { .. } => self.archived = true,
            ServerEvent::TrackingSecretCreated { secret } => {
                self.tracking_secrets.push(secret.clone());
            }
            ServerEvent::TrackingSecretRevoked { secret_id } => {
                self.tracking_secrets.retain(|s| s.secret_id != *secret_id);
            }
        }
    }
}

impl Server {
    fn live_config(&self, actor_role: Role) -> Result<&ServerConfig, ServerError> {
        let config = self.config.as_ref().ok_or(ServerError::NotFound)?;
        if !actor_role.can_manage() {
            return Err(ServerError::NotAllowed);
        }
        if self.archived {
            return Err(ServerError::Archived);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given_when;

    fn config() -> ServerConfig {
        ServerConfig {
            name: Name::parse("Docs").unwrap_or_else(|_| unreachable!()),
            slug: Slug::parse("docs-acme").unwrap_or_else(|_| unreachable!()),
            auth_mode: AuthMode::None,
            support_tool: true,
            walkthrough_tools: true,
            conformance_fixtures: false,
            require_signed_tracking: false,
            identity_provider_id: None,
        }
    }

    fn created() -> Vec<ServerEvent> {
        vec![ServerEvent::ServerCreated {
            org_id: Uuid::nil(),
            config: config(),
        }]
    }

    #[test]
    fn members_cannot_create_or_change_servers() {
        let create = given_when::<Server>(
            &[],
            ServerCommand::Create {
                org_id: Uuid::nil(),
                actor_role: Role::Member,
                config: config(),
            },
        );
        assert_eq!(create.err(), Some(ServerError::NotAllowed));
        let archive = given_when::<Server>(
            &created(),
            ServerCommand::Archive {
                actor_role: Role::Member,
            },
        );
        assert_eq!(archive.err(), Some(ServerError::NotAllowed));
    }

    #[test]
    fn an_update_carries_the_whole_config_and_no_change_is_no_event() {
        let changes = ServerChanges {
            auth_mode: Some(AuthMode::Tracking),
            ..ServerChanges::default()
        };
        let events = given_when::<Server>(
            &created(),
            ServerCommand::Update {
                actor_role: Role::Admin,
                changes,
            },
        )
        .unwrap_or_default();
        assert_eq!(
            events,
            vec![ServerEvent::ServerUpdated {
                config: ServerConfig {
                    auth_mode: AuthMode::Tracking,
                    ..config()
                }
            }]
        );
        let noop = given_when::<Server>(
            &created(),
            ServerCommand::Update {
                actor_role: Role::Owner,
                changes: ServerChanges::default(),
            },
        );
        assert_eq!(noop, Ok(vec![]));
    }

    #[test]
    fn oauth_needs_a_provider_and_unbinding_it_is_refused_while_in_oauth() {
        let create = |provider: Option<Uuid>| {
            given_when::<Server>(
                &[],
                ServerCommand::Create {
                    org_id: Uuid::nil(),
                    actor_role: Role::Owner,
                    config: ServerConfig {
                        auth_mode: AuthMode::Oauth,
                        identity_provider_id: provider,
                        ..config()
                    },
                },
            )
        };
        assert_eq!(create(None).err(), Some(ServerError::OauthNeedsProvider));
        assert!(create(Some(Uuid::from_u128(5))).is_ok());
        let to_oauth = given_when::<Server>(
            &created(),
            ServerCommand::Update {
                actor_role: Role::Admin,
                changes: ServerChanges {
                    auth_mode: Some(AuthMode::Oauth),
                    ..ServerChanges::default()
                },
            },
        );
        assert_eq!(to_oauth.err(), Some(ServerError::OauthNeedsProvider));
        let mut given = created();
        given.push(ServerEvent::ServerUpdated {
            config: ServerConfig {
                auth_mode: AuthMode::Oauth,
                identity_provider_id: Some(Uuid::from_u128(5)),
                ..config()
            },
        });
        let unbind = given_when::<Server>(
            &given,
            ServerCommand::Update {
                actor_role: Role::Admin,
                changes: ServerChanges {
                    identity_provider_id: Some(None),
                    ..ServerChanges::default()
                },
            },
        );
        assert_eq!(unbind.err(), Some(ServerError::OauthNeedsProvider));
        let leave_oauth = given_when::<Server>(
            &given,
            ServerCommand::Update {
                actor_role: Role::Admin,
                changes: ServerChanges {
                    auth_mode: Some(AuthMode::None),
                    identity_provider_id: Some(None),
                    ..ServerChanges::default()
                },
            },
        );
        assert!(leave_oauth.is_ok());
    }

    #[test]
    fn archived_servers_refuse_changes() {
        let mut given = created();
        given.push(ServerEvent::ServerArchived {
            slug: config().slug,
        });
        let result = given_when::<Server>(
            &given,
            ServerCommand::Archive {
                actor_role: Role::Owner,
            },
        );
        assert_eq!(result.err(), Some(ServerError::Archived));
    }

    fn secret(n: u128) -> TrackingSecretRef {
        TrackingSecretRef {
            secret_id: Uuid::from_u128(n),
            prefix: format!("mcpts_{n}"),
        }
    }

    fn require_signed(on: bool) -> ServerCommand {
        ServerCommand::Update {
            actor_role: Role::Admin,
            changes: ServerChanges {
                require_signed_tracking: Some(on),
                ..ServerChanges::default()
            },
        }
    }

    #[test]
    fn signed_tracking_needs_an_active_secret_to_be_required() {
        let refused = given_when::<Server>(&created(), require_signed(true));
        assert_eq!(refused.err(), Some(ServerError::SignedTrackingNeedsSecret));
        let mut given = created();
        given.push(ServerEvent::TrackingSecretCreated { secret: secret(1) });
        let events = given_when::<Server>(&given, require_signed(true)).unwrap_or_default();
        assert!(matches!(
            events.as_slice(),
            [ServerEvent::ServerUpdated { config }] if config.require_signed_tracking
        ));
        let create = given_when::<Server>(
            &[],
            ServerCommand::Create {
                org_id: Uuid::nil(),
                actor_role: Role::Owner,
                config: ServerConfig {
                    require_signed_tracking: true,
                    ..config()
                },
            },
        );
        assert_eq!(create.err(), Some(ServerError::SignedTrackingNeedsSecret));
    }

    #[test]
    fn two_secrets_at_most_and_the_last_one_stays_while_required() {
        let mut given = created();
        given.push(ServerEvent::TrackingSecretCreated { secret: secret(1) });
        given.push(ServerEvent::TrackingSecretCreated { secret: secret(2) });
        let third = given_when::<Server>(
            &given,
            ServerCommand::CreateTrackingSecret {
                actor_role: Role::Owner,
                secret: secret(3),
            },
        );
        assert_eq!(third.err(), Some(ServerError::TooManyTrackingSecrets));
        let member = given_when::<Server>(
            &given,
            ServerCommand::RevokeTrackingSecret {
                actor_role: Role::Member,
                secret_id: Uuid::from_u128(1),
            },
        );
        assert_eq!(member.err(), Some(ServerError::NotAllowed));
        let unknown = given_when::<Server>(
            &given,
            ServerCommand::RevokeTrackingSecret {
                actor_role: Role::Owner,
                secret_id: Uuid::from_u128(9),
            },
        );
        assert_eq!(unknown.err(), Some(ServerError::TrackingSecretNotFound));
        given.push(ServerEvent::ServerUpdated {
            config: ServerConfig {
                require_signed_tracking: true,
                ..config()
            },
        });
        given.push(ServerEvent::TrackingSecretRevoked {
            secret_id: Uuid::from_u128(1),
        });
        let last = given_when::<Server>(
            &given,
            ServerCommand::RevokeTrackingSecret {
                actor_role: Role::Owner,
                secret_id: Uuid::from_u128(2),
            },
        );
        assert_eq!(last.err(), Some(ServerError::LastTrackingSecret));
        let again = given_when::<Server>(
            &given,
            ServerCommand::CreateTrackingSecret {
                actor_role: Role::Admin,
                secret: secret(3),
            },
        );
        assert_eq!(
            again,
            Ok(vec![ServerEvent::TrackingSecretCreated {
                secret: secret(3)
            }])
        );
    }
}
