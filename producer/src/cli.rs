//! The `cpn-producer` command line: clap definitions and the glue from
//! arguments to the library. Everything that decides anything lives in the
//! library (`bulk`, `ingest`, `config`); this file parses, wires signals and
//! the terminal, and picks the exit status.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use cpn_producer::bulk::{self, Identity, Progress, Reporter, Summary};
use cpn_producer::generate::{Generator, SEEDED_START};
use cpn_producer::ingest::auth::{AuthSettings, split_keys};
use cpn_producer::ingest::tls::{MinTlsVersion, TlsSettings};
use cpn_producer::ingest::{self, ServeConfig, ServeError};
use cpn_producer::ndjson::DEFAULT_MAX_LINE_BYTES;
use cpn_producer::pace::Pace;
use cpn_producer::{Compression, KafkaOverride, Publisher, PublisherConfig};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;

/// Exit status when stopped by Ctrl-C / SIGTERM before the input ended
/// (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

const IDENTITY_NOTE: &str = "Events without GSW_MESSAGE_GUID get a random UUID v4 \
(lower-case, hyphenated); events without GSW_TIMESTAMP get the current UTC time. Both are \
assigned once, before the event is serialized, so every re-send carries the same identity. \
A GUID or timestamp that is present but malformed is rejected.";

/// Publish Genesys OCS ContactProcessed events to Kafka durably.
///
/// Every option can also be set through the environment variable shown with
/// it. Exit status: 0 when everything was valid (and acknowledged by Kafka),
/// 1 otherwise, 2 for usage errors, 130 when interrupted.
#[derive(Debug, Parser)]
#[command(
    name = "cpn-producer",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log output format (logs go to stderr; level via RUST_LOG, default info).
    #[arg(long, global = true, env = "CPN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check NDJSON events against the ContactProcessed schema.
    ///
    /// Reads one event per line (blank lines are skipped) and prints one line
    /// per problem, `line N: FIELD: problem`, to stdout. Exits 0 when every
    /// line is valid, 1 otherwise.
    Validate(ValidateArgs),
    /// Validate NDJSON events and publish the valid ones to Kafka.
    ///
    /// Invalid lines are reported on stderr as `line N: FIELD: problem` and
    /// not published; so are events Kafka did not acknowledge. A progress bar
    /// is shown when stderr is a terminal, then a summary: published,
    /// rejected, failed, events/s. Exits 0 only when every line was valid
    /// and acknowledged by Kafka (acks=all).
    ///
    /// Ctrl-C (or SIGTERM) stops reading input and waits for the events
    /// already handed to Kafka; the summary then counts exactly what Kafka
    /// acknowledged. A second Ctrl-C stops waiting and reports the rest as
    /// abandoned (not confirmed). Exit status 130 when interrupted.
    #[command(after_help = IDENTITY_NOTE)]
    Publish(PublishArgs),
    /// Generate realistic, valid events: to stdout as NDJSON, or to Kafka.
    ///
    /// Events cover all media types, optional fields present and absent,
    /// user-defined fields and non-ASCII text. With --seed the output is
    /// reproducible (timestamps start at 2025-01-01T00:00:00Z); without it a
    /// random seed is used and timestamps start now. With --brokers and
    /// --topic the events go straight to Kafka and a summary (events/s, MB/s)
    /// is printed on stderr.
    Generate(GenerateArgs),
    /// Serve the HTTP ingest endpoint (a drop-in target for OCS).
    ///
    /// POST /v1/contact-processed takes one event as OCS posts it; POST
    /// /v1/contact-processed/batch takes NDJSON. A 2xx is sent only after
    /// Kafka acknowledged every event of the request; 400 lists each field
    /// problem; 408 when the body does not arrive within
    /// --body-read-timeout-ms; 413 above --max-body-bytes; 415 for a non-JSON
    /// Content-Type; 431 for a request head above --max-header-bytes; 503
    /// with Retry-After when Kafka does not acknowledge within
    /// --ack-timeout-ms. Also GET /healthz, /readyz, /metrics. SIGTERM or
    /// Ctrl-C: stop accepting, finish requests in flight, flush, exit.
    ///
    /// Facing a network: --tls-cert/--tls-key serve HTTPS (TLS 1.2 floor,
    /// files re-read when they change); --auth-keys-file or CPN_AUTH_KEYS
    /// require a key in --auth-header (401 without it); --tls-client-ca
    /// requires a client certificate. With neither a key nor client
    /// certificates only a loopback --listen is served, unless
    /// --allow-unauthenticated. /healthz and /readyz never ask for a key.
    #[command(after_help = IDENTITY_NOTE)]
    Serve(Box<ServeArgs>),
}

