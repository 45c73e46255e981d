//! How a domain event becomes a stored payload and back: the variant name is the event type,
//! the variant's fields are the payload.

use crate::error::StoreError;
use domain::text::replace_nul_escapes;
use domain::DomainEvent;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Splits `{"Variant": {...}}` into the payload object, as JSON text; the variant is the event
/// type. The event is serialized once, straight to text: building a value tree first (and
/// dropping it after the commit) was a visible share of every tool call.
pub(crate) fn encode_payload<E: DomainEvent>(event: &E) -> Result<Box<RawValue>, StoreError> {
    let text = serde_json::to_string(event).map_err(StoreError::Encode)?;
    // serde_json writes an externally tagged variant as `{"Variant":<payload>}`, compactly.
    let prefix = format!("{{\"{}\":", event.event_type());
    let payload = match text.strip_prefix(&prefix).and_then(|t| t.strip_suffix('}')) {
        Some(inner) => inner.to_owned(),
        // A unit variant is a bare string: no payload.
        None if text == format!("\"{}\"", event.event_type()) => "null".to_owned(),
        // The serde tag is not the event type (a `#[serde(rename)]` on a variant): stored, it
        // could never be read back as that type.
        None => {
            return Err(StoreError::Encode(serde::ser::Error::custom(format!(
                "event {} does not serialize under its own name",
                event.event_type()
            ))))
        }
    };
    RawValue::from_string(payload).map_err(StoreError::Encode)
}

/// The inverse of [`encode_payload`]: reads the payload, JSON text, as the `event_type` variant
/// (a null payload is a unit variant), parsing it once, into the event itself. A NUL character
/// in it (stored before the edges refused them) reads as U+FFFD, so that no read model is ever
/// handed text it cannot store (see `domain::text`).
pub(crate) fn decode_payload<E: DomainEvent>(
    event_type: &str,
    payload: &RawValue,
) -> Result<E, serde_json::Error> {
    use serde::de::value::{MapAccessDeserializer, MapDeserializer, StrDeserializer};
    if let Cow::Owned(replaced) = replace_nul_escapes(payload.get()) {
        return decode_payload(event_type, &RawValue::from_string(replaced)?);
    }
    if payload.get() == "null" {
        return <E as serde::Deserialize>::deserialize(StrDeserializer::<serde_json::Error>::new(
            event_type,
        ));
    }
    let tagged =
        MapDeserializer::<_, serde_json::Error>::new(std::iter::once((event_type, payload)));
    <E as serde::Deserialize>::deserialize(MapAccessDeserializer::new(tagged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::organization::OrganizationEvent;
    use domain::values::{Email, Role};
    use serde_json::Value;
    use uuid::Uuid;

    #[test]
    fn payloads_round_trip_without_the_variant_tag() {
        let event = OrganizationEvent::MemberAdded {
            user_id: Uuid::nil(),
            email: Email::parse("a@b.co").unwrap(),
            role: Role::Admin,
        };
        let payload = encode_payload(&event).unwrap();
        let value: Value = serde_json::from_str(payload.get()).unwrap();
        assert_eq!(value["role"], "admin");
        assert!(value.get("MemberAdded").is_none());
        let back: OrganizationEvent = decode_payload("MemberAdded", &payload).unwrap();
        assert_eq!(back, event);
        let empty = RawValue::from_string("{}".to_owned()).unwrap();
        assert!(decode_payload::<OrganizationEvent>("NoSuchEvent", &empty).is_err());
    }

    #[test]
    fn a_nul_stored_in_a_payload_reads_as_a_replacement_character() {
        use domain::tool_call::{Outcome, ToolCallEvent, ToolCallRecord};
        let event = ToolCallEvent::ToolCalled(ToolCallRecord {
            server_id: Uuid::nil(),
            session_id: None,
            end_user_id: None,
            tracking_id: None,
            tool: "Ada".into(),
            outcome: Outcome::Ok,
            error: None,
            duration_ms: 1,
            duration_us: None,
            client_name: None,
            client_version: None,
            arguments: Value::Null,
        });
        let payload = encode_payload(&event).unwrap();
        let stored = RawValue::from_string(payload.get().replace("Ada", "A\\u0000da")).unwrap();
        let ToolCallEvent::ToolCalled(read) = decode_payload("ToolCalled", &stored).unwrap();
        assert_eq!(read.tool, "A\u{FFFD}da");
    }
}
