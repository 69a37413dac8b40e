//! The fault suite's ledger: every event a scenario publishes is written
//! down with what must become of it, every fault it injects with when it
//! began and ended, and [`Ledger::verify`] then counts everything against
//! DESIGN's invariants:
//!
//! - **no loss**: every event is delivered 2xx at least once, or is in the
//!   dead-letter topic with the reason the scenario expects;
//! - **outage is not poison**: nothing the target would have accepted is
//!   dead-lettered, nothing poison reached the target with a 2xx;
//! - **order per chain**: the first 2xx deliveries of a chain's events come
//!   in offset order;
//! - **duplicates** (extra 2xx of one GUID) stay within the scenario's bound,
//!   the documented one for its faults;
//! - **liveness**: the longest time a partition had an event waiting and
//!   delivered nothing while the target could accept (fault windows marked
//!   `target_down` do not count) stays within the scenario's bound.
//!
//! Each verification writes a JSON report (`target/faults/<name>.json`, or
//! `$CPN_FAULTS_REPORT_DIR`) that `deploy/faults` turns into the table of
//! `RELIABILITY.md`. The scale comes from [`Tier`]: CI scale inside the
//! test command, `CPN_FAULTS=extended` for the long run.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use cpn_mock_crm::MockCrm;
use tokio::task::JoinHandle;

use crate::{ReadRecord, event, produce, producer, read_all};

/// How big a scenario runs: `CPN_FAULTS` unset or `ci` (the test command),
/// or `extended` (≥ 100k events, the figures of `RELIABILITY.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Inside `deploy/test`: small enough for CI's budget.
    Ci,
    /// `CPN_FAULTS=extended`: the long run.
    Extended,
}

impl Tier {
    /// The tier `CPN_FAULTS` asks for.
    ///
    /// # Errors
    /// `CPN_FAULTS` holds something else than `ci` or `extended`.
    pub fn current() -> Result<Self> {
        match std::env::var("CPN_FAULTS").as_deref() {
            Err(_) | Ok("" | "ci") => Ok(Self::Ci),
            Ok("extended") => Ok(Self::Extended),
            Ok(other) => bail!("CPN_FAULTS={other:?}: expected `ci` or `extended`"),
        }
    }

    /// `ci` or `extended` by tier.
    pub fn pick<T>(self, ci: T, extended: T) -> T {
        match self {
            Self::Ci => ci,
            Self::Extended => extended,
        }
    }

    /// How long a scenario of this tier waits for an outcome before failing.
    pub fn deadline(self) -> Duration {
        self.pick(Duration::from_secs(180), Duration::from_secs(900))
    }

    /// `ci` or `extended`.
    pub fn name(self) -> &'static str {
        self.pick("ci", "extended")
    }
}

/// What must become of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Delivered 2xx at least once, never dead-lettered.
    Deliver,
    /// In the dead-letter topic with this `cpn.dlq.reason`, never answered
    /// 2xx.
    DeadLetter(String),
}

#[derive(Clone, Debug)]
struct Entry {
    guid: Option<String>,
    key: Option<Vec<u8>>,
    expect: Expect,
    /// When Kafka acknowledged it (when it was written down).
    published: SystemTime,
}

/// One injected fault.
#[derive(Clone, Debug)]
struct Fault {
    what: String,
    from: SystemTime,
    until: Option<SystemTime>,
    target_down: bool,
}

/// A fault that [`Ledger::begin`] opened; close it with [`Ledger::end`].
#[derive(Clone, Copy, Debug)]
pub struct FaultId(usize);

#[derive(Debug, Default)]
struct Inner {
    /// (partition, offset) → entry.
    entries: BTreeMap<(i32, i64), Entry>,
    by_guid: HashMap<String, (i32, i64)>,
    faults: Vec<Fault>,
    /// Per mock CRM: the next arrival number to read.
    cursors: HashMap<SocketAddr, u64>,
    /// GUID → 2xx answers.
    ok: HashMap<String, usize>,
    /// GUID → time of its first 2xx.
    first_ok: HashMap<String, SystemTime>,
    /// Every 2xx answer's time.
    ok_times: Vec<SystemTime>,
    /// Requests answered otherwise.
    not_ok: usize,
    /// 2xx answers for GUIDs this ledger does not know (published without
    /// an acknowledgement, e.g. while a broker was down).
    unknown_ok: usize,
    /// Acceptable events the scenario's faults may dead-letter (the
    /// rejection guard's documented allowance).
    dead_letter_allowance: usize,
}