/// Arguments of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// NDJSON file to read; `-` or nothing for stdin.
    #[arg(value_name = "FILE|-", env = "CPN_INPUT")]
    pub input: Option<PathBuf>,
    /// Accept what `publish` accepts: a missing GSW_MESSAGE_GUID or
    /// GSW_TIMESTAMP is not a problem (publish assigns them).
    #[arg(long, env = "CPN_AS_PUBLISH")]
    pub as_publish: bool,
    /// Longest line accepted, in bytes.
    #[arg(long, env = "CPN_MAX_LINE_BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES,
          value_parser = byte_limit())]
    pub max_line_bytes: usize,
}

/// Where to publish.
#[derive(Debug, Args)]
pub struct Target {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, short = 'b', env = "CPN_BROKERS")]
    pub brokers: String,
    /// Topic to publish to (must exist).
    #[arg(long, short = 't', env = "CPN_TOPIC")]
    pub topic: String,
}

/// Kafka producer tuning shared by every publishing subcommand.
#[derive(Debug, Args)]
pub struct Tuning {
    /// Batch compression: none, gzip, snappy, lz4 or zstd. lz4 is cheapest
    /// on CPU for producer, broker and consumers (see producer/README.md).
    #[arg(long, env = "CPN_COMPRESSION", default_value_t = Compression::Lz4)]
    pub compression: Compression,
    /// How long to wait to fill a batch (librdkafka linger.ms).
    #[arg(long, env = "CPN_LINGER_MS", default_value_t = 5)]
    pub linger_ms: u64,
    /// Largest batch in bytes (librdkafka batch.size).
    #[arg(long, env = "CPN_BATCH_SIZE_BYTES", default_value_t = 1_048_576)]
    pub batch_size_bytes: u32,
    /// How long Kafka may take to acknowledge one event, retries included,
    /// before it counts as not published (librdkafka message.timeout.ms).
    #[arg(long, env = "CPN_DELIVERY_TIMEOUT_MS", default_value_t = 60_000)]
    pub delivery_timeout_ms: u64,
    /// Most events awaiting acknowledgement at once (bulk commands).
    #[arg(long, env = "CPN_MAX_IN_FLIGHT", default_value_t = 20_000)]
    pub max_in_flight: usize,
    /// Any librdkafka property, as kcat takes it: -X security.protocol=SASL_SSL.
    /// Repeatable; applied last. enable.idempotence and acks cannot be
    /// weakened. From the environment: one KEY=VALUE per line.
    #[arg(
        short = 'X',
        value_name = "KEY=VALUE",
        env = "CPN_KAFKA_PROPERTIES",
        value_delimiter = '\n'
    )]
    pub properties: Vec<KafkaOverride>,
}

impl Tuning {
    fn config(&self, target: &Target) -> PublisherConfig {
        PublisherConfig {
            compression: self.compression,
            linger: Duration::from_millis(self.linger_ms),
            batch_size_bytes: self.batch_size_bytes,
            delivery_timeout: Duration::from_millis(self.delivery_timeout_ms),
            max_in_flight: self.max_in_flight,
            overrides: self.properties.clone(),
            ..PublisherConfig::new(target.brokers.clone(), target.topic.clone())
        }
    }
}

/// Arguments of `publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub tuning: Tuning,
    /// NDJSON file to read; `-` or nothing for stdin.
    #[arg(value_name = "FILE|-", env = "CPN_INPUT")]
    pub input: Option<PathBuf>,
    /// Longest line accepted, in bytes; longer lines are rejected.
    #[arg(long, env = "CPN_MAX_LINE_BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES,
          value_parser = byte_limit())]
    pub max_line_bytes: usize,
}

