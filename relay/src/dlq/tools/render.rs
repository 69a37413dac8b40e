//! What people read: the `list` table and the `show` page of a dead letter.
//! Machine formats live with their data (`DeadLetterView::list_row`,
//! `export_line`, `Stats::to_json`).
//!
//! Pure: the caller passes the terminal width (`None` when the output is
//! not a terminal: nothing is cut). Code names come from `cpn_schema::codes`
//! and are for people only (spec/enumerations.md).

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::dlq::headers::{RESPONSE_BODY, rfc3339};
use crate::dlq::record::{DeadLetterView, hex};

/// Narrowest the elastic `ERROR` column gets before columns are dropped.
const MIN_ERROR_WIDTH: usize = 12;
/// Space between columns.
const GAP: &str = "  ";

/// `33 Answer`: the code and its display name.
pub fn call_result_label(code: i64) -> String {
    format!("{code} {}", cpn_schema::codes::call_result_display(code))
}

/// A time for tables: `2025-11-25 10:00:01` (UTC, seconds).
pub fn short_time(t: SystemTime) -> String {
    let s = rfc3339(t);
    s.get(..19)
        .map_or_else(|| s.clone(), |p| p.replacen('T', " ", 1))
}

/// One line of text: control characters (newlines in error texts) become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `s` cut to `width` characters, ending in `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

struct Column {
    title: &'static str,
    cells: Vec<String>,
    /// Dropped first when the terminal is too narrow: higher goes first;
    /// 0 is never dropped.
    drop_rank: u8,
    /// A column wider than this is cut (the error column takes what is left).
    max: usize,
}

/// The `list` table: one row per dead letter. With a `width`, the table is
/// made to fit: the error column is cut, then the least useful columns
/// (campaign group, tries, call result, HTTP status, time, replayed) are
/// dropped. `replayed`, one cell per row (`None`: never replayed), adds the
/// `REPLAYED` column: what the replay ledger says (`None`: it was not read).
pub fn list_table(
    rows: &[DeadLetterView],
    replayed: Option<&[Option<String>]>,
    width: Option<usize>,
) -> String {
    let dash = || "-".to_owned();
    let col = |title, drop_rank, max, f: &dyn Fn(&DeadLetterView) -> Option<String>| Column {
        title,
        cells: rows
            .iter()
            .map(|d| f(d).map_or_else(dash, |s| one_line(&s)))
            .collect(),
        drop_rank,
        max,
    };
    let mut columns = vec![
        col("P:OFFSET", 0, 24, &|d| Some(d.coordinates())),
        // Last attempt, else (no request made) when it was dead-lettered.
        col("GAVE UP (UTC)", 4, 19, &|d| d.at().map(short_time)),
        col("REASON", 0, 17, &|d| d.reason.clone()),
        col("HTTP", 5, 4, &|d| d.http_status.map(|s| s.to_string())),
        col("TRIES", 7, 5, &|d| d.attempts.map(|a| a.to_string())),
        col("GUID", 0, 45, &|d| d.guid().map(str::to_owned)),
        col("CALL RESULT", 6, 20, &|d| {
            d.event
                .as_ref()
                .and_then(|e| e.call_result)
                .map(call_result_label)
        }),
        col("CAMPAIGN GROUP", 8, 20, &|d| {
            d.event.as_ref().and_then(|e| e.campaign_group.clone())
        }),
        col("ERROR", 0, usize::MAX, &|d| d.error.clone()),
    ];
    if let Some(cells) = replayed {
        let at = columns.iter().position(|c| c.title == "GUID").unwrap_or(0);
        columns.insert(
            at,
            Column {
                title: "REPLAYED",
                cells: (0..rows.len())
                    .map(|i| cells.get(i).cloned().flatten().unwrap_or_else(dash))
                    .collect(),
                drop_rank: 3,
                max: 12,
            },
        );
    }
    let natural = |c: &Column| {
        c.cells
            .iter()
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(0)
            .max(c.title.len())
            .min(c.max)
    };
    if let Some(w) = width {
        loop {
            let fixed: usize = columns[..columns.len() - 1]
                .iter()
                .map(|c| natural(c) + GAP.len())
                .sum();
            if fixed + MIN_ERROR_WIDTH <= w {
                break;
            }
            let Some(i) = columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.drop_rank > 0)
                .max_by_key(|(_, c)| c.drop_rank)
                .map(|(i, _)| i)
            else {
                break;
            };
            columns.remove(i);
        }
    }
    let mut widths: Vec<usize> = columns.iter().map(natural).collect();
    if let (Some(w), Some(last)) = (width, widths.len().checked_sub(1)) {
        let fixed: usize = widths[..last].iter().map(|x| x + GAP.len()).sum();
        widths[last] = widths[last].min(w.saturating_sub(fixed).max(MIN_ERROR_WIDTH));
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                l.push_str(GAP);
            }
            let cut = fit(cell, *w);
            if i + 1 == cells.len() {
                l.push_str(&cut);
            } else {
                // Writing to a String cannot fail.
                let _ = write!(l, "{cut:<w$}");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(columns.iter().map(|c| c.title).collect());
    for r in 0..rows.len() {
        line(columns.iter().map(|c| c.cells[r].as_str()).collect());
    }
    out
}

