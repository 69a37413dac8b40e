//! The ingest request handlers: one event, an NDJSON batch, health,
//! readiness and metrics.
//!
//! A 2xx is sent only after Kafka acknowledged every event of the request
//! (DESIGN invariant 1 starts here). Validation and body limits run before
//! anything reaches Kafka: the body must arrive within `body_read_timeout`
//! of the handler's start (the head has arrived then) and be at most
//! `max_body_bytes`; the deadline for Kafka's acknowledgement is
//! `ack_timeout` from the moment the body was read. A re-sent event (same
//! GUID, an OCS retry) is simply published again: the pipeline is
//! at-least-once and receivers de-duplicate on the GUID.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cpn_schema::Guid;
use futures::StreamExt;
use tokio::time::Instant;
use tracing::{Span, debug, instrument, warn};

use super::App;
use super::auth::Verdict;
use super::content_type::{self, BodyKind};
use super::response::{
    Accepted, BatchReport, IngestError, LineResult, LineStatus, ProblemBody, with_retry_after,
};
use crate::assign::parse_assigning;
use crate::bulk::error_chain;
use crate::ndjson::{self, Line, Lines};
use crate::problem::{Problem, problems_of};
use crate::publisher::{Delivered, Pending, PublishError};
use crate::record::Record;

/// Checks the request's `Content-Type` for an endpoint.
fn check_content_type(headers: &HeaderMap, allow_ndjson: bool) -> Result<(), IngestError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match content_type::classify(value) {
        Ok(BodyKind::Json) => Ok(()),
        Ok(BodyKind::Ndjson) if allow_ndjson => Ok(()),
        Ok(BodyKind::Ndjson) => Err(IngestError::UnsupportedMediaType(
            content_type::Unsupported::MediaType(value.unwrap_or_default().to_owned()),
        )),
        Err(u) => Err(IngestError::UnsupportedMediaType(u)),
    }
}

