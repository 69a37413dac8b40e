//! `Timestamp`: the spec's `ts` type, Unix UTC seconds, a dot, milliseconds.
//!
//! On the wire a timestamp is a JSON *string* such as `"1619132400.123"`:
//! decimal seconds since the Unix epoch, a dot, and exactly three digits of
//! milliseconds. Inside it is a count of milliseconds (`i64`, never negative),
//! so it compares and orders as time does.
//!
//! Parsing is strict about the shape (no sign, no exponent, no spaces, one dot,
//! three digits after it) so that what OCS would never send is caught early.
//! Leading zeros in the seconds are accepted; printing is canonical (no leading
//! zeros), so `parse(display(t)) == t` for every timestamp and
//! `display(parse(s)) == s` for every canonical `s`.
//!
//! This module reads no clock; callers that need "now" pass it in
//! ([`Timestamp::from_system_time`]).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The expected form, quoted in every parse error.
pub(crate) const TIMESTAMP_FORM: &str = r#"seconds.millis, e.g. "1619132400.123""#;

/// Regular expression for the JSON Schema.
pub(crate) const TIMESTAMP_PATTERN: &str = r"^[0-9]+\.[0-9]{3}$";

/// A point in time with millisecond precision, at or after the Unix epoch.
///
/// Serializes as the JSON string `"<seconds>.<mmm>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    /// Milliseconds since 1970-01-01T00:00:00Z; never negative.
    millis: i64,
}

/// Why a text is not a `seconds.millis` timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The text was empty.
    #[error("empty; expected {TIMESTAMP_FORM}")]
    Empty,
    /// The text starts with `-`: times before 1970 are not representable.
    #[error("negative; expected {TIMESTAMP_FORM}")]
    Negative,
    /// There is no `.` between seconds and milliseconds.
    #[error("no dot between seconds and milliseconds; expected {TIMESTAMP_FORM}")]
    MissingDot,
    /// Nothing before the dot.
    #[error("no seconds before the dot; expected {TIMESTAMP_FORM}")]
    MissingSeconds,
    /// Not exactly three digits after the dot.
    #[error("{found} digits after the dot instead of 3; expected {TIMESTAMP_FORM}")]
    MillisDigits {
        /// How many characters followed the dot.
        found: usize,
    },
    /// A character other than an ASCII digit (or the one dot).
    #[error("unexpected character {found:?}; expected {TIMESTAMP_FORM}")]
    NotDigit {
        /// The first offending character.
        found: char,
    },
    /// The value does not fit in a signed 64-bit count of milliseconds.
    #[error("out of range (more than {} seconds); expected {TIMESTAMP_FORM}", i64::MAX / 1000)]
    OutOfRange,
}

impl Timestamp {
    /// The Unix epoch, `"0.000"`.
    pub const EPOCH: Timestamp = Timestamp { millis: 0 };

    /// The timestamp `millis` milliseconds after the Unix epoch, or `None`
    /// when `millis` is negative (the wire form has no sign).
    #[must_use]
    pub const fn from_unix_millis(millis: i64) -> Option<Timestamp> {
        if millis < 0 {
            None
        } else {
            Some(Timestamp { millis })
        }
    }

    /// `time` truncated to the millisecond, or `None` when it is before the
    /// epoch or too far in the future for `i64` milliseconds.
    ///
    /// The caller reads the clock (`SystemTime::now()`); this crate never does.
    #[must_use]
    pub fn from_system_time(time: SystemTime) -> Option<Timestamp> {
        let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
        let millis = i64::try_from(since_epoch.as_millis()).ok()?;
        Timestamp::from_unix_millis(millis)
    }

    /// Milliseconds since the Unix epoch (never negative).
    #[must_use]
    pub const fn unix_millis(self) -> i64 {
        self.millis
    }

    /// The same instant as a [`SystemTime`].
    #[must_use]
    pub fn to_system_time(self) -> SystemTime {
        // `millis` is non-negative, so `unsigned_abs` is the value itself.
        UNIX_EPOCH + Duration::from_millis(self.millis.unsigned_abs())
    }

    /// Parses `"<seconds>.<mmm>"`.
    ///
    /// # Errors
    ///
    /// [`TimestampError`] saying what is wrong: empty, negative, no dot, no
    /// seconds, not exactly three millisecond digits, a non-digit, or too
    /// large for `i64` milliseconds.
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        // One pass for the common, well-formed case (a dozen per event on the
        // validation hot path); anything else is diagnosed below.
        if let Some(millis) = parse_well_formed(text.as_bytes()) {
            return Ok(Timestamp { millis });
        }
        diagnose(text)
    }
}

/// `digits "." digit digit digit` as milliseconds, or `None` for anything else
/// (including overflow).
fn parse_well_formed(bytes: &[u8]) -> Option<i64> {
    let [seconds @ .., b'.', a, b, c] = bytes else {
        return None;
    };
    if seconds.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &digit in seconds.iter().chain([a, b, c]) {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(i64::from(digit - b'0'))?;
    }
    Some(value)
}

