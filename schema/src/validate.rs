//! Reading a `ContactProcessed` from JSON bytes, reporting every problem.
//!
//! This is the producer's gate (DESIGN invariant 6: reject bad input with a
//! message naming the field) and the relay's poison check. It is a pure
//! function of the bytes: no clock, no randomness, no I/O. When a caller wants
//! a missing GUID or timestamp filled in, it passes them in
//! ([`ContactProcessed::from_json_assigning`]).
//!
//! # How
//!
//! One pass of serde_json over the bytes with our own visitors, without an
//! intermediate `serde_json::Value`: keys are borrowed from the input where
//! possible, each value is *probed* (its JSON type and scalar recorded, arrays
//! and objects skipped), and the probe is checked against the field's
//! expected type (its `FieldType` impl; which field has which type, and
//! whether it is mandatory, comes from the table in `fields`). A problem is
//! recorded and the pass carries on, so one call reports every problem of the
//! event. Only a JSON syntax error stops early
//! (there is nothing sensible to read past it): that is [`Invalid::Syntax`].
//!
//! # Decisions
//!
//! - **`null`**: OCS omits optional fields rather than sending `null`, but a
//!   `null` optional field is read as absent (lenient on input); output never
//!   contains `null`. A `null` mandatory field is reported as missing, and a
//!   `null` user-defined field is a problem (it is not a string, and dropping
//!   it would lose data).
//! - **Duplicate keys** are a problem: JSON leaves their meaning open, and
//!   receivers would disagree on which value counts.
//! - **Integers** must be JSON integers that fit in `i64`; `1.0`, `1e3` and
//!   `1.5` are rejected. Unknown codes are valid: no integer is rejected for
//!   its value.
//! - **Unknown `GSW_` keys** are user-defined fields like any other key (the
//!   spec: "any other key"), so must be strings.
//! - Problems are listed in spec field order, then user-defined fields in the
//!   order they appear. Echoed values are truncated and quoted.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::event::{ContactProcessed, MESSAGE_NAME, SPEC_FIELDS, spec_position};
use crate::fields::spec_fields;
use crate::guid::Guid;
use crate::media::MediaType;
use crate::timestamp::{TIMESTAMP_FORM, Timestamp};

/// The field name used for a problem with the body as a whole.
pub const ROOT_FIELD: &str = "(root)";

/// Longest prefix of an offending value quoted back in a problem.
const MAX_ECHO_CHARS: usize = 64;

/// One thing wrong with one field of an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct FieldProblem {
    /// The exact JSON key (`GSW_CHAIN_ID`, `Other1`), or [`ROOT_FIELD`] when
    /// the body itself is wrong.
    pub field: String,
    /// What is wrong, lower case, e.g. `missing` or `expected an integer, got a
    /// string`.
    pub problem: String,
}