/// Reads the whole body by `deadline`, refusing more than `max` bytes
/// without buffering them (a declared `Content-Length` above the limit is
/// refused unread). The unread rest is the lingering close's to discard.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    deadline: Instant,
) -> Result<Vec<u8>, IngestError> {
    let too_large = || IngestError::BodyTooLarge {
        max_body_bytes: max,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.map_or(2048, |n| n as usize));
    let mut chunks = body.into_data_stream();
    loop {
        // One deadline for the whole body, not per chunk: a client
        // dripping a byte at a time is bounded too.
        let chunk = match tokio::time::timeout_at(deadline, chunks.next()).await {
            Err(_) => return Err(IngestError::BodyTimeout),
            Ok(None) => return Ok(buf),
            Ok(Some(chunk)) => chunk.map_err(|e| IngestError::BodyRead(error_chain(&e)))?,
        };
        if buf.len() + chunk.len() > max {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
}

/// The GUID in an `ETag` header (OCS sets it to `GSW_MESSAGE_GUID`), quotes
/// and a weak `W/` prefix tolerated. An `ETag` that is not a GUID is ignored.
fn etag_guid(headers: &HeaderMap) -> Option<Guid> {
    let raw = headers.get(header::ETAG)?.to_str().ok()?.trim();
    let raw = raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"');
    Guid::parse(raw).ok()
}

impl App {
    fn unavailable(&self, reason: String) -> IngestError {
        IngestError::Unavailable {
            reason,
            retry_after_secs: self.retry_after_secs,
        }
    }

    fn delivery_error(&self, e: &PublishError) -> IngestError {
        if e.is_too_large() {
            IngestError::EventTooLarge {
                reason: error_chain(e),
            }
        } else {
            self.unavailable(error_chain(e))
        }
    }

    /// Awaits `pending` until `deadline`; a missed deadline counts as failed.
    async fn ack_by(
        &self,
        pending: Pending,
        deadline: Instant,
    ) -> Result<Delivered, Result<PublishError, Duration>> {
        match tokio::time::timeout_at(deadline, pending).await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => Err(Ok(e)),
            Err(_) => {
                // The event may still be delivered later; the client is told
                // to retry and receivers de-duplicate on the GUID.
                self.publisher.metrics().failed.inc();
                Err(Err(self.ack_timeout))
            }
        }
    }
}

fn timeout_reason(ack_timeout: Duration) -> String {
    format!(
        "kafka did not acknowledge within {} ms",
        ack_timeout.as_millis()
    )
}

/// `POST /v1/contact-processed`: one event, exactly as OCS posts it.
#[instrument(name = "ingest", skip_all, fields(guid = tracing::field::Empty))]
pub(crate) async fn single(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Accepted>, IngestError> {
    let body_deadline = Instant::now() + app.body_read_timeout;
    check_content_type(&headers, false)?;
    let bytes = read_body(&headers, body, app.max_body_bytes, body_deadline).await?;
    let deadline = Instant::now() + app.ack_timeout;
    let etag = etag_guid(&headers);
    let reject = |problems: Vec<Problem>| {
        app.publisher.metrics().record_rejected(1);
        IngestError::Invalid(problems)
    };
    let event = parse_assigning(&bytes, etag).map_err(|invalid| reject(problems_of(&invalid)))?;
    Span::current().record("guid", event.message_guid.as_str());
    if let Some(etag) = etag
        && etag.uuid() != event.message_guid.uuid()
    {
        return Err(reject(vec![Problem::new(
            "ETag",
            format!(
                "{etag} names a different GUID than GSW_MESSAGE_GUID {}",
                event.message_guid
            ),
        )]));
    }
    let record = Record::from_event(&event);
    let pending = app
        .publisher
        .enqueue_until(&record, deadline)
        .await
        .map_err(|e| {
            warn!(error = %error_chain(&e), "event not handed to kafka");
            app.delivery_error(&e)
        })?;
    match app.ack_by(pending, deadline).await {
        Ok(d) => {
            debug!(partition = d.partition, offset = d.offset, "event accepted");
            Ok(Json(Accepted {
                guid: event.message_guid.to_string(),
                partition: d.partition,
                offset: d.offset,
            }))
        }
        Err(Ok(e)) => {
            warn!(error = %error_chain(&e), "kafka did not acknowledge event");
            Err(app.delivery_error(&e))
        }
        Err(Err(waited)) => {
            warn!(
                ack_timeout_ms = waited.as_millis(),
                "no acknowledgement in time"
            );
            Err(app.unavailable(timeout_reason(waited)))
        }
    }
}

/// `POST /v1/contact-processed/batch`: NDJSON, one event per line; valid
/// lines are published in line order, and the report says per line what
/// happened.
#[instrument(name = "ingest_batch", skip_all, fields(lines = tracing::field::Empty))]
pub(crate) async fn batch(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    let body_deadline = Instant::now() + app.body_read_timeout;
    check_content_type(&headers, true)?;
    let bytes = read_body(&headers, body, app.max_body_bytes, body_deadline).await?;
    let deadline = Instant::now() + app.ack_timeout;
    let mut results = Vec::new();
    let mut waiting = Vec::new();
    let mut rejected = 0u64;
    // Lines are at most the whole body, which is within the limit already.
    for line in Lines::new(bytes.as_slice(), app.max_body_bytes) {
        let line = line.map_err(|e| IngestError::BodyRead(e.to_string()))?;
        let (number, parsed) = match line {
            Line::TooLong { number, len } => {
                (number, Err(vec![ndjson::too_long(len, app.max_body_bytes)]))
            }
            Line::Event { number, bytes } => (
                number,
                parse_assigning(&bytes, None).map_err(|invalid| problems_of(&invalid)),
            ),
        };
        let event = match parsed {
            Ok(event) => event,
            Err(problems) => {
                rejected += 1;
                results.push(LineResult {
                    line: number,
                    status: LineStatus::Rejected,
                    guid: None,
                    partition: None,
                    offset: None,
                    problems: problems.into_iter().map(ProblemBody::from).collect(),
                    error: None,
                });
                continue;
            }
        };
        let record = Record::from_event(&event);
        let mut result = LineResult {
            line: number,
            status: LineStatus::Failed,
            guid: Some(event.message_guid.to_string()),
            partition: None,
            offset: None,
            problems: Vec::new(),
            error: None,
        };
        // Enqueued one by one in line order: a chain keeps its order.
        match app.publisher.enqueue_until(&record, deadline).await {
            Ok(p) => waiting.push((results.len(), p)),
            Err(e) => result.error = Some(error_chain(&e)),
        }
        results.push(result);
    }
    Span::current().record("lines", results.len());
    app.publisher.metrics().record_rejected(rejected);
    if results.is_empty() {
        return Err(IngestError::Invalid(vec![Problem::new(
            "(body)",
            "no events: every line is blank",
        )]));
    }
    let shared: &App = &app;
    let outcomes = futures::future::join_all(
        waiting
            .into_iter()
            .map(|(i, p)| async move { (i, shared.ack_by(p, deadline).await) }),
    )
    .await;
    for (i, outcome) in outcomes {
        let Some(result) = results.get_mut(i) else {
            continue;
        };
        match outcome {
            Ok(d) => {
                result.status = LineStatus::Accepted;
                result.partition = Some(d.partition);
                result.offset = Some(d.offset);
            }
            Err(Ok(e)) => result.error = Some(error_chain(&e)),
            Err(Err(waited)) => result.error = Some(timeout_reason(waited)),
        }
    }
    let count = |s| results.iter().filter(|r| r.status == s).count() as u64;
    let report = BatchReport {
        accepted: count(LineStatus::Accepted),
        rejected,
        failed: count(LineStatus::Failed),
        results,
    };
    let status = report.status();
    if report.failed > 0 {
        warn!(
            accepted = report.accepted,
            failed = report.failed,
            "batch: kafka did not acknowledge every event"
        );
    }
    let response = (status, Json(report)).into_response();
    Ok(if status == StatusCode::SERVICE_UNAVAILABLE {
        with_retry_after(response, app.retry_after_secs)
    } else {
        response
    })
}

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: Kafka answered a metadata request for the topic recently.
pub(crate) async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text exposition.
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.publisher.metrics().render(),
    )
        .into_response()
}

