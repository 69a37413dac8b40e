//! `cpn-relay dlq …`: inspect, filter, export and replay a dead-letter
//! topic. Argument parsing and printing only; the work is in the sibling
//! modules (`read`, `filter`, `record`, `render`, `stats`, `replay`,
//! `republish`).
//!
//! Exit codes: 0 done; 1 a replay could not republish a selected record
//! (or `show` found nothing); 2 bad arguments (clap's own errors too, and
//! errors returned to `main`); 130 a replay interrupted by Ctrl-C.

use std::io::{BufWriter, IsTerminal, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, Subcommand};

use crate::dlq::record::DeadLetterView;
use crate::dlq::tools::filter::{self, Filter};
use crate::dlq::tools::ledger::{Ledger, default_ledger_topic};
use crate::dlq::tools::read::{DlqReader, KafkaOptions, Start};
use crate::dlq::tools::render;
use crate::dlq::tools::replay::{DEFAULT_MAX_REPLAYS, default_progress_group};
use crate::dlq::tools::republish::{ReplayOptions, replay};
use crate::dlq::tools::stats::Stats;
use crate::kafka::settings::is_managed_key;
use crate::policy::classify::{DlqReason, StatusSet};

/// Inspect, filter, export and replay a dead-letter topic.
///
/// Reading never joins the relay's consumer group and, except for replay's
/// own progress, never commits offsets. Every command reads the topic up to
/// its end as it was when the command started.
#[derive(Debug, Args)]
#[command(
    after_long_help = "Exit codes: 0 done; 1 replay could not republish a selected record, or show found nothing; \
2 bad arguments; 130 replay interrupted."
)]
pub struct DlqArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// The `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Count dead letters by reason, HTTP status, target, campaign group, media type and hour.
    Stats(StatsArgs),
    /// One row per dead letter: where it is, why, which event, what the target said.
    List(ListArgs),
    /// Everything about one dead letter: every header decoded, the response excerpt, the body.
    Show(ShowArgs),
    /// The dead letters with all their headers, one JSON object per line, for tickets and audits.
    Export(ExportArgs),
    /// Send dead letters' original records again, to their original topic or --to.
    ///
    /// Key and value bytes are sent unchanged (GUID, GSW_TIMESTAMP and so the ETag stay the
    /// same), with the original record's headers plus cpn.dlq.replays (count) and
    /// cpn.dlq.replayed_from (DLQ_TOPIC:PARTITION:OFFSET). Progress is committed to a consumer
    /// group of its own after each record is acknowledged, so the next run replays only dead
    /// letters that arrived since. Progress moves past every dead letter a run examined, matching
    /// the filters or not: to replay an older selection, use --from-beginning.
    ///
    /// Every republished dead letter is recorded in a replay ledger (a compacted topic,
    /// <topic>.replay-ledger), after Kafka acknowledged it. A run skips the dead letters the
    /// ledger holds, with --from-beginning too, and says how many; --again sends them anyway.
    Replay(ReplayArgs),
}

/// Where the brokers are: shared by every `dlq` subcommand.
#[derive(Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        short = 'b',
        env = "CPN_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// librdkafka setting passed through, e.g. -X security.protocol=SASL_SSL (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // -X values may be passwords.
        let keys: Vec<&str> = self.properties.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("KafkaArgs")
            .field("brokers", &self.brokers)
            .field("property_keys", &keys)
            .finish()
    }
}

