//! Checks a received request against the HTTP framing that
//! `spec/contact-processed.md` promises receivers: `POST`, JSON body,
//! `ETag` equal to `GSW_MESSAGE_GUID`, and the always-sent headers.
//!
//! It reports, it does not reject: the mock answers per its behavior either
//! way, and the problems are recorded on each received request so tests can
//! assert the relay framed it like OCS and the CLI can point them out during
//! onboarding. Body field validation is `cpn-schema`'s business, not this.

use std::fmt;

use super::decide::RequestView;

/// One way a request differs from the framing OCS receivers expect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FramingProblem {
    /// The method is not `POST`.
    NotPost,
    /// `Content-Type` is missing or not `application/json`.
    NotJsonContentType,
    /// The body is not a JSON object.
    BodyNotJsonObject,
    /// The body has no string `GSW_MESSAGE_GUID`.
    MissingGuid,
    /// No `ETag` header.
    MissingEtag,
    /// `ETag` differs from the body's `GSW_MESSAGE_GUID`.
    EtagNotGuid,
    /// A header the spec says is always sent is absent.
    MissingHeader(&'static str),
}

impl fmt::Display for FramingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingProblem::NotPost => f.write_str("method is not POST"),
            FramingProblem::NotJsonContentType => {
                f.write_str("content-type is not application/json")
            }
            FramingProblem::BodyNotJsonObject => f.write_str("body is not a JSON object"),
            FramingProblem::MissingGuid => f.write_str("body has no GSW_MESSAGE_GUID"),
            FramingProblem::MissingEtag => f.write_str("no ETag header"),
            FramingProblem::EtagNotGuid => f.write_str("ETag differs from GSW_MESSAGE_GUID"),
            FramingProblem::MissingHeader(name) => write!(f, "no {name} header"),
        }
    }
}

/// Headers the spec says are always sent, besides `ETag` and
/// `Content-Type` which get their own checks. `Content-Length` is left to
/// hyper, which would not have framed the body without it or chunking.
const ALWAYS_SENT: [&str; 2] = ["accept", "user-agent"];

/// Every framing problem of `request`, in a fixed order; empty when it is
/// framed as the spec says.
pub fn framing_problems(request: &RequestView<'_>) -> Vec<FramingProblem> {
    let mut problems = Vec::new();
    if request.method != "POST" {
        problems.push(FramingProblem::NotPost);
    }
    if !request
        .header("content-type")
        .is_some_and(is_json_media_type)
    {
        problems.push(FramingProblem::NotJsonContentType);
    }
    for name in ALWAYS_SENT {
        if request.header(name).is_none() {
            problems.push(FramingProblem::MissingHeader(name));
        }
    }
    if request.json.is_none() {
        problems.push(FramingProblem::BodyNotJsonObject);
    }
    let guid = request.guid();
    if request.json.is_some() && guid.is_none() {
        problems.push(FramingProblem::MissingGuid);
    }
    match (request.header("etag"), guid) {
        (None, _) => problems.push(FramingProblem::MissingEtag),
        (Some(etag), Some(guid)) if etag != guid => problems.push(FramingProblem::EtagNotGuid),
        _ => {}
    }
    problems
}

/// `application/json`, any case, parameters such as `; charset=utf-8` allowed.
fn is_json_media_type(value: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::parse_object;

    const GUID: &str = "5f0c3a44-1b2c-4d5e-8f90-0123456789ab";

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn ocs_headers() -> Vec<(String, String)> {
        headers(&[
            ("accept", "*/*"),
            ("user-agent", "cpn-relay/0.1.0"),
            ("content-type", "application/json"),
            ("etag", GUID),
        ])
    }

    fn problems(method: &str, headers: &[(String, String)], body: &str) -> Vec<FramingProblem> {
        let json = parse_object(body.as_bytes());
        framing_problems(&RequestView {
            method,
            path: "/crm",
            headers,
            body: body.as_bytes(),
            json: json.as_ref(),
        })
    }

    fn body() -> String {
        format!(r#"{{"GSW_MESSAGE":"ContactProcessed","GSW_MESSAGE_GUID":"{GUID}"}}"#)
    }

    #[test]
    fn ocs_framed_request_has_no_problems() {
        assert_eq!(problems("POST", &ocs_headers(), &body()), vec![]);
    }

    #[test]
    fn content_type_with_charset_is_json() {
        let mut h = ocs_headers();
        h[2].1 = "Application/JSON; charset=utf-8".into();
        assert_eq!(problems("POST", &h, &body()), vec![]);
    }

    /// One table row: a request differing from OCS framing in one way.
    struct Case {
        claim: &'static str,
        method: &'static str,
        headers: Vec<(String, String)>,
        body: String,
        want: Vec<FramingProblem>,
    }

    fn case(claim: &'static str, want: FramingProblem) -> Case {
        Case {
            claim,
            method: "POST",
            headers: ocs_headers(),
            body: body(),
            want: vec![want],
        }
    }

    fn without(name: &str) -> Vec<(String, String)> {
        ocs_headers()
            .into_iter()
            .filter(|(n, _)| n != name)
            .collect()
    }

    fn with(name: &str, value: &str) -> Vec<(String, String)> {
        let mut h = without(name);
        h.push((name.to_owned(), value.to_owned()));
        h
    }

    #[test]
    fn each_deviation_is_reported() {
        use FramingProblem::*;
        let cases = [
            Case {
                method: "PUT",
                ..case("put is not post", NotPost)
            },
            Case {
                headers: without("etag"),
                ..case("missing etag", MissingEtag)
            },
            Case {
                headers: with("etag", &format!("\"{GUID}\"")),
                ..case("quoted etag is not the guid", EtagNotGuid)
            },
            Case {
                headers: without("user-agent"),
                ..case("no user agent", MissingHeader("user-agent"))
            },
            Case {
                headers: without("accept"),
                ..case("no accept", MissingHeader("accept"))
            },
            Case {
                headers: with("content-type", "application/x-www-form-urlencoded"),
                ..case("form content type", NotJsonContentType)
            },
            Case {
                body: "hello".into(),
                ..case("text body", BodyNotJsonObject)
            },
            Case {
                body: "{}".into(),
                ..case("object without guid", MissingGuid)
            },
        ];
        for c in cases {
            assert_eq!(
                problems(c.method, &c.headers, &c.body),
                c.want,
                "{}",
                c.claim
            );
        }
    }
}