/// Everything one scenario published and injected. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Ledger {
    name: String,
    tier: Tier,
    started: Instant,
    inner: Arc<Mutex<Inner>>,
}

/// What a scenario allows.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Extra 2xx deliveries allowed in all (the documented bound for the
    /// faults injected).
    pub duplicates: usize,
    /// The longest time a partition may have an event waiting and deliver
    /// nothing while the target could accept.
    pub stall: Duration,
}

/// The figures of one verified scenario (one row of `RELIABILITY.md`).
#[derive(Clone, Debug)]
pub struct Report {
    /// Scenario name.
    pub name: String,
    /// Events published and acknowledged.
    pub events: usize,
    /// Faults injected.
    pub faults: usize,
    /// Events delivered 2xx at least once.
    pub delivered: usize,
    /// Events in the dead-letter topic.
    pub dead_lettered: usize,
    /// Events neither delivered nor dead-lettered.
    pub lost: usize,
    /// Events the target would have accepted that were dead-lettered.
    pub wrongly_dead_lettered: usize,
    /// Extra 2xx deliveries.
    pub duplicates: usize,
    /// Allowed extra deliveries.
    pub duplicate_bound: usize,
    /// Chains whose first deliveries were out of offset order.
    pub out_of_order: usize,
    /// The longest time a partition had an event waiting and delivered
    /// nothing while the target could accept.
    pub longest_stall: Duration,
    /// Its bound.
    pub stall_bound: Duration,
    /// The longest time from the end of a fault to the next 2xx (time the
    /// target was down meanwhile not counted).
    pub recovery: Duration,
    /// Requests answered other than 2xx.
    pub not_ok_answers: usize,
    /// Wall time of the scenario.
    pub elapsed: Duration,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ledger {
    /// An empty ledger for the scenario `name`, at the tier `CPN_FAULTS`
    /// asks for.
    ///
    /// # Errors
    /// `CPN_FAULTS` is invalid.
    pub fn new(name: &str) -> Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            tier: Tier::current()?,
            started: Instant::now(),
            inner: Arc::default(),
        })
    }

    /// The tier this scenario runs at.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// Writes down an event Kafka acknowledged at `at` (partition, offset).
    pub fn record(&self, guid: Option<&str>, key: Option<&[u8]>, at: (i32, i64), expect: Expect) {
        let mut i = lock(&self.inner);
        if let Some(g) = guid {
            i.by_guid.insert(g.to_owned(), at);
        }
        i.entries.insert(
            at,
            Entry {
                guid: guid.map(str::to_owned),
                key: key.map(<[u8]>::to_vec),
                expect,
                published: SystemTime::now(),
            },
        );
    }

    /// Writes down every event of `sent` (from [`crate::ledger::publish`])
    /// as [`Expect::Deliver`].
    pub fn record_sent(&self, sent: &crate::ledger::Sent) {
        for (g, at) in &sent.at {
            let key = sent.keys.get(g).map(String::as_bytes);
            self.record(Some(g), key, *at, Expect::Deliver);
        }
    }

    /// Lets up to `n` more acceptable events be dead-lettered: what the
    /// rejection guard may let through before it trips
    /// (`rejection_threshold − 1` per episode of a target refusing everybody).
    pub fn allow_dead_letters(&self, n: usize) {
        lock(&self.inner).dead_letter_allowance += n;
    }

    /// Events written down so far.
    pub fn events(&self) -> usize {
        lock(&self.inner).entries.len()
    }

    /// Events delivered 2xx at least once so far (as last observed).
    pub fn delivered(&self) -> usize {
        lock(&self.inner).first_ok.len()
    }

    /// Where Kafka put the event with this GUID.
    pub fn position(&self, guid: &str) -> Option<(i32, i64)> {
        lock(&self.inner).by_guid.get(guid).copied()
    }

    /// 2xx answers per GUID so far (as last observed).
    pub fn ok_counts(&self) -> HashMap<String, usize> {
        lock(&self.inner).ok.clone()
    }

    /// A fault begins now; `target_down` when the target cannot accept
    /// anything meanwhile (time in it is not a stall).
    pub fn begin(&self, what: &str, target_down: bool) -> FaultId {
        let mut i = lock(&self.inner);
        i.faults.push(Fault {
            what: what.to_owned(),
            from: SystemTime::now(),
            until: None,
            target_down,
        });
        FaultId(i.faults.len() - 1)
    }

    /// The fault `id` ends now (its recovery is timed from here).
    pub fn end(&self, id: FaultId) {
        if let Some(f) = lock(&self.inner).faults.get_mut(id.0) {
            f.until = Some(SystemTime::now());
        }
    }

    /// A fault that begins and ends now (a SIGKILL, say).
    pub fn instant(&self, what: &str) {
        let id = self.begin(what, false);
        self.end(id);
    }

    /// Reads what `crm` received since the last call for its address. A
    /// scenario that replaces its CRM by a new one on the same address
    /// calls [`Ledger::forget`] first.
    pub fn observe(&self, crm: &MockCrm) {
        let addr = crm.addr();
        // Only the log's own sequence numbers: the CRM's arrival counter
        // may lag the log, and guessing a restart from it counted requests
        // twice under load.
        let mut cursor = lock(&self.inner).cursors.get(&addr).copied().unwrap_or(0);
        let new = crm.received_since(cursor);
        let mut i = lock(&self.inner);
        for r in new {
            cursor = r.seq + 1;
            if !(200..300).contains(&r.status_sent) {
                i.not_ok += 1;
                continue;
            }
            let Some(g) = r.etag else { continue };
            if !i.by_guid.contains_key(&g) {
                i.unknown_ok += 1;
            }
            i.ok_times.push(r.at);
            i.first_ok.entry(g.clone()).or_insert(r.at);
            *i.ok.entry(g).or_insert(0) += 1;
        }
        i.cursors.insert(addr, cursor);
    }

    /// Reads the CRM on `addr` from its first request again: it is a new
    /// one (what the old one received stays counted).
    pub fn forget(&self, addr: SocketAddr) {
        lock(&self.inner).cursors.remove(&addr);
    }

    /// Positions of events expected to be delivered that have no 2xx yet.
    fn undelivered(&self) -> Vec<(i32, i64)> {
        let i = lock(&self.inner);
        i.entries
            .iter()
            .filter(|(_, e)| e.expect == Expect::Deliver)
            .filter(|(_, e)| e.guid.as_ref().is_none_or(|g| !i.first_ok.contains_key(g)))
            .map(|(at, _)| *at)
            .collect()
    }

    /// Waits until every event to deliver has a 2xx at `crm` (or, within
    /// [`Ledger::allow_dead_letters`], is in the dead-letter topic) and
    /// every event to dead-letter is in `dlq_topic`, within the tier's
    /// deadline.
    ///
    /// # Errors
    /// The deadline passed first (the message says what is missing).
    pub async fn wait_settled(&self, crm: &MockCrm, brokers: &str, dlq_topic: &str) -> Result<()> {
        let deadline = Instant::now() + self.tier.deadline();
        let (want_dlq, allowance) = {
            let i = lock(&self.inner);
            let poison = i
                .entries
                .values()
                .filter(|e| matches!(e.expect, Expect::DeadLetter(_)))
                .count();
            (poison, i.dead_letter_allowance)
        };
        loop {
            self.observe(crm);
            let undelivered = self.undelivered();
            // The DLQ is read only once what is missing could be in it.
            let dead = if undelivered.len() <= allowance && (want_dlq > 0 || allowance > 0) {
                dead_letters(&read_all(brokers, dlq_topic)?)
            } else {
                HashMap::new()
            };
            let missing = undelivered
                .iter()
                .filter(|at| !dead.contains_key(at))
                .count();
            let dlq = {
                let i = lock(&self.inner);
                dead.keys()
                    .filter(|at| {
                        i.entries
                            .get(at)
                            .is_some_and(|e| matches!(e.expect, Expect::DeadLetter(_)))
                    })
                    .count()
            };
            if missing == 0 && dlq >= want_dlq {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: after {:?}, {missing} events never delivered, {dlq} of {want_dlq} \
                     dead letters written",
                    self.name,
                    self.tier.deadline()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Counts everything (see the module doc), writes the report and fails
    /// naming every broken property.
    ///
    /// # Errors
    /// An invariant does not hold, or the report cannot be written.
    pub fn verify(&self, crm: &MockCrm, dlq: &[ReadRecord], bounds: Bounds) -> Result<Report> {
        self.observe(crm);
        let dead = dead_letters(dlq);
        let i = lock(&self.inner);
        let mut problems = Vec::new();
        let (mut lost, mut wrong_dlq, mut wrong_reason, mut poison_ok) = (0, 0, 0, 0);
        let (mut delivered, mut dead_lettered) = (0, 0);
        let mut examples: Vec<String> = Vec::new();
        let note = |what: &str, at: &(i32, i64), examples: &mut Vec<String>| {
            if examples.len() < 8 {
                examples.push(format!("{what} {}:{}", at.0, at.1));
            }
        };
        for (at, e) in &i.entries {
            let ok = e
                .guid
                .as_ref()
                .and_then(|g| i.ok.get(g))
                .copied()
                .unwrap_or(0);
            let dl = dead.get(at);
            delivered += usize::from(ok > 0);
            dead_lettered += usize::from(dl.is_some());
            match (&e.expect, dl) {
                (Expect::Deliver, Some(reason)) => {
                    wrong_dlq += 1;
                    note(
                        &format!("dead-lettered ({reason}) though acceptable:"),
                        at,
                        &mut examples,
                    );
                }
                (Expect::Deliver, None) if ok == 0 => {
                    lost += 1;
                    note("lost:", at, &mut examples);
                }
                (Expect::DeadLetter(_), None) => {
                    lost += 1;
                    note("poison lost (not in the DLQ):", at, &mut examples);
                }
                (Expect::DeadLetter(want), Some(got)) if want != got => {
                    wrong_reason += 1;
                    note(
                        &format!("reason {got}, expected {want}:"),
                        at,
                        &mut examples,
                    );
                }
                _ => {}
            }
            if matches!(e.expect, Expect::DeadLetter(_)) && ok > 0 {
                poison_ok += 1;
                note("poison answered 2xx:", at, &mut examples);
            }
        }
        let duplicates: usize = i.ok.values().map(|n| n.saturating_sub(1)).sum();
        let out_of_order = out_of_order(&i);
        let down: Vec<(SystemTime, SystemTime)> = i
            .faults
            .iter()
            .filter(|f| f.target_down)
            .map(|f| (f.from, f.until.unwrap_or_else(SystemTime::now)))
            .collect();
        let mut times = i.ok_times.clone();
        times.sort_unstable();
        let longest_stall = longest_stall(&i, &down);
        let recovery = i
            .faults
            .iter()
            .filter_map(|f| {
                let until = f.until?;
                let next = *times.get(times.partition_point(|t| *t < until))?;
                Some(gap(until, next).saturating_sub(overlap(until, next, &down)))
            })
            .max()
            .unwrap_or_default();
        if i.faults.iter().any(|f| f.until.is_none()) {
            problems.push("a fault was never ended (Ledger::end)".to_owned());
        }
        let report = Report {
            name: self.name.clone(),
            events: i.entries.len(),
            faults: i.faults.len(),
            delivered,
            dead_lettered,
            lost,
            wrongly_dead_lettered: wrong_dlq,
            duplicates,
            duplicate_bound: bounds.duplicates,
            out_of_order,
            longest_stall,
            stall_bound: bounds.stall,
            recovery,
            not_ok_answers: i.not_ok,
            elapsed: self.started.elapsed(),
        };
        let fault_names: Vec<String> = i.faults.iter().map(|f| f.what.clone()).collect();
        let allowance = i.dead_letter_allowance;
        drop(i);
        self.write(&report, &fault_names)?;
        eprintln!("{}", report.line());
        if lost > 0 {
            problems.push(format!("{lost} events lost"));
        }
        if wrong_dlq > allowance {
            problems.push(format!(
                "{wrong_dlq} events dead-lettered that the target would accept (allowed {allowance})"
            ));
        }
        if wrong_reason > 0 {
            problems.push(format!("{wrong_reason} dead letters with the wrong reason"));
        }
        if poison_ok > 0 {
            problems.push(format!("{poison_ok} poison events answered 2xx"));
        }
        if out_of_order > 0 {
            problems.push(format!("{out_of_order} chains delivered out of order"));
        }
        if duplicates > bounds.duplicates {
            problems.push(format!(
                "{duplicates} duplicate deliveries, bound {}",
                bounds.duplicates
            ));
        }
        if longest_stall > bounds.stall {
            problems.push(format!(
                "stalled {longest_stall:?} without a delivery, bound {:?}",
                bounds.stall
            ));
        }
        if report.events == 0 {
            problems.push("no events were published".to_owned());
        }
        if !problems.is_empty() {
            bail!(
                "{}: {}; e.g. {}",
                self.name,
                problems.join("; "),
                examples.join(", ")
            );
        }
        Ok(report)
    }

    fn write(&self, r: &Report, faults: &[String]) -> Result<()> {
        let dir = report_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let secs = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let json = serde_json::json!({
            "name": r.name,
            "tier": self.tier.name(),
            "finished_at_unix": at,
            "events": r.events,
            "faults": r.faults,
            "fault_list": faults,
            "delivered": r.delivered,
            "dead_lettered": r.dead_lettered,
            "lost": r.lost,
            "wrongly_dead_lettered": r.wrongly_dead_lettered,
            "duplicates": r.duplicates,
            "duplicate_bound": r.duplicate_bound,
            "out_of_order": r.out_of_order,
            "longest_stall_s": secs(r.longest_stall),
            "stall_bound_s": secs(r.stall_bound),
            "recovery_s": secs(r.recovery),
            "not_ok_answers": r.not_ok_answers,
            "elapsed_s": secs(r.elapsed),
        });
        let path = dir.join(format!("{}.{}.json", r.name, self.tier.name()));
        std::fs::write(&path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))
    }
}

impl Report {
    /// One line for the test log.
    pub fn line(&self) -> String {
        format!(
            "fault scenario {}: {} events, {} faults, {} delivered, {} dead-lettered, {} lost, \
             {} wrongly dead-lettered, {} duplicates (bound {}), {} chains out of order, \
             longest stall {:.2} s (bound {:.0} s), recovery {:.2} s, {:.1} s",
            self.name,
            self.events,
            self.faults,
            self.delivered,
            self.dead_lettered,
            self.lost,
            self.wrongly_dead_lettered,
            self.duplicates,
            self.duplicate_bound,
            self.out_of_order,
            self.longest_stall.as_secs_f64(),
            self.stall_bound.as_secs_f64(),
            self.recovery.as_secs_f64(),
            self.elapsed.as_secs_f64(),
        )
    }
}

/// Where reports go: `$CPN_FAULTS_REPORT_DIR`, else `target/faults`.
pub fn report_dir() -> PathBuf {
    std::env::var_os("CPN_FAULTS_REPORT_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/faults"),
        PathBuf::from,
    )
}