impl KafkaArgs {
    fn options(&self) -> KafkaOptions {
        KafkaOptions {
            brokers: self.brokers.clone(),
            properties: self.properties.clone(),
        }
    }
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    let Some((k, v)) = s.split_once('=') else {
        return Err(format!("{s:?} is not KEY=VALUE"));
    };
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    if is_managed_key(k) {
        let hint = if k == "bootstrap.servers" {
            " (use --brokers)"
        } else {
            ""
        };
        return Err(format!(
            "{k} is managed by cpn-relay dlq and cannot be set{hint}"
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// The dead-letter topic and the brokers.
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// The dead-letter topic to read (the relay's kafka.dlq_topic; default there: <topic>.dlq).
    #[arg(long, short = 't', env = "CPN_KAFKA_DLQ_TOPIC")]
    pub topic: String,
    /// The brokers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

fn parse_time_now(s: &str) -> Result<SystemTime, String> {
    filter::parse_time(s, SystemTime::now())
}

/// Which dead letters: shared by stats, list, export and replay.
#[derive(Debug, Clone, Default, Args)]
#[command(
    next_help_heading = "Filters (values of one filter are alternatives; all filters given must match)"
)]
pub struct FilterArgs {
    /// Only this reason: http_rejected, http_redirect, retries_exhausted or invalid_payload
    /// (repeatable or comma-separated).
    #[arg(long, value_name = "REASON", value_delimiter = ',', value_parser = filter::parse_reason)]
    pub reason: Vec<DlqReason>,
    /// Only this last HTTP status: 400, a class 4xx or a range 500-504 (repeatable or
    /// comma-separated). Dead letters without a status (invalid_payload) never match.
    #[arg(long, value_name = "STATUS", value_delimiter = ',', value_parser = filter::parse_status)]
    pub status: Vec<StatusSet>,
    /// Only this message GUID (GSW_MESSAGE_GUID; compared as a UUID, so case and braces do not
    /// matter) (repeatable or comma-separated).
    #[arg(long, value_name = "GUID", value_delimiter = ',')]
    pub guid: Vec<String>,
    /// Only dead letters the relay gave up on at or after this time: RFC 3339
    /// (2026-11-25T10:00:00Z), a date (2026-11-25, UTC) or a duration ago (2h, 30m, 7d). The time
    /// is the cpn.dlq.last_attempt_at header, else (no attempt, e.g. invalid_payload) the
    /// dead-letter record's timestamp.
    #[arg(long, value_name = "TIME", value_parser = parse_time_now)]
    pub since: Option<SystemTime>,
    /// Only dead letters the relay gave up on before this time (same forms and time as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time_now)]
    pub until: Option<SystemTime>,
    /// Only events of this campaign group (GSW_CAMPAIGN_GROUP_NAME, exact) (repeatable).
    #[arg(long, value_name = "NAME")]
    pub campaign_group: Vec<String>,
    /// Only events of this calling list (GSW_CALLING_LIST, exact) (repeatable).
    #[arg(long, value_name = "NAME")]
    pub calling_list: Vec<String>,
    /// Only dead letters whose target URL (cpn.dlq.target) starts with this (repeatable).
    #[arg(long, value_name = "URL")]
    pub target: Vec<String>,
}

impl FilterArgs {
    /// The filter these arguments describe.
    ///
    /// # Errors
    /// `--since` is not before `--until`.
    pub fn to_filter(&self) -> anyhow::Result<Filter> {
        if let (Some(s), Some(u)) = (self.since, self.until)
            && s >= u
        {
            bail!("--since: must be before --until, or nothing can match");
        }
        Ok(Filter {
            reasons: self.reason.clone(),
            statuses: self.status.clone(),
            guids: self.guid.iter().map(|g| g.trim().to_owned()).collect(),
            since: self.since,
            until: self.until,
            campaign_groups: self.campaign_group.clone(),
            calling_lists: self.calling_list.clone(),
            targets: self.target.clone(),
        })
    }
}

/// `dlq stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The dead-letter topic and the brokers.
    #[command(flatten)]
    pub topic: TopicArgs,
    /// One JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Which dead letters.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `dlq list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The dead-letter topic and the brokers.
    #[command(flatten)]
    pub topic: TopicArgs,
    /// One JSON object per line with the keys partition, offset, guid, reason, http_status,
    /// attempts, original_topic, original_partition, original_offset, last_attempt_at, error,
    /// and replayed (the replay ledger's entry, or null; left out when the ledger cannot be read).
    #[arg(long)]
    pub json: bool,
    /// Stop after this many rows.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// The replay ledger the REPLAYED column reads [default: <topic>.replay-ledger].
    #[arg(long, value_name = "TOPIC")]
    pub ledger_topic: Option<String>,
    /// Which dead letters.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `dlq show`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["coordinates", "guid"])))]
pub struct ShowArgs {
    /// The dead-letter topic and the brokers.
    #[command(flatten)]
    pub topic: TopicArgs,
    /// The dead letter's PARTITION:OFFSET in the dead-letter topic (as `list` prints it).
    #[arg(value_name = "PARTITION:OFFSET", value_parser = parse_coordinates)]
    pub coordinates: Option<(i32, i64)>,
    /// Every dead letter of this message GUID instead.
    #[arg(long, value_name = "GUID")]
    pub guid: Option<String>,
    /// The `export` JSON line, with the replay ledger's entry as replayed (or null), instead
    /// of the page.
    #[arg(long)]
    pub json: bool,
    /// The replay ledger that says whether it was replayed [default: <topic>.replay-ledger].
    #[arg(long, value_name = "TOPIC")]
    pub ledger_topic: Option<String>,
}

fn parse_coordinates(s: &str) -> Result<(i32, i64), String> {
    let bad = || format!("{s:?} is not PARTITION:OFFSET, e.g. 0:42");
    let (p, o) = s.split_once(':').ok_or_else(bad)?;
    let p: i32 = p.trim().parse().map_err(|_| bad())?;
    let o: i64 = o.trim().parse().map_err(|_| bad())?;
    if p < 0 || o < 0 {
        return Err(bad());
    }
    Ok((p, o))
}

/// `dlq export`.
#[derive(Debug, Args)]
#[command(
    after_help = "Each line: {\"topic\", \"partition\", \"offset\", \"timestamp\", \"key\", \"headers\": [{\"key\", \"value\"}], \
\"value\", \"dead_letter\": <the list --json row>}. Bytes are a JSON string when UTF-8, else {\"hex\": \"...\"}."
)]
pub struct ExportArgs {
    /// The dead-letter topic and the brokers.
    #[command(flatten)]
    pub topic: TopicArgs,
    /// Stop after this many records.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Which dead letters.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `dlq replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The dead-letter topic and the brokers.
    #[command(flatten)]
    pub topic: TopicArgs,
    /// Send every record to this topic instead of its original topic (__connect.errors.topic).
    #[arg(long, value_name = "TOPIC")]
    pub to: Option<String>,
    /// Print what would be replayed or skipped; send nothing, record no progress.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many records per second, e.g. 50 or 50/s.
    #[arg(long, value_name = "N/s", value_parser = filter::parse_rate)]
    pub rate: Option<f64>,
    /// Replay at most this many records, then stop (progress stops there too).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Loop guard: skip (and report) a record already replayed this many times.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_REPLAYS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_replays: u32,
    /// Consumer group that records replay progress [default: cpn-dlq-replay.<topic>].
    #[arg(long, value_name = "GROUP")]
    pub progress_group: Option<String>,
    /// Look at every dead letter in the topic, not only those after the recorded progress.
    /// Dead letters the replay ledger holds are still skipped (see --again).
    #[arg(long)]
    pub from_beginning: bool,
    /// Replay dead letters even if the replay ledger says they were replayed already.
    #[arg(long)]
    pub again: bool,
    /// Compacted topic recording every replayed dead letter (created if missing)
    /// [default: <topic>.replay-ledger].
    #[arg(long, value_name = "TOPIC")]
    pub ledger_topic: Option<String>,
    /// Which dead letters.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs a `dlq` subcommand.
///
/// # Errors
/// Bad arguments, an unreadable topic or a failing broker: `main` prints the
/// error and exits 2. Per-record replay failures are exit code 1, not errors.
pub async fn run_cli(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let mut out = BufWriter::new(stdout.lock());
    let code = match args.command {
        DlqCommand::Stats(a) => stats(a, &mut out).await,
        DlqCommand::List(a) => list(a, &mut out, terminal.then(terminal_width)).await,
        DlqCommand::Show(a) => show(a, &mut out).await,
        DlqCommand::Export(a) => export(a, &mut out).await,
        DlqCommand::Replay(a) => replay_cmd(a, &mut out).await,
    };
    let flushed = out.flush();
    match code {
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
        Ok(c) => match flushed {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
            Err(e) => Err(e).context("writing to stdout"),
            Ok(()) => Ok(c),
        },
    }
}

/// `… | head` closes the pipe early: that is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The terminal's width: `COLUMNS`, else what `stty size` says, else 100.
fn terminal_width() -> usize {
    if let Some(w) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|w| *w > 0)
    {
        return w;
    }
    std::process::Command::new("stty")
        .arg("size")
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<usize>().ok())
        })
        .filter(|w| *w > 0)
        .unwrap_or(100)
}

