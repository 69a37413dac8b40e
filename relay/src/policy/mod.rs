//! Pure decisions, no I/O: no tokio, rdkafka, reqwest or hyper here (a
//! test in `relay/tests/layout.rs` fails when a module under `policy/`
//! imports them).
//!
//! - [`classify`]: an attempt's outcome → a verdict (delivered, retry,
//!   permanent with a dead-letter reason).
//! - [`retry`]: the per-record retry budget and backoff.
//! - [`circuit`]: an outage for everybody vs a bad record; the rejection
//!   guard for a target that refuses the relay itself.
//! - [`watermark`]: the highest offset below which every record is finished.
//! - [`route`]: which records this relay takes (`[filter]`).

pub mod circuit;
pub mod classify;
pub mod retry;
pub mod route;
pub(crate) mod watermark;
