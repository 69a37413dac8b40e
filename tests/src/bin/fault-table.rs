//! `fault-table [DIR] [--tier ci|extended]`: the scenario table of
//! `RELIABILITY.md` (Markdown, on stdout) from the JSON reports the fault
//! suite writes (`target/faults/<scenario>.<tier>.json`, see
//! `cpn_e2e::faults`). `deploy/faults` runs the suite, then this.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

fn main() -> ExitCode {
    let mut dir = cpn_e2e::faults::report_dir();
    let mut tier = "extended".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--tier" => match args.next() {
                Some(t) if t == "ci" || t == "extended" => tier = t,
                other => {
                    eprintln!("fault-table: --tier takes ci or extended, got {other:?}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("usage: fault-table [DIR] [--tier ci|extended]   (DIR: target/faults)");
                return ExitCode::SUCCESS;
            }
            _ => dir = PathBuf::from(a),
        }
    }
    let suffix = format!(".{tier}.json");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("fault-table: cannot read {}: {e}", dir.display());
            return ExitCode::from(1);
        }
    };
    let mut rows: Vec<Value> = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if !path.to_string_lossy().ends_with(&suffix) {
            continue;
        }
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
        {
            Ok(v) => rows.push(v),
            Err(e) => {
                eprintln!("fault-table: {}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
    }
    if rows.is_empty() {
        eprintln!("fault-table: no *{suffix} reports in {}", dir.display());
        return ExitCode::from(1);
    }
    rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    println!(
        "| scenario | events | faults injected | delivered | dead-lettered | lost | \
         duplicates (bound) | longest stall (bound) | recovery | wall time |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let n = |v: &Value, k: &str| {
        v[k].as_u64()
            .map_or_else(|| "?".to_owned(), |x| x.to_string())
    };
    let s = |v: &Value, k: &str| {
        v[k].as_f64()
            .map_or_else(|| "?".to_owned(), |x| format!("{x:.2} s"))
    };
    for r in &rows {
        let faults = r["fault_list"]
            .as_array()
            .map(|l| summarize(l))
            .unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} ({}) | {} ({}) | {} | {} |",
            r["name"].as_str().unwrap_or("?"),
            n(r, "events"),
            faults,
            n(r, "delivered"),
            n(r, "dead_lettered"),
            n(r, "lost"),
            n(r, "duplicates"),
            n(r, "duplicate_bound"),
            s(r, "longest_stall_s"),
            s(r, "stall_bound_s"),
            s(r, "recovery_s"),
            s(r, "elapsed_s"),
        );
    }
    ExitCode::SUCCESS
}

/// "SIGKILL relay #1" … "#10" → "10 × SIGKILL relay"; others as they are.
fn summarize(list: &[Value]) -> String {
    let mut out: Vec<(String, usize)> = Vec::new();
    for f in list.iter().filter_map(Value::as_str) {
        let base = f.split(" #").next().unwrap_or(f).to_owned();
        match out.iter_mut().find(|(b, _)| *b == base) {
            Some((_, c)) => *c += 1,
            None => out.push((base, 1)),
        }
    }
    out.into_iter()
        .map(|(b, c)| if c > 1 { format!("{c} × {b}") } else { b })
        .collect::<Vec<_>>()
        .join("; ")
}
