//! The spec fields of `ContactProcessed`, each declared once.
//!
//! `spec/contact-processed.md` lists the body fields; [`spec_fields!`] holds
//! the same list as one table, in spec order, one row per field. Every
//! per-field view is expanded from that table, so none of them lists the
//! fields again:
//!
//! - `event`: the [`ContactProcessed`](crate::ContactProcessed) struct (field,
//!   type, `///` doc, serde name, `None` omitted on output), and with it the
//!   canonical JSON (`to_json_vec`) and the JSON Schema (`json_schema`, derived
//!   from the struct, descriptions from the docs);
//! - `event`: [`SPEC_FIELDS`](crate::SPEC_FIELDS), the JSON names in spec order;
//! - `validate`: the draft that collects one slot per field while reading, the
//!   key-to-slot dispatch, and the final check (`missing` for a mandatory field,
//!   absent for an optional one).
//!
//! It is not a table of everything: `GSW_MESSAGE` has no row, because it is
//! the serde tag (always `"ContactProcessed"`) rather than a struct field;
//! `event` and `validate` name it themselves. User-defined fields are any other
//! key and have no row either.
//!
//! # A row
//!
//! ```text
//! /// Set for chains created by a LIFO campaign group (CX Contact).
//! optional  "GSW_CHAIN_LIFO_GUID" => chain_lifo_guid: Guid,
//! ```
//!
//! - the `///` lines: the field's rustdoc *and* its JSON Schema
//!   `description` (line breaks are kept as written);
//! - `mandatory` or `optional`: a mandatory field is `T` in the struct, listed
//!   in the schema's `required`, and reported `missing` when absent or `null`;
//!   an optional one is `Option<T>`, omitted from the JSON when `None`, and read
//!   as absent when `null`;
//! - the exact JSON name (the spec's spelling);
//! - the Rust field name and the value type: `String`, `i64`, `Guid`,
//!   `Timestamp` or `MediaType` (validation of a new value type is its
//!   `FieldType` impl in `validate`).
//!
//! # Adding a field
//!
//! Add one row at the field's place in spec order (that order is the output
//! order and the order problems are reported in), e.g.
//!
//! ```text
//! /// Attempt completed and removed from active processing.
//! optional  "GSW_COMPLETE_PROCESSING" => complete_processing: Timestamp,
//! /// When the record was last exported (hypothetical).
//! optional  "GSW_EXPORTED" => exported: Timestamp,
//! ```
//!
//! That is the only code edit. What then fails, on purpose, is the contract
//! around it: code that builds a `ContactProcessed` with a struct literal
//! (test fixtures, the producer's generator) must say the new field's value;
//! the checked-in schema must be regenerated
//! (`CPN_BLESS=1 cargo test -p cpn-schema`) and reviewed; and for a mandatory
//! field, the pinned lists of mandatory names in the tests and the example
//! files in `schema/examples/valid` must gain it.

