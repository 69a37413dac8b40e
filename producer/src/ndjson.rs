//! Reading NDJSON (one event per line) and reporting its problems as
//! `line N: FIELD: problem`.
//!
//! [`Lines`] is a line splitter over any [`BufRead`] that numbers lines from 1,
//! skips blank ones, accepts `\n` and `\r\n`, and never holds more than a bounded
//! number of bytes for one line: a runaway line becomes [`Line::TooLong`]
//! instead of exhausting memory. It does not parse JSON; callers hand
//! [`Line::Event`] bytes to `cpn_schema`. [`report`] formats the result.

use std::io::{self, BufRead};

use crate::problem::{LINE_FIELD, Problem};

/// Default longest accepted line: 1 MiB, Kafka's default record size limit.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1024 * 1024;

/// One non-blank line of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line to validate, without its line terminator.
    Event {
        /// 1-based line number in the input, blank lines included.
        number: u64,
        /// The line's bytes.
        bytes: Vec<u8>,
    },
    /// A line longer than the limit; its bytes were skipped, not kept.
    TooLong {
        /// 1-based line number.
        number: u64,
        /// How many bytes the line had (terminator excluded).
        len: usize,
    },
}

impl Line {
    /// The line's 1-based number.
    #[must_use]
    pub fn number(&self) -> u64 {
        match self {
            Line::Event { number, .. } | Line::TooLong { number, .. } => *number,
        }
    }
}

/// Iterator over the non-blank lines of an NDJSON input.
#[derive(Debug)]
pub struct Lines<R> {
    reader: R,
    number: u64,
    max_line_bytes: usize,
    done: bool,
}

impl<R: BufRead> Lines<R> {
    /// Lines of `reader`, each at most `max_line_bytes` long.
    pub fn new(reader: R, max_line_bytes: usize) -> Self {
        Self {
            reader,
            number: 0,
            max_line_bytes,
            done: false,
        }
    }

    /// Reads one physical line into `buf` (at most one byte over the limit)
    /// and returns its full length and whether its last byte is `\r`, or
    /// `None` at end of input.
    fn read_physical(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<(usize, bool)>> {
        let mut len = 0usize;
        let mut last = None;
        let mut saw_any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(saw_any.then_some((len, last == Some(b'\r'))));
            }
            saw_any = true;
            let (part, consumed, ended) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            let room = self
                .max_line_bytes
                .saturating_add(1)
                .saturating_sub(buf.len());
            buf.extend_from_slice(&part[..part.len().min(room)]);
            len += part.len();
            if let Some(&b) = part.last() {
                last = Some(b);
            }
            self.reader.consume(consumed);
            if ended {
                return Ok(Some((len, last == Some(b'\r'))));
            }
        }
    }
}

impl<R: io::Read> Lines<io::BufReader<R>> {
    /// Bytes already read from the source but not yet returned as lines.
    ///
    /// Zero means the next line needs a read that may block (a pipe or
    /// terminal waiting for input): a streaming caller hands on what it has
    /// batched before asking for it.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.reader.buffer().len()
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = io::Result<Line>;

