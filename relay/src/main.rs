//! `cpn-relay`: parse arguments, set up logging, load the config, call the
//! library.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use cpn_relay::config::{Overrides, RelayConfig};

/// mimalloc rather than glibc malloc for the binary, as the producer: every
/// record allocates its key, value, headers, request and response across
/// runtime threads, and glibc's malloc/free was a quarter of the relay's CPU
/// in a `perf` profile (figures in BENCHMARKS.md). The library leaves the
/// choice of allocator to its users.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Relay ContactProcessed events from Kafka to a customer's web server, at least once.
#[derive(Debug, Parser)]
#[command(name = "cpn-relay", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join the consumer group and deliver every record to the target (or the dead-letter topic).
    Run(RunArgs),
    /// Validate a configuration (file + env + flags) and print it with secrets redacted.
    CheckConfig(RunArgs),
    /// Inspect, filter, export and replay a dead-letter topic.
    Dlq(cpn_relay::dlq::tools::cli::DlqArgs),
    /// Moved: the mock CRM is its own binary now, `cpn-mock-crm`.
    #[command(hide = true)]
    MockCrm {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Settings. Every config key can also be set by env as CPN_<SECTION>_<KEY>
/// (e.g. CPN_RETRY_MAX_ATTEMPTS=5); flags win over env, env over the file.
#[derive(Debug, Args)]
struct RunArgs {
    /// TOML config file (see relay/relay.example.toml).
    #[arg(long, short = 'c', env = "CPN_RELAY_CONFIG")]
    config: Option<String>,
    /// Kafka bootstrap servers [config: kafka.brokers, env CPN_KAFKA_BROKERS].
    #[arg(long, short = 'b')]
    brokers: Option<String>,
    /// Topic of ContactProcessed events [kafka.topic, CPN_KAFKA_TOPIC].
    #[arg(long)]
    topic: Option<String>,
    /// Consumer group, one per target [kafka.group, CPN_KAFKA_GROUP].
    #[arg(long)]
    group: Option<String>,
    /// Static membership: this replica's group.instance.id, unique and stable per replica (on Kubernetes, the StatefulSet pod name) [kafka.instance_id, CPN_KAFKA_INSTANCE_ID].
    #[arg(long)]
    instance_id: Option<String>,
    /// Consumer group protocol: classic or consumer (KIP-848) [kafka.group_protocol, CPN_KAFKA_GROUP_PROTOCOL].
    #[arg(long)]
    group_protocol: Option<String>,
    /// URL to POST each event to [target.url, CPN_TARGET_URL].
    #[arg(long)]
    target_url: Option<String>,
    /// Dead-letter topic, default <topic>.dlq [kafka.dlq_topic, CPN_KAFKA_DLQ_TOPIC].
    #[arg(long)]
    dlq_topic: Option<String>,
    /// Extra header sent with every request, 'Name: value' (repeatable) [target.headers].
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Address of /metrics, /healthz, /readyz, or 'off' [observability.metrics_listen, CPN_OBSERVABILITY_METRICS_LISTEN].
    #[arg(long)]
    metrics_listen: Option<String>,
    /// librdkafka setting passed through, e.g. -X security.protocol=SASL_SSL (repeatable) [kafka.properties].
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    kafka_properties: Vec<String>,
    /// Log JSON lines instead of text [observability.json_logs, CPN_OBSERVABILITY_JSON_LOGS].
    #[arg(long)]
    json_logs: bool,
}

impl RunArgs {
    fn load(&self) -> anyhow::Result<RelayConfig> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("CPN_"))
            .collect();
        let flags = Overrides {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            group: self.group.clone(),
            instance_id: self.instance_id.clone(),
            group_protocol: self.group_protocol.clone(),
            target_url: self.target_url.clone(),
            dlq_topic: self.dlq_topic.clone(),
            headers: self.headers.clone(),
            metrics_listen: self.metrics_listen.clone(),
            kafka_properties: self.kafka_properties.clone(),
            json_logs: self.json_logs,
        };
        Ok(RelayConfig::load(self.config.as_deref(), &env, &flags)?)
    }
}

fn init_logging(json: bool) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Colours in text logs only on a terminal, and not with `NO_COLOR`: a log
/// collector (`kubectl logs`, journald, a file) would keep the escape codes.
fn colours() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The log filter: `RUST_LOG` (default `info,rdkafka=warn`), with the
/// platform certificate verifier silenced unless `RUST_LOG` names it: it
/// logs an ERROR for every refused certificate, once per attempt, where
/// cpn logs one WARN with the reason (`target::client`).
fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_new(log_spec(rust_log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_spec(None)))
}

/// The directives of [`log_filter`].
fn log_spec(rust_log: Option<&str>) -> String {
    let spec = rust_log
        .filter(|s| !s.trim().is_empty())
        .unwrap_or("info,rdkafka=warn");
    if spec.contains("rustls_platform_verifier") {
        spec.to_owned()
    } else {
        format!("{spec},rustls_platform_verifier=off")
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            let config = args.load().context("loading relay config")?;
            init_logging(config.observability.json_logs);
            for w in config.warnings() {
                tracing::warn!("config: {w}");
            }
            match cpn_relay::run(config, cpn_relay::shutdown::graceful()).await {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    let code = e.exit_code();
                    eprintln!("error: relay: {:#}", anyhow::Error::from(e));
                    Ok(ExitCode::from(code))
                }
            }
        }
        Command::CheckConfig(args) => match args.load() {
            Ok(config) => {
                // What run would refuse at start, found without the network.
                let mut offline = cpn_relay::target::client::offline_problems(&config.target);
                offline.extend(cpn_relay::kafka::preflight::offline_problems(&config));
                if !offline.is_empty() {
                    eprintln!("invalid configuration:");
                    for p in offline {
                        eprintln!("  {p}");
                    }
                    return Ok(ExitCode::from(1));
                }
                for w in config.warnings() {
                    eprintln!("warning: {w}");
                }
                // `check-config | head` closes the pipe early: not an error,
                // and never a panic (println! would panic).
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "# configuration is valid (secrets redacted)\n{}",
                    config.to_redacted_toml()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e:#}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Dlq(args) => cpn_relay::dlq::tools::cli::run_cli(args).await,
        Command::MockCrm { .. } => {
            eprintln!(
                "error: `cpn-relay mock-crm` moved to its own binary, `cpn-mock-crm` (the crate \
                 tests/mock-crm): run `cargo run -p cpn-mock-crm -- --help`, or `cpn-mock-crm \
                 --help` where it is installed; its options are unchanged"
            );
            Ok(ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_verifier_is_silenced_unless_rust_log_names_it() {
        assert_eq!(
            log_spec(None),
            "info,rdkafka=warn,rustls_platform_verifier=off"
        );
        assert_eq!(
            log_spec(Some(" ")),
            "info,rdkafka=warn,rustls_platform_verifier=off"
        );
        assert_eq!(
            log_spec(Some("debug")),
            "debug,rustls_platform_verifier=off"
        );
        assert_eq!(
            log_spec(Some("info,rustls_platform_verifier=debug")),
            "info,rustls_platform_verifier=debug"
        );
        // An invalid RUST_LOG falls back to the default rather than failing.
        let _ = log_filter(Some("=[bad"));
    }
}
