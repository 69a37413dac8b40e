//! Response bodies of the ingest endpoints and the mapping of every failure
//! to its HTTP status — the only place HTTP statuses are chosen.
//!
//! | outcome | status |
//! |---|---|
//! | every event acknowledged by Kafka | 200, [`Accepted`] / [`BatchReport`] |
//! | an event is invalid (batch: and no Kafka failure) | 400, [`ErrorBody`] / [`BatchReport`] |
//! | body not complete within `--body-read-timeout-ms` | 408 + `Connection: close`, [`ErrorBody`] |
//! | body larger than `--max-body-bytes` | 413 + `Connection: close`, [`ErrorBody`] |
//! | event larger than Kafka takes | 413, [`ErrorBody`] |
//! | `Content-Type` not JSON / NDJSON in UTF-8 | 415, [`ErrorBody`] |
//! | Kafka did not acknowledge within `--ack-timeout-ms` | 503 + `Retry-After`, [`ErrorBody`] / [`BatchReport`] |
//! | the key header missing or wrong (`--auth-header`) | 401 + `WWW-Authenticate` (for `Authorization`) + `Connection: close`, [`ErrorBody`] |

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// Body of a 200 from `POST /v1/contact-processed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The event's `GSW_MESSAGE_GUID` (assigned when the body had none).
    pub guid: String,
    /// Kafka partition that holds it.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// Body of every 4xx/5xx that is not a batch report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One-line summary, lower case.
    pub error: String,
    /// Each problem, naming the field (or header) at fault.
    pub problems: Vec<ProblemBody>,
}

/// A [`Problem`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemBody {
    /// JSON field, header name, or `(root)` / `(body)`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl From<Problem> for ProblemBody {
    fn from(p: Problem) -> Self {
        Self {
            field: p.field,
            problem: p.problem,
        }
    }
}

/// What happened to one line of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineStatus {
    /// Kafka acknowledged it.
    Accepted,
    /// Invalid; not sent to Kafka. Fix and re-send.
    Rejected,
    /// Valid but Kafka did not acknowledge it in time. Re-send it (same
    /// GUID): it may or may not be stored already.
    Failed,
}

/// The outcome of one non-blank line of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineResult {
    /// 1-based line number in the request body.
    pub line: u64,
    /// Accepted, rejected or failed.
    pub status: LineStatus,
    /// The event's GUID (absent when rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    /// Partition, when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Offset, when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Problems, when rejected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemBody>,
    /// Why Kafka did not take it, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Body of every response of `POST /v1/contact-processed/batch` that got as
/// far as reading the lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    /// Lines Kafka acknowledged.
    pub accepted: u64,
    /// Lines refused as invalid.
    pub rejected: u64,
    /// Valid lines Kafka did not acknowledge in time.
    pub failed: u64,
    /// One entry per non-blank line, in line order.
    pub results: Vec<LineResult>,
}

impl BatchReport {
    /// 200 when every line was accepted; 503 when any valid line failed
    /// (retry: the accepted ones are de-duplicated by GUID downstream); else
    /// 400 (some lines invalid, every valid one accepted).
    #[must_use]
    pub fn status(&self) -> StatusCode {
        if self.failed > 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else if self.rejected > 0 {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        }
    }
}

/// Every way an ingest request can fail, mapped to HTTP in one place.
#[derive(Debug)]
pub enum IngestError {
    /// 415.
    UnsupportedMediaType(super::content_type::Unsupported),
    /// 413: the body is longer than the limit.
    BodyTooLarge {
        /// The limit in bytes.
        max_body_bytes: usize,
    },
    /// 413: Kafka refuses records this large.
    EventTooLarge {
        /// librdkafka's message.
        reason: String,
    },
    /// 400: the body could not be read to its end.
    BodyRead(String),
    /// 408: the body did not arrive within the body read timeout. The
    /// connection is closed after the answer: the rest of the body, if it
    /// ever comes, would be read as the next request.
    BodyTimeout,
    /// 400: the event is invalid.
    Invalid(Vec<Problem>),
    /// 401: the key header is missing or holds no accepted key. The body
    /// is never read; the connection is closed after the answer.
    Unauthorized {
        /// The header's name as configured.
        header: String,
        /// Absent (or sent twice) rather than wrong.
        missing: bool,
        /// The `WWW-Authenticate` challenge, when the header has a scheme.
        challenge: Option<HeaderValue>,
    },
    /// 503: Kafka did not acknowledge in time.
    Unavailable {
        /// Why.
        reason: String,
        /// Value of the `Retry-After` header, seconds.
        retry_after_secs: u64,
    },
}

