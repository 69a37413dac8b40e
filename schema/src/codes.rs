//! Display names of the integer codes, for people only (logs, DLQ listings).
//!
//! Taken from `spec/enumerations.md`. The lists are open: a code missing here
//! is still valid and is carried unchanged. Nothing in cpn may branch on these
//! names, reject a code because it has none, or rewrite one; that is why the
//! event keeps the codes as plain `i64` and this module only *describes* them.
//!
//! `*_name` gives the known name or `None`; `*_display` always gives something
//! printable: the name, or `unknown(<n>)`. `GSW_REASON` numbers are not public,
//! so [`reason_display`] always prints `reason(<n>)`.

/// `GSW_CALL_RESULT` (`GctiCallState`), indexed by code, 0..=53.
const CALL_RESULTS: [&str; 54] = [
    "Ok",
    "Transferred",
    "Conferenced",
    "General Error",
    "System Error",
    "Remote Release",
    "Busy",
    "No Answer",
    "SIT Detected",
    "Answering Machine Detected",
    "All Trunks Busy",
    "SIT Invalid Num",
    "SIT VC (Vacant Code)",
    "SIT IC (Intercept)",
    "SIT Unknown Call State",
    "SIT NC (No Circuit)",
    "SIT RO (Reorder)",
    "Fax Detected",
    "Queue Full",
    "Cleared",
    "Overflowed",
    "Abandoned",
    "Redirected",
    "Forwarded",
    "Consult",
    "Picked Up",
    "Dropped",
    "Dropped on No Answer",
    "Unknown Call Result",
    "Covered",
    "Converse-On",
    "Bridged",
    "Silence",
    "Answer",
    "NU Tone",
    "No Dial Tone",
    "No Progress",
    "No Ring Back Tone",
    "No Established Detected",
    "Pager Detected",
    "Wrong Party",
    "Dial Error",
    "Call Drop Error",
    "Switch Error",
    "No Port Available",
    "Transfer Error",
    "Stale",
    "Agent Callback Error",
    "Group Callback Error",
    "Deafened",
    "Held",
    "Do Not Call",
    "Cancel Record",
    "Wrong Number",
];

/// `GSW_RECORD_TYPE` (`GctiRecordType`), 0..=7.
const RECORD_TYPES: [&str; 8] = [
    "No Record Type",
    "Unknown",
    "General",
    "Campaign Rescheduled",
    "Personal Rescheduled",
    "Personal Callback",
    "Campaign Callback",
    "No Call",
];

/// `GSW_RECORD_STATUS` (`GctiRecordStatus`), 0..=9.
const RECORD_STATUSES: [&str; 10] = [
    "No Record Status",
    "Ready",
    "Retrieved",
    "Updated",
    "Stale",
    "Cancelled",
    "Agent Error",
    "Chain Updated",
    "Missed Callback",
    "Chain Ready",
];

/// `GSW_PHONE_TYPE` (`GctiContactType`), 0..=11; sites may define more.
const PHONE_TYPES: [&str; 12] = [
    "No Contact Type",
    "Home Phone",
    "Direct Business Phone",
    "Business With Ext",
    "Mobile",
    "Vacation Phone",
    "Pager",
    "Modem",
    "Voice Mail",
    "Pin Pager",
    "E-mail Address",
    "Instant Messaging",
];

/// `GSW_DIAL_MODE` (`CfgDialMode` by declaration order; well-founded, not
/// confirmed by a Genesys document), 0..=11.
const DIAL_MODES: [&str; 12] = [
    "No Dial Mode",
    "Predictive",
    "Progressive",
    "Preview",
    "Progressive with seizing",
    "Predictive with seizing",
    "Power",
    "Power with seizing",
    "Push Preview",
    "Progressive GVP",
    "Predictive GVP",
    "Power GVP",
];

/// `GSW_OPTIMIZE_BY` (`CfgOptimizationMethod`), 0..=3 only: the numbers of
/// Average Distribution Time and Maximum Gain are not public, so they stay
/// `unknown(<n>)` rather than guessed.
const OPTIMIZE_BY: [&str; 4] = [
    "No Optimization Method",
    "Busy Factor",
    "Overdial Rate",
    "Average Waiting Time",
];

/// The entry of `table` at `code`, if `code` is a valid index.
fn lookup(table: &'static [&'static str], code: i64) -> Option<&'static str> {
    usize::try_from(code)
        .ok()
        .and_then(|i| table.get(i))
        .copied()
}

/// The name, or `unknown(<code>)`.
fn display(name: Option<&'static str>, code: i64) -> String {
    name.map_or_else(|| format!("unknown({code})"), str::to_owned)
}

/// The name of a `GSW_CALL_RESULT` code (e.g. 33 → `Answer`), if known.
#[must_use]
pub fn call_result_name(code: i64) -> Option<&'static str> {
    lookup(&CALL_RESULTS, code)
}

/// A `GSW_CALL_RESULT` for people: `Answer`, or `unknown(54)`.
#[must_use]
pub fn call_result_display(code: i64) -> String {
    display(call_result_name(code), code)
}

