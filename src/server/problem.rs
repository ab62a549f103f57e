//! Problem details (RFC 9457): one machine-readable shape for every error.
//!
//! A client that talks to the relay must tell "slow down" from "fix your
//! request" from "we are down" without parsing prose. Every error the server
//! sends is an `application/problem+json` body whose `type` names the kind
//! of problem, whose `status` repeats the HTTP status, and whose extensions
//! carry what the client needs to act: the correlation id, a retry-after
//! hint in milliseconds, the id of a conflicting job.

use crate::relay::JobId;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

/// The media type of a problem body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The prefix of every problem `type`: a tag URI, which names the kind of
/// problem without promising a page to fetch.
const TYPE_PREFIX: &str = "tag:resilient-relay,2025:";

/// One error, ready to become a response. Kept small (it travels in
/// `Result`s); the body is built when it is sent.
#[derive(Clone, Debug)]
pub struct Problem {
    slug: Cow<'static, str>,
    title: &'static str,
    status: StatusCode,
    pub detail: String,
    correlation_id: Option<Arc<str>>,
    retry_after: Option<Duration>,
    /// The job this problem is about (a conflicting in-flight job).
    job: Option<JobId>,
}

/// The body as sent.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<JobId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_url: Option<String>,
}

impl Problem {
    /// A problem of kind `slug` (the last part of its `type`).
    pub fn new(
        status: StatusCode,
        slug: impl Into<Cow<'static, str>>,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            slug: slug.into(),
            title,
            status,
            detail: detail.into(),
            correlation_id: None,
            retry_after: None,
            job: None,
        }
    }

    /// Adds a `Retry-After` header and the same hint in the body.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    pub fn job(mut self, job: JobId) -> Self {
        self.job = Some(job);
        self
    }

    pub fn correlation_id(mut self, cid: &Arc<str>) -> Self {
        self.correlation_id = Some(cid.clone());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The last part of the problem's `type`, e.g. `queue-full`.
    pub fn slug(&self) -> &str {
        &self.slug
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let body = Body {
            kind: format!("{TYPE_PREFIX}{}", self.slug),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            correlation_id: self.correlation_id.as_deref(),
            retry_after_ms: self
                .retry_after
                .map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
            job: self.job,
            status_url: self.job.map(super::views::status_url),
        };
        serde_json::to_value(body).unwrap_or_default()
    }

    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, slug, "Bad request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// The actor's inbox is full or it has stopped: come back shortly.
    pub fn busy(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "Service unavailable",
            detail,
        )
        .retry_after(Duration::from_secs(1))
    }
}

/// Whole seconds for `Retry-After`, rounded up so a client never comes back early.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    if wait.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = serde_json::to_vec(&self.body()).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(wait) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 0);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }

    #[test]
    fn a_problem_names_its_type_and_status() {
        let p = Problem::bad_request("malformed-json", "expected value").job(JobId::new(0, 7));
        let json = p.body();
        assert_eq!(json["type"], "tag:resilient-relay,2025:malformed-json");
        assert_eq!(json["status"], 400);
        assert!(json["status_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("/relay/0-7.")));
        assert!(json.get("retry_after_ms").is_none());
    }
}
