//! `Guid`: a GUID/UUID that remembers the exact text it was read from.
//!
//! OCS may send GUIDs in upper case, in braces or as a URN. The message GUID is
//! also the `ETag` of the delivery and receivers de-duplicate on it, so
//! re-formatting it would make a retried or replayed event look new (DESIGN
//! invariant 3). A `Guid` therefore validates the text with
//! [`uuid::Uuid::parse_str`] and then keeps it byte for byte. It is not a
//! canonicalising UUID type: two `Guid`s naming the same UUID in different
//! spellings are *not* equal; compare [`Guid::uuid`] for that.
//!
//! The text lives inline (at most 45 bytes, the `urn:uuid:` form), so a `Guid`
//! is `Copy` and parsing one never allocates.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Longest text [`Uuid::parse_str`] accepts: `urn:uuid:` plus 36 characters.
const MAX_GUID_LEN: usize = 45;

/// Regular expression for the JSON Schema, matching exactly the four forms
/// [`Uuid::parse_str`] accepts: simple (32 hex digits), hyphenated, braced
/// hyphenated and `urn:uuid:` hyphenated; hex digits in either case.
pub(crate) const GUID_PATTERN: &str = concat!(
    "^(?:[0-9A-Fa-f]{32}",
    "|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
    "|\\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\\}",
    "|urn:uuid:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$",
);

/// A validated GUID/UUID, kept exactly as written (case, braces, `urn:uuid:`).
///
/// Serializes as a JSON string holding the original text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid {
    /// Only `text[..len]` is meaningful; the rest stays zero so the derived
    /// comparisons agree with comparing the text.
    len: u8,
    /// ASCII only: [`Uuid::parse_str`] accepts nothing else.
    text: [u8; MAX_GUID_LEN],
}

/// Why a text is not a GUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed GUID: {reason}")]
pub struct GuidError {
    /// What [`Uuid::parse_str`] objected to.
    reason: String,
}

impl Guid {
    /// Validates `text` as a GUID and keeps it unchanged.
    ///
    /// Accepts what [`Uuid::parse_str`] accepts: 32 hex digits, the hyphenated
    /// 8-4-4-4-12 form, that form in braces, or it prefixed with `urn:uuid:`,
    /// with hex digits in any case.
    ///
    /// # Errors
    ///
    /// [`GuidError`] when `text` is none of those forms.
    pub fn parse(text: &str) -> Result<Guid, GuidError> {
        Uuid::parse_str(text).map_err(|e| GuidError {
            reason: e.to_string(),
        })?;
        let bytes = text.as_bytes();
        let mut stored = [0u8; MAX_GUID_LEN];
        // `parse_str` accepted it, so it is one of the forms above, all at
        // most MAX_GUID_LEN bytes; `get_mut` still guards rather than trusts.
        let (Some(slot), Ok(len)) = (stored.get_mut(..bytes.len()), u8::try_from(bytes.len()))
        else {
            return Err(GuidError {
                reason: format!("longer than {MAX_GUID_LEN} characters"),
            });
        };
        slot.copy_from_slice(bytes);
        Ok(Guid { len, text: stored })
    }

    /// A fresh random (version 4) GUID in lower-case hyphenated form.
    ///
    /// For callers that mint message GUIDs (the producer); validation never
    /// calls it.
    #[must_use]
    pub fn new_v4() -> Guid {
        Guid::from_uuid(Uuid::new_v4())
    }

    /// `uuid` written in lower-case hyphenated form.
    #[must_use]
    pub fn from_uuid(uuid: Uuid) -> Guid {
        let mut stored = [0u8; MAX_GUID_LEN];
        let hyphenated = uuid.hyphenated();
        let len = hyphenated.encode_lower(&mut stored).len();
        Guid {
            // A hyphenated UUID is always 36 bytes.
            len: len as u8,
            text: stored,
        }
    }

