//! The shape of `relay/src`, checked: no import cycle between its modules,
//! no I/O crate under `policy/` (directly or through what it imports), and
//! every folder opening with its `//!` tour.
//!
//! A module is a file (`a/mod.rs` is `a`, `a/b.rs` is `a::b`); it imports
//! another when its code names `crate::…` or `super::…` paths into it (in
//! `use` items or inline). Inline test modules (`#[cfg(test)] mod …`) are
//! not the architecture and are left out. A child naming its own ancestor
//! (Rust's `super`) is how a folder's parts share their room's types, not a
//! cycle; every other edge counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates that do I/O: none of them may be reached from `policy/`.
const IO_CRATES: &[&str] = &["tokio", "rdkafka", "reqwest", "hyper", "axum"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `a/b/mod.rs` → `["a", "b"]`, `a/c.rs` → `["a", "c"]`, `lib.rs` → `[]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    match last.as_str() {
        "mod.rs" | "lib.rs" => {}
        file => parts.push(file.trim_end_matches(".rs").to_owned()),
    }
    parts
}

/// The file's code without comments, string contents and inline test modules.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        if line.starts_with("#[cfg(test)]")
            && lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim_start().starts_with("mod "))
        {
            // An inline test module runs to the end of the file by our
            // style; stop at its start.
            break;
        }
        if !line.starts_with("//") {
            let code = line.split(" //").next().unwrap_or("");
            out.push_str(&strip_strings(code));
            out.push('\n');
        }
        i += 1;
    }
    out
}

fn strip_strings(line: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut escaped = false;
    for c in line.chars() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
                out.push('"');
            }
        } else {
            if c == '"' {
                in_str = true;
            }
            out.push(c);
        }
    }
    out
}

/// Every path of the form `crate::a::b` or `super::a` in `code`, with use
/// groups (`crate::a::{b, c::d}`) expanded.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut found = vec![];
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let starts = (rest.starts_with("crate::") || rest.starts_with("super::"))
            && (i == 0
                || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':'));
        if !starts {
            i += 1;
            continue;
        }
        let (paths, end) = parse_path(&bytes, i);
        found.extend(paths);
        i = end.max(i + 1);
    }
    found
}

/// Parses a path starting at `i`, expanding one level of braces at a time;
/// returns the paths and where parsing stopped.
fn parse_path(s: &[char], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = vec![];
    loop {
        let start = i;
        while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
            i += 1;
        }
        if i > start {
            prefix.push(s[start..i].iter().collect::<String>());
        }
        if i + 1 < s.len() && s[i] == ':' && s[i + 1] == ':' {
            i += 2;
            if i < s.len() && s[i] == '{' {
                let mut out = vec![];
                i += 1;
                loop {
                    while i < s.len() && (s[i].is_whitespace() || s[i] == ',') {
                        i += 1;
                    }
                    if i >= s.len() || s[i] == '}' {
                        return (out, i + 1);
                    }
                    let (inner, end) = parse_path(s, i);
                    for p in inner {
                        let mut full = prefix.clone();
                        full.extend(p);
                        out.push(full);
                    }
                    i = end;
                    // Skip `as name` and anything else up to the separator.
                    while i < s.len() && s[i] != ',' && s[i] != '}' {
                        i += 1;
                    }
                }
            }
            continue;
        }
        return (vec![prefix], i);
    }
}

struct Tree {
    /// Module → the modules it imports.
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    /// Module → the external crates it names.
    crates: BTreeMap<Vec<String>, BTreeSet<String>>,
}

fn tree() -> Tree {
    let src = src_dir();
    let mut files = vec![];
    rust_files(&src, &mut files);
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter(|f| !f.ends_with("main.rs"))
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap();
            (module_of(rel), std::fs::read_to_string(f).unwrap())
        })
        .collect();
    let mut edges = BTreeMap::new();
    let mut crates = BTreeMap::new();
    for (module, text) in &modules {
        let code = code_of(text);
        let mut to = BTreeSet::new();
        for path in paths_in(&code) {
            let absolute: Vec<String> = match path.first().map(String::as_str) {
                Some("crate") => path[1..].to_vec(),
                Some("super") => {
                    let mut base = module.clone();
                    let mut rest = &path[..];
                    while rest.first().is_some_and(|p| p == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    base.extend(rest.iter().cloned());
                    base
                }
                _ => continue,
            };
            // The longest known module the path points into.
            let target = (0..=absolute.len())
                .rev()
                .map(|n| absolute[..n].to_vec())
                .find(|m| modules.contains_key(m))
                .unwrap_or_default();
            if &target != module && !module.starts_with(&target) {
                to.insert(target);
            }
        }
        let mut used = BTreeSet::new();
        for krate in IO_CRATES {
            let named = code.contains(&format!("{krate}::"))
                && code.match_indices(&format!("{krate}::")).any(|(i, _)| {
                    i == 0 || {
                        let c = code.as_bytes()[i - 1];
                        !(c.is_ascii_alphanumeric() || c == b'_' || c == b':')
                    }
                });
            if named {
                used.insert((*krate).to_owned());
            }
        }
        edges.insert(module.clone(), to);
        crates.insert(module.clone(), used);
    }
    Tree { edges, crates }
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

#[test]
fn relay_src_has_no_import_cycle() {
    let t = tree();
    // Depth-first search for a back edge; report the cycle it closes.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        m: &Vec<String>,
        t: &Tree,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        marks.insert(m.clone(), Mark::Open);
        stack.push(m.clone());
        for next in t.edges.get(m).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut names: Vec<String> = stack[from..].iter().map(|s| name(s)).collect();
                    names.push(name(next));
                    cycles.push(names.join(" -> "));
                }
                Some(Mark::Done) => {}
                None => visit(next, t, marks, stack, cycles),
            }
        }
        stack.pop();
        marks.insert(m.clone(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut cycles = vec![];
    for m in t.edges.keys() {
        if !marks.contains_key(m) {
            visit(m, &t, &mut marks, &mut vec![], &mut cycles);
        }
    }
    assert!(t.edges.len() > 40, "found only {} modules", t.edges.len());
    assert!(
        cycles.is_empty(),
        "import cycles in relay/src:\n  {}",
        cycles.join("\n  ")
    );
}

#[test]
fn policy_reaches_no_io_crate() {
    let t = tree();
    let roots: Vec<&Vec<String>> = t
        .edges
        .keys()
        .filter(|m| m.first().is_some_and(|r| r == "policy"))
        .collect();
    assert!(roots.len() >= 5, "policy/ has {} modules", roots.len());
    let mut problems = vec![];
    for root in roots {
        // Everything `root` reaches, with the path that reaches it.
        let mut seen: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
        let mut todo = vec![(root.clone(), vec![name(root)])];
        while let Some((m, via)) = todo.pop() {
            if seen.contains_key(&m) {
                continue;
            }
            for next in t.edges.get(&m).into_iter().flatten() {
                let mut v = via.clone();
                v.push(name(next));
                todo.push((next.clone(), v));
            }
            seen.insert(m, via);
        }
        for (m, via) in seen {
            for krate in t.crates.get(&m).into_iter().flatten() {
                problems.push(format!("{} uses {krate}", via.join(" -> ")));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "I/O under policy/:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_checks_see_imports_and_io() {
    // The parser itself: groups, nesting, `super`, and a crate named inline.
    let code = code_of(
        "use crate::a::{b::C, d};\nuse super::e;\nfn f() { tokio::spawn(x); }\n// crate::not::this\n",
    );
    let paths = paths_in(&code);
    assert!(paths.contains(&vec!["crate".into(), "a".into(), "b".into(), "C".into()]));
    assert!(paths.contains(&vec!["crate".into(), "a".into(), "d".into()]));
    assert!(paths.contains(&vec!["super".into(), "e".into()]));
    assert!(!paths.iter().any(|p| p.contains(&"not".to_owned())));
    assert!(code.contains("tokio::"));
}

#[test]
fn every_folder_opens_with_its_tour() {
    let mut missing = vec![];
    fn walk(dir: &Path, missing: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let m = path.join("mod.rs");
                let ok = std::fs::read_to_string(&m)
                    .is_ok_and(|t| t.lines().next().is_some_and(|l| l.starts_with("//!")));
                if !ok {
                    missing.push(m.display().to_string());
                }
                walk(&path, missing);
            }
        }
    }
    walk(&src_dir(), &mut missing);
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    assert!(lib.starts_with("//!"), "lib.rs has no tour");
    assert!(
        missing.is_empty(),
        "folders without a //! tour: {missing:?}"
    );
}