/// The name of a `GSW_RECORD_TYPE` code (e.g. 2 → `General`), if known.
#[must_use]
pub fn record_type_name(code: i64) -> Option<&'static str> {
    lookup(&RECORD_TYPES, code)
}

/// A `GSW_RECORD_TYPE` for people: the name, or `unknown(<n>)`.
#[must_use]
pub fn record_type_display(code: i64) -> String {
    display(record_type_name(code), code)
}

/// The name of a `GSW_RECORD_STATUS` code (e.g. 3 → `Updated`), if known.
#[must_use]
pub fn record_status_name(code: i64) -> Option<&'static str> {
    lookup(&RECORD_STATUSES, code)
}

/// A `GSW_RECORD_STATUS` for people: the name, or `unknown(<n>)`.
#[must_use]
pub fn record_status_display(code: i64) -> String {
    display(record_status_name(code), code)
}

/// The name of a `GSW_PHONE_TYPE` code (e.g. 4 → `Mobile`), if known.
#[must_use]
pub fn phone_type_name(code: i64) -> Option<&'static str> {
    lookup(&PHONE_TYPES, code)
}

/// A `GSW_PHONE_TYPE` for people: the name, or `unknown(<n>)`.
#[must_use]
pub fn phone_type_display(code: i64) -> String {
    display(phone_type_name(code), code)
}

/// The name of a `GSW_DIAL_MODE` code (e.g. 1 → `Predictive`), if known.
#[must_use]
pub fn dial_mode_name(code: i64) -> Option<&'static str> {
    lookup(&DIAL_MODES, code)
}

/// A `GSW_DIAL_MODE` for people: the name, or `unknown(<n>)`.
#[must_use]
pub fn dial_mode_display(code: i64) -> String {
    display(dial_mode_name(code), code)
}

/// The name of a `GSW_OPTIMIZE_BY` code (e.g. 1 → `Busy Factor`), if known.
#[must_use]
pub fn optimize_by_name(code: i64) -> Option<&'static str> {
    lookup(&OPTIMIZE_BY, code)
}

/// A `GSW_OPTIMIZE_BY` for people: the name, or `unknown(<n>)`.
#[must_use]
pub fn optimize_by_display(code: i64) -> String {
    display(optimize_by_name(code), code)
}

/// A `GSW_REASON` for people: always `reason(<n>)`, because the `GOCause…`
/// numbers are not public and no name is guessed.
#[must_use]
pub fn reason_display(code: i64) -> String {
    format!("reason({code})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_results_that_are_easy_to_confuse_have_the_right_numbers() {
        for (code, name) in [
            (0, "Ok"),
            (6, "Busy"),
            (7, "No Answer"),
            (9, "Answering Machine Detected"),
            (21, "Abandoned"),
            (26, "Dropped"),
            (27, "Dropped on No Answer"),
            (28, "Unknown Call Result"),
            (33, "Answer"),
            (53, "Wrong Number"),
        ] {
            assert_eq!(call_result_name(code), Some(name), "code {code}");
        }
    }

    #[test]
    fn every_table_ends_where_the_spec_ends() {
        for (name_of, last_known) in [
            (call_result_name as fn(i64) -> Option<&'static str>, 53),
            (record_type_name, 7),
            (record_status_name, 9),
            (phone_type_name, 11),
            (dial_mode_name, 11),
            (optimize_by_name, 3),
        ] {
            assert!(name_of(last_known).is_some());
            assert_eq!(name_of(last_known + 1), None);
            assert_eq!(name_of(-1), None);
            assert_eq!(name_of(i64::MIN), None);
            assert_eq!(name_of(i64::MAX), None);
        }
    }

    #[test]
    fn spot_checks_match_enumerations_md() {
        assert_eq!(record_type_name(2), Some("General"));
        assert_eq!(record_type_name(7), Some("No Call"));
        assert_eq!(record_status_name(1), Some("Ready"));
        assert_eq!(record_status_name(3), Some("Updated"));
        assert_eq!(record_status_name(9), Some("Chain Ready"));
        assert_eq!(phone_type_name(1), Some("Home Phone"));
        assert_eq!(phone_type_name(10), Some("E-mail Address"));
        assert_eq!(dial_mode_name(6), Some("Power"));
        assert_eq!(dial_mode_name(11), Some("Power GVP"));
        assert_eq!(optimize_by_name(3), Some("Average Waiting Time"));
    }

    #[test]
    fn display_names_known_codes_and_marks_unknown_ones() {
        assert_eq!(call_result_display(33), "Answer");
        assert_eq!(call_result_display(54), "unknown(54)");
        assert_eq!(call_result_display(-3), "unknown(-3)");
        assert_eq!(record_type_display(99), "unknown(99)");
        assert_eq!(record_status_display(2), "Retrieved");
        assert_eq!(phone_type_display(4), "Mobile");
        assert_eq!(dial_mode_display(3), "Preview");
        assert_eq!(optimize_by_display(4), "unknown(4)");
    }

    #[test]
    fn reasons_are_never_named() {
        assert_eq!(reason_display(0), "reason(0)");
        assert_eq!(reason_display(17), "reason(17)");
        assert_eq!(reason_display(-1), "reason(-1)");
    }
}
