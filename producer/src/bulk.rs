//! The engines behind the `validate`, `publish` and `generate` commands:
//! many events in, per-line reports and one [`Summary`] out.
//!
//! Reading and parsing run on a plain thread (input is blocking I/O and JSON
//! validation is CPU work), handing batches to the async side over a bounded
//! channel, so a slow broker slows the reader instead of filling memory.
//! Publishing goes through [`Publisher::publish_stream`], which keeps input
//! order per chain. A [`Summary`] counts only what Kafka acknowledged as
//! published: an event whose outcome is unknown (abandoned on a second
//! Ctrl-C) is counted as abandoned, never as published.
//!
//! No terminal handling here: progress and report lines go to callbacks, so
//! the CLI decides between a progress bar and plain output.

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use cpn_schema::{ContactProcessed, Invalid};
use futures::StreamExt;
use futures::stream;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::assign::parse_assigning;
use crate::generate::Generator;
use crate::ndjson::{self, Line, Lines};
use crate::pace::Pace;
use crate::problem::problems_of;
use crate::publisher::{Delivered, PublishError, Publisher, StreamEnd};
use crate::record::Record;

/// Events per batch handed from the reader or generator thread.
const BATCH: usize = 512;
/// Read buffer of the NDJSON reader thread.
const READ_BUFFER_BYTES: usize = 1 << 20;
/// Batches buffered between that thread and the publisher.
const CHANNEL_BATCHES: usize = 64;
/// Outcomes between two progress callbacks.
const PROGRESS_EVERY: u64 = 2_048;

/// Whether events must carry their own GUID and timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Strict spec validity: a missing GUID or timestamp is a problem.
    Required,
    /// As `publish` and ingest read events: missing ones are assigned
    /// (see [`crate::assign`]).
    Assigned,
}

impl Identity {
    fn parse(self, bytes: &[u8]) -> Result<ContactProcessed, Invalid> {
        match self {
            Identity::Required => ContactProcessed::from_json(bytes),
            Identity::Assigned => parse_assigning(bytes, None),
        }
    }
}

/// What a bulk run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Events Kafka acknowledged (or, for `validate` and `generate` to a
    /// writer, events found valid / written).
    pub published: u64,
    /// Lines refused as invalid.
    pub rejected: u64,
    /// Valid events Kafka did not acknowledge.
    pub failed: u64,
    /// Events handed to Kafka whose outcome is unknown because waiting was
    /// abandoned.
    pub abandoned: u64,
    /// Body bytes of the events counted in `published`.
    pub bytes: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The run was stopped (Ctrl-C) before its input ended.
    pub interrupted: bool,
    /// Reading the input failed part-way; what was read before still counts.
    pub input_error: Option<io::Error>,
}

impl Summary {
    /// True when every input line was valid and acknowledged and the input
    /// was read to its end: the condition for exit status 0.
    #[must_use]
    pub fn all_good(&self) -> bool {
        self.rejected == 0
            && self.failed == 0
            && self.abandoned == 0
            && !self.interrupted
            && self.input_error.is_none()
    }

    /// Published events per second of wall time.
    #[must_use]
    pub fn events_per_second(&self) -> f64 {
        rate(self.published as f64, self.elapsed)
    }

    /// Published megabytes (10^6 bytes) of bodies per second.
    #[must_use]
    pub fn megabytes_per_second(&self) -> f64 {
        rate(self.bytes as f64 / 1e6, self.elapsed)
    }
}

fn rate(amount: f64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { amount / secs } else { 0.0 }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "published {}, rejected {}, failed {}",
            self.published, self.rejected, self.failed
        )?;
        if self.abandoned > 0 {
            write!(
                f,
                ", abandoned {} (not confirmed by kafka; may or may not be stored)",
                self.abandoned
            )?;
        }
        write!(
            f,
            " in {:.3} s: {:.0} events/s, {:.2} MB/s",
            self.elapsed.as_secs_f64(),
            self.events_per_second(),
            self.megabytes_per_second()
        )?;
        if self.interrupted {
            f.write_str(" (interrupted before the end of input)")?;
        }
        if let Some(e) = &self.input_error {
            write!(f, " (reading input failed: {e})")?;
        }
        Ok(())
    }
}

