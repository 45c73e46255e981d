//! A tool call on a hosted MCP server: a fact with no invariant to protect, so each call is its
//! own one-event stream (aggregate id = call id) and recording it never contends with anything.
//! (The MCP edge that records it comes with issue 3.)

use crate::text::{scrub_string, without_nul};
use crate::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Largest serialized size of the arguments kept with a call.
pub const ARGUMENTS_CAP_BYTES: usize = 8 * 1024;

/// Keys whose values are never stored, matched on the normalized key (lower-cased, with `-`,
/// `_`, `.` and spaces removed) as a substring: so `client_secret`, `X-Api-Key`,
/// `access_token`, `Private-Key`, `db.password` and `AWS_ACCESS_KEY_ID` are caught too. A key
/// merely containing one of these (`tokenizer`) is redacted as well: storing too little beats
/// storing a secret for ever.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "token",
    "secret",
    "apikey",
    "authorization",
    "bearer",
    "cookie",
    "privatekey",
    "accesskey",
    "credential",
    "session",
    "signature",
    "jwt",
];

const REDACTED: &str = "[redacted]";

fn is_secret_key(key: &str) -> bool {
    let normalized: String = key
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_KEYS.iter().any(|s| normalized.contains(s))
}

/// A copy with secret-looking values redacted, and NUL characters (which no read model can
/// store) replaced, in values and keys.
fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact(v)
                    };
                    (without_nul(k).into_owned(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(s) => Value::String(without_nul(s).into_owned()),
        other => other.clone(),
    }
}

/// The arguments as stored: secret-looking values redacted and NULs replaced at any depth, then
/// capped. Over the cap, the stored value says so and keeps a prefix of the serialized (already
/// redacted) text.
pub fn stored_arguments(arguments: &Value) -> Value {
    let redacted = redact(arguments);
    let text = redacted.to_string();
    if text.len() <= ARGUMENTS_CAP_BYTES {
        return redacted;
    }
    let mut end = ARGUMENTS_CAP_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut truncated = Map::new();
    truncated.insert("truncated".to_owned(), Value::Bool(true));
    truncated.insert("original_bytes".to_owned(), Value::from(text.len()));
    truncated.insert("prefix".to_owned(), Value::String(text[..end].to_owned()));
    Value::Object(truncated)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::VariantArray)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Error,
}

/// Everything the tool-call read models and analytics need, carried by the event itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    pub server_id: Uuid,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub end_user_id: Option<Uuid>,
    #[serde(default)]
    pub tracking_id: Option<String>,
    pub tool: String,
    pub outcome: Outcome,
    #[serde(default)]
    pub error: Option<String>,
    /// Whole milliseconds, as every call has carried it.
    pub duration_ms: u64,
    /// The same duration in microseconds, so that a 0.4 ms call is not 0. Calls recorded
    /// before it was kept have none: read them with [`ToolCallRecord::duration_micros`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub client_version: Option<String>,
    /// Already passed through [`stored_arguments`].
    pub arguments: Value,
}

impl ToolCallRecord {
    /// The duration in microseconds: as recorded, or, for a call recorded before microseconds
    /// were kept, its whole milliseconds.
    pub fn duration_micros(&self) -> u64 {
        self.duration_us
            .unwrap_or_else(|| self.duration_ms.saturating_mul(1000))
    }
}

#[derive(Debug, Default, Clone)]
pub struct ToolCall {
    pub recorded: bool,
}

#[derive(Debug, Clone)]
pub enum ToolCallCommand {
    /// `arguments` as received; the aggregate redacts and caps them.
    Record(ToolCallRecord),
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum ToolCallEvent {
    ToolCalled(ToolCallRecord),
}

impl DomainEvent for ToolCallEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolCallError {
    #[error("this tool call is already recorded")]
    AlreadyRecorded,
}

impl Aggregate for ToolCall {
    const TYPE: &'static str = "tool_call";
    type Command = ToolCallCommand;
    type Event = ToolCallEvent;
    type Error = ToolCallError;

