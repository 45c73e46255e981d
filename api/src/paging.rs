//! Cursor pages for lists ordered newest first by `(time, id)`. The cursor is opaque to
//! clients: the last row's position, base64url-encoded.

use crate::error::ApiError;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

pub fn limit(requested: Option<i64>) -> Result<i64, ApiError> {
    let limit = requested.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_limit",
            detail: format!("limit must be between 1 and {MAX_LIMIT}"),
        });
    }
    Ok(limit)
}

pub fn encode(at: DateTime<Utc>, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", at.timestamp_micros()))
}

fn bad_cursor() -> ApiError {
    ApiError::BadRequest {
        code: "invalid_cursor",
        detail: "not a cursor: pass the next_cursor of an earlier page".to_owned(),
    }
}

/// The position a cursor names, with its id parsed by `parse_id`.
pub fn decode<T>(
    cursor: Option<&str>,
    parse_id: impl Fn(&str) -> Option<T>,
) -> Result<Option<(DateTime<Utc>, T)>, ApiError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    let (micros, id) = text.split_once('|').ok_or_else(bad_cursor)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad_cursor)?;
    let id = parse_id(id).ok_or_else(bad_cursor)?;
    Ok(Some((at, id)))
}

/// A page as every list answers it: `{items, next_cursor}`, the cursor present when the page
/// is full and made of the last row's `(time, id)`.
pub fn page<R: serde::Serialize>(
    rows: Vec<R>,
    limit: i64,
    position: impl Fn(&R) -> (DateTime<Utc>, String),
) -> Json<Value> {
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| {
            rows.last().map(|r| {
                let (at, id) = position(r);
                encode(at, &id)
            })
        })
        .flatten();
    Json(json!({ "items": rows, "next_cursor": next_cursor }))
}

/// The answer of a list whose filter matches nothing by construction.
pub fn empty() -> Json<Value> {
    Json(json!({ "items": [], "next_cursor": null }))
}
