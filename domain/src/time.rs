//! Time as mcplatform writes it and as it reads it from people.
//!
//! **Written:** every instant, in JSON (REST answers, event payloads and envelopes, NDJSON) and
//! in CSV, is RFC 3339 in UTC with exactly six fractional digits: `2026-12-07T15:45:41.123456Z`.
//! Microseconds because that is what Postgres keeps: every stored time is shown exactly, so a
//! time read from one answer and sent back as a range bound selects exactly the rows it names,
//! and two events a few microseconds apart do not look simultaneous. A fixed width makes text
//! order time order. JavaScript's `Date` (keeping the milliseconds), Python's
//! `datetime.fromisoformat`, Go's `time.RFC3339` and Java's `Instant.parse` all read it. Fields
//! use [`rfc3339`] / [`rfc3339_option`] (`#[serde(with = "...")]`); the Rust type stays
//! `DateTime<Utc>`, so OpenAPI still says `format: date-time`. Reading accepts any RFC 3339
//! time, so what was written before keeps reading.
//!
//! **Read:** a range bound is a date or an RFC 3339 time, with one meaning everywhere
//! ([`Bound`]).

use chrono::{DateTime, NaiveDate, SecondsFormat, SubsecRound, Utc};

/// An instant as written everywhere: `2026-12-07T15:45:41.123456Z`. (chrono's RFC 3339 writer,
/// not a `strftime` pattern: every event the relay publishes goes through here.)
pub fn format(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An instant at the precision it is written and stored at: for a time that is taken now and
/// then both kept and shown (an echoed default bound, an event's own time), so what is shown is
/// what was used.
pub fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// `#[serde(with = "domain::time::rfc3339")]` on a `DateTime<Utc>`.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }
}

/// `#[serde(with = "domain::time::rfc3339_option")]` on an `Option<DateTime<Utc>>` (with
/// `default` where the field may be absent).
pub mod rfc3339_option {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_str(&super::format(at)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<DateTime<Utc>>::deserialize(d)
    }
}

/// What a bound that is neither form is told.
pub const BOUND_REFUSAL: &str = "must be a date (YYYY-MM-DD) or an RFC 3339 time";

/// One end of a time range, as a person gives it: a UTC day (`2026-11-23`) or an instant
/// (`2026-11-23T10:00:00Z`, any offset). One meaning everywhere:
///
/// - as a lower bound, a day starts at its first instant and an instant is included
///   ([`Bound::start`]);
/// - as an upper bound, a day is included whole (the range ends where the next day starts)
///   and an instant is excluded ([`Bound::end`]);
/// - where a range is whole days (walkthrough analytics), an instant stands for its UTC day
///   ([`Bound::day`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Day(NaiveDate),
    Instant(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{BOUND_REFUSAL}")]
pub struct BadBound;

impl Bound {
    pub fn parse(raw: &str) -> Result<Self, BadBound> {
        let raw = raw.trim();
        if let Ok(day) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
            return Ok(Bound::Day(day));
        }
        DateTime::parse_from_rfc3339(raw)
            .map(|t| Bound::Instant(t.with_timezone(&Utc)))
            .map_err(|_| BadBound)
    }

    /// As the lower end of a range (inclusive): a day's first instant, or the instant.
    pub fn start(self) -> DateTime<Utc> {
        match self {
            Bound::Day(day) => day.and_time(chrono::NaiveTime::MIN).and_utc(),
            Bound::Instant(at) => at,
        }
    }

    /// As the upper end of a range (exclusive): the start of the next day, so the day itself
    /// is included, or the instant.
    pub fn end(self) -> DateTime<Utc> {
        match self {
            Bound::Day(day) => day
                .succ_opt()
                .map_or(DateTime::<Utc>::MAX_UTC, |next| Bound::Day(next).start()),
            Bound::Instant(at) => at,
        }
    }

    /// The UTC day, for ranges of whole days (both ends included).
    pub fn day(self) -> NaiveDate {
        match self {
            Bound::Day(day) => day,
            Bound::Instant(at) => at.date_naive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Row {
        #[serde(with = "rfc3339")]
        at: DateTime<Utc>,
        #[serde(default, with = "rfc3339_option")]
        seen_at: Option<DateTime<Utc>>,
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    #[test]
    fn every_instant_is_written_with_six_fractional_digits_in_utc() {
        for (given, written) in [
            ("2026-12-07T15:45:41Z", "2026-12-07T15:45:41.000000Z"),
            ("2026-12-07T15:45:41.1Z", "2026-12-07T15:45:41.100000Z"),
            ("2026-12-07T15:45:41.123456Z", "2026-12-07T15:45:41.123456Z"),
            // Nanoseconds (a clock reading never stored) are cut, not rounded up.
            (
                "2026-12-07T15:45:41.123456789Z",
                "2026-12-07T15:45:41.123456Z",
            ),
            ("2026-12-07T17:45:41.5+02:00", "2026-12-07T15:45:41.500000Z"),
        ] {
            assert_eq!(format(&at(given)), written, "{given}");
        }
        let row = Row {
            at: at("2026-12-07T15:45:41Z"),
            seen_at: None,
        };
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "at": "2026-12-07T15:45:41.000000Z", "seen_at": null })
        );
        // Written times read back exactly, and older writings still read.
        assert_eq!(serde_json::from_value::<Row>(json).unwrap(), row);
        let old: Row = serde_json::from_str(r#"{"at":"2026-12-07T15:45:41.12Z"}"#).unwrap();
        assert_eq!(old.at, at("2026-12-07T15:45:41.120Z"));
        assert_eq!(
            micros(at("2026-12-07T15:45:41.123456789Z")),
            at("2026-12-07T15:45:41.123456Z")
        );
    }

    #[test]
    fn a_bound_is_a_day_or_an_instant_with_one_meaning_at_each_end() {
        let day = Bound::parse("2026-11-23").unwrap();
        assert_eq!(day.start(), at("2026-11-23T00:00:00Z"));
        assert_eq!(day.end(), at("2026-11-24T00:00:00Z"), "the day is included");
        assert_eq!(day.day(), NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());

        let instant = Bound::parse("2026-11-23T10:00:00+02:00").unwrap();
        assert_eq!(instant.start(), at("2026-11-23T08:00:00Z"));
        assert_eq!(instant.end(), at("2026-11-23T08:00:00Z"));
        assert_eq!(
            instant.day(),
            NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
        );
        let late = Bound::parse("2026-11-23T23:30:00-02:00").unwrap();
        assert_eq!(
            late.day(),
            NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
            "its UTC day"
        );

        for bad in [
            "yesterday",
            "",
            "2026-13-01",
            "2026-11-23T10:00",
            "23/11/2026",
        ] {
            assert_eq!(Bound::parse(bad), Err(BadBound), "{bad:?}");
        }
        assert_eq!(BadBound.to_string(), BOUND_REFUSAL);
        assert_eq!(
            Bound::Day(NaiveDate::MAX).end(),
            DateTime::<Utc>::MAX_UTC,
            "the last day has no next one"
        );
    }
}