fn gap(a: SystemTime, b: SystemTime) -> Duration {
    b.duration_since(a).unwrap_or_default()
}

/// How much of (a, b) the windows cover (windows may overlap each other).
fn overlap(a: SystemTime, b: SystemTime, windows: &[(SystemTime, SystemTime)]) -> Duration {
    let mut clipped: Vec<(SystemTime, SystemTime)> = windows
        .iter()
        .map(|&(s, e)| (s.max(a), e.min(b)))
        .filter(|(s, e)| s < e)
        .collect();
    clipped.sort_unstable();
    let mut total = Duration::ZERO;
    let mut reach = a;
    for (s, e) in clipped {
        let s = s.max(reach);
        if e > s {
            total += gap(s, e);
            reach = e;
        }
    }
    total
}

/// The longest time any partition had an event waiting (published, not yet
/// delivered) and delivered nothing, not counting time in `down` windows.
/// Per partition, so one relay frozen while another delivers its own
/// partitions still shows as the stall of the partitions it held.
fn longest_stall(i: &Inner, down: &[(SystemTime, SystemTime)]) -> Duration {
    // partition → (first 2xx, published) of each delivered event
    let mut parts: HashMap<i32, Vec<(SystemTime, SystemTime)>> = HashMap::new();
    for (&(p, _), e) in &i.entries {
        if let Some(t) = e.guid.as_ref().and_then(|g| i.first_ok.get(g)) {
            parts.entry(p).or_default().push((*t, e.published));
        }
    }
    let mut longest = Duration::ZERO;
    for v in parts.values_mut() {
        v.sort_unstable();
        // suffix minimum of publish times: the oldest event still waiting
        // at each first delivery
        let mut oldest = vec![SystemTime::UNIX_EPOCH; v.len()];
        let mut min = None::<SystemTime>;
        for k in (0..v.len()).rev() {
            let m = min.map_or(v[k].1, |m: SystemTime| m.min(v[k].1));
            oldest[k] = m;
            min = Some(m);
        }
        let mut prev: Option<SystemTime> = None;
        for (k, &(t, _)) in v.iter().enumerate() {
            let from = prev.map_or(oldest[k], |p| p.max(oldest[k]));
            if t > from {
                longest = longest.max(gap(from, t).saturating_sub(overlap(from, t, down)));
            }
            prev = Some(t);
        }
    }
    longest
}