/// Arguments of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// How many events.
    #[arg(long, short = 'n', env = "CPN_COUNT")]
    pub count: u64,
    /// Random seed, for reproducible output.
    #[arg(long, env = "CPN_SEED")]
    pub seed: Option<u64>,
    /// Events per second (default: as fast as possible).
    #[arg(long, env = "CPN_RATE")]
    pub rate: Option<f64>,
    /// Kafka bootstrap servers; with --topic, publish instead of printing.
    #[arg(long, short = 'b', env = "CPN_BROKERS", requires = "topic")]
    pub brokers: Option<String>,
    /// Topic to publish to; requires --brokers.
    #[arg(long, short = 't', env = "CPN_TOPIC", requires = "brokers")]
    pub topic: Option<String>,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub tuning: Tuning,
    /// Address to listen on.
    #[arg(long, env = "CPN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "CPN_MAX_BODY_BYTES", default_value_t = ingest::DEFAULT_MAX_BODY_BYTES,
          value_parser = byte_limit())]
    pub max_body_bytes: usize,
    /// How long a request waits for Kafka's acknowledgement (then: 503).
    #[arg(long, env = "CPN_ACK_TIMEOUT_MS", default_value_t = 10_000)]
    pub ack_timeout_ms: u64,
    /// Retry-After seconds sent with a 503.
    #[arg(long, env = "CPN_RETRY_AFTER_SECS", default_value_t = ingest::DEFAULT_RETRY_AFTER_SECS)]
    pub retry_after_secs: u64,
    /// How long shutdown waits for outstanding acknowledgements.
    #[arg(long, env = "CPN_SHUTDOWN_TIMEOUT_MS", default_value_t = 30_000)]
    pub shutdown_timeout_ms: u64,
    /// How long a client may take to send a request's line and headers,
    /// from connecting or from the end of the previous response (then: the
    /// connection is closed). Also how long an idle keep-alive connection
    /// is kept.
    #[arg(long, env = "CPN_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a request's whole body once its
    /// headers arrived (then: 408 and the connection is closed).
    #[arg(long, env = "CPN_BODY_READ_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_read_timeout_ms: u64,
    /// Largest request line and headers together, in bytes (larger: 431).
    #[arg(long, env = "CPN_MAX_HEADER_BYTES", default_value_t = ingest::DEFAULT_MAX_HEADER_BYTES,
          value_parser = header_limit())]
    pub max_header_bytes: usize,
    /// Most connections served at once; more wait in the listen backlog
    /// until one closes.
    #[arg(long, env = "CPN_MAX_CONNECTIONS", default_value_t = ingest::DEFAULT_MAX_CONNECTIONS,
          value_parser = connection_limit())]
    pub max_connections: usize,
    /// Serve HTTPS with this certificate chain (PEM, leaf first; with
    /// --tls-key). Re-read when it changes: new connections get the new
    /// certificate, open ones keep theirs.
    #[arg(long, env = "CPN_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1,
    /// unencrypted; with --tls-cert).
    #[arg(long, env = "CPN_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Lowest TLS version accepted: 1.2 (OCS speaks 1.2) or 1.3. TLS 1.0
    /// and 1.1 are never accepted.
    #[arg(long, env = "CPN_TLS_MIN_VERSION", value_name = "VERSION", default_value = "1.2",
          value_parser = clap::builder::ValueParser::new(str::parse::<MinTlsVersion>))]
    pub tls_min_version: MinTlsVersion,
    /// mTLS: CA certificates (PEM) a client certificate must chain to; a
    /// client without one is refused at the handshake. Needs --tls-cert.
    #[arg(
        long,
        env = "CPN_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
    /// The header that carries the key: Authorization (the request sends
    /// "Authorization: Bearer KEY") or any other name, whose whole value is
    /// the key ("X-Api-Key: KEY").
    #[arg(long, env = "CPN_AUTH_HEADER", value_name = "NAME", default_value = "Authorization",
          value_parser = header_name)]
    pub auth_header: axum::http::HeaderName,
    /// A file of accepted keys, one per line ('#' starts a comment),
    /// re-read when it changes: add the new key, move the clients, remove
    /// the old one, without a restart. At least 16 characters each.
    #[arg(long, env = "CPN_AUTH_KEYS_FILE", value_name = "FILE")]
    pub auth_keys_file: Option<PathBuf>,
    /// Accepted keys, comma-separated. Prefer the environment variable or
    /// --auth-keys-file: a flag's value shows in the process list.
    #[arg(
        long,
        env = "CPN_AUTH_KEYS",
        value_name = "KEY,...",
        hide_env_values = true,
        value_parser = hidden_keys
    )]
    pub auth_keys: Option<HiddenKeys>,
    /// How often the TLS files and --auth-keys-file are checked for a
    /// change.
    #[arg(long, env = "CPN_RELOAD_INTERVAL_MS", default_value_t = 5_000)]
    pub reload_interval_ms: u64,
    /// Also listen here, plain HTTP, for /metrics, /healthz and /readyz,
    /// none of which asks for a key there; /metrics then leaves --listen.
    #[arg(long, env = "CPN_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Serve a non-loopback --listen with neither a key nor client
    /// certificates: anyone who reaches it can write events into Kafka.
    #[arg(long, env = "CPN_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
}