impl FieldProblem {
    fn new(field: &str, problem: impl Into<String>) -> FieldProblem {
        FieldProblem {
            field: field.to_owned(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Why bytes are not a valid `ContactProcessed` event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The bytes are not JSON (or not UTF-8).
    #[error("not JSON: {message} at line {line} column {column}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error (0 for an empty input).
        column: usize,
        /// What the JSON reader objected to.
        message: String,
    },
    /// The bytes are JSON but not a valid event: every problem found, never
    /// empty.
    #[error("invalid ContactProcessed event: {}", join_problems(.0))]
    Fields(Vec<FieldProblem>),
}

fn join_problems(problems: &[FieldProblem]) -> String {
    let mut joined = String::new();
    for (i, problem) in problems.iter().enumerate() {
        if i > 0 {
            joined.push_str("; ");
        }
        joined.push_str(&problem.to_string());
    }
    joined
}

impl Invalid {
    /// The field problems; empty for [`Invalid::Syntax`].
    #[must_use]
    pub fn problems(&self) -> &[FieldProblem] {
        match self {
            Invalid::Syntax { .. } => &[],
            Invalid::Fields(problems) => problems,
        }
    }

    fn from_json_error(error: &serde_json::Error) -> Invalid {
        let (line, column) = (error.line(), error.column());
        let full = error.to_string();
        // serde_json appends " at line L column C"; we keep those as fields.
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        Invalid::Syntax {
            line,
            column,
            message,
        }
    }
}

impl ContactProcessed {
    /// Parses and validates a JSON body, strictly: every mandatory field,
    /// `GSW_MESSAGE_GUID` and `GSW_TIMESTAMP` included, must be present.
    ///
    /// # Errors
    ///
    /// [`Invalid::Syntax`] when the bytes are not JSON; [`Invalid::Fields`]
    /// listing every problem otherwise (missing field, wrong JSON type,
    /// malformed GUID or timestamp, unknown media type, wrong `GSW_MESSAGE`,
    /// non-string user-defined field, duplicate key, body not an object).
    pub fn from_json(bytes: &[u8]) -> Result<ContactProcessed, Invalid> {
        parse(bytes, None::<fn() -> (Guid, Timestamp)>)
    }

    /// Like [`ContactProcessed::from_json`], but a missing (or `null`)
    /// `GSW_MESSAGE_GUID` and/or `GSW_TIMESTAMP` is taken from `assign()`.
    ///
    /// `assign` is called at most once, and only when the event is otherwise
    /// valid and lacks one of the two; only the missing one(s) are used. It is
    /// how the producer stamps events from sources that leave identity to it,
    /// while this crate stays free of clocks and random numbers.
    ///
    /// # Errors
    ///
    /// As [`ContactProcessed::from_json`]; a GUID or timestamp that is present
    /// but malformed is still an error.
    pub fn from_json_assigning(
        bytes: &[u8],
        assign: impl FnOnce() -> (Guid, Timestamp),
    ) -> Result<ContactProcessed, Invalid> {
        parse(bytes, Some(assign))
    }
}

fn parse(
    bytes: &[u8],
    assign: Option<impl FnOnce() -> (Guid, Timestamp)>,
) -> Result<ContactProcessed, Invalid> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let body = (&mut deserializer)
        .deserialize_any(BodyVisitor)
        .map_err(|e| Invalid::from_json_error(&e))?;
    deserializer
        .end()
        .map_err(|e| Invalid::from_json_error(&e))?;
    match body {
        Body::Object(draft) => (*draft).finish(assign),
        Body::Other(kind) => Err(Invalid::Fields(vec![FieldProblem::new(
            ROOT_FIELD,
            format!("expected a JSON object, got {kind}"),
        )])),
    }
}

/// Strict serde support (other formats, or `serde_json::from_*`): the same
/// checks as [`ContactProcessed::from_json`], problems joined into one error.
impl<'de> Deserialize<'de> for ContactProcessed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ContactProcessed, D::Error> {
        match deserializer.deserialize_map(BodyVisitor)? {
            Body::Object(draft) => (*draft)
                .finish(None::<fn() -> (Guid, Timestamp)>)
                .map_err(de::Error::custom),
            Body::Other(kind) => Err(de::Error::custom(format!(
                "{ROOT_FIELD}: expected a JSON object, got {kind}"
            ))),
        }
    }
}

// ---------------------------------------------------------------------------
// Probing one JSON value.

/// What a JSON value turned out to be, with scalars kept for checking.
enum Probe<'de> {
    Null,
    Bool,
    Integer(i64),
    /// A JSON integer beyond `i64` (read by serde_json as `u64` or `f64`).
    OutOfRange,
    /// A number written with a fraction or an exponent.
    Fraction,
    Str(Cow<'de, str>),
    Array,
    Object,
}

impl Probe<'_> {
    /// The JSON type, phrased for "got …".
    fn kind(&self) -> &'static str {
        match self {
            Probe::Null => "null",
            Probe::Bool => "a boolean",
            Probe::Integer(_) => "an integer",
            Probe::OutOfRange => "an integer outside the signed 64-bit range",
            Probe::Fraction => "a number with a fraction or exponent",
            Probe::Str(_) => "a string",
            Probe::Array => "an array",
            Probe::Object => "an object",
        }
    }
}

/// `value` quoted for an error message, cut to [`MAX_ECHO_CHARS`] characters.
fn echo(value: &str) -> String {
    if value.chars().count() <= MAX_ECHO_CHARS {
        format!("{value:?}")
    } else {
        let cut: String = value.chars().take(MAX_ECHO_CHARS).collect();
        format!("{cut:?}…")
    }
}

struct ProbeSeed;

impl<'de> DeserializeSeed<'de> for ProbeSeed {
    type Value = Probe<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Probe<'de>, D::Error> {
        deserializer.deserialize_any(ProbeVisitor)
    }
}

struct ProbeVisitor;