/// Reads the whole topic, calling `each` for the dead letters that pass `filter`
/// until it returns `false`.
async fn each_match(
    topic: &TopicArgs,
    filter: &Filter,
    each: impl FnMut(DeadLetterView) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut reader =
        DlqReader::open(&topic.kafka.options(), &topic.topic, Start::Beginning, None).await?;
    each_match_in(&mut reader, filter, each).await
}

/// [`each_match`] on a reader already open.
async fn each_match_in(
    reader: &mut DlqReader,
    filter: &Filter,
    mut each: impl FnMut(DeadLetterView) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    while let Some(dl) = reader.next().await? {
        if filter.matches(&dl) && !each(dl)? {
            break;
        }
    }
    Ok(())
}

/// The replay ledger, read to show what was replayed (never created). One
/// that cannot be read is a warning, not a failure: `list` and `show` work
/// for a user who may read the dead-letter topic only.
async fn display_ledger(
    kafka: &KafkaOptions,
    ledger_topic: Option<&str>,
    reader: &DlqReader,
) -> Option<Ledger> {
    let topic = ledger_topic.map_or_else(|| default_ledger_topic(reader.topic()), str::to_owned);
    match Ledger::load(kafka, &topic, reader, false).await {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("warning: {e}; what was replayed is not shown");
            None
        }
    }
}

