//! `[observability]` and `[health]`: where metrics and health are served,
//! how logs look, what this relay is called, and when it calls itself
//! stalled. Defaults in `Default`, checks beside them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::millis;
use crate::config::problem::{ConfigProblem, Problems};

/// `[observability]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`; empty or `off` disables.
    pub metrics_listen: String,
    /// Logs as JSON lines instead of text.
    pub json_logs: bool,
    /// Name of this relay instance in dead letters and logs; default host name and pid.
    pub relay_id: Option<String>,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig {
            metrics_listen: "127.0.0.1:9464".into(),
            json_logs: false,
            relay_id: None,
        }
    }
}

impl ObservabilityConfig {
    /// Every problem of `[observability]`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        let m = self.metrics_listen.trim();
        if !(m.is_empty() || m == "off") && m.parse::<std::net::SocketAddr>().is_err() {
            p.add(
                "observability.metrics_listen",
                format!("{m:?} is not an address like 127.0.0.1:9464 (or off)"),
            );
        }
        p.into_vec()
    }

    /// The relay instance id: configured, or `<hostname>-<pid>`.
    pub fn relay_id(&self) -> String {
        self.relay_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "cpn-relay".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// `[health]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// A relay holding unfinished records with no request in flight and no
    /// known wait (backoff, circuit probe, budget) for this long is stalled:
    /// `/readyz` answers 503 with the reason and `cpn_relay_stalled` is 1.
    #[serde(rename = "stall_timeout_ms", with = "millis")]
    pub stall_timeout: Duration,
    /// Exit non-zero (3) when stalled, so an orchestrator restarts the relay;
    /// nothing is lost, unfinished offsets were never committed.
    pub exit_on_stall: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            stall_timeout: Duration::from_secs(60),
            exit_on_stall: true,
        }
    }
}

impl HealthConfig {
    /// Every problem of `[health]`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&self.stall_timeout) {
            p.add(
                "health.stall_timeout_ms",
                "must be from 1000 (1 s) to 86400000 (a day)",
            );
        }
        p.into_vec()
    }
}
