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

/// A page size a client asked for. A list reads one row more than it shows ([`Limit::rows`]),
/// so that a page gets a `next_cursor` only when another row follows it: a full last page is
/// not followed by an empty one.
#[derive(Debug, Clone, Copy)]
pub struct Limit(i64);

impl Limit {
    /// The rows to read for the page: its size and one more.
    pub fn rows(self) -> i64 {
        self.0 + 1
    }
}

pub fn limit(requested: Option<i64>) -> Result<Limit, ApiError> {
    let limit = requested.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_limit",
            detail: format!("limit must be between 1 and {MAX_LIMIT}"),
        });
    }
    Ok(Limit(limit))
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

/// Keeps a page's rows, read with [`Limit::rows`], and says whether another page follows.
pub fn split<R>(mut rows: Vec<R>, limit: Limit) -> (Vec<R>, bool) {
    let size = usize::try_from(limit.0).unwrap_or(usize::MAX);
    let more = rows.len() > size;
    rows.truncate(size);
    (rows, more)
}

/// A page as every list answers it: `{items, next_cursor}` from rows read with
/// [`Limit::rows`]; the cursor, the last shown row's `(time, id)`, is present only when
/// another row follows.
pub fn page<R: serde::Serialize>(
    rows: Vec<R>,
    limit: Limit,
    position: impl Fn(&R) -> (DateTime<Utc>, String),
) -> Json<Value> {
    let (rows, more) = split(rows, limit);
    let next_cursor = more
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_has_a_cursor_only_when_another_row_follows() {
        let two = limit(Some(2)).unwrap();
        assert_eq!(two.rows(), 3);
        assert_eq!(split(vec![1, 2, 3], two), (vec![1, 2], true));
        assert_eq!(split(vec![1, 2], two), (vec![1, 2], false));
        assert_eq!(split(Vec::<i32>::new(), two), (vec![], false));
        assert!(limit(Some(0)).is_err() && limit(Some(MAX_LIMIT + 1)).is_err());
    }
}
