//! Events on their way in ([`PendingEvent`]) and as stored ([`StoredEvent`]), and what a commit
//! hands back.

use crate::codec::decode_payload;
use crate::cursor::Cursor;
use crate::error::StoreError;
use chrono::{DateTime, Utc};
use domain::text::replace_nul_escapes;
use domain::{DomainEvent, EventMetadata};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

/// An event ready to append.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    /// Chosen here, not by the database, so each unit of a group commit can tell its own rows.
    pub event_id: Uuid,
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: &'static str,
    pub event_version: &'static str,
    /// JSON text, written to the `json` columns as it is.
    pub payload: Box<RawValue>,
    pub metadata: Box<RawValue>,
    pub org_id: Option<Uuid>,
}

/// An event as stored, with its position in the committed order. The payload and metadata are
/// JSON text as the database holds it: the relay passes them on untouched, and a projector
/// parses a payload once, into the domain event, instead of into a value tree first.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub event_id: Uuid,
    /// The event's position in the committed order; pass it as `after` to read on from here.
    #[schema(value_type = String)]
    pub cursor: Cursor,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub org_id: Option<Uuid>,
    #[serde(with = "domain::time::rfc3339")]
    pub recorded_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    #[schema(value_type = Object)]
    pub metadata: Box<RawValue>,
}

impl StoredEvent {
    /// Decodes the payload as a domain event of the matching aggregate.
    pub fn decode<E: DomainEvent>(&self) -> Result<E, StoreError> {
        decode_payload(&self.event_type, &self.payload).map_err(|source| StoreError::Decode {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
            source,
        })
    }

    /// The metadata, typed. Malformed metadata (never written by us) reads as a system actor.
    /// A NUL in it reads as U+FFFD, as in [`StoredEvent::decode`].
    pub fn typed_metadata(&self) -> EventMetadata {
        serde_json::from_str(&replace_nul_escapes(self.metadata.get()))
            .unwrap_or_else(|_| EventMetadata::system())
    }

    /// The payload as a JSON value, for readers that look into it without knowing its type.
    /// A NUL in it reads as U+FFFD, as in [`StoredEvent::decode`].
    pub fn payload_value(&self) -> Value {
        serde_json::from_str(&replace_nul_escapes(self.payload.get())).unwrap_or(Value::Null)
    }
}

/// What a committed event got from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub event_id: Uuid,
    pub cursor: Cursor,
    /// When it was recorded (its commit's), as its `recorded_at` says: what a write answers as
    /// the time of what it made.
    pub recorded_at: DateTime<Utc>,
}

/// An event of a stream and when it was recorded ([`crate::EventStore::history`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded<E> {
    pub sequence: i64,
    pub recorded_at: DateTime<Utc>,
    pub event: E,
}

/// The result of a successful command: its events and where they landed.
#[derive(Debug, Clone)]
pub struct Executed<E> {
    pub events: Vec<E>,
    pub appended: Vec<Appended>,
}

impl<E> Executed<E> {
    /// The cursor of the last event written, if any.
    pub fn last_cursor(&self) -> Option<Cursor> {
        self.appended.iter().map(|a| a.cursor).max()
    }

    /// When the events were recorded (one commit: one time), if any was written.
    pub fn recorded_at(&self) -> Option<DateTime<Utc>> {
        self.appended.iter().map(|a| a.recorded_at).max()
    }
}