/// The value of `--auth-keys`: never shown by `Debug`.
#[derive(Clone)]
pub struct HiddenKeys(String);

impl std::fmt::Debug for HiddenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Parser of `--auth-keys`.
fn hidden_keys(s: &str) -> Result<HiddenKeys, String> {
    Ok(HiddenKeys(s.to_owned()))
}

/// Parser of `--auth-header`: an HTTP header name.
fn header_name(s: &str) -> Result<axum::http::HeaderName, String> {
    axum::http::HeaderName::from_bytes(s.as_bytes())
        .map_err(|_| format!("{s:?} is not an HTTP header name"))
}

/// Runs the parsed command and returns the process exit status.
///
/// # Errors
/// Setup failures (unreadable input, bad configuration, address in use).
pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate(args).await,
        Command::Publish(args) => publish(args).await,
        Command::Generate(args) => generate(args).await,
        Command::Serve(args) => serve(*args).await,
    }
}

/// The largest byte limit an option takes: 1 GiB (Kafka's own record limits
/// are far lower).
const MAX_BYTE_LIMIT: u64 = 1 << 30;

/// Parser of `--max-line-bytes` and `--max-body-bytes`: 1 to 1 GiB.
fn byte_limit() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_BYTE_LIMIT)
}

/// The largest `--max-header-bytes`: 1 MiB, far past any real request head.
const MAX_HEADER_LIMIT: u64 = 1 << 20;

/// Parser of `--max-header-bytes`: 1 KiB to 1 MiB.
fn header_limit() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new()
        .range(ingest::MIN_MAX_HEADER_BYTES as u64..=MAX_HEADER_LIMIT)
}

/// The largest `--max-connections`: each needs a file descriptor, and
/// descriptor limits end well below this.
const MAX_CONNECTION_LIMIT: u64 = 1 << 20;

/// Parser of `--max-connections`: 1 to 2^20.
fn connection_limit() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_CONNECTION_LIMIT)
}

fn open_input(path: Option<&PathBuf>) -> Result<Box<dyn Read + Send>> {
    Ok(match path {
        None => Box::new(io::stdin()),
        Some(p) if p.as_os_str() == "-" => Box::new(io::stdin()),
        Some(p) => Box::new(File::open(p).with_context(|| format!("opening {}", p.display()))?),
    })
}

fn exit_for(summary: &Summary) -> ExitCode {
    if summary.all_good() {
        ExitCode::SUCCESS
    } else if summary.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        ExitCode::FAILURE
    }
}

async fn validate(args: ValidateArgs) -> Result<ExitCode> {
    let input = BufReader::with_capacity(1 << 20, open_input(args.input.as_ref())?);
    let identity = if args.as_publish {
        Identity::Assigned
    } else {
        Identity::Required
    };
    let summary = tokio::task::spawn_blocking(move || {
        let out = BufWriter::new(io::stdout().lock());
        bulk::validate(input, out, identity, args.max_line_bytes)
    })
    .await
    .context("validation task")?
    .context("writing the report to stdout")?;
    if let Some(e) = summary.input_error {
        return Err(anyhow::Error::new(e).context("reading input"));
    }
    eprintln!("{} valid, {} invalid", summary.published, summary.rejected);
    Ok(exit_for(&summary))
}

/// Ctrl-C or SIGTERM, whichever comes first.
async fn interrupt() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// First signal: stop reading; second: stop waiting for Kafka.
fn watch_signals(stop: &CancellationToken, abandon: &CancellationToken) {
    let (stop, abandon) = (stop.clone(), abandon.clone());
    tokio::spawn(async move {
        interrupt().await;
        eprintln!(
            "interrupted: reading no more input, waiting for events already handed to Kafka \
             (interrupt again to stop waiting)"
        );
        stop.cancel();
        interrupt().await;
        eprintln!("interrupted again: no longer waiting for Kafka");
        abandon.cancel();
    });
}

/// Report lines and progress to stderr, through a progress bar on a terminal.
struct CliReporter {
    bar: Option<ProgressBar>,
}

