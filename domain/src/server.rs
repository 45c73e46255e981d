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
}

#[derive(Debug, Default, Clone)]
pub struct Server {
    pub org_id: Option<Uuid>,
    pub config: Option<ServerConfig>,
    pub archived: bool,
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
                Ok(vec![ServerEvent::ServerCreated { org_id, config }])
            }
            ServerCommand::Update {
                actor_role,
                changes,
            } => {
                let current = self.live_config(actor_role)?;
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
                };
                if &next == current {
                    return Ok(vec![]);
                }
                Ok(vec![ServerEvent::ServerUpdated { config: next }])
            }
            ServerCommand::Archive { actor_role } => {
                let current = self.live_config(actor_role)?;
                Ok(vec![ServerEvent::ServerArchived {
                    slug: current.slug.clone(),
                }])
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
}
