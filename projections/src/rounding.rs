//! How figures computed from the read models are rounded before they are shown: durations are
//! milliseconds to the microsecond (3 decimals, what a tool call's duration is recorded to),
//! rates (0 to 1) to 4 decimals. Dividing a whole number by a power of ten is correctly rounded,
//! so the value is the double nearest the decimal and prints as it (`0.412`, never
//! `0.41200000000000003`).

/// Milliseconds, to the microsecond, from microseconds (a percentile may fall between two).
pub fn millis_from_micros(us: f64) -> f64 {
    us.round() / 1000.0
}

/// Milliseconds to the microsecond.
pub fn millis(ms: f64) -> f64 {
    millis_from_micros(ms * 1000.0)
}

/// `part / whole` to 4 decimals; 0 when `whole` is.
pub fn rate(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_print_as_the_decimals_they_are_rounded_to() {
        let shown = |x: f64| serde_json::to_string(&x).unwrap();
        assert_eq!(shown(millis_from_micros(412.0)), "0.412");
        assert_eq!(shown(millis_from_micros(412.5)), "0.413");
        assert_eq!(shown(millis_from_micros(2_000.0)), "2.0");
        assert_eq!(shown(millis(0.1 + 0.2)), "0.3");
        assert_eq!(shown(millis(5_123.456_789)), "5123.457");
        assert_eq!(shown(rate(1, 3)), "0.3333");
        assert_eq!(shown(rate(2, 3)), "0.6667");
        assert_eq!(shown(rate(3, 10)), "0.3");
        assert_eq!(shown(rate(0, 0)), "0.0");
        assert_eq!(shown(rate(7, 7)), "1.0");
    }
}
