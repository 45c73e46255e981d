//! Cursor pages for lists ordered newest first by `(time, id)`. The cursor is opaque to
//! clients: the last row's position, base64url-encoded.

use crate::error::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};

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

/// The cursor of the next page: present when this page is full.
pub fn next<R>(rows: &[R], limit: i64, position: impl Fn(&R) -> String) -> Option<String> {
    (rows.len() as i64 == limit)
        .then(|| rows.last().map(position))
        .flatten()
}