/// An error with its chain of causes, `a: b: c`.
#[must_use]
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Validates every line of `input`, writing `line N: FIELD: problem` for each
/// problem to `out`. `published` in the summary counts valid lines.
///
/// # Errors
/// Only I/O errors writing `out`; a read error ends the run and is kept in
/// [`Summary::input_error`].
pub fn validate<R: BufRead, W: Write>(
    input: R,
    mut out: W,
    identity: Identity,
    max_line_bytes: usize,
) -> io::Result<Summary> {
    let started = Instant::now();
    let mut summary = Summary::default();
    for line in Lines::new(input, max_line_bytes) {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                summary.input_error = Some(e);
                break;
            }
        };
        let problems = match &line {
            Line::TooLong { len, .. } => vec![ndjson::too_long(*len, max_line_bytes)],
            Line::Event { bytes, .. } => match identity.parse(bytes) {
                Ok(_) => {
                    summary.published += 1;
                    continue;
                }
                Err(invalid) => problems_of(&invalid),
            },
        };
        summary.rejected += 1;
        for text in ndjson::report(line.number(), &problems) {
            writeln!(out, "{text}")?;
        }
    }
    out.flush()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// One input line after parsing, as the reader thread hands it over.
enum Parsed {
    Valid { number: u64, record: Record },
    Invalid { report: Vec<String> },
    ReadError(io::Error),
}

/// Live counts for progress display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Acknowledged so far.
    pub published: u64,
    /// Rejected as invalid so far.
    pub rejected: u64,
    /// Not acknowledged so far.
    pub failed: u64,
}

/// Callbacks a bulk publish reports through.
pub trait Reporter {
    /// A line for the user: `line N: FIELD: problem`, or a delivery failure.
    fn line(&mut self, text: &str);
    /// Counts so far; called every few thousand outcomes and at the end.
    fn progress(&mut self, progress: Progress);
}

struct State<'r, P: Reporter> {
    summary: Summary,
    reporter: &'r mut P,
    outcomes: u64,
}

impl<P: Reporter> State<'_, P> {
    fn progress(&self) -> Progress {
        Progress {
            published: self.summary.published,
            rejected: self.summary.rejected,
            failed: self.summary.failed,
        }
    }

    fn outcome(
        &mut self,
        number: Option<u64>,
        bytes: usize,
        result: Result<Delivered, PublishError>,
    ) {
        match result {
            Ok(_) => {
                self.summary.published += 1;
                self.summary.bytes += bytes as u64;
            }
            Err(e) => {
                self.summary.failed += 1;
                let text = match number {
                    Some(n) => format!("line {n}: not published: {}", error_chain(&e)),
                    None => format!("not published: {}", error_chain(&e)),
                };
                self.reporter.line(&text);
            }
        }
        self.tick();
    }

    fn tick(&mut self) {
        self.outcomes += 1;
        if self.outcomes % PROGRESS_EVERY == 0 {
            let p = self.progress();
            self.reporter.progress(p);
        }
    }
}

/// Validates and publishes every line of `input`.
///
/// Invalid lines are reported (`line N: FIELD: problem`) and counted as
/// rejected; valid ones are published with a GUID and timestamp assigned when
/// missing. Cancelling `stop` stops reading; what was already handed to Kafka
/// is still awaited. Cancelling `abandon` stops waiting too.
pub async fn publish_ndjson<R, P>(
    publisher: &Publisher,
    input: R,
    max_line_bytes: usize,
    stop: &CancellationToken,
    abandon: &CancellationToken,
    reporter: &mut P,
) -> Summary
where
    R: Read + Send + 'static,
    P: Reporter,
{
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<Vec<Parsed>>(CHANNEL_BATCHES);
    // A plain thread, not spawn_blocking: reading stdin may block forever and
    // must not keep the runtime from shutting down. It ends when the input
    // does or when the receiver is dropped.
    // Without the thread nothing is read: the run fails with that error
    // rather than reporting an empty input.
    let spawn_error = std::thread::Builder::new()
        .name("cpn-ndjson-reader".into())
        .spawn(move || read_and_parse(input, max_line_bytes, &tx))
        .err()
        .map(|e| io::Error::other(format!("could not start the input reader thread: {e}")));

    let state = RefCell::new(State {
        summary: Summary {
            input_error: spawn_error,
            ..Summary::default()
        },
        reporter,
        outcomes: 0,
    });
    // Set when the reader's stream ends on its own, so a signal that arrives
    // after the whole input was read does not count as an interruption.
    let input_ended = Cell::new(false);
    let batches = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let end_marker = stream::poll_fn(|_| {
        input_ended.set(true);
        std::task::Poll::Ready(None)
    });
    let records = batches
        .flat_map(stream::iter)
        .chain(end_marker)
        .take_until(stop.clone().cancelled_owned())
        .filter_map(|parsed| {
            let item = match parsed {
                Parsed::Valid { number, record } => Some(((number, record.value.len()), record)),
                Parsed::Invalid { report, .. } => {
                    let mut s = state.borrow_mut();
                    s.summary.rejected += 1;
                    publisher.metrics().record_rejected(1);
                    for text in &report {
                        s.reporter.line(text);
                    }
                    s.tick();
                    None
                }
                Parsed::ReadError(e) => {
                    state.borrow_mut().summary.input_error = Some(e);
                    None
                }
            };
            std::future::ready(item)
        });
    let end = publisher
        .publish_stream(records, abandon, |(number, bytes), result| {
            state.borrow_mut().outcome(Some(number), bytes, result);
        })
        .await;
    let mut state = state.into_inner();
    finish(&mut state, end, stop, started);
    state.summary.interrupted = stop.is_cancelled() && !input_ended.get();
    let p = state.progress();
    state.reporter.progress(p);
    state.summary
}