/// Header bytes for people: the text when UTF-8, else `hex:…`; null as `(null)`.
fn header_text(v: Option<&[u8]>) -> String {
    match v {
        None => "(null)".to_owned(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            Err(_) => format!("hex:{}", hex(b)),
        },
    }
}

/// Bytes as a page: JSON re-indented (keys in their original order, values
/// as written), else the text (lossy).
fn pretty(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => reindent(text),
        _ => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Re-indents valid JSON text by two spaces, touching nothing but the
/// whitespace between tokens.
fn reindent(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                while chars.next_if(|n| n.is_whitespace()).is_some() {}
                out.push(c);
                if chars.peek().is_some_and(|n| *n == '}' || *n == ']') {
                    continue;
                }
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                let empty = out.ends_with('{') || out.ends_with('[');
                if !empty {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// The `show` page: where the dead letter is, what the relay recorded, what
/// the replay ledger says of it (`replayed`, when it was read), every
/// header, the response excerpt and the value pretty-printed.
pub fn show_page(dl: &DeadLetterView, topic: &str, replayed: Option<&str>) -> String {
    let mut o = String::new();
    let or_dash = |s: Option<String>| s.unwrap_or_else(|| "-".to_owned());
    let time = |t: Option<SystemTime>| or_dash(t.map(rfc3339));
    // Writing to a String cannot fail.
    let _ = writeln!(o, "dead letter {topic} {}", dl.coordinates());
    let fields: Vec<(&str, String)> = vec![
        ("written at", time(dl.timestamp())),
        (
            "key",
            or_dash(dl.raw.key.as_deref().map(|k| header_text(Some(k)))),
        ),
        ("reason", or_dash(dl.reason.clone())),
        (
            "http status",
            or_dash(dl.http_status.map(|s| s.to_string())),
        ),
        ("error", or_dash(dl.error.clone())),
        ("attempts", or_dash(dl.attempts.map(|a| a.to_string()))),
        ("first attempt", time(dl.first_attempt_at)),
        ("last attempt", time(dl.last_attempt_at)),
        ("target", or_dash(dl.target.clone())),
        ("group", or_dash(dl.group.clone())),
        ("relay", or_dash(dl.relay.clone())),
        (
            "original",
            match (
                &dl.original_topic,
                dl.original_partition,
                dl.original_offset,
            ) {
                (Some(t), Some(p), Some(off)) => format!("{t} {p}:{off}"),
                (t, p, off) => format!(
                    "{} {}:{}",
                    or_dash(t.clone()),
                    or_dash(p.map(|x| x.to_string())),
                    or_dash(off.map(|x| x.to_string()))
                ),
            },
        ),
        (
            "original time",
            or_dash(dl.original_timestamp_ms.and_then(|ms| {
                let ms = u64::try_from(ms).ok()?;
                Some(rfc3339(
                    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                ))
            })),
        ),
        ("replays", dl.replays.to_string()),
        ("replayed from", or_dash(dl.replayed_from.clone())),
        ("guid", or_dash(dl.guid().map(str::to_owned))),
    ];
    let mut fields = fields;
    if let Some(r) = replayed {
        fields.insert(fields.len() - 1, ("replay ledger", r.to_owned()));
    }
    if let Some(e) = &dl.event {
        fields.push(("campaign group", or_dash(e.campaign_group.clone())));
        fields.push(("campaign", or_dash(e.campaign.clone())));
        fields.push(("calling list", or_dash(e.calling_list.clone())));
        fields.push(("media type", or_dash(e.media_type.clone())));
        fields.push(("call result", or_dash(e.call_result.map(call_result_label))));
    }
    for (k, v) in &fields {
        let _ = writeln!(o, "  {:<15} {}", format!("{k}:"), one_line(v));
    }
    let _ = writeln!(o, "\nheaders ({}):", dl.raw.headers.len());
    for (k, v) in &dl.raw.headers {
        if k == RESPONSE_BODY {
            let n = v.as_ref().map_or(0, Vec::len);
            let _ = writeln!(o, "  {k}: ({n} bytes, below)");
        } else {
            let _ = writeln!(o, "  {k}: {}", one_line(&header_text(v.as_deref())));
        }
    }
    if let Some(body) = &dl.response_body {
        let _ = writeln!(o, "\nresponse body (excerpt):\n{}", pretty(body));
    }
    match &dl.raw.value {
        Some(v) => {
            let note = if dl.event.is_some() {
                ""
            } else {
                " (not a JSON object)"
            };
            let _ = writeln!(o, "\nvalue, {} bytes{note}:\n{}", v.len(), pretty(v));
        }
        None => {
            let _ = writeln!(o, "\nvalue: (null)");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::headers::{self as h};
    use crate::dlq::record::RawDeadLetter;

    fn dl(offset: i64, error: &str, value: &str) -> DeadLetterView {
        DeadLetterView::decode(RawDeadLetter {
            partition: 0,
            offset,
            timestamp_ms: Some(1_764_064_800_000),
            key: Some(b"L:1".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![
                (h::REASON.into(), Some(b"http_rejected".to_vec())),
                (h::HTTP_STATUS.into(), Some(b"422".to_vec())),
                (h::ATTEMPTS.into(), Some(b"1".to_vec())),
                (h::ERROR.into(), Some(error.as_bytes().to_vec())),
                (
                    h::RESPONSE_BODY.into(),
                    Some(br#"{"detail":"bad list"}"#.to_vec()),
                ),
                ("bin".into(), Some(vec![0xff, 0x00])),
            ],
        })
    }

    const BODY: &str = r#"{"GSW_MESSAGE_GUID":"6f1c4a52-9d7e-4b1a-8c3e-2f5a7b9d0e11","GSW_CALL_RESULT":33,"GSW_CAMPAIGN_GROUP_NAME":"Spring sale"}"#;

    #[test]
    fn table_shows_code_names_and_fits_the_width() {
        let rows = [
            dl(
                1,
                "HTTP 422 with a long explanation\nthat goes on and on and on",
                BODY,
            ),
            dl(2, "x", "not json"),
        ];
        let wide = list_table(&rows, None, None);
        assert!(wide.contains("33 Answer"), "{wide}");
        assert!(wide.contains("Spring sale"), "{wide}");
        assert!(
            wide.contains("that goes on and on"),
            "not cut without a width: {wide}"
        );
        for width in [80, 100, 140] {
            let t = list_table(&rows, None, Some(width));
            for l in t.lines() {
                assert!(l.chars().count() <= width, "width {width}: {l:?}\n{t}");
            }
            assert!(
                t.contains("6f1c4a52-9d7e-4b1a-8c3e-2f5a7b9d0e11"),
                "the GUID is never cut: {t}"
            );
            assert!(t.contains("0:2"));
        }
        let usual = list_table(&rows, None, Some(120));
        assert!(
            usual.contains("33 Answer") && usual.contains("422"),
            "a 120-column terminal keeps them: {usual}"
        );
        let narrow = list_table(&rows, None, Some(80));
        assert!(
            !narrow.contains("CAMPAIGN GROUP"),
            "dropped first: {narrow}"
        );
    }

    #[test]
    fn the_replayed_column_says_what_the_ledger_holds_and_fits_too() {
        let rows = [dl(1, "x", BODY), dl(2, "y", BODY)];
        let cells = [Some("2×".to_owned()), None];
        let t = list_table(&rows, Some(&cells), None);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("REPLAYED"), "{t}");
        assert!(lines[1].contains("2×"), "{t}");
        assert!(!lines[2].contains('×'), "{t}");
        for width in [80, 100] {
            let t = list_table(&rows, Some(&cells), Some(width));
            for l in t.lines() {
                assert!(l.chars().count() <= width, "width {width}: {l:?}\n{t}");
            }
        }
        assert!(
            !list_table(&rows, None, None).contains("REPLAYED"),
            "no column when the ledger was not read"
        );
        let p = show_page(&rows[0], "D", Some("2 times, last to T at now"));
        assert!(
            p.contains("replay ledger:  2 times, last to T at now"),
            "{p}"
        );
    }

    #[test]
    fn a_row_without_values_shows_dashes() {
        let bare = DeadLetterView::decode(RawDeadLetter {
            partition: 4,
            offset: 0,
            timestamp_ms: None,
            key: None,
            value: None,
            headers: vec![],
        });
        let t = list_table(&[bare], None, None);
        let row: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[0], "4:0");
        assert!(row[1..].iter().all(|c| *c == "-"), "{t}");
    }

    #[test]
    fn show_page_decodes_everything() {
        let p = show_page(&dl(5, "HTTP 422", BODY), "D", None);
        for want in [
            "dead letter D 0:5",
            "reason:         http_rejected",
            "http status:    422",
            "call result:    33 Answer",
            "cpn.dlq.response_body: (21 bytes, below)",
            "bin: hex:ff00",
            "\"detail\": \"bad list\"",
            "\"GSW_CALL_RESULT\": 33",
        ] {
            assert!(p.contains(want), "missing {want:?} in\n{p}");
        }
        let not_json = show_page(&dl(6, "x", "oops"), "D", None);
        assert!(
            not_json.contains("(not a JSON object):\noops"),
            "{not_json}"
        );
    }

    #[test]
    fn json_is_reindented_in_its_own_order() {
        let text = r#"{"z":1, "a":{"s":"x,\\\"{y}"},"e":[],"o":{},"l":[1,2.50]}"#;
        let want = "{\n  \"z\": 1,\n  \"a\": {\n    \"s\": \"x,\\\\\\\"{y}\"\n  },\n  \"e\": [],\n  \"o\": {},\n  \"l\": [\n    1,\n    2.50\n  ]\n}";
        assert_eq!(pretty(text.as_bytes()), want);
        assert_eq!(pretty(b"{not json"), "{not json");
    }

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abcdef", 0), "");
        assert_eq!(
            short_time(crate::dlq::headers::parse_rfc3339("2025-11-25T10:00:01.500Z").unwrap()),
            "2025-11-25 10:00:01"
        );
    }
}