/// Refuses a request without an accepted key (401) before its body is
/// read, when keys are configured; passes every request otherwise.
pub(crate) async fn authenticate(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(auth) = &app.auth else {
        return next.run(request).await;
    };
    let verdict = auth.verdict(request.headers());
    if verdict == Verdict::Pass {
        return next.run(request).await;
    }
    app.publisher.metrics().record_auth_rejected();
    // Which header and whether it was there; never what it held.
    debug!(
        header = %auth.header(),
        missing = verdict == Verdict::Missing,
        "request refused: no accepted key"
    );
    IngestError::Unauthorized {
        header: title_case(auth.header().as_str()),
        missing: verdict == Verdict::Missing,
        challenge: auth.challenge(verdict),
    }
    .into_response()
}

/// `x-api-key` → `X-Api-Key`, for messages.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + c.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Counts every routed request by route template and status.
pub(crate) async fn track(
    State(app): State<Arc<App>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    app.publisher.metrics().record_http(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn etag_guid_tolerates_quotes_and_weak_prefix_and_ignores_non_guids() {
        let guid = "0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2c";
        for raw in [
            guid.to_owned(),
            format!("\"{guid}\""),
            format!("W/\"{guid}\""),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::ETAG, HeaderValue::from_str(&raw).unwrap());
            assert_eq!(etag_guid(&h).unwrap().as_str(), guid, "{raw}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        assert!(etag_guid(&h).is_none());
        assert!(etag_guid(&HeaderMap::new()).is_none());
    }

    #[test]
    fn header_names_are_shown_title_cased() {
        assert_eq!(title_case("authorization"), "Authorization");
        assert_eq!(title_case("x-api-key"), "X-Api-Key");
    }
}