impl<'de> Visitor<'de> for ProbeVisitor {
    type Value = Probe<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Probe<'de>, E> {
        Ok(Probe::Bool)
    }

    fn visit_i64<E>(self, n: i64) -> Result<Probe<'de>, E> {
        Ok(Probe::Integer(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Probe<'de>, E> {
        Ok(i64::try_from(n).map_or(Probe::OutOfRange, Probe::Integer))
    }

    fn visit_i128<E>(self, n: i128) -> Result<Probe<'de>, E> {
        Ok(i64::try_from(n).map_or(Probe::OutOfRange, Probe::Integer))
    }

    fn visit_u128<E>(self, n: u128) -> Result<Probe<'de>, E> {
        Ok(i64::try_from(n).map_or(Probe::OutOfRange, Probe::Integer))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Probe<'de>, E> {
        // serde_json reads integers too large for u64 as f64; name them as
        // such rather than as fractions.
        // `i64::MAX as f64` rounds to 2^63, the first whole number past i64.
        if n.fract() == 0.0 && n.abs() >= i64::MAX as f64 {
            Ok(Probe::OutOfRange)
        } else {
            Ok(Probe::Fraction)
        }
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Probe<'de>, E> {
        Ok(Probe::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Probe<'de>, E> {
        Ok(Probe::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Probe<'de>, E> {
        Ok(Probe::Str(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Probe<'de>, E> {
        Ok(Probe::Null)
    }

    fn visit_none<E>(self) -> Result<Probe<'de>, E> {
        Ok(Probe::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Probe<'de>, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Probe<'de>, A::Error> {
        // IgnoredAny lets serde_json skip nested values without recursing.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Probe::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Probe<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Probe::Object)
    }
}

/// A map key, borrowed from the input unless it contains escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s))
    }
}

// ---------------------------------------------------------------------------
// Checking a probe against a field's type.

/// A type a spec field can have, checked from a probe.
trait FieldType: Sized {
    /// The probe as this type, or the problem (without the field name).
    fn check(probe: Probe<'_>) -> Result<Self, String>;

    /// A stand-in for a missing field: it fills the draft so the struct can be
    /// built while problems are still being collected, and is never returned
    /// to a caller (any problem discards the draft).
    fn placeholder() -> Self;
}

impl FieldType for String {
    fn check(probe: Probe<'_>) -> Result<String, String> {
        match probe {
            Probe::Str(s) => Ok(s.into_owned()),
            other => Err(format!("expected a string, got {}", other.kind())),
        }
    }

    fn placeholder() -> String {
        String::new()
    }
}

impl FieldType for i64 {
    fn check(probe: Probe<'_>) -> Result<i64, String> {
        match probe {
            Probe::Integer(n) => Ok(n),
            other => Err(format!("expected an integer, got {}", other.kind())),
        }
    }

    fn placeholder() -> i64 {
        0
    }
}

impl FieldType for Guid {
    fn check(probe: Probe<'_>) -> Result<Guid, String> {
        match probe {
            Probe::Str(s) => Guid::parse(&s).map_err(|e| format!("{e}: {}", echo(&s))),
            other => Err(format!("expected a GUID string, got {}", other.kind())),
        }
    }

    fn placeholder() -> Guid {
        Guid::from_uuid(uuid::Uuid::nil())
    }
}

impl FieldType for Timestamp {
    fn check(probe: Probe<'_>) -> Result<Timestamp, String> {
        match probe {
            Probe::Str(s) => {
                Timestamp::parse(&s).map_err(|e| format!("malformed timestamp {}: {e}", echo(&s)))
            }
            other => Err(format!(
                "expected a timestamp string ({TIMESTAMP_FORM}), got {}",
                other.kind()
            )),
        }
    }

    fn placeholder() -> Timestamp {
        Timestamp::EPOCH
    }
}

impl FieldType for MediaType {
    fn check(probe: Probe<'_>) -> Result<MediaType, String> {
        match probe {
            Probe::Str(s) => MediaType::parse(&s).map_err(|e| e.to_string()),
            other => Err(format!(
                "expected one of \"voice\", \"sms\", \"email\", got {}",
                other.kind()
            )),
        }
    }

    fn placeholder() -> MediaType {
        MediaType::Voice
    }
}

/// `GSW_MESSAGE`: present and exactly `"ContactProcessed"`, nothing to keep.
struct MessageName;

impl FieldType for MessageName {
    fn check(probe: Probe<'_>) -> Result<MessageName, String> {
        match probe {
            Probe::Str(s) if s == MESSAGE_NAME => Ok(MessageName),
            Probe::Str(s) => Err(format!("must be \"{MESSAGE_NAME}\", got {}", echo(&s))),
            other => Err(format!(
                "must be the string \"{MESSAGE_NAME}\", got {}",
                other.kind()
            )),
        }
    }

    fn placeholder() -> MessageName {
        MessageName
    }
}

/// What has been seen of one spec field so far.
#[derive(Default)]
enum Slot<T> {
    #[default]
    Absent,
    Null,
    /// Present but wrong; its problem is already recorded.
    Bad,
    Value(T),
}

impl<T: FieldType> Slot<T> {
    fn put(&mut self, field: &str, probe: Probe<'_>, problems: &mut Problems) {
        if !matches!(self, Slot::Absent) {
            problems.push(field, "duplicate key (each key may appear only once)");
            return;
        }
        *self = match probe {
            Probe::Null => Slot::Null,
            probe => match T::check(probe) {
                Ok(value) => Slot::Value(value),
                Err(problem) => {
                    problems.push(field, problem);
                    Slot::Bad
                }
            },
        };
    }

    /// Absent or `null`: what [`ContactProcessed::from_json_assigning`] fills.
    fn is_missing(&self) -> bool {
        matches!(self, Slot::Absent | Slot::Null)
    }

    /// The value of a mandatory field; `missing` when absent or `null`.
    fn mandatory(self, field: &str, problems: &mut Problems) -> T {
        match self {
            Slot::Value(value) => value,
            Slot::Absent => {
                problems.push(field, "missing");
                T::placeholder()
            }
            Slot::Null => {
                problems.push(field, "missing (null given; this field is mandatory)");
                T::placeholder()
            }
            Slot::Bad => T::placeholder(),
        }
    }

    /// The value of an optional field; `None` when absent, `null` or bad.
    ///
    /// It takes the same arguments as [`Slot::mandatory`] so that the table's
    /// `mandatory` / `optional` can name the method; an optional field has no
    /// problem of its own to add here.
    fn optional(self, _field: &str, _problems: &mut Problems) -> Option<T> {
        match self {
            Slot::Value(value) => Some(value),
            Slot::Absent | Slot::Null | Slot::Bad => None,
        }
    }
}

/// Problems found so far, in the order found.
#[derive(Default)]
struct Problems(Vec<FieldProblem>);

impl Problems {
    fn push(&mut self, field: &str, problem: impl Into<String>) {
        self.0.push(FieldProblem::new(field, problem));
    }

    /// In spec field order, then user-defined fields in input order.
    fn into_sorted(self) -> Vec<FieldProblem> {
        let mut problems = self.0;
        problems.sort_by_key(|p| spec_position(&p.field).unwrap_or(SPEC_FIELDS.len()));
        problems
    }
}

// ---------------------------------------------------------------------------
// The body.

enum Body {
    Object(Box<Draft>),
    /// The JSON type of a body that is not an object.
    Other(&'static str),
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Body;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a ContactProcessed JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
        let mut draft = Box::new(Draft::default());
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(ProbeSeed)?;
            draft.take(key, value);
        }
        Ok(Body::Object(draft))
    }

    // Anything else is one problem with the body as a whole; arrays are read
    // to the end so the input is still checked for JSON syntax.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Body::Other("an array"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Body, E> {
        Ok(Body::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Body, E> {
        Ok(Body::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Body, E> {
        Ok(Body::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Body, E> {
        Ok(Body::Other("a number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Body, E> {
        Ok(Body::Other("a string"))
    }

    fn visit_unit<E>(self) -> Result<Body, E> {
        Ok(Body::Other("null"))
    }
}

/// Expands the field table (`crate::fields`) into the draft: one slot per
/// spec field, the dispatch from JSON key to slot, and the final check, where
/// the row's `mandatory` / `optional` picks the [`Slot`] method of that name.
macro_rules! draft {
    ($( $(#[doc = $doc:literal])* $presence:ident $json:literal => $field:ident: $ty:ty, )*) => {
        /// Everything read from a body so far, checked field by field.
        #[derive(Default)]
        struct Draft {
            message: Slot<MessageName>,
            $($field: Slot<$ty>,)*
            user_fields: BTreeMap<String, String>,
            /// User-defined keys whose value was rejected, to still catch duplicates.
            rejected_user_fields: Vec<String>,
            problems: Problems,
        }

        impl Draft {
            fn take(&mut self, key: Cow<'_, str>, value: Probe<'_>) {
                let p = &mut self.problems;
                match &*key {
                    "GSW_MESSAGE" => self.message.put("GSW_MESSAGE", value, p),
                    $($json => self.$field.put($json, value, p),)*
                    _ => self.take_user_field(key, value),
                }
            }

            /// The event, or every problem found, sorted.
            fn check(self) -> Result<ContactProcessed, Vec<FieldProblem>> {
                let mut p = self.problems;
                self.message.mandatory("GSW_MESSAGE", &mut p);
                let event = ContactProcessed {
                    $($field: self.$field.$presence($json, &mut p),)*
                    user_fields: self.user_fields,
                };
                if p.0.is_empty() {
                    Ok(event)
                } else {
                    Err(p.into_sorted())
                }
            }
        }
    };
}

spec_fields!(draft);

impl Draft {
    fn take_user_field(&mut self, key: Cow<'_, str>, value: Probe<'_>) {
        let duplicate = self.user_fields.contains_key(&*key)
            || self.rejected_user_fields.iter().any(|k| **k == *key);
        if duplicate {
            self.problems
                .push(&key, "duplicate key (each key may appear only once)");
            return;
        }
        match value {
            Probe::Str(text) => {
                self.user_fields.insert(key.into_owned(), text.into_owned());
            }
            other => {
                self.problems.push(
                    &key,
                    format!("user-defined field must be a string, got {}", other.kind()),
                );
                self.rejected_user_fields.push(key.into_owned());
            }
        }
    }

    fn finish(
        mut self,
        assign: Option<impl FnOnce() -> (Guid, Timestamp)>,
    ) -> Result<ContactProcessed, Invalid> {
        // When assigning, a missing GUID or timestamp is not a problem: it is
        // filled below, once the rest of the event is known to be valid.
        let assigning = assign.is_some();
        let guid_missing = assigning && self.message_guid.is_missing();
        let timestamp_missing = assigning && self.timestamp.is_missing();
        if guid_missing {
            self.message_guid = Slot::Value(Guid::placeholder());
        }
        if timestamp_missing {
            self.timestamp = Slot::Value(Timestamp::placeholder());
        }
        let mut event = self.check().map_err(Invalid::Fields)?;
        if let Some(assign) = assign.filter(|_| guid_missing || timestamp_missing) {
            let (guid, now) = assign();
            if guid_missing {
                event.message_guid = guid;
            }
            if timestamp_missing {
                event.timestamp = now;
            }
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use serde_json::{Value, json};

    use super::*;

    const MINIMAL: &str = include_str!("../examples/valid/sms-minimal.json");

    const MANDATORY: [&str; 22] = [
        "GSW_MESSAGE",
        "GSW_MESSAGE_GUID",
        "GSW_TIMESTAMP",
        "GSW_CALL_ATTEMPT_GUID",
        "GSW_PHONE",
        "GSW_PHONE_TYPE",
        "GSW_CHAIN_ID",
        "GSW_CHAIN_N",
        "GSW_RECORD_HANDLE",
        "GSW_REASON",
        "GSW_CALL_RESULT",
        "GSW_CAMPAIGN_NAME",
        "GSW_CONTACT_MEDIA_TYPE",
        "GSW_CALLING_LIST",
        "GSW_CAMPAIGN_GROUP_NAME",
        "GSW_CAMPAIGN_GROUP_GUID",
        "GSW_GROUP_NAME",
        "GSW_QUEUE_NAME",
        "GSW_DIAL_MODE",
        "GSW_RECORD_TYPE",
        "GSW_RECORD_STATUS",
        "GSW_START_PROCESSING",
    ];

    fn minimal() -> serde_json::Map<String, Value> {
        match serde_json::from_str(MINIMAL).unwrap() {
            Value::Object(map) => map,
            _ => unreachable!("the minimal example is an object"),
        }
    }

    fn with(field: &str, value: Value) -> Vec<u8> {
        let mut map = minimal();
        map.insert(field.to_owned(), value);
        serde_json::to_vec(&map).unwrap()
    }

    fn without(field: &str) -> Vec<u8> {
        let mut map = minimal();
        map.remove(field);
        serde_json::to_vec(&map).unwrap()
    }

    fn problems(body: &[u8]) -> Vec<String> {
        match ContactProcessed::from_json(body) {
            Err(Invalid::Fields(problems)) => problems.iter().map(ToString::to_string).collect(),
            other => panic!("expected field problems, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_minimal_event() {
        let event = ContactProcessed::from_json(MINIMAL.as_bytes()).unwrap();
        assert_eq!(event.chain_id, 77);
        assert_eq!(event.media_type, MediaType::Sms);
        assert_eq!(event.timestamp.to_string(), "1619136000.250");
        assert_eq!(event.agent_id, None);
        assert!(event.user_fields.is_empty());
    }

    #[test]
    fn reports_each_missing_mandatory_field_by_name() {
        for field in MANDATORY {
            assert_eq!(problems(&without(field)), [format!("{field}: missing")]);
        }
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let mut map = minimal();
        map.retain(|k, _| MANDATORY.contains(&k.as_str()));
        assert!(ContactProcessed::from_json(&serde_json::to_vec(&map).unwrap()).is_ok());
    }

    #[test]
    fn reports_wrong_json_types_naming_field_and_types() {
        for (field, value, expected) in [
            (
                "GSW_CHAIN_ID",
                json!("77"),
                "expected an integer, got a string",
            ),
            (
                "GSW_CHAIN_ID",
                json!(1.5),
                "expected an integer, got a number with a fraction or exponent",
            ),
            (
                "GSW_CHAIN_ID",
                json!(1.0),
                "expected an integer, got a number with a fraction or exponent",
            ),
            (
                "GSW_CHAIN_ID",
                json!(true),
                "expected an integer, got a boolean",
            ),
            (
                "GSW_CHAIN_ID",
                json!([1]),
                "expected an integer, got an array",
            ),
            (
                "GSW_CHAIN_ID",
                json!({"a": 1}),
                "expected an integer, got an object",
            ),
            (
                "GSW_CHAIN_ID",
                json!(9_223_372_036_854_775_808_u64),
                "expected an integer, got an integer outside the signed 64-bit range",
            ),
            (
                "GSW_PHONE",
                json!(4155550123_i64),
                "expected a string, got an integer",
            ),
            (
                "GSW_CUSTOMER_ID",
                json!(17),
                "expected a string, got an integer",
            ),
            (
                "GSW_OPTIMIZE_BY",
                json!("3"),
                "expected an integer, got a string",
            ),
            (
                "GSW_MESSAGE_GUID",
                json!(7),
                "expected a GUID string, got an integer",
            ),
            (
                "GSW_CALL_TIME",
                json!(1619132400.123),
                r#"expected a timestamp string (seconds.millis, e.g. "1619132400.123"), got a number with a fraction or exponent"#,
            ),
            (
                "GSW_CONTACT_MEDIA_TYPE",
                json!(1),
                r#"expected one of "voice", "sms", "email", got an integer"#,
            ),
            (
                "GSW_MESSAGE",
                json!(null),
                "missing (null given; this field is mandatory)",
            ),
            (
                "GSW_CAMPAIGN_NAME",
                json!(null),
                "missing (null given; this field is mandatory)",
            ),
        ] {
            assert_eq!(
                problems(&with(field, value.clone())),
                [format!("{field}: {expected}")],
                "{field} = {value}"
            );
        }
    }

    #[test]
    fn reports_malformed_values_quoting_them() {
        for (field, value, expected) in [
            ("GSW_MESSAGE_GUID", "not-a-guid", r#"malformed GUID: "#),
            (
                "GSW_CHAIN_LIFO_GUID",
                "{0B5E7A1C3D2F4E6A9B8C7D6E5F4A3B2C}",
                "malformed GUID: ",
            ),
            (
                "GSW_TIMESTAMP",
                "1619132400",
                r#"malformed timestamp "1619132400": no dot between seconds and milliseconds; expected seconds.millis, e.g. "1619132400.123""#,
            ),
            (
                "GSW_START_PROCESSING",
                "1619132400.12",
                r#"malformed timestamp "1619132400.12": 2 digits after the dot instead of 3; expected seconds.millis, e.g. "1619132400.123""#,
            ),
            (
                "GSW_ANSWERED",
                "-1.000",
                "malformed timestamp \"-1.000\": negative",
            ),
            (
                "GSW_CONTACT_MEDIA_TYPE",
                "fax",
                r#"unknown media type "fax"; expected one of "voice", "sms", "email""#,
            ),
            (
                "GSW_MESSAGE",
                "ContactUpdated",
                r#"must be "ContactProcessed", got "ContactUpdated""#,
            ),
        ] {
            let found = problems(&with(field, json!(value)));
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(
                found[0].starts_with(&format!("{field}: {expected}")),
                "{field} = {value:?}: {found:?}"
            );
            if field.ends_with("GUID") {
                assert!(found[0].contains(&format!("{value:?}")), "{found:?}");
            }
        }
    }

    #[test]
    fn truncates_long_echoed_values() {
        let long = "x".repeat(10_000);
        let found = problems(&with("GSW_MESSAGE_GUID", json!(long)));
        assert!(found[0].len() < 200, "{}", found[0]);
        assert!(found[0].ends_with('…'));
    }

    #[test]
    fn user_defined_fields_must_be_strings() {
        for (value, kind) in [
            (json!(42), "an integer"),
            (json!(4.2), "a number with a fraction or exponent"),
            (json!(null), "null"),
            (json!(false), "a boolean"),
            (json!(["a"]), "an array"),
            (json!({"a": "b"}), "an object"),
        ] {
            assert_eq!(
                problems(&with("Other1", value)),
                [format!(
                    "Other1: user-defined field must be a string, got {kind}"
                )]
            );
        }
    }

    #[test]
    fn carries_user_defined_fields_untouched() {
        let body = with("Other1", json!("a \"quoted\" \\ value\n with ünïcode ✓"));
        let event = ContactProcessed::from_json(&body).unwrap();
        assert_eq!(
            event.user_fields.get("Other1").map(String::as_str),
            Some("a \"quoted\" \\ value\n with ünïcode ✓")
        );
        // An unknown GSW_ key is a user-defined field like any other.
        let event = ContactProcessed::from_json(&with("GSW_FUTURE", json!("x"))).unwrap();
        assert_eq!(
            event.user_fields.get("GSW_FUTURE").map(String::as_str),
            Some("x")
        );
    }

    #[test]
    fn unknown_integer_codes_are_valid() {
        for (field, value) in [
            ("GSW_CALL_RESULT", i64::MAX),
            ("GSW_CALL_RESULT", 54),
            ("GSW_RECORD_TYPE", -1),
            ("GSW_RECORD_STATUS", 1000),
            ("GSW_PHONE_TYPE", 42),
            ("GSW_DIAL_MODE", i64::MIN),
            ("GSW_REASON", 123_456),
            ("GSW_OPTIMIZE_BY", 5),
        ] {
            assert!(
                ContactProcessed::from_json(&with(field, json!(value))).is_ok(),
                "{field} = {value}"
            );
        }
    }

    #[test]
    fn null_optional_fields_read_as_absent() {
        for field in [
            "GSW_AGENT_ID",
            "GSW_CHAIN_LIFO_GUID",
            "GSW_OPTIMIZE_BY",
            "GSW_CALL_TIME",
        ] {
            let event = ContactProcessed::from_json(&with(field, Value::Null)).unwrap();
            assert!(
                !String::from_utf8(event.to_json_vec())
                    .unwrap()
                    .contains(field)
            );
        }
    }

    #[test]
    fn reports_every_problem_in_spec_order_not_just_the_first() {
        let mut map = minimal();
        map.insert("Other1".into(), json!(1));
        map.insert("GSW_CONTACT_MEDIA_TYPE".into(), json!("fax"));
        map.remove("GSW_PHONE");
        map.insert("GSW_CHAIN_ID".into(), json!("x"));
        map.insert("GSW_MESSAGE_GUID".into(), json!("nope"));
        let fields: Vec<String> =
            match ContactProcessed::from_json(&serde_json::to_vec(&map).unwrap()) {
                Err(Invalid::Fields(problems)) => problems.into_iter().map(|p| p.field).collect(),
                other => panic!("{other:?}"),
            };
        assert_eq!(
            fields,
            [
                "GSW_MESSAGE_GUID",
                "GSW_PHONE",
                "GSW_CHAIN_ID",
                "GSW_CONTACT_MEDIA_TYPE",
                "Other1"
            ]
        );
    }

    #[test]
    fn duplicate_keys_are_a_problem() {
        let text = MINIMAL.replacen(
            "{",
            r#"{"GSW_CHAIN_ID": 1, "Other1": "a", "Other1": "b", "#,
            1,
        );
        assert_eq!(
            problems(text.as_bytes()),
            [
                "GSW_CHAIN_ID: duplicate key (each key may appear only once)",
                "Other1: duplicate key (each key may appear only once)",
            ]
        );
        let text = MINIMAL.replacen("{", r#"{"Other1": 1, "Other1": "b", "#, 1);
        assert_eq!(problems(text.as_bytes()).len(), 2);
    }

    #[test]
    fn escaped_keys_mean_the_same_field() {
        let text = MINIMAL.replace("\"GSW_PHONE\"", r#""GSW_\u0050HONE""#);
        let event = ContactProcessed::from_json(text.as_bytes()).unwrap();
        assert_eq!(event.phone, "+447700900123");
    }

    #[test]
    fn a_body_that_is_not_an_object_is_one_root_problem() {
        for (body, kind) in [
            ("[]", "an array"),
            ("[1, [2, {\"a\": 3}]]", "an array"),
            ("\"ContactProcessed\"", "a string"),
            ("17", "a number"),
            ("-1.5", "a number"),
            ("null", "null"),
            ("true", "a boolean"),
        ] {
            assert_eq!(
                problems(body.as_bytes()),
                [format!("(root): expected a JSON object, got {kind}")]
            );
        }
    }

    #[test]
    fn not_json_is_a_syntax_error_with_position() {
        for (body, line, column) in [
            ("", 1, 0),
            ("{", 1, 1),
            ("{\n  \"GSW_PHONE\": }", 2, 16),
            ("{} x", 1, 4),
            ("{\"a\": 'b'}", 1, 7),
            ("{\"a\": \"\\ud800\"}", 1, 14),
        ] {
            match ContactProcessed::from_json(body.as_bytes()) {
                Err(Invalid::Syntax {
                    line: l,
                    column: c,
                    message,
                }) => {
                    assert_eq!((l, c), (line, column), "{body:?}: {message}");
                    assert!(!message.contains(" at line "), "{message}");
                }
                other => panic!("{body:?}: {other:?}"),
            }
        }
        assert!(matches!(
            ContactProcessed::from_json(b"{\"a\": \"\xff\"}"),
            Err(Invalid::Syntax { .. })
        ));
    }

    #[test]
    fn deep_nesting_in_a_user_field_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = MINIMAL.replacen("{", &format!("{{\"Other1\": {deep}, "), 1);
        assert_eq!(
            problems(text.as_bytes()),
            ["Other1: user-defined field must be a string, got an array"]
        );
        let deep_root = "[".repeat(100_000);
        assert!(ContactProcessed::from_json(deep_root.as_bytes()).is_err());
    }

    #[test]
    fn display_lists_all_problems() {
        let err = ContactProcessed::from_json(&without("GSW_PHONE")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid ContactProcessed event: GSW_PHONE: missing"
        );
        assert_eq!(err.problems().len(), 1);
        let err = ContactProcessed::from_json(b"{").unwrap_err();
        assert_eq!(
            err.to_string(),
            "not JSON: EOF while parsing an object at line 1 column 1"
        );
    }

    fn stamp() -> (Guid, Timestamp) {
        (
            Guid::parse("11111111-2222-4333-8444-555555555555").unwrap(),
            Timestamp::from_unix_millis(1_700_000_000_000).unwrap(),
        )
    }

    #[test]
    fn assigning_fills_only_what_is_missing_and_calls_once() {
        for (body, guid, ts) in [
            (
                without("GSW_MESSAGE_GUID"),
                "11111111-2222-4333-8444-555555555555",
                "1619136000.250",
            ),
            (
                without("GSW_TIMESTAMP"),
                "2d4f6a8c-0e1b-4c3d-9f5e-7a9b1c3d5e7f",
                "1700000000.000",
            ),
            (
                with("GSW_MESSAGE_GUID", Value::Null),
                "11111111-2222-4333-8444-555555555555",
                "1619136000.250",
            ),
        ] {
            let calls = Cell::new(0);
            let event = ContactProcessed::from_json_assigning(&body, || {
                calls.set(calls.get() + 1);
                stamp()
            })
            .unwrap();
            assert_eq!(calls.get(), 1);
            assert_eq!(event.message_guid.as_str(), guid);
            assert_eq!(event.timestamp.to_string(), ts);
        }
        let mut map = minimal();
        map.remove("GSW_MESSAGE_GUID");
        map.remove("GSW_TIMESTAMP");
        let event =
            ContactProcessed::from_json_assigning(&serde_json::to_vec(&map).unwrap(), stamp)
                .unwrap();
        assert_eq!((event.message_guid, event.timestamp), stamp());
    }

    #[test]
    fn assigning_never_calls_when_present_or_when_invalid() {
        let never = || -> (Guid, Timestamp) { panic!("assign must not be called") };
        let event = ContactProcessed::from_json_assigning(MINIMAL.as_bytes(), never).unwrap();
        assert_eq!(
            event,
            ContactProcessed::from_json(MINIMAL.as_bytes()).unwrap()
        );

        let mut map = minimal();
        map.remove("GSW_MESSAGE_GUID");
        map.remove("GSW_PHONE");
        let body = serde_json::to_vec(&map).unwrap();
        assert_eq!(problems_assigning(&body, never), ["GSW_PHONE: missing"]);
    }

    #[test]
    fn assigning_still_rejects_a_malformed_guid_or_timestamp() {
        let found = problems_assigning(&with("GSW_MESSAGE_GUID", json!("nope")), stamp);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("GSW_MESSAGE_GUID: malformed GUID"));
        let found = problems_assigning(&with("GSW_TIMESTAMP", json!(5)), stamp);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("GSW_TIMESTAMP: expected a timestamp string"));
    }

    fn problems_assigning(body: &[u8], assign: impl FnOnce() -> (Guid, Timestamp)) -> Vec<String> {
        match ContactProcessed::from_json_assigning(body, assign) {
            Err(Invalid::Fields(problems)) => problems.iter().map(ToString::to_string).collect(),
            other => panic!("expected field problems, got {other:?}"),
        }
    }

    #[test]
    fn strict_mode_still_requires_guid_and_timestamp() {
        assert_eq!(
            problems(&without("GSW_MESSAGE_GUID")),
            ["GSW_MESSAGE_GUID: missing"]
        );
        assert_eq!(
            problems(&without("GSW_TIMESTAMP")),
            ["GSW_TIMESTAMP: missing"]
        );
    }

    #[test]
    fn serde_deserialize_applies_the_same_checks() {
        let event: ContactProcessed = serde_json::from_str(MINIMAL).unwrap();
        assert_eq!(
            event,
            ContactProcessed::from_json(MINIMAL.as_bytes()).unwrap()
        );
        let err = serde_json::from_slice::<ContactProcessed>(&without("GSW_PHONE")).unwrap_err();
        assert!(err.to_string().contains("GSW_PHONE: missing"), "{err}");
    }
}
