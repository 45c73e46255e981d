//! The reader cursor `(transaction_id, global_position)`; see ARCHITECTURE.md, Event store.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A position in the committed order of the event store. Ordered by transaction id first, so an
/// event that commits late is never behind a cursor that already passed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    pub transaction_id: i64,
    pub global_position: i64,
}

impl Cursor {
    pub const START: Cursor = Cursor {
        transaction_id: 0,
        global_position: 0,
    };

    pub fn new(transaction_id: i64, global_position: i64) -> Self {
        Self {
            transaction_id,
            global_position,
        }
    }
}

/// Rendered `"{transaction_id}-{global_position}"`: opaque to clients, stable, URL-safe.
impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.transaction_id, self.global_position)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor: expected the `cursor` value of an earlier event or page")]
pub struct BadCursor;

impl FromStr for Cursor {
    type Err = BadCursor;
    fn from_str(s: &str) -> Result<Self, BadCursor> {
        let (tx, pos) = s.split_once('-').ok_or(BadCursor)?;
        let transaction_id: i64 = tx.parse().map_err(|_| BadCursor)?;
        let global_position: i64 = pos.parse().map_err(|_| BadCursor)?;
        if transaction_id < 0 || global_position < 0 {
            return Err(BadCursor);
        }
        Ok(Self::new(transaction_id, global_position))
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_by_transaction_first() {
        let c = Cursor::new(7, 42);
        assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        assert!(Cursor::new(8, 1) > Cursor::new(7, 100));
        assert_eq!("x-1".parse::<Cursor>(), Err(BadCursor));
        assert_eq!("-1-2".parse::<Cursor>(), Err(BadCursor));
    }
}
