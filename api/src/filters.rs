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
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;
use std::cell::Cell;
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

thread_local! {
    /// The refusal of the read running on this thread, if one of our fields refused a value.
    static REFUSAL: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Refuses a value outside a set: the read stops with a serde error, as for any other problem
/// (so the first problem of a query or body is still the one answered), and the refusal is
/// recorded beside it for [`reading`] to find. A serde error's text is made of the input (a
/// field's name, a value), so the text cannot be what tells a refusal from other errors.
fn refuse<E: serde::de::Error>(refusal: &'static str) -> E {
    REFUSAL.with(|r| r.set(Some(refusal)));
    E::custom(refusal)
}

/// Runs one read of a query or a body (synchronous, so nothing else runs on this thread in
/// between) and, when it fails, says which refusal made it fail: `Some` when a field refused a
/// value (422 naming the field), `None` for any other error.
pub(crate) fn reading<T, E>(
    read: impl FnOnce() -> Result<T, E>,
) -> Result<T, (E, Option<&'static str>)> {
    REFUSAL.with(|r| r.set(None));
    let result = read();
    let refusal = REFUSAL.with(Cell::take);
    result.map_err(|e| (e, refusal))
}

/// `#[serde(deserialize_with = "one_of")]`.
pub fn one_of<'de, D: Deserializer<'de>, T: OneOf>(d: D) -> Result<T, D::Error> {
    let raw = Cow::<str>::deserialize(d)?;
    T::VALUES
        .iter()
        .copied()
        .find(|v| v.name() == raw)
        .ok_or_else(|| refuse(T::REFUSAL))
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
        .map_err(|_| refuse(BOUND_REFUSAL))
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
        #[serde(deny_unknown_fields)]
        struct Q {
            #[serde(default, deserialize_with = "optional_one_of")]
            status: Option<TicketStatus>,
        }
        let read = |query: &str| reading(|| serde_urlencoded::from_str::<Q>(query));
        let q = read("status=in_progress").unwrap();
        assert_eq!(q.status, Some(TicketStatus::InProgress));
        let (_, refusal) = read("status=bogus").unwrap_err();
        assert_eq!(refusal, Some(TicketStatus::REFUSAL));
        let (_, refusal) = read("status=new&status=new").unwrap_err();
        assert_eq!(refusal, None, "another error is not a refusal");
        // Nor is one whose text looks like a refusal (the input's own words).
        let (_, refusal) = read(&format!("\u{1e}{}", TicketStatus::REFUSAL)).unwrap_err();
        assert_eq!(refusal, None);
        let (_, refusal) = read("status=bogus").unwrap_err();
        assert!(refusal.is_some());
        assert!(
            read("status=new").is_ok(),
            "a refusal does not outlive its read"
        );
    }
}
