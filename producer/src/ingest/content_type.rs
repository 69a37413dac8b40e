//! Which request bodies the ingest endpoints take, by `Content-Type`.
//!
//! OCS posts `Content-Type: application/json`. The single-event endpoint takes
//! JSON (`application/json` or any `+json` type); the batch endpoint also
//! takes NDJSON under its usual names. A `charset` other than UTF-8 is
//! refused: the spec's bodies are UTF-8 and the bytes go to Kafka unchanged.
//! A missing `Content-Type` is refused too (415), since OCS always sends one.
//! Pure: strings in, a decision out.

use std::fmt;

/// What a request body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// One JSON document.
    Json,
    /// Newline-delimited JSON documents.
    Ndjson,
}

/// Why a content type is refused (415).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// No `Content-Type` header.
    Missing,
    /// A media type the endpoint does not take.
    MediaType(String),
    /// A JSON media type with a charset other than UTF-8.
    Charset(String),
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::Missing => f.write_str("missing; send application/json"),
            Unsupported::MediaType(m) => write!(f, "{m:?} is not accepted; send application/json"),
            Unsupported::Charset(c) => write!(f, "charset {c:?} is not accepted; send UTF-8"),
        }
    }
}

const NDJSON_TYPES: [&str; 5] = [
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/jsonlines",
];

/// Classifies a `Content-Type` header value (`None` when absent or not
/// visible ASCII).
///
/// # Errors
/// [`Unsupported`] for anything but JSON or NDJSON in UTF-8.
pub fn classify(header: Option<&str>) -> Result<BodyKind, Unsupported> {
    let header = header.ok_or(Unsupported::Missing)?;
    let mut parts = header.split(';');
    let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    for param in parts {
        if let Some((name, value)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("charset")
        {
            let value = value.trim().trim_matches('"');
            if !value.eq_ignore_ascii_case("utf-8") && !value.eq_ignore_ascii_case("utf8") {
                return Err(Unsupported::Charset(value.to_owned()));
            }
        }
    }
    if media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
    {
        Ok(BodyKind::Json)
    } else if NDJSON_TYPES.contains(&media.as_str()) {
        Ok(BodyKind::Ndjson)
    } else {
        Err(Unsupported::MediaType(media))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_content_types() {
        use BodyKind::{Json, Ndjson};
        let table: &[(Option<&str>, Result<BodyKind, Unsupported>)] = &[
            (Some("application/json"), Ok(Json)),
            (Some("Application/JSON; charset=UTF-8"), Ok(Json)),
            (Some("application/json;charset=\"utf-8\""), Ok(Json)),
            (Some("application/vnd.genesys+json"), Ok(Json)),
            (Some("application/x-ndjson"), Ok(Ndjson)),
            (Some("application/jsonl; charset=utf-8"), Ok(Ndjson)),
            (None, Err(Unsupported::Missing)),
            (
                Some("text/plain"),
                Err(Unsupported::MediaType("text/plain".into())),
            ),
            (
                Some("application/x-www-form-urlencoded"),
                Err(Unsupported::MediaType(
                    "application/x-www-form-urlencoded".into(),
                )),
            ),
            (
                Some("application/json; charset=ISO-8859-1"),
                Err(Unsupported::Charset("ISO-8859-1".into())),
            ),
            (Some(""), Err(Unsupported::MediaType(String::new()))),
        ];
        for (header, want) in table {
            assert_eq!(&classify(*header), want, "{header:?}");
        }
    }
}
