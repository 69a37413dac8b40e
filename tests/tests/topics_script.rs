//! `deploy/topics`: a dry run creates nothing; a run creates the event and
//! dead-letter topics and the replay ledger with their settings; a second
//! run changes nothing and succeeds; bad values are refused with exit 2
//! naming the option.

use std::process::Command;

use anyhow::{Result, ensure};
use cpn_e2e::{broker, end_offsets, topic_config, unique};

fn topics(brokers: &str, args: &[&str]) -> Result<std::process::Output> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/topics");
    Ok(Command::new(script)
        .args(["-b", brokers])
        .args(args)
        .output()?)
}

#[test]
fn topics_are_created_once_with_their_settings_and_a_dry_run_creates_nothing() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("topics");
    // One broker here: replication 1 (production defaults are 3 and 2).
    let small = ["--replication-factor", "1", "--min-insync-replicas", "1"];
    let mut args = vec!["--topic", topic.as_str(), "--relays", "8"];
    args.extend(small);
    let dry = topics(&brokers, &[args.as_slice(), &["--dry-run"]].concat())?;
    let out = String::from_utf8_lossy(&dry.stdout);
    ensure!(dry.status.success(), "dry run: {dry:?}");
    ensure!(
        out.contains("would run: kafka-topics.sh") && out.contains("--partitions 16"),
        "the dry run shows the command, 16 partitions for 8 relays: {out}"
    );
    ensure!(
        !matches!(end_offsets(&brokers, &topic), Ok(o) if !o.is_empty()),
        "a dry run created {topic}"
    );
    for run in ["first", "second"] {
        let o = topics(&brokers, &args)?;
        ensure!(o.status.success(), "{run} run: {o:?}");
        ensure!(
            end_offsets(&brokers, &topic)?.len() == 16,
            "{run}: 16 partitions"
        );
        let dlq = format!("{topic}.dlq");
        ensure!(
            end_offsets(&brokers, &dlq)?.len() == 16,
            "{run}: the DLQ too"
        );
        ensure!(
            end_offsets(&brokers, &format!("{dlq}.replay-ledger"))?.len() == 1,
            "{run}: the replay ledger, one partition"
        );
        let ledger = tokio::runtime::Runtime::new()?
            .block_on(topic_config(&brokers, &format!("{dlq}.replay-ledger")))?;
        let dlq_config = tokio::runtime::Runtime::new()?.block_on(topic_config(&brokers, &dlq))?;
        ensure!(
            ledger.get("cleanup.policy").map(String::as_str) == Some("compact,delete")
                && ledger.get("retention.ms") == dlq_config.get("retention.ms"),
            "{run}: the ledger is compacted and kept as long as the DLQ: {ledger:?}"
        );
    }
    let bad = topics(&brokers, &["--topic", &topic, "--min-insync-replicas", "4"])?;
    let err = String::from_utf8_lossy(&bad.stderr);
    ensure!(
        bad.status.code() == Some(2) && err.contains("--min-insync-replicas"),
        "min.insync.replicas above the replication factor is refused: {bad:?}"
    );
    Ok(())
}