fn finish<P: Reporter>(
    state: &mut State<'_, P>,
    end: StreamEnd,
    stop: &CancellationToken,
    started: Instant,
) {
    if let StreamEnd::Abandoned { in_flight } = end {
        state.summary.abandoned = in_flight as u64;
    }
    state.summary.interrupted = stop.is_cancelled();
    state.summary.elapsed = started.elapsed();
}

fn read_and_parse<R: Read>(input: R, max_line_bytes: usize, tx: &mpsc::Sender<Vec<Parsed>>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut lines = Lines::new(
        BufReader::with_capacity(READ_BUFFER_BYTES, input),
        max_line_bytes,
    );
    while let Some(line) = lines.next() {
        let parsed = match line {
            Err(e) => Parsed::ReadError(e),
            Ok(Line::TooLong { number, len }) => Parsed::Invalid {
                report: ndjson::report(number, &[ndjson::too_long(len, max_line_bytes)]),
            },
            Ok(Line::Event { number, bytes }) => match parse_assigning(&bytes, None) {
                Ok(event) => Parsed::Valid {
                    number,
                    record: Record::from_event(&event),
                },
                Err(invalid) => Parsed::Invalid {
                    report: ndjson::report(number, &problems_of(&invalid)),
                },
            },
        };
        let is_error = matches!(parsed, Parsed::ReadError(_));
        batch.push(parsed);
        // Hand the batch on when it is full, and also before a read that may
        // block: input trickling in through a pipe (`tail -f | publish`) is
        // published as it arrives, not when 512 lines have gathered.
        let would_block = lines.buffered() == 0;
        if (batch.len() >= BATCH || is_error || would_block)
            && tx.blocking_send(std::mem::take(&mut batch)).is_err()
        {
            return; // the publisher stopped listening
        }
        if is_error {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
}

/// Writes `count` generated events to `out` as NDJSON, at `pace` if given.
///
/// # Errors
/// I/O errors writing `out` (a closed pipe ends the run with an error).
pub fn generate_to_writer<R: Rng, W: Write>(
    mut generator: Generator<R>,
    count: u64,
    pace: Option<Pace>,
    mut out: W,
) -> io::Result<Summary> {
    let started = Instant::now();
    let mut summary = Summary::default();
    for n in 0..count {
        if let Some(p) = pace {
            wait_until(started, p.due(n), || out.flush())?;
        }
        let mut body = generator.next_event().to_json_vec();
        body.push(b'\n');
        out.write_all(&body)?;
        summary.published += 1;
        summary.bytes += body.len() as u64 - 1;
    }
    out.flush()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Sleeps the current (non-async) thread until `started + due`, calling
/// `before_sleep` first so buffered output is not held back by the pause.
fn wait_until<E>(
    started: Instant,
    due: Duration,
    before_sleep: impl FnOnce() -> Result<(), E>,
) -> Result<(), E> {
    let elapsed = started.elapsed();
    if due > elapsed {
        before_sleep()?;
        std::thread::sleep(due - elapsed);
    }
    Ok(())
}

/// Publishes `count` generated events, at `pace` if given.
///
/// Generation and serialization run on their own thread. Cancelling `stop`
/// stops generating; what was handed to Kafka is still awaited.
pub async fn generate_to_kafka<R, P>(
    publisher: &Publisher,
    generator: Generator<R>,
    count: u64,
    pace: Option<Pace>,
    stop: &CancellationToken,
    abandon: &CancellationToken,
    reporter: &mut P,
) -> Summary
where
    R: Rng + Send + 'static,
    P: Reporter,
{
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<Vec<Record>>(CHANNEL_BATCHES);
    let spawn_error = std::thread::Builder::new()
        .name("cpn-generator".into())
        .spawn(move || generate_records(generator, count, pace, started, &tx))
        .err()
        .map(|e| io::Error::other(format!("could not start the generator thread: {e}")));
    let state = RefCell::new(State {
        summary: Summary {
            input_error: spawn_error,
            ..Summary::default()
        },
        reporter,
        outcomes: 0,
    });
    let batches = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let records = batches
        .flat_map(stream::iter)
        .take_until(stop.clone().cancelled_owned())
        .map(|record| (record.value.len(), record));
    let end = publisher
        .publish_stream(records, abandon, |bytes, result| {
            state.borrow_mut().outcome(None, bytes, result);
        })
        .await;
    let mut state = state.into_inner();
    finish(&mut state, end, stop, started);
    // `generate` has a count, not an input to exhaust: interrupted means fewer
    // than asked for were attempted.
    state.summary.interrupted = stop.is_cancelled()
        && state.summary.published + state.summary.failed + state.summary.abandoned < count;
    let p = state.progress();
    state.reporter.progress(p);
    state.summary
}

fn generate_records<R: Rng>(
    mut generator: Generator<R>,
    count: u64,
    pace: Option<Pace>,
    started: Instant,
    tx: &mpsc::Sender<Vec<Record>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    for n in 0..count {
        if let Some(p) = pace {
            // Hand over what is ready before pausing, so a slow rate is not
            // held back by batching.
            let flushed = wait_until(started, p.due(n), || {
                if batch.is_empty() {
                    return Ok(());
                }
                tx.blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
            });
            if flushed.is_err() {
                return;
            }
        }
        batch.push(Record::from_event(&generator.next_event()));
        if batch.len() >= BATCH
            && tx
                .blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                .is_err()
        {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::SEEDED_START;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn validate_reports_each_problem_with_its_line_and_skips_blank_lines() {
        let mut good = Generator::new(StdRng::seed_from_u64(1), SEEDED_START);
        let a = String::from_utf8(good.next_event().to_json_vec()).unwrap();
        let b = String::from_utf8(good.next_event().to_json_vec()).unwrap();
        let input = format!("{a}\n\n{{\"GSW_MESSAGE\":\"ContactProcessed\"}}\n{b}\nnot json\n");
        let mut out = Vec::new();
        let s = validate(input.as_bytes(), &mut out, Identity::Required, 1 << 20).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!((s.published, s.rejected), (2, 2));
        assert!(!s.all_good());
        assert!(
            out.lines()
                .all(|l| l.starts_with("line 3: ") || l.starts_with("line 5: ")),
            "{out}"
        );
        assert!(out.contains("line 3: GSW_PHONE: "), "{out}");
        assert!(out.contains("line 5: (root): "), "{out}");
    }

    #[test]
    fn validate_required_vs_assigned_identity() {
        let mut event = Generator::new(StdRng::seed_from_u64(2), SEEDED_START).next_event();
        event.user_fields.clear();
        let mut json: serde_json::Value = serde_json::from_slice(&event.to_json_vec()).unwrap();
        json.as_object_mut().unwrap().remove("GSW_MESSAGE_GUID");
        let line = format!("{json}\n");
        let mut out = Vec::new();
        let strict = validate(line.as_bytes(), &mut out, Identity::Required, 1 << 20).unwrap();
        assert_eq!(strict.rejected, 1);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("line 1: GSW_MESSAGE_GUID: ")
        );
        let lenient = validate(line.as_bytes(), io::sink(), Identity::Assigned, 1 << 20).unwrap();
        assert!(lenient.all_good());
    }

    #[test]
    fn generated_ndjson_is_valid_and_deterministic() {
        let run = |seed| {
            let mut out = Vec::new();
            let g = Generator::new(StdRng::seed_from_u64(seed), SEEDED_START);
            let s = generate_to_writer(g, 300, None, &mut out).unwrap();
            assert_eq!(s.published, 300);
            out
        };
        let a = run(5);
        assert_eq!(a, run(5));
        let s = validate(a.as_slice(), io::sink(), Identity::Required, 1 << 20).unwrap();
        assert_eq!((s.published, s.rejected), (300, 0));
    }

    #[test]
    fn summary_exit_condition_and_wording() {
        let mut s = Summary {
            published: 10,
            bytes: 2_000_000,
            elapsed: Duration::from_secs(2),
            ..Summary::default()
        };
        assert!(s.all_good());
        assert_eq!(
            s.to_string(),
            "published 10, rejected 0, failed 0 in 2.000 s: 5 events/s, 1.00 MB/s"
        );
        s.abandoned = 1;
        assert!(!s.all_good());
        assert!(s.to_string().contains("abandoned 1"));
        s.abandoned = 0;
        s.interrupted = true;
        assert!(!s.all_good());
    }

    #[test]
    fn error_chain_joins_sources() {
        let outer = Wrapper(io::Error::other("inner"));
        assert_eq!(error_chain(&outer), "outer: inner");

        #[derive(Debug)]
        struct Wrapper(io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer")
            }
        }
        impl Error for Wrapper {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
    }
}
