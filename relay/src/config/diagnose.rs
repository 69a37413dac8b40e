//! Config errors that point at their place: the key's dotted path, the file,
//! line and column with a caret excerpt (as cargo and rustc show them), or
//! the environment variable that set the value, and what was expected in
//! words a user knows rather than Rust type names.
//!
//! Two readings find every type and key error: the file alone, through
//! `serde_path_to_error` on toml's deserializer (which knows the spans), and
//! then the file with the environment applied (a value that only the
//! environment broke names its variable). Syntax and duplicate keys are
//! toml's parse errors, with their span.

use std::ops::Range;

use serde::de::DeserializeOwned;

/// A file error: `relay.toml:3:16: retry.max_attempts: expected …`, then the
/// line and a caret under the span.
pub(super) fn file_error(
    file: &str,
    text: &str,
    span: Option<Range<usize>>,
    key: Option<&str>,
    message: &str,
) -> String {
    let what = in_words(message);
    let Some(span) = span.filter(|s| s.start <= text.len()) else {
        return match key {
            Some(k) => format!("{file}: {k}: {what}"),
            None => format!("{file}: {what}"),
        };
    };
    let (line, col, line_text) = position(text, span.start);
    // In characters, as the column: a multibyte value gets one caret each.
    let spanned = text.get(span.clone()).map_or(1, |s| s.chars().count());
    let left = line_text.chars().count().saturating_sub(col - 1).max(1);
    let width = spanned.clamp(1, left);
    let gutter = " ".repeat(line.to_string().len());
    let head = match key {
        Some(k) => format!("{file}:{line}:{col}: {k}: {what}"),
        None => format!("{file}:{line}:{col}: {what}"),
    };
    format!(
        "{head}\n{gutter} |\n{line} | {line_text}\n{gutter} | {}{}",
        " ".repeat(col - 1),
        "^".repeat(width)
    )
}

/// 1-based line and column of byte `at`, and the line's text.
fn position(text: &str, at: usize) -> (usize, usize, &str) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_text = text
        .get(start..end)
        .unwrap_or_default()
        .trim_end_matches('\r');
    let col = text.get(start..at).map_or(1, |s| s.chars().count() + 1);
    (line, col, line_text)
}

/// A TOML syntax error (duplicate keys included) at its place, naming the
/// key on that line when there is one.
pub(super) fn syntax_error(file: &str, text: &str, e: &toml::de::Error) -> String {
    let key = e.span().and_then(|span| key_at(text, span.start));
    file_error(file, text, e.span(), key.as_deref(), e.message())
}

/// Reads `text` as `T`, the error with the key's path and span.
pub(super) fn read_file<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, String> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| syntax_error(file, text, &e))?;
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let mut key = key_of(&e.path().to_string(), e.inner().message());
        let mut refined = false;
        // A tagged section (target.auth) reports a bad secret at the table:
        // name the key holding it.
        if e.inner().message().contains("untagged enum SecretSource")
            && let Some(table) = key.clone()
            && let Some(k) = bad_secret_in(text, &table)
        {
            key = Some(format!("{table}.{k}"));
            refined = true;
        }
        // A tagged section reports a wrong type at the table too: name the
        // one key in it holding a value of the type found.
        if let Some(found) = found_in(e.inner().message())
            && let Some(table) = key.clone()
            && let Some(k) = key_with_value(text, &table, found)
        {
            key = Some(format!("{table}.{k}"));
            refined = true;
        }
        // A required key missing (a tagged table's `kind`) next to a key
        // that looks like a misspelling of it: name that one.
        let mut message = e.inner().message().to_owned();
        if let Some(field) = missing_field(&message).map(str::to_owned)
            && let Some(table) = key.clone()
            && let Some(k) = misspelled_in(text, &table, &field)
        {
            message = format!("missing key {field}; is {k} a misspelling of it?");
            key = Some(format!("{table}.{k}"));
            refined = true;
        }
        // An unknown key is shown where it is written (toml points at its
        // table); tagged sections (target.auth) lose toml's span: find the key.
        let written = || key.as_deref().and_then(|k| span_of_key(text, k));
        let span = if refined || unknown_field(e.inner().message()).is_some() {
            written().or_else(|| e.inner().span())
        } else {
            e.inner().span().or_else(written)
        };
        file_error(file, text, span, key.as_deref(), &message)
    })
}