/// Why `text`, rejected by [`parse_well_formed`], is not a timestamp.
fn diagnose(text: &str) -> Result<Timestamp, TimestampError> {
    let bytes = text.as_bytes();
    match bytes.first() {
        None => return Err(TimestampError::Empty),
        Some(b'-') => return Err(TimestampError::Negative),
        Some(_) => {}
    }
    let Some(dot) = bytes.iter().position(|&b| b == b'.') else {
        return Err(first_non_digit(text).unwrap_or(TimestampError::MissingDot));
    };
    let (seconds, dot_and_millis) = text.split_at(dot);
    let millis = dot_and_millis.get(1..).unwrap_or_default();
    if let Some(problem) = first_non_digit(seconds).or_else(|| first_non_digit(millis)) {
        return Err(problem);
    }
    if seconds.is_empty() {
        return Err(TimestampError::MissingSeconds);
    }
    if millis.len() != 3 {
        return Err(TimestampError::MillisDigits {
            found: millis.chars().count(),
        });
    }
    // The shape is right, so `parse_well_formed` refused it for overflow.
    Err(TimestampError::OutOfRange)
}

/// The first character of `text` that is not an ASCII digit, as an error.
fn first_non_digit(text: &str) -> Option<TimestampError> {
    text.chars()
        .find(|c| !c.is_ascii_digit())
        .map(|found| TimestampError::NotDigit { found })
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.millis / 1000, self.millis % 1000)
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Timestamp, TimestampError> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Unix UTC epoch time: decimal seconds, a dot, exactly three digits \
                            of milliseconds.",
            "pattern": TIMESTAMP_PATTERN,
            "examples": ["1619132400.123"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonical_text_exactly() {
        for (text, millis) in [
            ("1619132400.123", 1_619_132_400_123),
            ("0.000", 0),
            ("0.001", 1),
            ("1.000", 1000),
            ("9223372036854775.807", i64::MAX),
        ] {
            let ts = Timestamp::parse(text).unwrap();
            assert_eq!(ts.unix_millis(), millis, "{text}");
            assert_eq!(ts.to_string(), text);
        }
    }

    #[test]
    fn accepts_leading_zeros_but_prints_without_them() {
        let ts = Timestamp::parse("0001619132400.120").unwrap();
        assert_eq!(ts.to_string(), "1619132400.120");
    }

    #[test]
    fn rejects_each_malformed_shape_with_its_reason() {
        use TimestampError::*;
        for (text, expected) in [
            ("", Empty),
            ("-1.000", Negative),
            ("1619132400", MissingDot),
            (".123", MissingSeconds),
            ("1619132400.12", MillisDigits { found: 2 }),
            ("1619132400.1234", MillisDigits { found: 4 }),
            ("1619132400.", MillisDigits { found: 0 }),
            ("1619132400.1a3", NotDigit { found: 'a' }),
            ("1619132400.12.3", NotDigit { found: '.' }),
            ("1.5e3", NotDigit { found: 'e' }),
            ("+1.000", NotDigit { found: '+' }),
            (" 1.000", NotDigit { found: ' ' }),
            ("1.000 ", NotDigit { found: ' ' }),
            ("1619132400,123", NotDigit { found: ',' }),
            ("١.٠٠٠", NotDigit { found: '١' }),
            ("9223372036854775.808", OutOfRange),
            ("99999999999999999999999.000", OutOfRange),
        ] {
            assert_eq!(Timestamp::parse(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn errors_quote_the_expected_form() {
        let message = Timestamp::parse("1619132400").unwrap_err().to_string();
        assert!(
            message.contains(r#"seconds.millis, e.g. "1619132400.123""#),
            "{message}"
        );
    }

    #[test]
    fn from_unix_millis_refuses_negative() {
        assert_eq!(Timestamp::from_unix_millis(-1), None);
        assert_eq!(Timestamp::from_unix_millis(0), Some(Timestamp::EPOCH));
    }

    #[test]
    fn system_time_round_trips_at_millisecond_precision() {
        let time = UNIX_EPOCH + Duration::from_millis(1_619_132_400_123);
        let ts = Timestamp::from_system_time(time).unwrap();
        assert_eq!(ts.to_string(), "1619132400.123");
        assert_eq!(ts.to_system_time(), time);
        assert_eq!(
            Timestamp::from_system_time(UNIX_EPOCH - Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn serde_is_the_string_form() {
        let ts = Timestamp::from_unix_millis(1_619_132_400_005).unwrap();
        assert_eq!(serde_json::to_string(&ts).unwrap(), r#""1619132400.005""#);
        assert_eq!(
            serde_json::from_str::<Timestamp>(r#""1619132400.005""#).unwrap(),
            ts
        );
        assert!(serde_json::from_str::<Timestamp>("1619132400.005").is_err());
    }
}
