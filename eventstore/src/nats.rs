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
///
/// Credentials written in the URL (`nats://user:password@host`, `nats://token@host`) are taken
/// out of it and passed as options ([`split_credentials`]): async-nats logs the URL it
/// connects to, at debug level on every attempt, and does not use credentials written in it.
pub async fn connect(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let (server, credentials) = split_credentials(url);
    let options = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .name("mcplatform");
    let options = match credentials {
        None => options,
        Some(Credentials::UserPassword { user, password }) => {
            options.user_and_password(user, password)
        }
        Some(Credentials::Token(token)) => options.token(token),
    };
    options.connect(server).await
}

/// What a NATS URL's user information says: a user and a password, or a token alone.
#[derive(PartialEq, Eq)]
pub enum Credentials {
    UserPassword { user: String, password: String },
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::UserPassword { user, .. } => {
                write!(f, "UserPassword {{ user: {user:?}, password: [REDACTED] }}")
            }
            Credentials::Token(_) => f.write_str("Token([REDACTED])"),
        }
    }
}

/// A NATS server URL without its user information, and what that said (percent-decoded). A
/// URL that cannot be read is returned as it is, for async-nats to refuse.
pub fn split_credentials(url: &str) -> (String, Option<Credentials>) {
    // async-nats reads `host:port` as `nats://host:port`.
    let full = if url.contains("://") {
        url.to_owned()
    } else {
        format!("nats://{url}")
    };
    let Ok(mut parsed) = url::Url::parse(&full) else {
        return (url.to_owned(), None);
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let credentials = match (parsed.username(), parsed.password()) {
        ("", None) => return (url.to_owned(), None),
        (user, Some(password)) => Credentials::UserPassword {
            user: decode(user),
            password: decode(password),
        },
        (token, None) => Credentials::Token(decode(token)),
    };
    if parsed.set_username("").is_err() || parsed.set_password(None).is_err() {
        return (url.to_owned(), None);
    }
    (parsed.to_string(), Some(credentials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_for_the_options() {
        let split = |url| split_credentials(url);
        assert_eq!(
            split("nats://app:s3cr%40t@nats.internal:4222"),
            (
                "nats://nats.internal:4222".to_owned(),
                Some(Credentials::UserPassword {
                    user: "app".to_owned(),
                    password: "s3cr@t".to_owned()
                })
            )
        );
        assert_eq!(
            split("tls://t0ken@nats.internal"),
            (
                "tls://nats.internal".to_owned(),
                Some(Credentials::Token("t0ken".to_owned()))
            )
        );
        assert_eq!(
            split("user:pw@127.0.0.1:4222").0,
            "nats://127.0.0.1:4222",
            "without a scheme, as async-nats reads it"
        );
        assert_eq!(
            split("nats://127.0.0.1:4222"),
            ("nats://127.0.0.1:4222".to_owned(), None)
        );
        let (_, credentials) = split("nats://app:hunter2@h");
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }

    #[test]
    fn each_high_volume_stream_has_a_class_of_its_own() {
        assert_eq!(class_of(ToolCall::TYPE), "activity");
        assert_eq!(class_of(McpSession::TYPE), "activity");
        assert_eq!(class_of(WalkthroughProgress::TYPE), "progress");
        assert_eq!(class_of(domain::walkthrough::Walkthrough::TYPE), "org");
        assert_eq!(class_of(domain::organization::Organization::TYPE), "org");
    }
}