    fn handle(&self, command: ToolCallCommand) -> Result<Vec<ToolCallEvent>, ToolCallError> {
        if self.recorded {
            return Err(ToolCallError::AlreadyRecorded);
        }
        let ToolCallCommand::Record(mut record) = command;
        record.arguments = stored_arguments(&record.arguments);
        // Recorded as the client sent them, so failures with odd input are kept too; only what no
        // read model can store (NUL) is replaced.
        record.error = record
            .error
            .map(|e| without_nul(&e).chars().take(2000).collect());
        record.tool = without_nul(&record.tool).chars().take(200).collect();
        for text in [
            &mut record.session_id,
            &mut record.tracking_id,
            &mut record.client_name,
            &mut record.client_version,
        ]
        .into_iter()
        .flatten()
        {
            scrub_string(text);
        }
        Ok(vec![ToolCallEvent::ToolCalled(record)])
    }

    fn apply(&mut self, _event: &ToolCallEvent) {
        self.recorded = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given_when;
    use serde_json::json;

    #[test]
    fn secret_looking_values_are_redacted_at_any_depth() {
        let stored = stored_arguments(&json!({
            "query": "webhooks",
            "password": "hunter2",
            "nested": { "Authorization": "Bearer x", "list": [{ "client_secret": "s" }] },
            "X-Api-Key": "k",
            "access_token": "t",
            "cookie": "c",
        }));
        assert_eq!(stored["query"], "webhooks");
        for pointer in [
            "/password",
            "/nested/Authorization",
            "/nested/list/0/client_secret",
            "/X-Api-Key",
            "/access_token",
            "/cookie",
        ] {
            assert_eq!(stored.pointer(pointer), Some(&json!(REDACTED)), "{pointer}");
        }
        assert!(!stored.to_string().contains("hunter2"));
    }

    /// Every listed kind of secret key, in the spellings clients use, at the top level, nested
    /// in objects and inside arrays.
    #[test]
    fn common_secret_keys_are_redacted_whatever_their_spelling() {
        let keys = [
            "pwd",
            "PWD",
            "passwd",
            "db_passwd",
            "password",
            "Password",
            "new-password",
            "passphrase",
            "private_key",
            "privateKey",
            "Private-Key",
            "ssh_private_key",
            "client_secret",
            "clientSecret",
            "secret",
            "access_key",
            "AWS_ACCESS_KEY_ID",
            "aws-secret-access-key",
            "accessKey",
            "session",
            "session_id",
            "SessionToken",
            "credentials",
            "credential",
            "Credentials",
            "token",
            "refresh_token",
            "id-token",
            "api_key",
            "apikey",
            "api-key",
            "X-API-KEY",
            "ApiKey",
            "authorization",
            "Proxy-Authorization",
            "cookie",
            "Set-Cookie",
            "bearer",
            "jwt",
            "signature",
        ];
        for key in keys {
            let mut top = Map::new();
            top.insert(key.to_owned(), json!("s3cr3t-value"));
            top.insert("query".to_owned(), json!("kept"));
            let args = json!({
                "top": Value::Object(top.clone()),
                "nested": { "deeper": Value::Object(top.clone()) },
                "array": [Value::Object(top.clone()), [Value::Object(top)]],
                "object_value": { key: { "inner": "s3cr3t-value" } },
            });
            let stored = stored_arguments(&args);
            let escaped = key.replace('~', "~0").replace('/', "~1");
            for pointer in [
                format!("/top/{escaped}"),
                format!("/nested/deeper/{escaped}"),
                format!("/array/0/{escaped}"),
                format!("/array/1/0/{escaped}"),
                format!("/object_value/{escaped}"),
            ] {
                assert_eq!(
                    stored.pointer(&pointer),
                    Some(&json!(REDACTED)),
                    "{key} at {pointer}"
                );
            }
            assert_eq!(stored.pointer("/nested/deeper/query"), Some(&json!("kept")));
            assert_eq!(stored.pointer("/array/1/0/query"), Some(&json!("kept")));
            assert!(!stored.to_string().contains("s3cr3t"), "{key}: {stored}");
        }
    }

    #[test]
    fn other_keys_are_kept_as_they_are() {
        let args = json!({
            "query": "webhooks",
            "name": "Ada",
            "author": "Ada",
            "limit": 10,
            "path": "/docs/keys",
            "description": "how to rotate a password",
            "key": "ticket-42",
            "sessions_count_hint": null,
            "items": [{ "id": 1, "title": "t" }],
            "options": { "verbose": true, "format": "json" },
        });
        let mut expected = args.clone();
        // "sessions_count_hint" names a session: redacted, as the rule says.
        expected["sessions_count_hint"] = json!(REDACTED);
        assert_eq!(stored_arguments(&args), expected);
    }

    #[test]
    fn large_arguments_are_capped_after_redaction() {
        let big = "é".repeat(10_000);
        let stored = stored_arguments(&json!({ "text": big, "token": "t0p-s3cret" }));
        assert_eq!(stored["truncated"], true);
        let prefix = stored["prefix"].as_str().unwrap_or_default();
        assert!(prefix.len() <= ARGUMENTS_CAP_BYTES);
        assert!(!stored.to_string().contains("t0p-s3cret"));
        assert!(stored_arguments(&json!({ "small": 1 }))["small"] == 1);
    }

    #[test]
    fn a_call_keeps_its_duration_in_microseconds_and_older_calls_read_as_whole_milliseconds() {
        let old: ToolCallRecord = serde_json::from_value(json!({
            "server_id": Uuid::nil(), "tool": "t", "outcome": "ok", "duration_ms": 2,
            "arguments": {}
        }))
        .unwrap();
        assert_eq!((old.duration_us, old.duration_micros()), (None, 2_000));
        let precise = ToolCallRecord {
            duration_ms: 0,
            duration_us: Some(412),
            ..old.clone()
        };
        assert_eq!(precise.duration_micros(), 412);
        let written = serde_json::to_value(&precise).unwrap();
        assert_eq!(
            (
                written["duration_ms"].clone(),
                written["duration_us"].clone()
            ),
            (json!(0), json!(412))
        );
        assert!(
            serde_json::to_value(&old)
                .unwrap()
                .get("duration_us")
                .is_none(),
            "as it was written"
        );
    }

    #[test]
    fn a_call_is_recorded_once_with_its_arguments_stored_safely() {
        let record = ToolCallRecord {
            server_id: Uuid::nil(),
            session_id: None,
            end_user_id: None,
            tracking_id: None,
            tool: "get_support".into(),
            outcome: Outcome::Ok,
            error: None,
            duration_ms: 3,
            duration_us: None,
            client_name: None,
            client_version: None,
            arguments: json!({ "api_key": "k" }),
        };
        let events = given_when::<ToolCall>(&[], ToolCallCommand::Record(record.clone()));
        let Ok([ToolCallEvent::ToolCalled(stored)]) = events.as_deref() else {
            panic!("expected one ToolCalled event: {events:?}");
        };
        assert_eq!(stored.arguments["api_key"], REDACTED);
        let again = given_when::<ToolCall>(
            &[ToolCallEvent::ToolCalled(stored.clone())],
            ToolCallCommand::Record(record),
        );
        assert_eq!(again.err(), Some(ToolCallError::AlreadyRecorded));
    }

    #[test]
    fn a_call_with_nul_characters_is_recorded_with_them_replaced() {
        let record = ToolCallRecord {
            server_id: Uuid::nil(),
            session_id: Some("s\u{0}".into()),
            end_user_id: None,
            tracking_id: None,
            tool: "get\u{0}support".into(),
            outcome: Outcome::Error,
            error: Some("bad \u{0}".into()),
            duration_ms: 1,
            duration_us: None,
            client_name: Some("ide\u{0}".into()),
            client_version: Some("1\u{0}".into()),
            arguments: json!({ "title\u{0}": ["a\u{0}b"] }),
        };
        let events = given_when::<ToolCall>(&[], ToolCallCommand::Record(record));
        let Ok([ToolCallEvent::ToolCalled(stored)]) = events.as_deref() else {
            panic!("expected one ToolCalled event: {events:?}");
        };
        let text = serde_json::to_string(stored).unwrap_or_default();
        assert!(!text.contains("\\u0000"), "{text}");
        assert_eq!(stored.tool, "get\u{FFFD}support");
        assert_eq!(stored.arguments, json!({ "title\u{FFFD}": ["a\u{FFFD}b"] }));
        assert_eq!(stored.client_name.as_deref(), Some("ide\u{FFFD}"));
    }
}
