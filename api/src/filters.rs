//! Values from a fixed set, read from a query parameter (`status=`, `outcome=`, `bucket=`) or a
//! body field (`role`): serde enums, each with the values it accepts and the sentence that
//! refuses any other. A value outside the set is 422 `validation_failed` naming the field, while
//! a query parameter of the wrong type is 400 `invalid_query`, as the routes have always
//! answered.

use domain::ticket::TicketStatus;
use domain::time::{Bound, BOUND_REFUSAL};
use domain::tool_call::Outcome;
use domain::values::Role;
use domain::walkthrough::WalkthroughStatus;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;
use strum::VariantArray;
use utoipa::openapi::schema::{
    KnownFormat, Object, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
};

pub trait OneOf: Sized + Copy + 'static {
    /// Every accepted value.
    const VALUES: &'static [Self];
    /// What a value outside the set is told.
    const REFUSAL: &'static str;
    /// The value as written in a query or a body.
    fn name(self) -> &'static str;
}

impl OneOf for TicketStatus {
    const VALUES: &'static [Self] = <Self as VariantArray>::VARIANTS;
    const REFUSAL: &'static str =
        "must be one of new, in_progress, awaiting_customer, resolved, closed";
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl OneOf for WalkthroughStatus {
    const VALUES: &'static [Self] = <Self as VariantArray>::VARIANTS;
    const REFUSAL: &'static str = "must be one of draft, published, unpublished, archived";
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl OneOf for Outcome {
    const VALUES: &'static [Self] = <Self as VariantArray>::VARIANTS;
    const REFUSAL: &'static str = "must be ok or error";
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }
}

impl OneOf for Role {
    const VALUES: &'static [Self] = <Self as VariantArray>::VARIANTS;
    const REFUSAL: &'static str = "must be one of: owner, admin, member";
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// The width of the buckets of tool analytics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Minute,
    #[default]
    Hour,
    Day,
}

impl Bucket {
    pub fn width(self) -> chrono::Duration {
        match self {
            Bucket::Minute => chrono::Duration::minutes(1),
            Bucket::Hour => chrono::Duration::hours(1),
            Bucket::Day => chrono::Duration::days(1),
        }
    }
}

impl OneOf for Bucket {
    const VALUES: &'static [Self] = &[Bucket::Minute, Bucket::Hour, Bucket::Day];
    const REFUSAL: &'static str = "must be minute, hour or day";
    fn name(self) -> &'static str {
        match self {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
}

/// Marks a refusal in a serde error message, so that the query and body extractors, which only
/// see the message, answer it 422 naming the field rather than 400. Our code writes it; input
/// cannot (a control character in a query is refused before parsing, and a refusal's text is a
/// constant).
const REFUSED: char = '\u{1e}';

/// The refusal a serde error message carries, if it is one, without the parser's position.
pub(crate) fn refusal(message: &str) -> Option<&str> {
    let (_, refusal) = message.split_once(REFUSED)?;
    Some(refusal.split(" at line ").next().unwrap_or(refusal))
}

/// `#[serde(deserialize_with = "one_of")]`.
pub fn one_of<'de, D: Deserializer<'de>, T: OneOf>(d: D) -> Result<T, D::Error> {
    let raw = Cow::<str>::deserialize(d)?;
    T::VALUES
        .iter()
        .copied()
        .find(|v| v.name() == raw)
        .ok_or_else(|| D::Error::custom(format!("{REFUSED}{}", T::REFUSAL)))
}

/// `#[serde(default, deserialize_with = "optional_one_of")]`: absent is `None`.
pub fn optional_one_of<'de, D: Deserializer<'de>, T: OneOf>(d: D) -> Result<Option<T>, D::Error> {
    one_of(d).map(Some)
}

/// `#[serde(default, deserialize_with = "time_bound")]`: a range bound (see
/// [`domain::time::Bound`]), a date or an RFC 3339 time; anything else is refused naming the
/// field, with one sentence wherever a range is taken.
pub fn time_bound<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bound>, D::Error> {
    let raw = Cow::<str>::deserialize(d)?;
    Bound::parse(&raw)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{REFUSED}{BOUND_REFUSAL}")))
}

/// The schema of a range bound: a date or a date-time.
pub struct TimeBoundSchema;

impl utoipa::PartialSchema for TimeBoundSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let string = |format| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(format)))
        };
        OneOfBuilder::new()
            .item(string(KnownFormat::Date))
            .item(string(KnownFormat::DateTime))
            .into()
    }
}

impl utoipa::ToSchema for TimeBoundSchema {}

/// The OpenAPI schema of a set: a string enum.
pub fn schema<T: OneOf>() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(T::VALUES.iter().map(|v| v.name())))
        .build()
}

/// Stand-ins that give a set's schema to `#[schema(value_type = .., inline)]` and
/// `#[param(value_type = .., inline)]` (the domain types know nothing of OpenAPI).
macro_rules! schema_of {
    ($($(#[$doc:meta])* $name:ident => $set:ty;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                schema::<$set>().into()
            }
        }

        impl utoipa::ToSchema for $name {}
    )*};
}

schema_of! {
    /// A member's role.
    RoleSchema => Role;
    /// A ticket's status.
    TicketStatusSchema => TicketStatus;
    /// A walkthrough's status.
    WalkthroughStatusSchema => WalkthroughStatus;
    /// A tool call's outcome.
    OutcomeSchema => Outcome;
    /// The width of an analytics bucket.
    BucketSchema => Bucket;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: OneOf + Serialize>() {
        for &value in T::VALUES {
            assert!(
                T::REFUSAL.contains(value.name()),
                "the refusal lists {}",
                value.name()
            );
            assert_eq!(serde_json::to_value(value).unwrap(), value.name());
        }
    }

    #[test]
    fn each_refusal_lists_every_value_and_names_are_the_serde_names() {
        check::<TicketStatus>();
        check::<WalkthroughStatus>();
        check::<Outcome>();
        check::<Role>();
        check::<Bucket>();
    }

    #[test]
    fn a_refusal_is_told_apart_from_other_errors() {
        #[derive(Deserialize, Debug)]
        struct Q {
            #[serde(default, deserialize_with = "optional_one_of")]
            status: Option<TicketStatus>,
        }
        let q: Q = serde_urlencoded::from_str("status=in_progress").unwrap();
        assert_eq!(q.status, Some(TicketStatus::InProgress));
        let e = serde_urlencoded::from_str::<Q>("status=bogus").unwrap_err();
        assert_eq!(refusal(&e.to_string()), Some(TicketStatus::REFUSAL));
        assert_eq!(refusal("invalid digit found in string"), None);
    }
}
