//! Every aggregate type and the event types it stores, for the places that list or check them
//! (the CLI's and the events API's `type` filters). Names come from the types: an aggregate's
//! [`Aggregate::TYPE`] and its event enum's variant names.

use crate::aggregate::Aggregate;
use strum::VariantNames;

/// One aggregate type and the names of its events.
#[derive(Debug, Clone, Copy)]
pub struct StreamKind {
    pub aggregate_type: &'static str,
    pub event_types: &'static [&'static str],
}

const fn kind<A: Aggregate>() -> StreamKind
where
    A::Event: VariantNames,
{
    StreamKind {
        aggregate_type: A::TYPE,
        event_types: <A::Event as VariantNames>::VARIANTS,
    }
}

/// Every aggregate type mcplatform stores, with its event types.
pub const STREAM_KINDS: &[StreamKind] = &[
    kind::<crate::user::User>(),
    kind::<crate::login::LoginAttempt>(),
    kind::<crate::refresh_token::RefreshTokenFamily>(),
    kind::<crate::organization::Organization>(),
    kind::<crate::server::Server>(),
    kind::<crate::identity_provider::IdentityProvider>(),
    kind::<crate::end_user::EndUser>(),
    kind::<crate::mcp_session::McpSession>(),
    kind::<crate::tool_call::ToolCall>(),
    kind::<crate::ticket::Ticket>(),
    kind::<crate::walkthrough::Walkthrough>(),
    kind::<crate::walkthrough_progress::WalkthroughProgress>(),
    kind::<crate::limit::LimitRefusal>(),
    kind::<crate::oauth::OauthClient>(),
    kind::<crate::oauth::OauthGrant>(),
    kind::<crate::oauth::OauthRefusalRecord>(),
    kind::<crate::sign_in::SignInFlow>(),
];

/// Every event type name, sorted.
pub fn event_types() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = STREAM_KINDS
        .iter()
        .flat_map(|k| k.event_types.iter().copied())
        .collect();
    names.sort_unstable();
    names
}

/// Whether `name` is the type of an event mcplatform stores.
pub fn is_event_type(name: &str) -> bool {
    STREAM_KINDS.iter().any(|k| k.event_types.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_across_aggregates() {
        let names = event_types();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(
            names, unique,
            "two aggregates store an event type of the same name"
        );
        let mut aggregates: Vec<_> = STREAM_KINDS.iter().map(|k| k.aggregate_type).collect();
        aggregates.sort_unstable();
        aggregates.dedup();
        assert_eq!(aggregates.len(), STREAM_KINDS.len());
        assert!(is_event_type("TicketOpened") && !is_event_type("TicketExploded"));
    }
}
