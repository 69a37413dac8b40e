//! `Problem`: one thing wrong with one input event, naming the field.
//!
//! The CLI prints problems as `line N: FIELD: problem`; HTTP ingest returns
//! them as a JSON list in a 400 body. Both come from here so the two entry
//! points word the same mistake the same way. Pure: no I/O.

use cpn_schema::{Invalid, ROOT_FIELD};
use serde::Serialize;

/// Pseudo-field named when an NDJSON line is longer than allowed, in the
/// schema's style for "not a field" ([`ROOT_FIELD`] is the body as a whole).
pub const LINE_FIELD: &str = "(line)";

/// One problem with one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The JSON field at fault (`GSW_PHONE`), or a pseudo-field in capitals
    /// when the event as a whole is at fault ([`ROOT_FIELD`]).
    pub field: String,
    /// What is wrong with it, lower case.
    pub problem: String,
}

impl Problem {
    /// A problem with `field`.
    #[must_use]
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Every problem a validation failure reports, in the schema's order.
///
/// A syntax error becomes one [`ROOT_FIELD`] problem carrying its position,
/// worded as the schema words it (`not JSON: ... at line L column C`).
#[must_use]
pub fn problems_of(invalid: &Invalid) -> Vec<Problem> {
    match invalid {
        Invalid::Syntax { .. } => vec![Problem::new(ROOT_FIELD, invalid.to_string())],
        Invalid::Fields(list) => list
            .iter()
            .map(|p| Problem::new(p.field.to_string(), p.problem.to_string()))
            .collect(),
    }
}
