//! What the relay tells its operators: Prometheus metrics (`metrics`),
//! the `/metrics`, `/healthz` and `/readyz` server (`server`), and the
//! liveness assessment behind `/readyz` and `cpn_relay_stalled`
//! (`health`); the `[observability]` and `[health]` sections
//! ([`settings`]). Nothing here decides what happens to a record.

pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod server;
pub mod settings;
