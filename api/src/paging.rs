//! Cursor pages for lists ordered newest first by `(time, id)`. The cursor is opaque to
//! clients: the last row's position, base64url-encoded. [`Paged`] reads a list's query: its
//! filters and its page (`limit`, `cursor`); [`Page`] is how every such list answers.

use crate::error::{ApiError, ErrorCode};
use crate::extract::{parse_query, refuse_nul_in_query};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
        return Err(ApiError::new(
            ErrorCode::InvalidLimit,
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(Limit(limit))
}

pub fn encode(at: DateTime<Utc>, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", at.timestamp_micros()))
}

fn bad_cursor() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCursor,
        "not a cursor: pass the next_cursor of an earlier page",
    )
}

/// The id half of a list's position: what the rows of the list are ordered by after time.
pub trait CursorKey: Sized {
    fn parse(id: &str) -> Option<Self>;
}

impl CursorKey for Uuid {
    fn parse(id: &str) -> Option<Self> {
        id.parse().ok()
    }
}

impl CursorKey for String {
    fn parse(id: &str) -> Option<Self> {
        Some(id.to_owned())
    }
}

/// The position a cursor names.
pub fn decode<K: CursorKey>(cursor: Option<&str>) -> Result<Option<(DateTime<Utc>, K)>, ApiError> {
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
    let id = K::parse(id).ok_or_else(bad_cursor)?;
    Ok(Some((at, id)))
}

/// Keeps a page's rows, read with [`Limit::rows`], and says whether another page follows.
pub fn split<R>(mut rows: Vec<R>, limit: Limit) -> (Vec<R>, bool) {
    let size = usize::try_from(limit.0).unwrap_or(usize::MAX);
    let more = rows.len() > size;
    rows.truncate(size);
    (rows, more)
}

/// A page of a list, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when another page follows: pass it back as `cursor` (as `before` for the audit
    /// log) for the next page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from rows read with [`Limit::rows`]; the cursor, the last shown row's
    /// `(time, id)`, is present only when another row follows.
    pub fn of(
        rows: Vec<T>,
        limit: Limit,
        position: impl Fn(&T) -> (DateTime<Utc>, String),
    ) -> Self {
        let (items, more) = split(rows, limit);
        let next_cursor = more
            .then(|| {
                items.last().map(|r| {
                    let (at, id) = position(r);
                    encode(at, &id)
                })
            })
            .flatten();
        Self { items, next_cursor }
    }

    /// The answer of a list whose filter matches nothing by construction.
    pub fn empty() -> Self {
        Self {
            items: Vec::new(),
            next_cursor: None,
        }
    }
}

/// A whole list, unpaged.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// The page a list is asked for.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Rows per page, 1 to 500; default 50.
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// A list's query: the route's filters `F` (a struct refusing parameters it does not know) and
/// the page asked for, `limit` (400 `invalid_limit` outside 1 to 500) and `cursor` (400
/// `invalid_cursor` unless it is a `next_cursor` of this list, its id a `K`).
pub struct Paged<F, K = Uuid> {
    pub filter: F,
    pub limit: Limit,
    /// The position after which the page starts (exclusive), newest first.
    pub before: Option<(DateTime<Utc>, K)>,
}

impl<F, K, S> FromRequestParts<S> for Paged<F, K>
where
    F: DeserializeOwned,
    K: CursorKey,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        refuse_nul_in_query(query)?;
        let (page, filters): (Vec<_>, Vec<_>) = form_urlencoded::parse(query.as_bytes())
            .partition(|(name, _)| name == "limit" || name == "cursor");
        let encode = |pairs: Vec<_>| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        };
        let filter = parse_query::<F>(&encode(filters))?;
        let page = parse_query::<PageQuery>(&encode(page))?;
        Ok(Self {
            filter,
            limit: limit(page.limit)?,
            before: decode(page.cursor.as_deref())?,
        })
    }
}

/// The filters of a list that takes none but its page.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFilters {}

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

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = Uuid::new_v4();
        let cursor = encode(at, &id.to_string());
        assert_eq!(decode::<Uuid>(Some(&cursor)).unwrap(), Some((at, id)));
        let bad = decode::<Uuid>(Some("garbage")).unwrap_err();
        assert_eq!(bad.code(), ErrorCode::InvalidCursor);
    }
}