/// The table of spec fields: calls `$view! { rows }` with every row.
///
/// A view is a `macro_rules!` macro that matches the rows, e.g.
/// `$( $(#[doc = $doc:literal])* $presence:ident $json:literal => $field:ident: $ty:ty, )*`.
/// Types are named unqualified: the invoking module imports them.
macro_rules! spec_fields {
    ($view:ident) => {
        $view! {
            /// Unique id of this notification; also the `ETag` of the delivery; stable
            /// across re-sends.
            mandatory "GSW_MESSAGE_GUID" => message_guid: Guid,
            /// UTC time the notification was generated; stable across re-sends.
            mandatory "GSW_TIMESTAMP" => timestamp: Timestamp,
            /// Unique id of the call-processing attempt.
            mandatory "GSW_CALL_ATTEMPT_GUID" => call_attempt_guid: Guid,
            /// Contact info (phone number or address) of the primary record.
            mandatory "GSW_PHONE" => phone: String,
            /// Contact info type of the primary record; known codes in spec/enumerations.md.
            mandatory "GSW_PHONE_TYPE" => phone_type: i64,
            /// Chain id of the primary record.
            mandatory "GSW_CHAIN_ID" => chain_id: i64,
            /// Chain number (position) of the primary record.
            mandatory "GSW_CHAIN_N" => chain_n: i64,
            /// Record handle of the primary record (troubleshooting).
            mandatory "GSW_RECORD_HANDLE" => record_handle: i64,
            /// Cause code of the chain-processed event (numbers not public).
            mandatory "GSW_REASON" => reason: i64,
            /// Set for chains created by a LIFO campaign group (CX Contact).
            optional  "GSW_CHAIN_LIFO_GUID" => chain_lifo_guid: Guid,
            /// The calling list's client id field, when the list defines it.
            optional  "GSW_CUSTOMER_ID" => customer_id: String,
            /// Call result of the primary record; known codes in spec/enumerations.md.
            mandatory "GSW_CALL_RESULT" => call_result: i64,
            /// Disposition code from the agent desktop or a validation server.
            optional  "GSW_DISPOSITION_CODE" => disposition_code: String,
            /// Campaign name (not the campaign group).
            mandatory "GSW_CAMPAIGN_NAME" => campaign_name: String,
            /// Campaign template name (CX Contact only).
            optional  "GSW_CAMPAIGN_TEMPLATE_NAME" => campaign_template_name: String,
            /// Media type of the contact.
            mandatory "GSW_CONTACT_MEDIA_TYPE" => media_type: MediaType,
            /// Calling list name; with the chain id, the Kafka record key.
            mandatory "GSW_CALLING_LIST" => calling_list: String,
            /// Campaign group name.
            mandatory "GSW_CAMPAIGN_GROUP_NAME" => campaign_group_name: String,
            /// Campaign group (session) GUID.
            mandatory "GSW_CAMPAIGN_GROUP_GUID" => campaign_group_guid: Guid,
            /// Agent or place group name.
            mandatory "GSW_GROUP_NAME" => group_name: String,
            /// Voice transfer destination DN name.
            mandatory "GSW_QUEUE_NAME" => queue_name: String,
            /// Current dialing mode of the campaign group; known codes in spec/enumerations.md.
            mandatory "GSW_DIAL_MODE" => dial_mode: i64,
            /// Agent id; successful calls only.
            optional  "GSW_AGENT_ID" => agent_id: String,
            /// Record type after processing; known codes in spec/enumerations.md.
            mandatory "GSW_RECORD_TYPE" => record_type: i64,
            /// Record status; known codes in spec/enumerations.md.
            mandatory "GSW_RECORD_STATUS" => record_status: i64,
            /// Optimisation method; predictive modes only; known codes in spec/enumerations.md.
            optional  "GSW_OPTIMIZE_BY" => optimize_by: i64,
            /// Optimisation goal; predictive modes only.
            optional  "GSW_OPTIMIZE_GOAL" => optimize_goal: i64,
            /// When processing of this attempt started.
            mandatory "GSW_START_PROCESSING" => start_processing: Timestamp,
            /// When the dial request was sent; absent when nothing was dialled.
            optional  "GSW_CALL_TIME" => call_time: Timestamp,
            /// When the record is rescheduled to.
            optional  "GSW_SCHEDULED_TIME" => scheduled_time: Timestamp,
            /// Dialing started.
            optional  "GSW_DIALING" => dialing: Timestamp,
            /// Client (customer) ringing.
            optional  "GSW_RINGING" => ringing: Timestamp,
            /// Failed call released.
            optional  "GSW_RELEASED" => released: Timestamp,
            /// Client picked up.
            optional  "GSW_ANSWERED" => answered: Timestamp,
            /// Call progress detection finished.
            optional  "GSW_CPD_COMPLETED" => cpd_completed: Timestamp,
            /// Call queued.
            optional  "GSW_QUEUED" => queued: Timestamp,
            /// Agent ringing.
            optional  "GSW_AGENT_RINGING" => agent_ringing: Timestamp,
            /// Agent established.
            optional  "GSW_AGENT_ANSWERED" => agent_answered: Timestamp,
            /// Answering machine call diverted.
            optional  "GSW_DIVERTED" => diverted: Timestamp,
            /// Call abandoned.
            optional  "GSW_ABANDONED" => abandoned: Timestamp,
            /// Agent released the call.
            optional  "GSW_AGENT_RELEASED" => agent_released: Timestamp,
            /// After-call work completed.
            optional  "GSW_ACW_COMPLETED" => acw_completed: Timestamp,
            /// Attempt completed and removed from active processing.
            optional  "GSW_COMPLETE_PROCESSING" => complete_processing: Timestamp,
        }
    };
}

pub(crate) use spec_fields;
