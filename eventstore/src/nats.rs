//! How events travel over NATS: stream and subject names, message headers.

use crate::event::StoredEvent;
use async_nats::HeaderName;
use domain::end_user::EndUser;
use domain::mcp_session::McpSession;
use domain::tool_call::ToolCall;
use domain::walkthrough_progress::WalkthroughProgress;
use domain::Aggregate;
use std::time::Duration;

// Names made once, from static text: a `&str` name is copied into a new allocation on every
// header insert and lookup, which the relay and each projector do for every event.
pub const HEADER_STORE_ID: HeaderName = HeaderName::from_static("Mcpl-Store-Id");
pub const HEADER_CURSOR: HeaderName = HeaderName::from_static("Mcpl-Cursor");

/// Aggregates of end users' activity on the MCP edge: by far the most events, never read by
/// the org administration models (audit log, dashboard).
pub const ACTIVITY_AGGREGATES: &[&str] = &[
    EndUser::TYPE,
    McpSession::TYPE,
    ToolCall::TYPE,
    WalkthroughProgress::TYPE,
];

/// The subject class of an aggregate type: `activity` for MCP usage (end users, sessions,
/// tool calls), `progress` for walkthrough progress, `org` for everything else. NATS 2.9
/// allows one filter subject per consumer, so classes are what keep each consumer's feed to
/// what it reads: the audit log never receives a tool call, the usage projector never a step
/// completion.
pub fn class_of(aggregate_type: &str) -> &'static str {
    match aggregate_type {
        t if t == WalkthroughProgress::TYPE => "progress",
        t if ACTIVITY_AGGREGATES.contains(&t) => "activity",
        _ => "org",
    }
}

/// Names derived from the deployment's prefix (`MCPLATFORM_NATS_PREFIX`), so deployments and
/// test runs sharing one NATS server never mix.
#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `{PREFIX}_EVENTS`.
    pub fn stream_name(&self) -> String {
        format!(
            "{}_EVENTS",
            self.prefix
                .to_uppercase()
                .replace(['.', ' ', '*', '>'], "_")
        )
    }

    /// Every event subject: `{prefix}.events.>`.
    pub fn all_subjects(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// `{prefix}.events.{class}.{org_id|platform}.{aggregate_type}.{event_type}`, with the
    /// class from [`class_of`].
    pub fn subject_for(&self, event: &StoredEvent) -> String {
        let org = event
            .org_id
            .map(|o| o.to_string())
            .unwrap_or_else(|| "platform".to_owned());
        format!(
            "{}.events.{}.{}.{}.{}",
            self.prefix,
            class_of(&event.aggregate_type),
            org,
            event.aggregate_type,
            event.event_type
        )
    }

    /// Every subject of one class.
    pub fn class_subjects(&self, class: &str) -> String {
        format!("{}.events.{class}.>", self.prefix)
    }

    /// Every subject of one aggregate type.
    pub fn aggregate_subjects(&self, aggregate_type: &str) -> String {
        format!(
            "{}.events.{}.*.{aggregate_type}.>",
            self.prefix,
            class_of(aggregate_type)
        )
    }

    /// Subjects of one org, for live tails.
    pub fn org_subjects(&self, org_id: uuid::Uuid) -> String {
        format!("{}.events.*.{}.>", self.prefix, org_id)
    }

    /// The durable consumer of a projection.
    pub fn consumer_name(&self, projection: &str) -> String {
        format!(
            "{}_{}",
            self.prefix.replace(['.', ' ', '*', '>'], "_"),
            projection
        )
    }

    /// The stream configuration. Postgres is the source of truth, so the stream keeps a window
    /// long enough for consumers to ride out outages, not forever.
    pub fn stream_config(&self) -> async_nats::jetstream::stream::Config {
        async_nats::jetstream::stream::Config {
            name: self.stream_name(),
            subjects: vec![self.all_subjects()],
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        }
    }
}

/// Connects to NATS, retrying in the background when it is not up yet: nothing in mcplatform
/// waits for NATS to accept a write.
pub async fn connect(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .name("mcplatform")
        .connect(url)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_high_volume_stream_has_a_class_of_its_own() {
        assert_eq!(class_of(ToolCall::TYPE), "activity");
        assert_eq!(class_of(McpSession::TYPE), "activity");
        assert_eq!(class_of(WalkthroughProgress::TYPE), "progress");
        assert_eq!(class_of(domain::walkthrough::Walkthrough::TYPE), "org");
        assert_eq!(class_of(domain::organization::Organization::TYPE), "org");
    }
}