impl CliReporter {
    fn new(total: Option<u64>) -> Self {
        if !io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let template = if total.is_some() {
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {per_sec} {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {pos} events {per_sec} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar: Some(bar) }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Reporter for CliReporter {
    fn line(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn progress(&mut self, p: Progress) {
        if let Some(bar) = &self.bar {
            bar.set_position(p.published + p.rejected + p.failed);
            bar.set_message(format!(
                "published {} rejected {} failed {}",
                p.published, p.rejected, p.failed
            ));
        }
    }
}

async fn publish(args: PublishArgs) -> Result<ExitCode> {
    let config = args.tuning.config(&args.target);
    let publisher = Publisher::new(&config).context("creating the kafka producer")?;
    let input = open_input(args.input.as_ref())?;
    let (stop, abandon) = (CancellationToken::new(), CancellationToken::new());
    watch_signals(&stop, &abandon);
    let mut reporter = CliReporter::new(None);
    let summary = bulk::publish_ndjson(
        &publisher,
        input,
        args.max_line_bytes,
        &stop,
        &abandon,
        &mut reporter,
    )
    .await;
    reporter.finish();
    eprintln!("{summary}");
    Ok(exit_for(&summary))
}

async fn generate(args: GenerateArgs) -> Result<ExitCode> {
    let pace = args.rate.map(Pace::new).transpose()?;
    let (seed, start) = match args.seed {
        Some(seed) => (seed, SEEDED_START),
        None => (rand::random(), cpn_producer::assign::fresh_identity().1),
    };
    tracing::info!(seed, "generating events");
    let generator = Generator::new(StdRng::seed_from_u64(seed), start);
    let (Some(brokers), Some(topic)) = (args.brokers, args.topic) else {
        let written = tokio::task::spawn_blocking(move || {
            let out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
            bulk::generate_to_writer(generator, args.count, pace, out)
        })
        .await
        .context("generator task")?;
        return match written {
            Ok(_) => Ok(ExitCode::SUCCESS),
            // `generate | head` closing the pipe is a normal way to stop.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
            Err(e) => Err(anyhow::Error::new(e).context("writing events to stdout")),
        };
    };
    let target = Target { brokers, topic };
    let config = args.tuning.config(&target);
    let publisher = Publisher::new(&config).context("creating the kafka producer")?;
    let (stop, abandon) = (CancellationToken::new(), CancellationToken::new());
    watch_signals(&stop, &abandon);
    let mut reporter = CliReporter::new(Some(args.count));
    let summary = bulk::generate_to_kafka(
        &publisher,
        generator,
        args.count,
        pace,
        &stop,
        &abandon,
        &mut reporter,
    )
    .await;
    reporter.finish();
    eprintln!("{summary}");
    let _ = io::stderr().flush();
    Ok(exit_for(&summary))
}

async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let keys = args.auth_keys.as_ref().map(|k| split_keys(&k.0));
    if keys.as_ref().is_some_and(Vec::is_empty) {
        // Set but empty (a blank Secret): refusing beats serving without
        // the keys the operator meant to require.
        eprintln!(
            "error: CPN_AUTH_KEYS (--auth-keys) holds no key: give one or more, \
             comma-separated, of 16 characters or more"
        );
        return Ok(ExitCode::from(2));
    }
    let config = ServeConfig {
        publisher: args.tuning.config(&args.target),
        listen: args.listen,
        max_body_bytes: args.max_body_bytes,
        ack_timeout: Duration::from_millis(args.ack_timeout_ms),
        retry_after_secs: args.retry_after_secs,
        shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
        body_read_timeout: Duration::from_millis(args.body_read_timeout_ms),
        max_header_bytes: args.max_header_bytes,
        max_connections: args.max_connections,
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsSettings {
                cert_file: cert,
                key_file: key,
                min_version: args.tls_min_version,
                client_ca_file: args.tls_client_ca,
            }),
        auth: {
            let settings = AuthSettings {
                header: args.auth_header,
                keys: keys.unwrap_or_default(),
                keys_file: args.auth_keys_file,
            };
            settings.is_configured().then_some(settings)
        },
        reload_interval: Duration::from_millis(args.reload_interval_ms),
        metrics_listen: args.metrics_listen,
        allow_unauthenticated: args.allow_unauthenticated,
    };
    let served = ingest::run(config, async {
        interrupt().await;
        tracing::info!("shutdown requested");
    })
    .await;
    match served {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // What the operator must change before a start can succeed: a
        // usage error, exit 2, as clap's own.
        Err(
            e @ (ServeError::Config { .. }
            | ServeError::Unprotected { .. }
            | ServeError::Tls(_)
            | ServeError::Auth(_)
            | ServeError::Address { .. }),
        ) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(anyhow::Error::new(e).context("serving http ingest")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_option_has_an_environment_variable() {
        fn walk(cmd: &clap::Command, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_env().is_none() {
                    missing.push(format!("{} --{}", cmd.get_name(), arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), &mut missing);
        assert!(missing.is_empty(), "options without env: {missing:?}");
    }

    #[test]
    fn byte_limits_out_of_range_are_refused_naming_the_option() {
        for (sub, opt) in [
            ("validate", "--max-line-bytes"),
            ("publish", "--max-line-bytes"),
            ("serve", "--max-body-bytes"),
            ("serve", "--max-header-bytes"),
            ("serve", "--max-connections"),
        ] {
            for bad in ["0", "18446744073709551615", "lots"] {
                let mut argv = vec!["cpn-producer", sub, opt, bad];
                if sub != "validate" {
                    argv.extend(["-b", "h:1", "-t", "t"]);
                }
                let e = Cli::try_parse_from(&argv).expect_err("out of range");
                assert!(e.to_string().contains(opt), "{sub} {opt} {bad}: {e}");
            }
        }
        let cli =
            Cli::try_parse_from(["cpn-producer", "validate", "--max-line-bytes", "1073741824"])
                .expect("1 GiB is the largest limit");
        let Command::Validate(v) = cli.command else {
            panic!("not validate")
        };
        assert_eq!(v.max_line_bytes, 1 << 30);
    }

    #[test]
    fn x_properties_parse_and_weakening_is_refused() {
        let cli = Cli::try_parse_from([
            "cpn-producer",
            "publish",
            "-b",
            "h:1",
            "-t",
            "t",
            "-X",
            "security.protocol=SSL",
            "-X",
            "sasl.jaas.config=a=b;",
            "events.ndjson",
        ])
        .unwrap();
        let Command::Publish(p) = cli.command else {
            panic!("not publish")
        };
        assert_eq!(p.tuning.properties.len(), 2);
        assert_eq!(p.tuning.properties[1].value, "a=b;");
        assert_eq!(p.input.unwrap(), PathBuf::from("events.ndjson"));

        let err = Cli::try_parse_from([
            "cpn-producer",
            "publish",
            "-b",
            "h:1",
            "-t",
            "t",
            "-X",
            "acks=1",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("acks"), "{err}");
    }

    #[test]
    fn serve_connection_bounds_parse_with_their_defaults_and_ranges() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["cpn-producer", "serve", "-b", "h:1", "-t", "t"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(&argv).map(|cli| match cli.command {
                Command::Serve(s) => s,
                other => panic!("not serve: {other:?}"),
            })
        };
        let s = parse(&[]).expect("defaults");
        assert_eq!(s.header_read_timeout_ms, 10_000);
        assert_eq!(s.body_read_timeout_ms, 30_000);
        assert_eq!(s.max_header_bytes, ingest::DEFAULT_MAX_HEADER_BYTES);
        assert_eq!(s.max_connections, ingest::DEFAULT_MAX_CONNECTIONS);
        let s = parse(&[
            "--header-read-timeout-ms",
            "1500",
            "--body-read-timeout-ms",
            "2500",
            "--max-header-bytes",
            "1024",
            "--max-connections",
            "3",
        ])
        .expect("in range");
        assert_eq!(
            (
                s.header_read_timeout_ms,
                s.body_read_timeout_ms,
                s.max_header_bytes,
                s.max_connections
            ),
            (1500, 2500, 1024, 3)
        );
        let e = parse(&["--max-header-bytes", "1023"]).expect_err("below 1 KiB");
        assert!(e.to_string().contains("--max-header-bytes"), "{e}");
        let e = parse(&["--max-header-bytes", "1048577"]).expect_err("above 1 MiB");
        assert!(e.to_string().contains("--max-header-bytes"), "{e}");
    }

    #[test]
    fn generate_needs_brokers_and_topic_together() {
        assert!(Cli::try_parse_from(["cpn-producer", "generate", "-n", "5"]).is_ok());
        assert!(Cli::try_parse_from(["cpn-producer", "generate", "-n", "5", "-b", "h:1"]).is_err());
        assert!(
            Cli::try_parse_from([
                "cpn-producer",
                "generate",
                "-n",
                "5",
                "-b",
                "h:1",
                "-t",
                "x"
            ])
            .is_ok()
        );
    }
}