/// What the ledger says of `dl`, for people: `2 times, last to T at …`.
fn replayed_text(ledger: &Ledger, dl: &DeadLetterView) -> String {
    match ledger.replayed(dl) {
        None => format!("not replayed (ledger {})", ledger.topic()),
        Some(e) if e.times == 0 => format!("replayed (ledger {}, no details)", ledger.topic()),
        Some(e) => format!(
            "{} time{}, last to {} at {} (ledger {})",
            e.times,
            if e.times == 1 { "" } else { "s" },
            e.replayed_to,
            e.replayed_at,
            ledger.topic()
        ),
    }
}

/// A `list --json` row or `show --json` line with the ledger's entry for
/// it as `replayed` (null when there is none; no key when the ledger was not
/// read), after the row's own keys, in their order.
#[derive(serde::Serialize)]
struct WithReplayed<'a, T: serde::Serialize> {
    #[serde(flatten)]
    line: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    replayed: Option<Option<&'a crate::dlq::tools::ledger::Entry>>,
}

fn with_replayed<T: serde::Serialize>(
    line: T,
    ledger: Option<&Ledger>,
    dl: &DeadLetterView,
) -> anyhow::Result<String> {
    let line = WithReplayed {
        line,
        replayed: ledger.map(|l| l.replayed(dl)),
    };
    Ok(serde_json::to_string(&line)?)
}