/// `missing field `x`` → `x`.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.trim().strip_prefix("missing field `")?;
    rest.split_once('`').map(|(f, _)| f)
}

/// In table `table`, a key that is not `field` but close to it: one
/// starting with it (`kind_a`), or at most two edits away (`knid`).
fn misspelled_in(text: &str, table: &str, field: &str) -> Option<String> {
    let mut inside = false;
    for line in text.lines() {
        if let Some(h) = table_header(line) {
            inside = h == table;
        } else if inside && let Some((k, _)) = line.split_once('=') {
            let k = k.trim().trim_matches('"');
            if k != field && (k.starts_with(field) || edits(k, field) <= 2) {
                return Some(k.to_owned());
            }
        }
    }
    None
}

/// Levenshtein distance, in characters.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The dotted key written on the line holding byte `at`.
fn key_at(text: &str, at: usize) -> Option<String> {
    let (line_no, _, line) = position(text, at);
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = text
        .lines()
        .take(line_no.saturating_sub(1))
        .filter_map(table_header)
        .last();
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    })
}

/// `[a.b]` → `a.b`.
fn table_header(line: &str) -> Option<String> {
    let t = line.trim();
    let inner = t.strip_prefix('[')?.trim_start_matches('[');
    let end = inner.find(']')?;
    Some(inner[..end].trim().to_owned())
}

/// Keys of tagged sections that hold a secret (`SecretSource`).
const SECRET_KEYS: &[&str] = &["password", "client_secret"];

/// In table `table`, the key whose value is not a secret: an inline table
/// that is not `{ env = .. }` or `{ file = .. }`, or anything but a string
/// under a key that holds a secret.
fn bad_secret_in(text: &str, table: &str) -> Option<String> {
    let is_secret = |v: &toml::Value| match v {
        toml::Value::String(_) => true,
        toml::Value::Table(t) => {
            t.len() == 1
                && (t.get("env").is_some_and(toml::Value::is_str)
                    || t.get("file").is_some_and(toml::Value::is_str))
        }
        _ => false,
    };
    let mut inside = false;
    for line in text.lines() {
        if let Some(h) = table_header(line) {
            inside = h == table;
        } else if inside && let Some((k, _)) = line.split_once('=') {
            let key = k.trim().trim_matches('"');
            let Some((_, v)) = toml::from_str::<toml::Table>(line)
                .ok()
                .and_then(|t| t.into_iter().next())
            else {
                continue;
            };
            if (v.is_table() || SECRET_KEYS.contains(&key)) && !is_secret(&v) {
                return Some(key.to_owned());
            }
        }
    }
    None
}

/// What an `invalid type: FOUND, expected …` message found.
fn found_in(message: &str) -> Option<&str> {
    let rest = message.trim().strip_prefix("invalid type: ")?;
    rest.rsplit_once(", expected ").map(|(found, _)| found)
}

/// In table `table` (a table header `[table]` written in `text`), the one
/// key whose value is what serde `found` (`integer \`5\``, `string "x"`,
/// `sequence`, ...); `None` when no key or several keys match.
fn key_with_value(text: &str, table: &str, found: &str) -> Option<String> {
    let matches = |v: &toml::Value| match v {
        toml::Value::Integer(i) => found == format!("integer `{i}`"),
        toml::Value::Float(f) => found
            .strip_prefix("floating point `")
            .and_then(|r| r.strip_suffix('`'))
            .and_then(|r| r.parse::<f64>().ok())
            .is_some_and(|x| x.to_bits() == f.to_bits()),
        toml::Value::Boolean(b) => found == format!("boolean `{b}`"),
        toml::Value::String(s) => found == format!("string {s:?}"),
        toml::Value::Array(_) => found == "sequence",
        toml::Value::Table(_) => found == "map",
        toml::Value::Datetime(_) => false,
    };
    let mut inside = false;
    let mut hits = Vec::new();
    for line in text.lines() {
        if let Some(h) = table_header(line) {
            inside = h == table;
        } else if inside && let Some((k, _)) = line.split_once('=') {
            let parsed = toml::from_str::<toml::Table>(line).ok();
            if parsed
                .and_then(|t| t.into_iter().next())
                .is_some_and(|(_, v)| matches(&v))
            {
                hits.push(k.trim().trim_matches('"').to_owned());
            }
        }
    }
    match hits.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// Where key `dotted` (`target.auth.client_id`) is written in `text`.
fn span_of_key(text: &str, dotted: &str) -> Option<Range<usize>> {
    let (table, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut inside = table.is_empty();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some(h) = table_header(line) {
            inside = h == table;
        } else if inside
            && let Some((k, _)) = line.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            let start = offset + line.find(k.trim())?;
            return Some(start..start + k.trim().len());
        }
        offset += line.len();
    }
    None
}