/// Chains (keys) whose delivered events' first 2xx are not in offset order.
fn out_of_order(i: &Inner) -> usize {
    let mut chains: HashMap<&[u8], Vec<(i32, i64, SystemTime)>> = HashMap::new();
    for (&(p, o), e) in &i.entries {
        if let (Some(k), Some(g)) = (&e.key, &e.guid)
            && let Some(t) = i.first_ok.get(g)
        {
            chains.entry(k).or_default().push((p, o, *t));
        }
    }
    let mut n = 0;
    for v in chains.values_mut() {
        v.sort_unstable();
        n += usize::from(v.windows(2).any(|w| w[0].0 == w[1].0 && w[1].2 < w[0].2));
    }
    n
}

/// (original partition, offset) → `cpn.dlq.reason` of dead letters.
fn dead_letters(dlq: &[ReadRecord]) -> HashMap<(i32, i64), String> {
    dlq.iter()
        .filter_map(|r| {
            let p = r.header("__connect.errors.partition")?.parse().ok()?;
            let o = r.header("__connect.errors.offset")?.parse().ok()?;
            Some(((p, o), r.header("cpn.dlq.reason").unwrap_or_default()))
        })
        .collect()
}

/// Events published in the background while a scenario injects faults.
#[derive(Debug)]
pub struct Load {
    task: JoinHandle<Result<usize>>,
}

