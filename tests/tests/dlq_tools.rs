//! `cpn-relay dlq …` against the real broker, the real relay and the mock
//! CRM: a relay run dead-letters a known set (rejected, retries exhausted,
//! invalid payloads); the tools must list exactly that set, filter it,
//! count it, show and export it, and replay it so the fixed target gets the
//! same GUIDs — once, with a loop guard for records that fail forever.
//!
//! The tools are run as the real binary (`cargo build -p cpn-relay` first)
//! so exit codes and stdout are what an operator sees.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use cpn_e2e::relay::{RunningRelay, test_config};
use cpn_e2e::{
    ReadRecord, bin_path, broker, committed, create_topic, end_offsets, event, produce, producer,
    read_all, topic_config, unique, wait_for,
};
use cpn_mock_crm::{Behavior, MockCrm};
use cpn_relay::config::RelayConfig;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// What a tool run printed and how it ended.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json_lines(&self) -> Result<Vec<Value>> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
            .collect()
    }
}

/// Runs `cpn-relay dlq ARGS --brokers B` with no CPN_ environment.
async fn dlq(brokers: &str, args: &[&str]) -> Result<Run> {
    let out = tokio::process::Command::new(bin_path("cpn-relay")?)
        .arg("dlq")
        .args(args)
        .args(["--brokers", brokers])
        .env_remove("CPN_KAFKA_DLQ_TOPIC")
        .env_remove("CPN_KAFKA_BROKERS")
        .stdin(Stdio::null())
        .output()
        .await
        .context("running cpn-relay dlq")?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

async fn ok(brokers: &str, args: &[&str]) -> Result<Run> {
    let r = dlq(brokers, args).await?;
    ensure!(
        r.code == 0,
        "dlq {args:?} exited {}: {}\n{}",
        r.code,
        r.stderr,
        r.stdout
    );
    Ok(r)
}

/// One event of the known set and where the relay should put it.
#[derive(Debug, Clone)]
struct Sent {
    guid: Option<String>,
    key: String,
    value: Vec<u8>,
    /// (partition, offset) in the source topic.
    at: (i32, i64),
    /// Expected `cpn.dlq.reason`, `None` when it must be delivered.
    reason: Option<&'static str>,
    status: Option<u16>,
    attempts: u32,
}

struct World {
    brokers: String,
    topic: String,
    dlq: String,
    crm: MockCrm,
    config: RelayConfig,
}

async fn world(behavior: Behavior) -> Result<World> {
    let brokers = broker()?;
    let topic = unique("cp");
    let dlq = format!("{topic}.dlq");
    create_topic(&brokers, &topic, 3).await?;
    create_topic(&brokers, &dlq, 2).await?;
    let crm = MockCrm::start(MockCrm::bind("127.0.0.1:0".parse()?)?, behavior).await?;
    let mut config = test_config(&brokers, &topic, &unique("g"), &crm.url());
    config.retry.max_attempts = 3;
    Ok(World {
        brokers,
        topic,
        dlq,
        crm,
        config,
    })
}

/// An event of calling list `list`, campaign group `group`.
fn event_in(list: &str, group: &str, chain: i64) -> (String, String, Vec<u8>) {
    let (guid, body) = event(list, chain, 0);
    let mut v: Value = serde_json::from_slice(&body).unwrap_or_default();
    v["GSW_CAMPAIGN_GROUP_NAME"] = Value::String(group.to_owned());
    (guid, format!("{list}:{chain}"), v.to_string().into_bytes())
}

/// Publishes the known set: 3 rejected (400), 1 retries exhausted (500 on
/// chain 13), 2 invalid payloads (not JSON; JSON but not a ContactProcessed),
/// 4 good ones.
async fn publish_known_set(w: &World) -> Result<Vec<Sent>> {
    let p = producer(&w.brokers)?;
    let mut sent = Vec::new();
    let mut add =
        |guid: Option<String>, key: String, value: Vec<u8>, at, reason, status, attempts| {
            sent.push(Sent {
                guid,
                key,
                value,
                at,
                reason,
                status,
                attempts,
            });
        };
    for chain in 1..=3 {
        let (g, k, v) = event_in("list-rejected", "G-rejected", chain);
        let at = produce(&p, &w.topic, &k, Some(&g), &v).await?;
        add(Some(g), k, v, at, Some("http_rejected"), Some(400), 1);
    }
    let (g, k, v) = event_in("list-flaky", "G-flaky", 13);
    let at = produce(&p, &w.topic, &k, Some(&g), &v).await?;
    add(Some(g), k, v, at, Some("retries_exhausted"), Some(500), 3);
    let garbage = b"this is not json".to_vec();
    let at = produce(&p, &w.topic, "bad:1", None, &garbage).await?;
    add(
        None,
        "bad:1".into(),
        garbage,
        at,
        Some("invalid_payload"),
        None,
        0,
    );
    let g = uuid::Uuid::new_v4().to_string();
    let half = serde_json::json!({"GSW_MESSAGE": "ContactProcessed", "GSW_MESSAGE_GUID": g})
        .to_string()
        .into_bytes();
    let at = produce(&p, &w.topic, "bad:2", None, &half).await?;
    add(
        Some(g),
        "bad:2".into(),
        half,
        at,
        Some("invalid_payload"),
        None,
        0,
    );
    for chain in 100..104 {
        let (g, k, v) = event_in("list-good", "G-good", chain);
        let at = produce(&p, &w.topic, &k, Some(&g), &v).await?;
        add(Some(g), k, v, at, None, None, 1);
    }
    Ok(sent)
}

async fn wait_dead_letters(w: &World, n: usize) -> Result<Vec<ReadRecord>> {
    wait_for(&format!("{n} dead letters in {}", w.dlq), WAIT, || async {
        read_all(&w.brokers, &w.dlq).ok().filter(|r| r.len() >= n)
    })
    .await
}

async fn wait_delivered(crm: &MockCrm, guids: &[String]) -> Result<()> {
    wait_for(&format!("{} deliveries", guids.len()), WAIT, || async {
        let got = crm.received();
        guids
            .iter()
            .all(|g| {
                got.iter()
                    .any(|r| r.etag.as_deref() == Some(g.as_str()) && r.status_sent == 200)
            })
            .then_some(())
    })
    .await
}

/// The CRM used by the relay run: list-rejected → 400, chain 13 → 500, else 200.
fn picky() -> Behavior {
    Behavior::status(200)
        .reject_when("GSW_CALLING_LIST", "list-rejected", 400)
        .reject_when("GSW_CHAIN_ID", "13", 500)
}

/// A relay run over the known set; returns the set and the dead letters.
async fn dead_lettered_known_set(w: &World) -> Result<(Vec<Sent>, Vec<ReadRecord>)> {
    let relay = RunningRelay::start(w.config.clone())?;
    let sent = publish_known_set(w).await?;
    wait_dead_letters(w, 6).await?;
    let good: Vec<String> = sent
        .iter()
        .filter(|s| s.reason.is_none())
        .filter_map(|s| s.guid.clone())
        .collect();
    wait_delivered(&w.crm, &good).await?;
    relay.stop().await?;
    let dead = read_all(&w.brokers, &w.dlq)?;
    ensure!(
        dead.len() == 6,
        "expected 6 dead letters, got {}",
        dead.len()
    );
    Ok((sent, dead))
}

fn rows_by_original_offset(rows: &[Value]) -> BTreeMap<(i64, i64), &Value> {
    rows.iter()
        .map(|r| {
            (
                (
                    r["original_partition"].as_i64().unwrap_or(-1),
                    r["original_offset"].as_i64().unwrap_or(-1),
                ),
                r,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_returns_exactly_the_dead_lettered_set_and_filters_narrow_it() -> Result<()> {
    let before = SystemTime::now();
    let w = world(picky()).await?;
    let (sent, dead) = dead_lettered_known_set(&w).await?;
    let b = w.brokers.as_str();
    let d = w.dlq.as_str();

    // list --json: one row per dead letter, the exact keys, right coordinates and reasons.
    let rows = ok(b, &["list", "--topic", d, "--json"])
        .await?
        .json_lines()?;
    assert_eq!(rows.len(), 6);
    let keys: BTreeSet<&str> = [
        "partition",
        "offset",
        "guid",
        "reason",
        "http_status",
        "attempts",
        "original_topic",
        "original_partition",
        "original_offset",
        "last_attempt_at",
        "error",
        "replayed",
    ]
    .into();
    for r in &rows {
        let got: BTreeSet<&str> = r
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(got, keys, "{r}");
    }
    let in_dlq: BTreeSet<(i64, i64)> = dead
        .iter()
        .map(|r| (i64::from(r.partition), r.offset))
        .collect();
    let listed: BTreeSet<(i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["partition"].as_i64().unwrap_or(-1),
                r["offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(listed, in_dlq, "coordinates in the dead-letter topic");
    let by_origin = rows_by_original_offset(&rows);
    for s in sent.iter().filter(|s| s.reason.is_some()) {
        let r = by_origin
            .get(&(i64::from(s.at.0), s.at.1))
            .with_context(|| format!("no row for {:?} ({:?})", s.at, s.reason))?;
        assert_eq!(r["original_topic"], w.topic.as_str());
        assert_eq!(r["reason"], s.reason.unwrap_or_default(), "{r}");
        assert_eq!(r["http_status"].as_u64(), s.status.map(u64::from), "{r}");
        assert_eq!(r["attempts"].as_u64(), Some(u64::from(s.attempts)), "{r}");
        if s.value.starts_with(b"{") {
            assert_eq!(r["guid"].as_str(), s.guid.as_deref(), "{r}");
        } else {
            assert!(
                r["guid"].is_null(),
                "a value that is not JSON has no guid: {r}"
            );
        }
        if s.attempts > 0 {
            assert!(r["last_attempt_at"].is_string(), "{r}");
        }
        assert!(r["error"].is_string(), "{r}");
    }

    // Each filter narrows to exactly its part of the set.
    let rejected = &sent[0];
    let rejected_guid = rejected.guid.clone().unwrap_or_default();
    let upper_guid = format!("{{{}}}", rejected_guid.to_uppercase());
    let future = headers_time(SystemTime::now() + Duration::from_secs(3600));
    let past = headers_time(before - Duration::from_secs(1));
    let target = w.crm.url();
    let cases: Vec<(Vec<&str>, usize)> = vec![
        (vec!["--reason", "http_rejected"], 3),
        (vec!["--reason", "retries_exhausted"], 1),
        (vec!["--reason", "invalid_payload"], 2),
        (vec!["--reason", "http_rejected,retries_exhausted"], 4),
        (vec!["--reason", "http_redirect"], 0),
        (vec!["--status", "400"], 3),
        (vec!["--status", "5xx"], 1),
        (vec!["--status", "400-599"], 4),
        (vec!["--guid", &rejected_guid], 1),
        (vec!["--guid", &upper_guid], 1),
        (vec!["--campaign-group", "G-rejected"], 3),
        (
            vec![
                "--campaign-group",
                "G-flaky",
                "--campaign-group",
                "G-rejected",
            ],
            4,
        ),
        (vec!["--calling-list", "list-flaky"], 1),
        (vec!["--calling-list", "list-good"], 0),
        (vec!["--target", &target], 6),
        (vec!["--target", "https://elsewhere.example"], 0),
        (vec!["--since", "1h"], 6),
        (vec!["--since", &past], 6),
        (vec!["--until", &past], 0),
        (vec!["--since", &future], 0),
        (vec!["--reason", "http_rejected", "--status", "5xx"], 0),
    ];
    for (filters, want) in cases {
        let mut args = vec!["list", "--topic", d, "--json"];
        args.extend(&filters);
        let got = ok(b, &args).await?.json_lines()?;
        assert_eq!(got.len(), want, "filters {filters:?}: {got:?}");
    }

    // The table is for people: code names, reasons, coordinates.
    let table = ok(b, &["list", "--topic", d, "--reason", "http_rejected"])
        .await?
        .stdout;
    assert!(table.starts_with("P:OFFSET"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table.contains("33 Answer")
            && table.contains("http_rejected")
            && table.contains(&rejected_guid),
        "{table}"
    );

    // stats
    let stats: Value =
        serde_json::from_str(&ok(b, &["stats", "--topic", d, "--json"]).await?.stdout)?;
    assert_eq!(stats["total"], 6);
    assert_eq!(stats["by_reason"]["http_rejected"], 3);
    assert_eq!(stats["by_reason"]["retries_exhausted"], 1);
    assert_eq!(stats["by_reason"]["invalid_payload"], 2);
    assert_eq!(stats["by_http_status"]["400"], 3);
    assert_eq!(stats["by_http_status"]["(none)"], 2);
    assert_eq!(stats["by_campaign_group"]["G-rejected"], 3);
    assert_eq!(stats["by_media_type"]["voice"], 4);
    assert!(stats["oldest"].is_string() && stats["newest"].is_string());
    let stats_table = ok(b, &["stats", "--topic", d, "--status", "400"])
        .await?
        .stdout;
    assert!(
        stats_table.starts_with(&format!("dead letters in {d}: 3\n")),
        "{stats_table}"
    );

    // show P:O and show --guid
    let row = by_origin
        .get(&(i64::from(rejected.at.0), rejected.at.1))
        .context("rejected row")?;
    let coords = format!("{}:{}", row["partition"], row["offset"]);
    let page = ok(b, &["show", "--topic", d, &coords]).await?.stdout;
    for want in [
        format!("dead letter {d} {coords}"),
        "reason:         http_rejected".to_owned(),
        "call result:    33 Answer".to_owned(),
        format!("cpn.guid: {rejected_guid}"),
        format!("__connect.errors.topic: {}", w.topic),
        "\"GSW_MESSAGE_GUID\"".to_owned(),
    ] {
        assert!(page.contains(&want), "missing {want:?} in\n{page}");
    }
    let by_guid = ok(b, &["show", "--topic", d, "--guid", &rejected_guid])
        .await?
        .stdout;
    assert!(
        by_guid.contains(&format!("dead letter {d} {coords}")),
        "{by_guid}"
    );
    let none = dlq(
        b,
        &[
            "show",
            "--topic",
            d,
            "--guid",
            &uuid::Uuid::new_v4().to_string(),
        ],
    )
    .await?;
    assert_eq!(none.code, 1, "nothing found: {none:?}");
    let gone = dlq(b, &["show", "--topic", d, "0:999999"]).await?;
    assert_eq!(gone.code, 1, "nothing at those coordinates: {gone:?}");
    assert!(gone.stderr.contains("holds offsets"), "{gone:?}");

    // export: every record with every header, value byte for byte.
    let lines = ok(b, &["export", "--topic", d]).await?.json_lines()?;
    assert_eq!(lines.len(), 6);
    let originals: HashMap<(i64, i64), &Sent> = sent
        .iter()
        .map(|s| ((i64::from(s.at.0), s.at.1), s))
        .collect();
    for l in &lines {
        let o = &l["dead_letter"];
        let s = originals
            .get(&(
                o["original_partition"].as_i64().unwrap_or(-1),
                o["original_offset"].as_i64().unwrap_or(-1),
            ))
            .context("export line without its original")?;
        assert_eq!(l["value"].as_str().map(str::as_bytes), Some(&s.value[..]));
        assert_eq!(l["key"].as_str(), Some(s.key.as_str()));
        let dead_letter = dead
            .iter()
            .find(|r| {
                Some(i64::from(r.partition)) == l["partition"].as_i64()
                    && Some(r.offset) == l["offset"].as_i64()
            })
            .context("export line not in the topic")?;
        let names: Vec<&str> = l["headers"]
            .as_array()
            .map(|h| h.iter().filter_map(|x| x["key"].as_str()).collect())
            .unwrap_or_default();
        let want: Vec<&str> = dead_letter
            .headers
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(names, want, "every header, in order");
    }

    // None of it joined a group or committed anything.
    assert_no_reader_groups(b)?;
    Ok(())
}

fn headers_time(t: SystemTime) -> String {
    cpn_relay::dlq::headers::rfc3339(t)
}

/// The read-only commands leave no consumer group behind.
fn assert_no_reader_groups(brokers: &str) -> Result<()> {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let groups = c.fetch_group_list(None, Duration::from_secs(10))?;
    let readers: Vec<&str> = groups
        .groups()
        .iter()
        .map(|g| g.name())
        .filter(|n| n.starts_with("cpn-dlq-reader"))
        .collect();
    ensure!(
        readers.is_empty(),
        "read-only commands left groups behind: {readers:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_the_fix_delivers_the_same_guids_once() -> Result<()> {
    let w = world(picky()).await?;
    let (sent, dead) = dead_lettered_known_set(&w).await?;
    let b = w.brokers.as_str();
    let d = w.dlq.as_str();
    let progress = format!("cpn-dlq-replay.{d}");
    let rejected: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.reason == Some("http_rejected"))
        .collect();

    // --dry-run prints the plan and changes nothing.
    let ends_before = end_offsets(b, &w.topic)?;
    let dry = ok(
        b,
        &[
            "replay",
            "--topic",
            d,
            "--reason",
            "http_rejected",
            "--dry-run",
        ],
    )
    .await?;
    assert_eq!(
        dry.stdout
            .lines()
            .filter(|l| l.starts_with("would replay ") && l.ends_with(" as replay 1"))
            .count(),
        3,
        "{dry:?}"
    );
    assert!(dry.stdout.contains("would replay 3,"), "{dry:?}");
    assert_eq!(
        end_offsets(b, &w.topic)?,
        ends_before,
        "dry run produced nothing"
    );
    assert!(
        committed(b, &progress, d)?.is_empty(),
        "dry run recorded no progress"
    );

    // The target is fixed; replay the rejected ones: one with --limit 1, then
    // the rest (progress picks up after the one replayed).
    w.crm.set_behavior(Behavior::status(200))?;
    let first = ok(
        b,
        &[
            "replay",
            "--topic",
            d,
            "--reason",
            "http_rejected",
            "--limit",
            "1",
        ],
    )
    .await?;
    assert!(
        first.stdout.contains("replayed 1,") && first.stdout.contains("stopped at --limit"),
        "{first:?}"
    );
    let run = ok(b, &["replay", "--topic", d, "--reason", "http_rejected"]).await?;
    assert!(run.stdout.contains("replayed 2,"), "{run:?}");

    // Back in the original topic: same key and value bytes, original headers
    // kept, diagnostics dropped, replay headers added.
    let replayed: Vec<ReadRecord> = read_all(b, &w.topic)?
        .into_iter()
        .filter(|r| r.header("cpn.dlq.replays").is_some())
        .collect();
    assert_eq!(replayed.len(), 3);
    for s in &rejected {
        let r = replayed
            .iter()
            .find(|r| r.value.as_deref() == Some(&s.value[..]))
            .with_context(|| format!("{:?} not replayed", s.guid))?;
        assert_eq!(r.key.as_deref(), Some(s.key.as_bytes()));
        assert_eq!(r.header("cpn.guid"), s.guid.clone(), "original header kept");
        assert_eq!(r.header("cpn.dlq.replays").as_deref(), Some("1"));
        let from = r.header("cpn.dlq.replayed_from").unwrap_or_default();
        let dl = dead
            .iter()
            .find(|x| x.value.as_deref() == Some(&s.value[..]))
            .context("its dead letter")?;
        assert_eq!(from, format!("{d}:{}:{}", dl.partition, dl.offset));
        assert!(
            r.header("cpn.dlq.reason").is_none() && r.header("__connect.errors.topic").is_none(),
            "{:?}",
            r.headers
        );
    }
    // Progress: everything examined, up to the end of the dead-letter topic.
    assert_eq!(
        committed(b, &progress, d)?,
        end_offsets(b, d)?
            .into_iter()
            .filter(|(_, e)| *e > 0)
            .collect()
    );

    // The relay delivers them to the fixed target with the same GUID as ETag.
    let before = w.crm.received().len();
    let relay = RunningRelay::start(w.config.clone())?;
    let guids: Vec<String> = rejected.iter().filter_map(|s| s.guid.clone()).collect();
    wait_delivered(&w.crm, &guids).await?;
    relay.stop().await?;
    for s in &rejected {
        let got: Vec<_> = w
            .crm
            .received()
            .into_iter()
            .skip(before)
            .filter(|r| r.etag == s.guid)
            .collect();
        assert_eq!(got.len(), 1, "{:?} delivered once", s.guid);
        assert_eq!(&got[0].body[..], &s.value[..], "same bytes");
        assert_eq!(got[0].status_sent, 200);
    }

    // A second run replays nothing already replayed.
    let ends = end_offsets(b, &w.topic)?;
    let again = ok(b, &["replay", "--topic", d, "--reason", "http_rejected"]).await?;
    assert!(again.stdout.contains("replayed 0,"), "{again:?}");
    assert_eq!(end_offsets(b, &w.topic)?, ends);
    // Looking at everything again, the ledger still holds them back ...
    let all = ok(
        b,
        &[
            "replay",
            "--topic",
            d,
            "--reason",
            "http_rejected",
            "--from-beginning",
            "--dry-run",
        ],
    )
    .await?;
    assert!(
        all.stdout
            .contains("would replay 0, skipped 3 (3 already replayed, 0 loop guard)"),
        "{all:?}"
    );
    // ... unless asked to send them again.
    let on_purpose = ok(
        b,
        &[
            "replay",
            "--topic",
            d,
            "--reason",
            "http_rejected",
            "--from-beginning",
            "--again",
            "--dry-run",
        ],
    )
    .await?;
    assert!(
        on_purpose.stdout.contains("would replay 3,"),
        "{on_purpose:?}"
    );
    Ok(())
}

/// The replay ledger's records: key → entry, for one dead-letter topic.
fn ledger_entries(b: &str, d: &str) -> Result<BTreeMap<String, Value>> {
    read_all(b, &format!("{d}.replay-ledger"))?
        .into_iter()
        .map(|r| {
            let key = String::from_utf8(r.key.clone().context("a ledger key")?)?;
            let value = serde_json::from_slice(r.value.as_deref().context("a ledger value")?)?;
            Ok((key, value))
        })
        .collect()
}

/// A topic's configuration, key → value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_twice_from_the_beginning_sends_each_dead_letter_once() -> Result<()> {
    // What the ledger is for: an operator runs the same replay twice, with
    // --from-beginning (or another progress group). Before the ledger, the
    // second run sent every original again.
    let w = world(picky()).await?;
    let (sent, dead) = dead_lettered_known_set(&w).await?;
    let b = w.brokers.as_str();
    let d = w.dlq.as_str();
    let rejected: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.reason == Some("http_rejected"))
        .collect();
    let args = [
        "replay",
        "-t",
        d,
        "--reason",
        "http_rejected",
        "--from-beginning",
    ];
    // Before any replay `list` says none was replayed (the ledger does not
    // exist yet, and reading it does not create it).
    let before = ok(b, &["list", "-t", d, "--json"]).await?.json_lines()?;
    assert_eq!(before.len(), 6);
    assert!(
        before
            .iter()
            .all(|r| r.get("replayed") == Some(&Value::Null)),
        "{before:?}"
    );
    ensure!(
        !matches!(end_offsets(b, &format!("{d}.replay-ledger")), Ok(o) if !o.is_empty()),
        "list created the ledger"
    );
    let plain = ok(b, &["list", "-t", d]).await?.stdout;
    assert!(
        !plain.contains("REPLAYED"),
        "no column while none was replayed: {plain}"
    );
    w.crm.set_behavior(Behavior::status(200))?;
    let first = ok(b, &args).await?;
    assert!(
        first
            .stdout
            .contains("replayed 3, skipped 0 (0 already replayed, 0 loop guard)"),
        "{first:?}"
    );
    // Now `list` and `show` say which were replayed, where and how often.
    let after = ok(b, &["list", "-t", d, "--json"]).await?.json_lines()?;
    let replayed_guids: BTreeSet<&str> = after
        .iter()
        .filter(|r| r["replayed"]["times"] == 1)
        .filter(|r| r["replayed"]["replayed_to"].as_str() == Some(w.topic.as_str()))
        .filter_map(|r| r["guid"].as_str())
        .collect();
    let rejected_guids: BTreeSet<&str> =
        rejected.iter().filter_map(|s| s.guid.as_deref()).collect();
    assert_eq!(replayed_guids, rejected_guids, "{after:?}");
    assert_eq!(
        after
            .iter()
            .filter(|r| r.get("replayed") == Some(&Value::Null))
            .count(),
        3,
        "the others were not replayed: {after:?}"
    );
    let table = ok(b, &["list", "-t", d]).await?.stdout;
    assert!(
        table.lines().next().is_some_and(|h| h.contains("REPLAYED")),
        "{table}"
    );
    assert_eq!(table.matches("1×").count(), 3, "{table}");
    let one = rejected[0].guid.as_deref().context("a guid")?;
    let page = ok(b, &["show", "-t", d, "--guid", one]).await?.stdout;
    assert!(
        page.contains(&format!("replay ledger:  1 time, last to {} at ", w.topic)),
        "{page}"
    );
    let line = ok(b, &["show", "-t", d, "--guid", one, "--json"])
        .await?
        .json_lines()?;
    assert_eq!(line[0]["replayed"]["times"], 1, "{line:?}");
    let never = after
        .iter()
        .find(|r| r.get("replayed") == Some(&Value::Null))
        .context("a dead letter not replayed")?;
    let at = format!("{}:{}", never["partition"], never["offset"]);
    let page = ok(b, &["show", "-t", d, &at]).await?.stdout;
    assert!(
        page.contains(&format!(
            "replay ledger:  not replayed (ledger {d}.replay-ledger)"
        )),
        "{page}"
    );
    assert!(
        first
            .stdout
            .contains(&format!("replays in ledger {d}.replay-ledger")),
        "{first:?}"
    );
    // One ledger entry per replayed dead letter, keyed by its coordinates.
    let entries = ledger_entries(b, d)?;
    let mut want = BTreeSet::new();
    for s in &rejected {
        let dl = dead
            .iter()
            .find(|x| x.value.as_deref() == Some(&s.value[..]))
            .context("its dead letter")?;
        let key = format!("{d}:{}:{}", dl.partition, dl.offset);
        let e = entries
            .get(&key)
            .with_context(|| format!("{key} in {entries:?}"))?;
        assert_eq!(e["guid"].as_str(), s.guid.as_deref(), "{e}");
        assert_eq!(e["replayed_to"].as_str(), Some(w.topic.as_str()), "{e}");
        assert_eq!(e["times"], 1, "{e}");
        want.insert(key);
    }
    assert_eq!(entries.keys().cloned().collect::<BTreeSet<_>>(), want);
    // The ledger the replay created: compacted and deleted with the dead
    // letters' retention, as durable as the dead-letter topic.
    let (ledger_config, dlq_config) = (
        topic_config(b, &format!("{d}.replay-ledger")).await?,
        topic_config(b, d).await?,
    );
    assert_eq!(ledger_config["cleanup.policy"], "compact,delete");
    assert_eq!(ledger_config["unclean.leader.election.enable"], "false");
    for k in ["retention.ms", "min.insync.replicas"] {
        assert_eq!(ledger_config[k], dlq_config[k], "{k} copied from the DLQ");
    }

    // The same command again, and with a fresh progress group: nothing sent,
    // the count of what was skipped said.
    let ends = end_offsets(b, &w.topic)?;
    for extra in [&[][..], &["--progress-group", "someone-else"][..]] {
        let second = ok(b, &[&args[..], extra].concat()).await?;
        assert!(
            second
                .stdout
                .contains("replayed 0, skipped 3 (3 already replayed, 0 loop guard)"),
            "{extra:?}: {second:?}"
        );
        assert!(
            second.stderr.contains("already replayed to ")
                && second
                    .stderr
                    .contains("3 dead letters were replayed before")
                && second.stderr.contains("--again"),
            "{extra:?}: {second:?}"
        );
        assert_eq!(
            end_offsets(b, &w.topic)?,
            ends,
            "{extra:?}: nothing produced"
        );
    }

    // The relay delivers each once: 3 requests for 3 events, not 6.
    let before = w.crm.received().len();
    let relay = RunningRelay::start(w.config.clone())?;
    let guids: Vec<String> = rejected.iter().filter_map(|s| s.guid.clone()).collect();
    wait_delivered(&w.crm, &guids).await?;
    // Time for a duplicate to arrive if there were one: the relay's group has
    // consumed to the end of the topic when its lag is 0.
    let group = w.config.kafka.group.clone();
    wait_for("the relay's group to reach the end", WAIT, || async {
        let c = committed(b, &group, &w.topic).ok()?;
        let e = end_offsets(b, &w.topic).ok()?;
        e.iter()
            .all(|(p, end)| *end == 0 || c.get(p) == Some(end))
            .then_some(())
    })
    .await?;
    relay.stop().await?;
    for s in &rejected {
        let n = w
            .crm
            .received()
            .into_iter()
            .skip(before)
            .filter(|r| r.etag == s.guid)
            .count();
        assert_eq!(n, 1, "{:?} delivered once", s.guid);
    }

    // --again sends them on purpose, and the ledger counts the second time.
    let third = ok(b, &[&args[..], &["--again"]].concat()).await?;
    assert!(third.stdout.contains("replayed 3,"), "{third:?}");
    let entries = ledger_entries(b, d)?;
    for key in &want {
        assert_eq!(entries[key]["times"], 2, "{key}: {entries:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_is_not_acknowledged_or_not_recorded_fails_and_is_not_held_back() -> Result<()>
{
    // The ledger entry is written only after the republished record is
    // acknowledged. A republish Kafka refuses leaves no entry; an entry the
    // ledger refuses fails the run (exit 1). Either way the run stops, the
    // progress stays before the record, and a later run sends it.
    use rdkafka::ClientConfig;
    use rdkafka::admin::TopicReplication;
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let w = world(picky()).await?;
    dead_lettered_known_set(&w).await?;
    let b = w.brokers.as_str();
    let d = w.dlq.as_str();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", b).create()?;
    // Topics that refuse every record: at most 1 byte.
    fn tiny(name: &str) -> NewTopic<'_> {
        NewTopic::new(name, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "1")
    }
    let (refusing, broken) = (unique("refusing"), unique("ledger"));
    for r in admin
        .create_topics([&tiny(&refusing), &tiny(&broken)], &AdminOptions::new())
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    let selected = ["replay", "-t", d, "--reason", "http_rejected"];
    let ledger = format!("{d}.replay-ledger");

    // 1. Kafka refuses the republished record: nothing enters the ledger.
    let r = dlq(b, &[&selected[..], &["--to", &refusing]].concat()).await?;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("kafka did not acknowledge the record"),
        "{r:?}"
    );
    assert!(
        read_all(b, &ledger)?.is_empty(),
        "a refused republish is not recorded"
    );

    // 2. The republished record is acknowledged, its entry refused.
    let ends = end_offsets(b, &w.topic)?;
    let r = dlq(b, &[&selected[..], &["--ledger-topic", &broken]].concat()).await?;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("republished, but recording it in the replay ledger")
            && r.stderr.contains(&broken),
        "{r:?}"
    );
    let sent: i64 = end_offsets(b, &w.topic)?
        .iter()
        .map(|(p, e)| e - ends.get(p).copied().unwrap_or(0))
        .sum();
    assert!(sent >= 1, "the first record was republished: {r:?}");
    assert!(read_all(b, &broken)?.is_empty(), "nothing recorded");

    // 3. The ledger takes entries again: the same command, without
    // --from-beginning, sends all three (the progress stayed before them)
    // and records them.
    let mut fix = AlterConfig::new(ResourceSpecifier::Topic(&broken));
    fix = fix.set("max.message.bytes", "1048588");
    for r in admin.alter_configs([&fix], &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("altering {t:?}: {e}"))?;
    }
    let retry = wait_for("the ledger to take entries", WAIT, || async {
        let r = dlq(b, &[&selected[..], &["--ledger-topic", &broken]].concat())
            .await
            .ok()?;
        (r.code == 0).then_some(r)
    })
    .await?;
    assert!(retry.stdout.contains("replayed 3,"), "{retry:?}");
    assert_eq!(read_all(b, &broken)?.len(), 3, "each recorded once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_guard_stops_a_record_that_fails_forever() -> Result<()> {
    // Chain 7 is rejected whatever happens.
    let w = world(Behavior::status(200).reject_when("GSW_CHAIN_ID", "7", 400)).await?;
    let b = w.brokers.as_str();
    let d = w.dlq.as_str();
    let relay = RunningRelay::start(w.config.clone())?;
    let p = producer(b)?;
    let (guid, key, value) = event_in("list-x", "G", 7);
    produce(&p, &w.topic, &key, Some(&guid), &value).await?;
    wait_dead_letters(&w, 1).await?;
    // Two replays; each comes back as a dead letter carrying its count.
    for n in 1..=2 {
        let r = ok(b, &["replay", "--topic", d, "--max-replays", "2"]).await?;
        assert!(r.stdout.contains("replayed 1,"), "replay {n}: {r:?}");
        wait_dead_letters(&w, n + 1).await?;
    }
    relay.stop().await?;
    let dead = read_all(b, d)?;
    let mut counts: Vec<Option<String>> =
        dead.iter().map(|r| r.header("cpn.dlq.replays")).collect();
    counts.sort();
    assert_eq!(
        counts,
        [None, Some("1".to_owned()), Some("2".to_owned())],
        "the count survives dead-lettering"
    );
    // The third time the guard holds it back and says so.
    let ends = end_offsets(b, &w.topic)?;
    let r = ok(b, &["replay", "--topic", d, "--max-replays", "2"]).await?;
    assert!(
        r.stdout
            .contains("replayed 0, skipped 1 (0 already replayed, 1 loop guard)"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("already replayed 2 times") && r.stderr.contains(&guid),
        "{r:?}"
    );
    assert_eq!(end_offsets(b, &w.topic)?, ends, "nothing produced");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_republished_fails_the_run_and_keeps_progress() -> Result<()> {
    use cpn_relay::dlq::headers::{CONNECT_TOPIC, DeadLetterInfo};
    use cpn_relay::dlq::writer::{DeadLetter, DlqWriter};
    use cpn_relay::policy::classify::DlqReason;
    let brokers = broker()?;
    let topic = unique("cp");
    let d = format!("{topic}.dlq");
    create_topic(&brokers, &topic, 1).await?;
    create_topic(&brokers, &d, 1).await?;
    // Written exactly as the relay writes, but without the original topic.
    let writer = DlqWriter::new(&brokers, &d, [])?;
    let info = |offset| DeadLetterInfo {
        reason: DlqReason::HttpRejected,
        http_status: Some(422),
        error: "HTTP 422".into(),
        location: None,
        response_body: Vec::new(),
        attempts: 1,
        first_attempt_at: Some(SystemTime::now()),
        last_attempt_at: Some(SystemTime::now()),
        target: "http://crm/hook".into(),
        group: "g".into(),
        relay: "r".into(),
        topic: topic.clone(),
        partition: 0,
        offset,
        original_timestamp_ms: None,
    };
    let (_, body_ok) = event("l", 1, 0);
    let (_, body_orphan) = event("l", 2, 0);
    let full = info(0).to_headers();
    writer
        .write(&DeadLetter {
            key: Some(b"l:1"),
            value: Some(&body_ok),
            original_headers: None,
            extra: &full,
        })
        .await?;
    let orphan: Vec<_> = info(1)
        .to_headers()
        .into_iter()
        .filter(|(k, _)| *k != CONNECT_TOPIC)
        .collect();
    writer
        .write(&DeadLetter {
            key: Some(b"l:2"),
            value: Some(&body_orphan),
            original_headers: None,
            extra: &orphan,
        })
        .await?;
    writer
        .write(&DeadLetter {
            key: Some(b"l:3"),
            value: Some(&body_ok),
            original_headers: None,
            extra: &full,
        })
        .await?;

    let r = dlq(&brokers, &["replay", "--topic", &d]).await?;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("failed 0:1") && r.stderr.contains("pass --to"),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("replayed 1, skipped 0 (0 already replayed, 0 loop guard), failed 1"),
        "{r:?}"
    );
    let progress = format!("cpn-dlq-replay.{d}");
    assert_eq!(
        committed(&brokers, &progress, &d)?,
        BTreeMap::from([(0, 1)]),
        "stops before the failed record"
    );
    // With --to it goes through, from where it stopped.
    let r = ok(&brokers, &["replay", "--topic", &d, "--to", &topic]).await?;
    assert!(r.stdout.contains("replayed 2,"), "{r:?}");
    assert_eq!(read_all(&brokers, &topic)?.len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_2_with_a_clear_error() -> Result<()> {
    let brokers = broker()?;
    let missing = unique("no-such-topic");
    // (arguments, words the error must contain)
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["list", "--topic", "D", "--reason", "timeout"],
            vec!["--reason", "http_rejected", "invalid_payload"],
        ),
        (
            vec!["list", "--topic", "D", "--since", "yesterday"],
            vec!["--since", "RFC 3339", "2h"],
        ),
        (
            vec!["replay", "--topic", "D", "--until", "10:00"],
            vec!["--until", "RFC 3339"],
        ),
        (vec!["list"], vec!["--topic"]),
        (
            vec!["stats", "--topic", &missing],
            vec!["--topic", &missing, "no such topic"],
        ),
        (
            vec!["replay", "--topic", "D", "-X", "enable.auto.commit=true"],
            vec!["enable.auto.commit", "managed"],
        ),
        (
            vec![
                "list",
                "--topic",
                "D",
                "--since",
                "2025-11-26",
                "--until",
                "2025-11-25",
            ],
            vec!["--since", "--until"],
        ),
    ];
    for (args, words) in cases {
        let r = dlq(&brokers, &args).await?;
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        for w in words {
            assert!(
                r.stderr.contains(w),
                "{args:?}: {w:?} missing in {}",
                r.stderr
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_a_missing_topic_is_refused_before_anything_is_sent() -> Result<()> {
    let w = world(Behavior::status(200)).await?;
    let missing = unique("nowhere");
    let r = dlq(&w.brokers, &["replay", "--topic", &w.dlq, "--to", &missing]).await?;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("--to") && r.stderr.contains(&missing),
        "{r:?}"
    );
    let r = dlq(&w.brokers, &["replay", "--topic", &w.dlq, "--to", &w.dlq]).await?;
    assert_eq!(r.code, 2, "{r:?}");
    if r.stderr.is_empty() {
        bail!("no error text");
    }
    Ok(())
}
