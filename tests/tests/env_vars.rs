//! The cpn tools share one environment (`CPN_…`): every variable that
//! cpn-producer reads must be left alone by cpn-relay, which refuses unknown
//! `CPN_<SECTION>_…` variables as it refuses unknown keys in its file. Needs
//! no broker: it reads `--help` and runs `check-config`.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use cpn_e2e::bin_path;

/// The `[env: NAME=…]` names in `cpn-producer SUB --help` for every subcommand.
fn producer_env_names() -> Result<Vec<String>> {
    let producer = bin_path("cpn-producer")?;
    let mut names = Vec::new();
    for sub in ["validate", "publish", "generate", "serve"] {
        let out = Command::new(&producer).args([sub, "--help"]).output()?;
        ensure!(out.status.success(), "cpn-producer {sub} --help failed");
        let help = String::from_utf8(out.stdout)?;
        for part in help.split("[env: ").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

#[test]
fn the_relay_accepts_an_environment_with_every_producer_variable_set() -> Result<()> {
    let names = producer_env_names()?;
    ensure!(
        names.len() >= 15 && names.iter().any(|n| n == "CPN_RETRY_AFTER_SECS"),
        "too few producer variables found: {names:?}"
    );
    let mut relay = Command::new(bin_path("cpn-relay")?);
    relay.args(["check-config", "--target-url", "http://127.0.0.1:1/"]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CPN_")) {
        relay.env_remove(k);
    }
    for n in &names {
        relay.env(n, "1");
    }
    let out = relay.output().context("running cpn-relay check-config")?;
    ensure!(
        out.status.success(),
        "cpn-relay refused cpn-producer's variables: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn the_relay_names_a_mistyped_variable() -> Result<()> {
    let mut relay = Command::new(bin_path("cpn-relay")?);
    relay.args(["check-config", "--target-url", "http://127.0.0.1:1/"]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CPN_")) {
        relay.env_remove(k);
    }
    let out = relay.env("CPN_RETRY_MAX_ATTEMPT", "3").output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1),
        "exit {:?}: {err}",
        out.status.code()
    );
    ensure!(
        err.contains("CPN_RETRY_MAX_ATTEMPT: is not a setting"),
        "{err}"
    );
    Ok(())
}
