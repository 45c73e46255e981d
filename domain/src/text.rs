//! Text that can be stored. PostgreSQL's `text` and `jsonb` cannot hold the NUL character
//! (U+0000, `\u0000` in JSON), while JSON and Rust strings can. A NUL that reached an event would
//! be stored (events are `json`, kept as written) and then refused by every read model it is
//! projected into, and a projection cannot get past an event it cannot apply. So the edges refuse
//! input with a NUL ([`nul_path`]), facts recorded as they came (tool calls, clients' names) have
//! theirs replaced ([`without_nul`], [`scrub_nul`]), and readers of events written before that
//! replace any they meet ([`replace_nul_escapes`]).

use serde_json::{Map, Value};
use std::borrow::Cow;

/// What a NUL becomes where text is kept rather than refused.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// The text with every NUL replaced by [`NUL_REPLACEMENT`]; borrowed when there is none.
pub fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Replaces every NUL in a string in place.
pub fn scrub_string(text: &mut String) {
    if text.contains('\0') {
        *text = text.replace('\0', "\u{FFFD}");
    }
}

/// Replaces every NUL in the value's strings and object keys, at any depth.
pub fn scrub_nul(value: &mut Value) {
    match value {
        Value::String(s) => scrub_string(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let entries = std::mem::take(map);
                for (key, item) in entries {
                    map.insert(without_nul(&key).into_owned(), item);
                }
            }
            map.values_mut().for_each(scrub_nul);
        }
        _ => {}
    }
}

/// Where the first NUL in the value is, as a field path (`steps[2].title`, or `body` for the
/// value itself); `None` if there is none.
pub fn nul_path(value: &Value) -> Option<String> {
    let mut path = String::new();
    walk(value, &mut path).then(|| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path
        }
    })
}

/// [`nul_path`] for an object's fields, such as a tool call's arguments.
pub fn nul_field(fields: &Map<String, Value>) -> Option<String> {
    let mut path = String::new();
    walk_fields(fields, &mut path).then_some(path)
}

fn walk(value: &Value, path: &mut String) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = walk(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Object(fields) => walk_fields(fields, path),
        _ => false,
    }
}

fn walk_fields(fields: &Map<String, Value>, path: &mut String) -> bool {
    fields.iter().any(|(key, item)| {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&without_nul(key));
        let found = key.contains('\0') || walk(item, path);
        if !found {
            path.truncate(len);
        }
        found
    })
}

/// Whether JSON text holds a NUL, written as the escape `\u0000` (a raw NUL byte is not valid
/// JSON). Backslashes only occur inside strings in valid JSON, each starting an escape, so
/// stepping over escapes two characters at a time never mistakes an escaped backslash followed
/// by `u0000` for one.
pub fn has_nul_escape(json: &str) -> bool {
    nul_escapes(json).next().is_some()
}

/// The JSON text with every `\u0000` escape replaced by `\ufffd`; borrowed when there is none.
pub fn replace_nul_escapes(json: &str) -> Cow<'_, str> {
    let mut found = nul_escapes(json).peekable();
    if found.peek().is_none() {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let mut from = 0;
    for at in found {
        out.push_str(&json[from..at]);
        out.push_str("\\ufffd");
        from = at + 6;
    }
    out.push_str(&json[from..]);
    Cow::Owned(out)
}

/// Byte offsets of the `\u0000` escapes in JSON text.
fn nul_escapes(json: &str) -> impl Iterator<Item = usize> + '_ {
    let bytes = json.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            if bytes[i] != b'\\' {
                i += 1;
                continue;
            }
            let at = i;
            let escape = bytes.get(at + 1..at + 6);
            if escape.is_some_and(|e| e[0] == b'u' && e[1..].iter().all(|&b| b == b'0')) {
                i = at + 6;
                return Some(at);
            }
            i = at + 2;
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nul_is_found_by_its_field_path() {
        assert_eq!(nul_path(&json!({ "title": "fine" })), None);
        assert_eq!(
            nul_path(&json!({ "title": "a\u{0}b" })).as_deref(),
            Some("title")
        );
        assert_eq!(
            nul_path(&json!({ "steps": [{ "t": "ok" }, { "t": "x\u{0}" }] })).as_deref(),
            Some("steps[1].t")
        );
        assert_eq!(
            nul_path(&json!({ "k\u{0}": 1 })).as_deref(),
            Some("k\u{FFFD}")
        );
        assert_eq!(nul_path(&json!("\u{0}")).as_deref(), Some("body"));
        let arguments = json!({ "a": 1, "b": { "c": "\u{0}" } });
        assert_eq!(
            arguments.as_object().and_then(nul_field).as_deref(),
            Some("b.c")
        );
    }

    #[test]
    fn scrubbing_replaces_nuls_in_strings_and_keys() {
        let mut value = json!({ "a\u{0}": ["x\u{0}y", 1, { "b": "\u{0}" }] });
        scrub_nul(&mut value);
        assert_eq!(
            value,
            json!({ "a\u{FFFD}": ["x\u{FFFD}y", 1, { "b": "\u{FFFD}" }] })
        );
        assert!(matches!(without_nul("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn only_real_nul_escapes_are_replaced_in_json_text() {
        let text = json!({ "t": "a\u{0}b", "literal": "\\u0000", "other": "\u{1}" }).to_string();
        assert!(has_nul_escape(&text));
        let replaced = replace_nul_escapes(&text);
        let value: Value = serde_json::from_str(&replaced).unwrap_or_default();
        assert_eq!(value["t"], "a\u{FFFD}b");
        assert_eq!(
            value["literal"], "\\u0000",
            "an escaped backslash is not an escape"
        );
        assert_eq!(value["other"], "\u{1}");
        let clean = json!({ "literal": "\\u0000" }).to_string();
        assert!(!has_nul_escape(&clean));
        assert!(matches!(replace_nul_escapes(&clean), Cow::Borrowed(_)));
    }
}