    /// The text exactly as received (or as generated).
    #[must_use]
    pub fn as_str(&self) -> &str {
        let bytes = self.text.get(..usize::from(self.len)).unwrap_or_default();
        // Only ASCII accepted by `Uuid::parse_str` is ever stored, so this
        // cannot fail; the fallback keeps the function total anyway.
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    /// The UUID this text names, for comparing GUIDs regardless of spelling.
    #[must_use]
    pub fn uuid(&self) -> Uuid {
        // The text was validated on the way in.
        Uuid::parse_str(self.as_str()).unwrap_or_default()
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Guid").field(&self.as_str()).finish()
    }
}

impl FromStr for Guid {
    type Err = GuidError;

    fn from_str(s: &str) -> Result<Guid, GuidError> {
        Guid::parse(s)
    }
}

impl From<Uuid> for Guid {
    fn from(uuid: Uuid) -> Guid {
        Guid::from_uuid(uuid)
    }
}

impl AsRef<str> for Guid {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for Guid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Guid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Guid, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        Guid::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Guid {
    fn schema_name() -> Cow<'static, str> {
        "Guid".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A GUID/UUID: 32 hex digits, hyphenated 8-4-4-4-12, that in braces, \
                            or prefixed with urn:uuid:; hex digits in either case. Carried \
                            exactly as written.",
            "pattern": GUID_PATTERN,
            "examples": ["0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2c"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_accepted_spelling_verbatim() {
        let expected = Uuid::parse_str("0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2c").unwrap();
        for text in [
            "0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2c",
            "0B5E7A1C-3D2F-4E6A-9B8C-7D6E5F4A3B2C",
            "{0B5E7A1C-3D2F-4E6A-9B8C-7D6E5F4A3B2C}",
            "{0b5e7a1c-3d2f-4e6a-9B8C-7D6E5F4A3B2C}",
            "0b5e7a1c3d2f4e6a9b8c7d6e5f4a3b2c",
            "urn:uuid:0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2c",
        ] {
            let guid: Guid = text.parse().unwrap();
            assert_eq!(guid.as_str(), text);
            assert_eq!(guid.to_string(), text);
            assert_eq!(guid.uuid(), expected);
        }
    }

    #[test]
    fn rejects_what_uuid_rejects() {
        for text in [
            "",
            "not-a-guid",
            "0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2",
            "0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2cd",
            "0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2g",
            " 0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2c",
            "{0b5e7a1c3d2f4e6a9b8c7d6e5f4a3b2c}",
            "(0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2c)",
            "0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2c\u{e9}",
        ] {
            assert!(Guid::parse(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn spellings_of_one_uuid_differ_as_guids_but_share_the_uuid() {
        let lower = Guid::parse("0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2c").unwrap();
        let braced = Guid::parse("{0B5E7A1C-3D2F-4E6A-9B8C-7D6E5F4A3B2C}").unwrap();
        assert_ne!(lower, braced);
        assert_eq!(lower.uuid(), braced.uuid());
    }

    #[test]
    fn new_v4_is_lower_case_hyphenated_and_valid() {
        let guid = Guid::new_v4();
        assert_eq!(guid.as_str().len(), 36);
        assert_eq!(guid.as_str(), guid.as_str().to_lowercase());
        assert_eq!(Guid::parse(guid.as_str()).unwrap(), guid);
        assert_ne!(Guid::new_v4(), guid);
    }

    #[test]
    fn serde_uses_the_original_text() {
        let guid = Guid::parse("{0B5E7A1C-3D2F-4E6A-9B8C-7D6E5F4A3B2C}").unwrap();
        let json = serde_json::to_string(&guid).unwrap();
        assert_eq!(json, r#""{0B5E7A1C-3D2F-4E6A-9B8C-7D6E5F4A3B2C}""#);
        assert_eq!(serde_json::from_str::<Guid>(&json).unwrap(), guid);
        assert!(serde_json::from_str::<Guid>(r#""nope""#).is_err());
    }
}