/// Reads a table (the file with the environment applied) as `T`; the error
/// names the key and `blame(key)`, the source that set it, and says
/// whether that source is the environment (`blame` then starts with
/// `environment variable`).
pub(super) fn read_value<T: DeserializeOwned>(
    value: toml::Value,
    blame: impl Fn(&str) -> String,
) -> Result<T, (String, bool)> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let key =
            key_of(&e.path().to_string(), &e.to_string()).unwrap_or_else(|| "(config)".to_owned());
        let inner = e.into_inner();
        let who = blame(&key);
        let from_env = who.starts_with("environment variable");
        (format!("{who}: {}", in_words(inner.message())), from_env)
    })
}

/// The key a serde error is about: its path, and for an unknown key the
/// key itself appended (serde reports the table that holds it).
fn key_of(path: &str, message: &str) -> Option<String> {
    let path = if path == "." || path.is_empty() {
        None
    } else {
        Some(path.to_owned())
    };
    match (path, unknown_field(message)) {
        (Some(p), Some(f)) => Some(format!("{p}.{f}")),
        (None, Some(f)) => Some(f.to_owned()),
        (p, None) => p,
    }
}

/// `unknown field `x`, …` → `x`.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(f, _)| f)
}

/// serde's and toml's messages in a user's words.
pub(super) fn in_words(message: &str) -> String {
    let m = message.trim();
    if let Some(rest) = m.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.rsplit_once(", expected ")
    {
        return format!(
            "expected {}, found {}",
            expected_words(expected),
            found_words(found)
        );
    }
    if let Some(rest) = m.strip_prefix("invalid value: ")
        && let Some((found, expected)) = rest.rsplit_once(", expected ")
    {
        return format!(
            "expected {}, found {}",
            expected_words(expected),
            found_words(found)
        );
    }
    if let Some(f) = unknown_field(m) {
        return match m.split_once(", expected one of ") {
            Some((_, keys)) => format!(
                "unknown key {f}; the keys here are {}",
                keys.replace('`', "")
            ),
            None => match m.split_once(", expected ") {
                Some((_, keys)) if keys.contains(" or ") => format!(
                    "unknown key {f}; the keys here are {}",
                    keys.replace('`', "")
                ),
                Some((_, key)) => format!(
                    "unknown key {f}; the only key here is {}",
                    key.replace('`', "")
                ),
                None => format!("unknown key {f}: this table takes no keys"),
            },
        };
    }
    if let Some(rest) = m.strip_prefix("unknown variant `")
        && let Some((v, tail)) = rest.split_once('`')
    {
        let choices = tail
            .trim_start_matches(", expected one of ")
            .trim_start_matches(", expected ")
            .replace('`', "\"");
        return format!("unknown value \"{v}\"; one of {choices}");
    }
    if m.contains("untagged enum SecretSource") {
        return "expected a secret: \"the value\", { env = \"VARIABLE\" } or { file = \"/path\" }"
            .to_owned();
    }
    if let Some(field) = m.strip_prefix("missing field `") {
        return format!("missing key {}", field.trim_end_matches('`'));
    }
    if m.starts_with("duplicate key") {
        return "duplicate key: it is set twice in this table".to_owned();
    }
    m.to_owned()
}

fn expected_words(expected: &str) -> String {
    let e = expected.trim();
    let words = match e {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "a borrowed string" => "a string in quotes",
        "a sequence" => "a list [ ... ]",
        "a map" => "a table",
        _ if e.starts_with("struct ") || e.starts_with("a map") => "a table",
        _ if e.starts_with("a sequence") => "a list [ ... ]",
        _ => return e.replace('`', "\""),
    };
    words.to_owned()
}

