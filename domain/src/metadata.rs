//! Metadata stored beside every event: who did it, for which org, from where.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A signed-in customer (dashboard user).
    PlatformUser { id: Uuid },
    /// An end user of a hosted MCP server.
    EndUser { id: Uuid },
    /// An API key of an org.
    ApiKey { id: Uuid },
    /// Someone not (yet) identified, such as a failed login.
    Anonymous,
    /// The platform itself (CLI, workers).
    System,
}

impl Actor {
    /// The id of the actor where it has one.
    pub fn id(&self) -> Option<Uuid> {
        match self {
            Actor::PlatformUser { id } | Actor::EndUser { id } | Actor::ApiKey { id } => Some(*id),
            Actor::Anonymous | Actor::System => None,
        }
    }

    /// A short stable label for the actor kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::PlatformUser { .. } => "platform_user",
            Actor::EndUser { .. } => "end_user",
            Actor::ApiKey { .. } => "api_key",
            Actor::Anonymous => "anonymous",
            Actor::System => "system",
        }
    }
}

/// Metadata of one command's events. The org is `None` for platform-level facts (signups,
/// logins) that belong to no organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Uuid>,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl EventMetadata {
    /// Metadata for work the platform does on its own behalf.
    pub fn system() -> Self {
        Self::by(Actor::System)
    }

    /// Metadata for an actor with no request context.
    pub fn by(actor: Actor) -> Self {
        Self {
            org_id: None,
            actor,
            request_id: None,
            correlation_id: None,
            causation_id: None,
            client_ip: None,
            user_agent: None,
        }
    }

    /// The same metadata scoped to an org.
    pub fn for_org(mut self, org_id: Uuid) -> Self {
        self.org_id = Some(org_id);
        self
    }
}