impl IngestError {
    /// The HTTP status this error is answered with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::BodyTooLarge { .. } | IngestError::EventTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::BodyRead(_) | IngestError::Invalid(_) => StatusCode::BAD_REQUEST,
            IngestError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            IngestError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            IngestError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn body(self) -> ErrorBody {
        let (error, problems) = match self {
            IngestError::UnsupportedMediaType(u) => (
                "unsupported content type".to_owned(),
                vec![Problem::new("Content-Type", u.to_string())],
            ),
            IngestError::BodyTooLarge { max_body_bytes } => (
                "request body too large".to_owned(),
                vec![Problem::new(
                    "(body)",
                    format!("longer than the limit of {max_body_bytes} bytes"),
                )],
            ),
            IngestError::EventTooLarge { reason } => (
                "event too large for kafka".to_owned(),
                vec![Problem::new("(body)", reason)],
            ),
            IngestError::BodyRead(reason) => (
                "could not read the request body".to_owned(),
                vec![Problem::new("(body)", reason)],
            ),
            IngestError::BodyTimeout => (
                "request body not received in time".to_owned(),
                vec![Problem::new(
                    "(body)",
                    "not complete within the body read timeout; send it again",
                )],
            ),
            IngestError::Invalid(problems) => ("invalid event".to_owned(), problems),
            // Says which header, never what it held.
            IngestError::Unauthorized {
                header, missing, ..
            } => (
                "unauthorized".to_owned(),
                vec![Problem::new(
                    header,
                    if missing {
                        "missing: send the key in this header (once)"
                    } else {
                        "not an accepted key"
                    },
                )],
            ),
            IngestError::Unavailable { reason, .. } => (
                "kafka did not acknowledge the event; retry later with the same GUID".to_owned(),
                vec![Problem::new("(kafka)", reason)],
            ),
        };
        ErrorBody {
            error,
            problems: problems.into_iter().map(ProblemBody::from).collect(),
        }
    }
}

/// Adds `Retry-After: secs` to a response.
pub(crate) fn with_retry_after(mut response: Response, secs: u64) -> Response {
    // A decimal integer is always a valid header value.
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            IngestError::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        // The rest of the body is not read (the lingering close discards
        // it), so the connection cannot carry another request: say so, or
        // a keep-alive client would send its next request into a closing
        // connection.
        let close = matches!(
            self,
            IngestError::BodyTimeout
                | IngestError::BodyTooLarge { .. }
                | IngestError::Unauthorized { .. }
        );
        let challenge = match &self {
            IngestError::Unauthorized { challenge, .. } => challenge.clone(),
            _ => None,
        };
        let mut response = (status, Json(self.body())).into_response();
        if close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(c) = challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        match retry_after {
            Some(secs) => with_retry_after(response, secs),
            None => response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_status_prefers_unavailable_then_bad_request() {
        let report = |accepted, rejected, failed| BatchReport {
            accepted,
            rejected,
            failed,
            results: vec![],
        };
        assert_eq!(report(3, 0, 0).status(), StatusCode::OK);
        assert_eq!(report(2, 1, 0).status(), StatusCode::BAD_REQUEST);
        assert_eq!(report(0, 1, 1).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(report(0, 0, 2).status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn errors_map_to_statuses_and_unavailable_carries_retry_after() {
        let r = IngestError::Unavailable {
            reason: "timed out".into(),
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        let r = IngestError::BodyTooLarge { max_body_bytes: 10 }.into_response();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(r.headers()[header::CONNECTION], "close");
        let r = IngestError::EventTooLarge {
            reason: "too big".into(),
        }
        .into_response();
        assert!(r.headers().get(header::CONNECTION).is_none());
        assert_eq!(
            IngestError::Invalid(vec![]).status(),
            StatusCode::BAD_REQUEST
        );
        let r = IngestError::Unauthorized {
            header: "Authorization".into(),
            missing: true,
            challenge: Some(HeaderValue::from_static("Bearer realm=\"cpn-producer\"")),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"cpn-producer\""
        );
        assert_eq!(r.headers()[header::CONNECTION], "close");
        let r = IngestError::BodyTimeout.into_response();
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(r.headers()[header::CONNECTION], "close");
        assert_eq!(
            IngestError::UnsupportedMediaType(super::super::content_type::Unsupported::Missing)
                .status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