impl Load {
    /// Publishes `total` valid events over `chains` chains of calling list
    /// `list` (keys `list:chain`), in rounds of one event per chain; each
    /// round waits for its acknowledgements (acks=all), so a chain's events
    /// are in offset order. `rate` (events/s) paces the rounds; `None`
    /// publishes as fast as Kafka acknowledges. Each acknowledged event is
    /// written into `ledger` as [`Expect::Deliver`].
    ///
    /// # Errors
    /// The producer cannot be created.
    pub fn start(
        ledger: &Ledger,
        brokers: &str,
        topic: &str,
        list: &str,
        chains: usize,
        total: usize,
        rate: Option<f64>,
    ) -> Result<Self> {
        let p = producer(brokers)?;
        let (ledger, topic, list) = (ledger.clone(), topic.to_owned(), list.to_owned());
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let chains = chains.max(1);
            let mut done = 0usize;
            let mut n = 0i64;
            while done < total {
                let round: Vec<_> = (0..chains.min(total - done))
                    .map(|c| {
                        let c = i64::try_from(c).unwrap_or(i64::MAX);
                        let (g, b) = event(&list, c, n);
                        (format!("{list}:{c}"), g, b)
                    })
                    .collect();
                let sends = round
                    .iter()
                    .map(|(k, g, b)| produce(&p, &topic, k, Some(g), b));
                for ((k, g, _), r) in round.iter().zip(futures::future::join_all(sends).await) {
                    let at = r.with_context(|| format!("publishing {g}"))?;
                    ledger.record(Some(g), Some(k.as_bytes()), at, Expect::Deliver);
                }
                done += round.len();
                n += 1;
                if let Some(rate) = rate {
                    #[allow(clippy::cast_precision_loss)] // event counts ≪ 2^52
                    let due = Duration::from_secs_f64(done as f64 / rate);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            Ok(done)
        });
        Ok(Self { task })
    }

