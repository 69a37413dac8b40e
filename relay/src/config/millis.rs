//! A [`Duration`] written in the configuration as whole milliseconds, with
//! the unit in the key (`interval_ms = 250`): `#[serde(rename =
//! "interval_ms", with = "millis")]` on a `Duration` field. A leaf.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Writes `d` as whole milliseconds (saturating at `u64::MAX`).
///
/// # Errors
/// Only the serializer's own.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads whole milliseconds as a `Duration`.
///
/// # Errors
/// Anything but a non-negative integer, in serde's words (`invalid type:
/// string "5s", expected u64`).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    struct S {
        #[serde(rename = "wait_ms", with = "super")]
        wait: Duration,
    }

    #[test]
    fn milliseconds_round_trip_under_the_key_with_the_unit() {
        let s: S = toml::from_str("wait_ms = 1500").unwrap();
        assert_eq!(s.wait, Duration::from_millis(1500));
        assert_eq!(toml::to_string(&s).unwrap().trim(), "wait_ms = 1500");
        assert!(toml::from_str::<S>("wait_ms = -1").is_err());
        assert!(toml::from_str::<S>("wait_ms = \"1s\"").is_err());
    }
}