async fn stats(a: StatsArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let filter = a.filter.to_filter()?;
    let mut s = Stats::default();
    each_match(&a.topic, &filter, |dl| {
        s.add(&dl);
        Ok(true)
    })
    .await?;
    if a.json {
        writeln!(out, "{}", s.to_json(&a.topic.topic))?;
    } else {
        write!(out, "{}", s.render(&a.topic.topic))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(a: ListArgs, out: &mut dyn Write, width: Option<usize>) -> anyhow::Result<ExitCode> {
    let filter = a.filter.to_filter()?;
    let limit = a.limit.unwrap_or(u64::MAX);
    let mut n: u64 = 0;
    let mut rows: Vec<DeadLetterView> = Vec::new();
    let kafka = a.topic.kafka.options();
    let mut reader = DlqReader::open(&kafka, &a.topic.topic, Start::Beginning, None).await?;
    let ledger = display_ledger(&kafka, a.ledger_topic.as_deref(), &reader).await;
    each_match_in(&mut reader, &filter, |dl| {
        if n >= limit {
            return Ok(false);
        }
        n += 1;
        if a.json {
            writeln!(
                out,
                "{}",
                with_replayed(dl.list_row(), ledger.as_ref(), &dl)?
            )?;
        } else {
            rows.push(dl);
        }
        Ok(n < limit)
    })
    .await?;
    if !a.json {
        if rows.is_empty() {
            eprintln!("no dead letters in {} match", a.topic.topic);
        } else {
            // The REPLAYED column only when the ledger holds one of the rows.
            let replayed: Option<Vec<Option<String>>> = ledger
                .as_ref()
                .map(|l| {
                    rows.iter()
                        .map(|dl| l.replayed(dl).map(|e| format!("{}×", e.times.max(1))))
                        .collect::<Vec<_>>()
                })
                .filter(|cells| cells.iter().any(Option::is_some));
            write!(
                out,
                "{}",
                render::list_table(&rows, replayed.as_deref(), width)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(a: ShowArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let kafka = a.topic.kafka.options();
    let mut found = 0u64;
    let print = |dl: &DeadLetterView,
                 ledger: Option<&Ledger>,
                 found: &mut u64,
                 out: &mut dyn Write|
     -> anyhow::Result<()> {
        if a.json {
            let line = with_replayed(dl.export_line(&a.topic.topic), ledger, dl)?;
            writeln!(out, "{line}")?;
        } else {
            if *found > 0 {
                writeln!(out)?;
            }
            let replayed = ledger.map(|l| replayed_text(l, dl));
            write!(
                out,
                "{}",
                render::show_page(dl, &a.topic.topic, replayed.as_deref())
            )?;
        }
        *found += 1;
        Ok(())
    };
    if let Some((partition, offset)) = a.coordinates {
        let opened = DlqReader::open(
            &kafka,
            &a.topic.topic,
            Start::One { partition, offset },
            None,
        )
        .await;
        let mut reader = match opened {
            // Coordinates the topic does not hold: nothing found there.
            Err(
                e @ (super::read::ReadError::NoOffset { .. }
                | super::read::ReadError::NoPartition { .. }),
            ) => {
                eprintln!("{}: {e}", a.topic.topic);
                return Ok(ExitCode::from(1));
            }
            other => other?,
        };
        let ledger = display_ledger(&kafka, a.ledger_topic.as_deref(), &reader).await;
        while let Some(dl) = reader.next().await? {
            print(&dl, ledger.as_ref(), &mut found, out)?;
        }
    } else if let Some(guid) = &a.guid {
        let filter = Filter {
            guids: vec![guid.trim().to_owned()],
            ..Filter::default()
        };
        let mut reader = DlqReader::open(&kafka, &a.topic.topic, Start::Beginning, None).await?;
        let ledger = display_ledger(&kafka, a.ledger_topic.as_deref(), &reader).await;
        each_match_in(&mut reader, &filter, |dl| {
            print(&dl, ledger.as_ref(), &mut found, out)?;
            Ok(true)
        })
        .await?;
    }
    if found == 0 {
        let what = a.guid.as_ref().map_or_else(
            || "that offset holds no record (a transaction marker?)".to_owned(),
            |g| format!("no dead letter with guid {g}"),
        );
        eprintln!("{}: {what}", a.topic.topic);
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn export(a: ExportArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let filter = a.filter.to_filter()?;
    let limit = a.limit.unwrap_or(u64::MAX);
    let mut n: u64 = 0;
    each_match(&a.topic, &filter, |dl| {
        if n >= limit {
            return Ok(false);
        }
        n += 1;
        writeln!(out, "{}", dl.export_line(&a.topic.topic))?;
        Ok(n < limit)
    })
    .await?;
    let s = if n == 1 { "" } else { "s" };
    eprintln!("exported {n} dead letter{s} from {}", a.topic.topic);
    Ok(ExitCode::SUCCESS)
}

async fn replay_cmd(a: ReplayArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let opts = ReplayOptions {
        dlq_topic: a.topic.topic.clone(),
        to: a.to,
        filter: a.filter.to_filter()?,
        dry_run: a.dry_run,
        rate: a.rate,
        limit: a.limit,
        max_replays: a.max_replays,
        progress_group: a
            .progress_group
            .unwrap_or_else(|| default_progress_group(&a.topic.topic)),
        from_beginning: a.from_beginning,
        ledger_topic: a
            .ledger_topic
            .unwrap_or_else(|| default_ledger_topic(&a.topic.topic)),
        again: a.again,
        progress_bar: std::io::stderr().is_terminal(),
    };
    let summary = replay(
        &a.topic.kafka.options(),
        &opts,
        out,
        crate::shutdown::interrupted(),
    )
    .await?;
    writeln!(out, "{}", summary.line())?;
    if !opts.dry_run && summary.replayed > 0 {
        writeln!(
            out,
            "progress recorded in consumer group {}, replays in ledger {}",
            opts.progress_group, opts.ledger_topic
        )?;
    }
    if summary.already_replayed > 0 {
        let n = summary.already_replayed;
        // After the summary, also on a terminal where stdout is buffered.
        out.flush()?;
        eprintln!(
            "{n} dead letter{} replayed before (ledger {}); pass --again to send {} anyway",
            if n == 1 { " was" } else { "s were" },
            opts.ledger_topic,
            if n == 1 { "it" } else { "them" }
        );
    }
    Ok(if summary.interrupted {
        ExitCode::from(130)
    } else if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, Subcommand)]
    enum Top {
        Dlq(DlqArgs),
    }

    fn parse(args: &[&str]) -> Result<DlqCommand, clap::Error> {
        let mut argv = vec!["cpn-relay", "dlq"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|c| match c.command {
            Top::Dlq(d) => d.command,
        })
    }

    fn parse_err(args: &[&str]) -> String {
        parse(args).expect_err("should be refused").to_string()
    }

    #[test]
    fn bad_arguments_are_refused_with_the_fix() {
        // (arguments, what the message must say)
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["list", "-t", "D", "--reason", "timeout"],
                &[
                    "--reason",
                    "http_rejected",
                    "retries_exhausted",
                    "invalid_payload",
                ],
            ),
            (
                &["list", "-t", "D", "--since", "yesterday"],
                &["--since", "RFC 3339", "2h"],
            ),
            (
                &["stats", "-t", "D", "--until", "2025-13-01"],
                &["--until", "RFC 3339"],
            ),
            (
                &["list", "-t", "D", "--status", "4x"],
                &["--status", "5xx", "500-504"],
            ),
            (
                &["replay", "-t", "D", "--rate", "fast"],
                &["--rate", "records per second"],
            ),
            (
                &["replay", "-t", "D", "--max-replays", "0"],
                &["--max-replays"],
            ),
            (
                &["list", "-t", "D", "-X", "group.id=relay"],
                &["group.id", "managed"],
            ),
            (&["list", "-t", "D", "-X", "novalue"], &["KEY=VALUE"]),
            (&["show", "-t", "D", "3"], &["PARTITION:OFFSET"]),
            (&["show", "-t", "D"], &["PARTITION:OFFSET", "--guid"]),
        ];
        for (args, wants) in cases {
            let e = parse_err(args);
            for w in *wants {
                assert!(e.contains(w), "{args:?}: {w:?} missing in {e}");
            }
        }
    }

    #[test]
    fn topic_is_required() {
        // SAFETY of the test: only this test reads the variable.
        if std::env::var_os("CPN_KAFKA_DLQ_TOPIC").is_none() {
            let e = parse(&["list"]).expect_err("no topic");
            assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
            assert!(e.to_string().contains("--topic"), "{e}");
        }
    }

    #[test]
    fn filters_parse_into_a_filter() {
        let DlqCommand::List(l) = parse(&[
            "list",
            "-t",
            "D",
            "--reason",
            "http_rejected,invalid_payload",
            "--status",
            "4xx",
            "--status",
            "503",
            "--since",
            "2025-11-25T10:00:00Z",
            "--until",
            "2025-11-26",
            "--campaign-group",
            "G",
            "--calling-list",
            "L",
            "--target",
            "https://crm",
            "--guid",
            "{6F1C4A52-9D7E-4B1A-8C3E-2F5A7B9D0E11}",
            "--json",
        ])
        .unwrap() else {
            panic!("not list")
        };
        let f = l.filter.to_filter().unwrap();
        assert_eq!(
            f.reasons,
            [DlqReason::HttpRejected, DlqReason::InvalidPayload]
        );
        assert_eq!(f.statuses.len(), 2);
        assert!(f.since.is_some() && f.until.is_some());
        assert_eq!(
            (
                f.campaign_groups.len(),
                f.calling_lists.len(),
                f.targets.len(),
                f.guids.len()
            ),
            (1, 1, 1, 1)
        );
        assert!(l.json);
        assert_eq!(
            l.topic.kafka.brokers,
            std::env::var("CPN_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
        );
    }

    #[test]
    fn since_after_until_is_refused() {
        let DlqCommand::Stats(s) = parse(&[
            "stats",
            "-t",
            "D",
            "--since",
            "2025-11-26",
            "--until",
            "2025-11-25",
        ])
        .unwrap() else {
            panic!()
        };
        assert!(
            s.filter
                .to_filter()
                .unwrap_err()
                .to_string()
                .contains("--since")
        );
    }

    #[test]
    fn replay_defaults() {
        let DlqCommand::Replay(r) = parse(&[
            "replay",
            "-t",
            "D",
            "--rate",
            "20/s",
            "-X",
            "security.protocol=SSL",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(r.max_replays, DEFAULT_MAX_REPLAYS);
        assert_eq!(r.rate, Some(20.0));
        assert!(!r.dry_run && !r.from_beginning && r.to.is_none() && r.progress_group.is_none());
        assert!(
            !r.again && r.ledger_topic.is_none(),
            "the ledger is on by default"
        );
        assert_eq!(
            r.topic.kafka.properties,
            [("security.protocol".to_owned(), "SSL".to_owned())]
        );
    }

    #[test]
    fn brokers_take_b_as_cpn_producer_does() {
        for args in [
            &["stats", "-t", "D", "-b", "k:9093"][..],
            &["list", "-t", "D", "-b", "k:9093"],
            &["show", "-t", "D", "-b", "k:9093", "0:1"],
            &["export", "-t", "D", "-b", "k:9093"],
            &["replay", "-t", "D", "-b", "k:9093"],
        ] {
            let brokers = match parse(args).unwrap() {
                DlqCommand::Stats(a) => a.topic.kafka.brokers,
                DlqCommand::List(a) => a.topic.kafka.brokers,
                DlqCommand::Show(a) => a.topic.kafka.brokers,
                DlqCommand::Export(a) => a.topic.kafka.brokers,
                DlqCommand::Replay(a) => a.topic.kafka.brokers,
            };
            assert_eq!(brokers, "k:9093", "{args:?}");
        }
    }

    #[test]
    fn show_takes_coordinates_or_a_guid() {
        let DlqCommand::Show(s) = parse(&["show", "-t", "D", "2:41"]).unwrap() else {
            panic!()
        };
        assert_eq!(s.coordinates, Some((2, 41)));
        let DlqCommand::Show(s) = parse(&["show", "-t", "D", "--guid", "abc"]).unwrap() else {
            panic!()
        };
        assert_eq!(s.guid.as_deref(), Some("abc"));
        assert!(
            parse(&["show", "-t", "D", "1:2", "--guid", "abc"]).is_err(),
            "not both"
        );
    }
}
