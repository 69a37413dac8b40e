//! A fake customer web server: the receiving end of a delivery, for
//! onboarding a target, for the README demo (`cpn-mock-crm`), and as
//! the programmable HTTP receiver the relay's integration tests run
//! in-process.
//!
//! It answers every method and path, records each request, checks it against
//! the spec's HTTP framing, and answers per a [`Behavior`]: a fixed status,
//! latency, a failure rate, a status script, per-message failures, content
//! rules, `Retry-After`, redirects, or a closure. It is not a CRM: it keeps
//! nothing beyond the requests it was sent and does not de-duplicate.
//!
//! - [`behavior`]: the knobs and their validation.
//! - [`decide`]: the pure core, behavior + request + state → [`Reply`].
//! - [`framing`]: how a request departs from the spec's HTTP framing.
//! - [`server`]: the axum edge and the [`MockCrm`] handle.
//! - `cli`: [`MockCrmArgs`] and [`run_cli`] for the `cpn-mock-crm` binary.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use cpn_mock_crm::{Behavior, MockCrm};
//!
//! let listener = MockCrm::bind("127.0.0.1:0".parse().expect("literal address"))?;
//! let mut crm = MockCrm::start(listener, Behavior::default().with_fail_first(2, 503)).await?;
//! // ... point the relay at crm.url() ...
//! let first = crm.next(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

pub mod behavior;
mod cli;
pub mod decide;
pub mod framing;
pub mod server;
#[cfg(test)]
mod tests;

pub use behavior::{
    Behavior, BehaviorError, Custom, CustomFn, FailFirst, Latency, RetryAfter, Rule,
};
pub use cli::{MockCrmArgs, run_cli};
pub use decide::{Cause, Reply, RequestView};
pub use framing::FramingProblem;
pub use server::{MockCrm, MockCrmOptions, Received};