fn found_words(found: &str) -> String {
    let f = found.trim();
    for (prefix, words) in [
        ("string ", "the string "),
        ("integer ", "the number "),
        ("floating point ", "the number "),
        ("boolean ", ""),
    ] {
        if let Some(v) = f.strip_prefix(prefix) {
            return format!("{words}{}", v.trim_matches('`'));
        }
    }
    match f {
        "sequence" => "a list".to_owned(),
        "map" => "a table".to_owned(),
        other => other.replace('`', ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_put_in_a_users_words() {
        for (serde, words) in [
            (
                "invalid type: string \"five\", expected u32",
                "expected a whole number, 0 or more, found the string \"five\"",
            ),
            (
                "invalid type: floating point `1.2`, expected a string",
                "expected a string in quotes, found the number 1.2",
            ),
            (
                "invalid value: integer `-3`, expected u32",
                "expected a whole number, 0 or more, found the number -3",
            ),
            (
                "unknown field `client_id`, there are no fields",
                "unknown key client_id: this table takes no keys",
            ),
            (
                "unknown field `urll`, expected one of `url`, `headers`",
                "unknown key urll; the keys here are url, headers",
            ),
        ] {
            assert_eq!(in_words(serde), words);
        }
        assert!(
            in_words("data did not match any variant of untagged enum SecretSource")
                .contains("{ env = ")
        );
    }

    #[test]
    fn a_wrong_type_in_a_tagged_table_is_found_by_its_value() {
        let text = "[target.auth]\nkind = \"oauth2\"\nclient_id = 5\nscope = \"a\"\n\
                    ratio = 1.0\nlist = [1]\n[retry]\nmax_attempts = 5\n";
        let t = "target.auth";
        assert_eq!(
            key_with_value(text, t, "integer `5`").as_deref(),
            Some("client_id")
        );
        assert_eq!(
            key_with_value(text, t, "string \"a\"").as_deref(),
            Some("scope")
        );
        assert_eq!(
            key_with_value(text, t, "floating point `1.0`").as_deref(),
            Some("ratio")
        );
        assert_eq!(
            key_with_value(text, t, "floating point `1`").as_deref(),
            Some("ratio")
        );
        assert_eq!(key_with_value(text, t, "sequence").as_deref(), Some("list"));
        assert_eq!(
            key_with_value(text, t, "integer `7`"),
            None,
            "no such value"
        );
        assert_eq!(key_with_value(text, "retry", "integer `9`"), None);
        let two = "[t]\na = 1\nb = 1\n";
        assert_eq!(key_with_value(two, "t", "integer `1`"), None, "ambiguous");
        assert_eq!(
            found_in("invalid type: integer `5`, expected a string"),
            Some("integer `5`")
        );
    }

    #[test]
    fn a_misspelt_required_key_is_found() {
        let text = "[target.auth]\nknid = \"basic\"\nusername = \"u\"\n";
        assert_eq!(
            misspelled_in(text, "target.auth", "kind").as_deref(),
            Some("knid")
        );
        let text = "[target.auth]\nkind_x = \"basic\"\n";
        assert_eq!(
            misspelled_in(text, "target.auth", "kind").as_deref(),
            Some("kind_x")
        );
        let text = "[target.auth]\nusername = \"u\"\n";
        assert_eq!(misspelled_in(text, "target.auth", "kind"), None);
        assert_eq!(
            (edits("kind", "knid"), edits("", "ab"), edits("abc", "abc")),
            (2, 2, 0)
        );
        assert_eq!(missing_field("missing field `kind`"), Some("kind"));
    }

    #[test]
    fn keys_are_found_by_their_line_and_their_table() {
        let text = "top = 1\n[retry]\nmax_attempts = 5\n[target.auth]\nkind = \"none\"\n";
        assert_eq!(
            key_at(text, text.find("max_attempts").unwrap()).as_deref(),
            Some("retry.max_attempts")
        );
        assert_eq!(key_at(text, 0).as_deref(), Some("top"));
        let at = span_of_key(text, "target.auth.kind").unwrap();
        assert_eq!(&text[at], "kind");
        assert!(span_of_key(text, "retry.kind").is_none());
    }

    #[test]
    fn a_file_error_shows_the_line_and_a_caret_under_the_value() {
        let text = "[retry]\nmax_attempts = \"five\"\n";
        let at = text.find("\"five\"").unwrap();
        let shown = file_error(
            "relay.toml",
            text,
            Some(at..at + 6),
            Some("retry.max_attempts"),
            "invalid type: string \"five\", expected u32",
        );
        assert_eq!(
            shown,
            "relay.toml:2:16: retry.max_attempts: expected a whole number, 0 or more, found the \
             string \"five\"\n  |\n2 | max_attempts = \"five\"\n  |                ^^^^^^"
        );
    }
}