    /// Whether every event has been published.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until every event is published and acknowledged.
    ///
    /// # Errors
    /// Publishing failed, or the task panicked.
    pub async fn finish(self) -> Result<usize> {
        self.task.await.context("the publishing task panicked")?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn overlap_counts_each_instant_once() {
        let w = [(t(100), t(300)), (t(200), t(400)), (t(900), t(2000))];
        assert_eq!(overlap(t(0), t(1000), &w), Duration::from_millis(400));
        assert_eq!(overlap(t(500), t(800), &w), Duration::ZERO);
    }

    fn entry(ledger: &Ledger, key: &str, at: (i32, i64), guid: &str) {
        ledger.record(Some(guid), Some(key.as_bytes()), at, Expect::Deliver);
    }

    #[test]
    fn a_stall_is_time_with_an_event_waiting_and_nothing_delivered() -> Result<()> {
        let l = Ledger::new("unit")?;
        let mut i = lock(&l.inner);
        for (n, published, ok) in [(1, 0, 100), (2, 500, 600)] {
            let g = format!("g{n}");
            i.entries.insert(
                (0, n),
                Entry {
                    guid: Some(g.clone()),
                    key: None,
                    expect: Expect::Deliver,
                    published: t(published),
                },
            );
            i.first_ok.insert(g, t(ok));
        }
        // Idle between 100 and 500 (nothing waiting) is not a stall.
        assert_eq!(longest_stall(&i, &[]), Duration::from_millis(100));
        assert_eq!(
            longest_stall(&i, &[(t(0), t(90)), (t(520), t(580))]),
            Duration::from_millis(40)
        );
        // An event waiting from 50 to 3000 while others went by.
        i.entries.insert(
            (0, 3),
            Entry {
                guid: Some("g3".into()),
                key: None,
                expect: Expect::Deliver,
                published: t(50),
            },
        );
        i.first_ok.insert("g3".into(), t(3000));
        assert_eq!(longest_stall(&i, &[]), Duration::from_millis(2400));
        Ok(())
    }

    #[test]
    fn a_chain_whose_later_event_came_first_is_out_of_order() -> Result<()> {
        let l = Ledger::new("unit")?;
        entry(&l, "a", (0, 1), "g1");
        entry(&l, "a", (0, 2), "g2");
        entry(&l, "b", (0, 3), "g3");
        entry(&l, "b", (0, 4), "g4");
        let mut i = lock(&l.inner);
        i.first_ok.insert("g1".into(), t(10));
        i.first_ok.insert("g2".into(), t(20));
        i.first_ok.insert("g3".into(), t(30));
        assert_eq!(out_of_order(&i), 0);
        i.first_ok.insert("g4".into(), t(25));
        assert_eq!(out_of_order(&i), 1);
        Ok(())
    }
}
