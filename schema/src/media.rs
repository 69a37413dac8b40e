//! `MediaType`: the closed set of `GSW_CONTACT_MEDIA_TYPE` values.
//!
//! Unlike the integer codes (see `codes`), the spec lists the media types
//! exhaustively, so an unknown one is a validation problem, not a pass-through.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The contact's media type: `"voice"`, `"sms"` or `"email"` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    /// `"voice"`: a phone call.
    Voice,
    /// `"sms"`: a text message.
    Sms,
    /// `"email"`: an e-mail.
    Email,
}

/// A text that is not one of the media types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown media type {found:?}; expected one of \"voice\", \"sms\", \"email\"")]
pub struct MediaTypeError {
    /// The rejected text.
    found: String,
}

impl MediaType {
    /// Every media type, in spec order.
    pub const ALL: [MediaType; 3] = [MediaType::Voice, MediaType::Sms, MediaType::Email];

    /// The wire text: `"voice"`, `"sms"` or `"email"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            MediaType::Voice => "voice",
            MediaType::Sms => "sms",
            MediaType::Email => "email",
        }
    }

    /// The media type whose wire text is exactly `text` (case-sensitive, as
    /// the spec spells them).
    ///
    /// # Errors
    ///
    /// [`MediaTypeError`] naming the allowed values.
    pub fn parse(text: &str) -> Result<MediaType, MediaTypeError> {
        match text {
            "voice" => Ok(MediaType::Voice),
            "sms" => Ok(MediaType::Sms),
            "email" => Ok(MediaType::Email),
            other => Err(MediaTypeError {
                found: other.chars().take(64).collect(),
            }),
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MediaType {
    type Err = MediaTypeError;

    fn from_str(s: &str) -> Result<MediaType, MediaTypeError> {
        MediaType::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_text_round_trips_for_every_media_type() {
        for media in MediaType::ALL {
            assert_eq!(MediaType::parse(media.as_str()), Ok(media));
            assert_eq!(
                serde_json::to_string(&media).unwrap(),
                format!("\"{media}\"")
            );
        }
    }

    #[test]
    fn rejects_other_spellings_and_lists_the_allowed_ones() {
        for text in ["Voice", "SMS", "e-mail", "chat", "", " voice"] {
            let err = MediaType::parse(text).unwrap_err().to_string();
            assert!(err.contains(r#""voice", "sms", "email""#), "{err}");
        }
    }
}