    fn next(&mut self) -> Option<io::Result<Line>> {
        while !self.done {
            let mut buf = Vec::new();
            let (len, crlf) = match self.read_physical(&mut buf) {
                Ok(Some(found)) => found,
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            self.number += 1;
            // `\r\n` endings: the `\r` belongs to the terminator, not the event.
            let len = if crlf {
                if buf.len() == len {
                    buf.pop();
                }
                len - 1
            } else {
                len
            };
            if len > self.max_line_bytes {
                return Some(Ok(Line::TooLong {
                    number: self.number,
                    len,
                }));
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(Ok(Line::Event {
                number: self.number,
                bytes: buf,
            }));
        }
        None
    }
}

/// The problem of a [`Line::TooLong`].
#[must_use]
pub fn too_long(len: usize, max_line_bytes: usize) -> Problem {
    Problem::new(
        LINE_FIELD,
        format!("{len} bytes long, more than the limit of {max_line_bytes}"),
    )
}

/// `line N: FIELD: problem`, one string per problem.
#[must_use]
pub fn report(number: u64, problems: &[Problem]) -> Vec<String> {
    problems
        .iter()
        .map(|p| format!("line {number}: {p}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Line> {
        Lines::new(io::BufReader::with_capacity(4, input), max)
            .collect::<io::Result<Vec<_>>>()
            .unwrap()
    }

    fn event(number: u64, bytes: &str) -> Line {
        Line::Event {
            number,
            bytes: bytes.as_bytes().to_vec(),
        }
    }

    #[test]
    fn numbers_lines_from_one_and_skips_blank_ones() {
        let got = lines(b"{\"a\":1}\n\n  \t\n{\"b\":2}\r\n\r\n{\"c\":3}", 100);
        assert_eq!(
            got,
            vec![
                event(1, "{\"a\":1}"),
                event(4, "{\"b\":2}"),
                event(6, "{\"c\":3}")
            ]
        );
    }

    #[test]
    fn the_largest_limit_does_not_wrap_around() {
        assert_eq!(
            lines(b"x\ny", usize::MAX),
            vec![event(1, "x"), event(2, "y")]
        );
    }

    #[test]
    fn empty_and_blank_inputs_have_no_lines() {
        assert!(lines(b"", 10).is_empty());
        assert!(lines(b"\n\n\r\n   \n", 10).is_empty());
    }

    #[test]
    fn trailing_newline_does_not_add_a_line() {
        assert_eq!(lines(b"x\n", 10), vec![event(1, "x")]);
    }

    #[test]
    fn long_lines_are_reported_and_skipped_without_being_kept() {
        let input = format!("{}\nok\n{}\r\n", "a".repeat(50), "b".repeat(11));
        let got = lines(input.as_bytes(), 10);
        assert_eq!(
            got,
            vec![
                Line::TooLong { number: 1, len: 50 },
                event(2, "ok"),
                Line::TooLong { number: 3, len: 11 },
            ]
        );
    }

    #[test]
    fn a_line_exactly_at_the_limit_is_accepted_with_or_without_cr() {
        let got = lines(b"0123456789\n0123456789\r\n", 10);
        assert_eq!(got, vec![event(1, "0123456789"), event(2, "0123456789")]);
    }

    #[test]
    fn invalid_utf8_is_passed_on_for_the_validator_to_judge() {
        assert_eq!(
            lines(b"\xff\xfe\n", 10),
            vec![Line::Event {
                number: 1,
                bytes: vec![0xff, 0xfe]
            }]
        );
    }

    #[test]
    fn buffered_says_when_the_next_line_needs_a_read() {
        let mut lines = Lines::new(io::BufReader::with_capacity(64, &b"a\nb\n"[..]), 10);
        assert!(matches!(
            lines.next(),
            Some(Ok(Line::Event { number: 1, .. }))
        ));
        assert_eq!(lines.buffered(), 2);
        assert!(matches!(
            lines.next(),
            Some(Ok(Line::Event { number: 2, .. }))
        ));
        assert_eq!(lines.buffered(), 0);
        assert!(lines.next().is_none());
    }

    #[test]
    fn report_formats_one_line_per_problem() {
        let problems = [
            Problem::new("GSW_PHONE", "missing"),
            Problem::new("GSW_CHAIN_ID", "expected an integer, found a string"),
        ];
        assert_eq!(
            report(7, &problems),
            vec![
                "line 7: GSW_PHONE: missing",
                "line 7: GSW_CHAIN_ID: expected an integer, found a string"
            ]
        );
        assert_eq!(
            report(3, &[too_long(20, 10)]),
            vec!["line 3: (line): 20 bytes long, more than the limit of 10"]
        );
    }
}
