//! What a send and a status look like on the wire: the request a client's
//! send becomes, and the relay's HTTP answers read back into the relay's
//! own [`Answer`] kinds, so the clients' machine hears the same answers in
//! both worlds.

use crate::relay::Refusal;
use crate::server::client::Reply;
use hyper::header::{HeaderName, HeaderValue};
use hyper::StatusCode;
use std::time::Duration;

/// How the relay answered one send, as the clients' machine understands it.
#[derive(Clone, Debug, PartialEq)]
pub enum Heard {
    /// 202; the job's status URL to follow.
    Accepted { status_url: String },
    /// 200 with `Idempotent-Replayed`: the key's stored answer.
    Replayed,
    /// 200 from the route's fallback.
    Fallback,
    /// 429, 503, 409, 422 or a missing key, with the wait the relay asked for.
    Refused {
        why: Refusal,
        retry_after: Option<Duration>,
    },
    /// Any other answer (an HTTP-level refusal, a busy relay task).
    Other { status: u16 },
    /// No answer: the connection failed or the loadgen's bound was full.
    Transport,
}

impl Heard {
    /// Reads the relay's answer to `POST /relay`.
    pub fn of(reply: &Reply) -> Heard {
        let json = reply.json();
        let slug = json["type"].as_str().and_then(|t| t.rsplit(':').next());
        match reply.status {
            StatusCode::ACCEPTED => match json["status_url"].as_str() {
                Some(url) => Heard::Accepted {
                    status_url: url.to_owned(),
                },
                None => Heard::Other { status: 202 },
            },
            StatusCode::OK if reply.header("idempotent-replayed") == Some("true") => {
                Heard::Replayed
            }
            StatusCode::OK if json["state"] == "fallback" => Heard::Fallback,
            status => match refusal(status, slug) {
                Some(why) => Heard::Refused {
                    why,
                    retry_after: retry_after(reply, &json),
                },
                None => Heard::Other {
                    status: status.as_u16(),
                },
            },
        }
    }
}

/// The refusal a status and problem type stand for, if any.
fn refusal(status: StatusCode, slug: Option<&str>) -> Option<Refusal> {
    Some(match (status.as_u16(), slug) {
        (429, Some("rate-limited")) => Refusal::RateLimited,
        (429, _) => Refusal::Shed,
        (503, Some("keys-full")) => Refusal::KeysFull,
        (503, Some("unavailable" | "draining")) => Refusal::Unavailable,
        (409, _) => Refusal::Conflict,
        (422, _) => Refusal::Mismatch,
        (400, Some("idempotency-key-required")) => Refusal::BadKey,
        _ => return None,
    })
}

/// The problem's `retry_after_ms`, else the `Retry-After` header's seconds.
fn retry_after(reply: &Reply, json: &serde_json::Value) -> Option<Duration> {
    if let Some(ms) = json["retry_after_ms"].as_u64() {
        return Some(Duration::from_millis(ms));
    }
    let secs: u64 = reply.header("retry-after")?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(RETRY_AFTER_S_MAX)))
}

/// Longest `Retry-After` believed (the relay's own cap on honouring one).
const RETRY_AFTER_S_MAX: u64 = 300;

/// Where a polled job stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum JobSeen {
    /// Queued, in flight or backing off; `accepted_at_ms` on the relay's clock.
    Live { accepted_at_ms: f64 },
    /// It ended at `finished_at_ms` on the relay's clock.
    Ended {
        succeeded: bool,
        accepted_at_ms: f64,
        finished_at_ms: f64,
    },
    /// 404: never known, or forgotten (the relay's `history_max`).
    Gone,
    /// Any other answer; polling goes on.
    Unreadable,
}

impl JobSeen {
    /// Reads `GET /relay/{handle}`'s answer.
    pub fn of(reply: &Reply) -> JobSeen {
        if reply.status == StatusCode::NOT_FOUND {
            return JobSeen::Gone;
        }
        if reply.status != StatusCode::OK {
            return JobSeen::Unreadable;
        }
        let json = reply.json();
        let Some(accepted_at_ms) = json["accepted_at_ms"].as_f64() else {
            return JobSeen::Unreadable;
        };
        let succeeded = match json["state"].as_str() {
            Some("succeeded") => true,
            Some("dead-lettered" | "shed") => false,
            Some(_) => return JobSeen::Live { accepted_at_ms },
            None => return JobSeen::Unreadable,
        };
        JobSeen::Ended {
            succeeded,
            accepted_at_ms,
            finished_at_ms: json["finished_at_ms"].as_f64().unwrap_or(accepted_at_ms),
        }
    }
}

/// The body of logical request `request`: the same for every send of it,
/// so a keyed re-send is a replay, not a mismatch.
pub fn body(request: u64) -> String {
    format!(r#"{{"loadgen_request":{request}}}"#)
}

/// The `Idempotency-Key` of logical request `request` in run `run`: the
/// run's tag keeps one run's keys from replaying another's on a relay
/// that outlives them.
pub fn key_header(run: &str, request: u64) -> (HeaderName, HeaderValue) {
    let value = HeaderValue::from_str(&format!("lg-{run}-{request}"))
        .unwrap_or(HeaderValue::from_static("lg-invalid"));
    (HeaderName::from_static("idempotency-key"), value)
}

/// The `X-Client-Id` label of client `client` (a label only: the relay's
/// rate limit keys on the peer's address, see [`super::peers`]).
pub fn client_header(client: u64) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static("x-client-id"),
        HeaderValue::from(client),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hyper::HeaderMap;

    fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        Reply {
            status: StatusCode::from_u16(status).expect("status"),
            headers: map,
            body: Bytes::from(body.to_owned()),
        }
    }

    fn problem(status: u16, slug: &str, extra: &str) -> Reply {
        let body =
            format!(r#"{{"type":"tag:resilient-relay,2025:{slug}","status":{status}{extra}}}"#);
        reply(status, &[], &body)
    }

    #[test]
    fn the_relays_answers_read_back_into_its_own_kinds() {
        let accepted = reply(202, &[], r#"{"job":"0-1","status_url":"/relay/0-1.ab"}"#);
        assert_eq!(
            Heard::of(&accepted),
            Heard::Accepted {
                status_url: "/relay/0-1.ab".into()
            }
        );
        let replayed = reply(200, &[("idempotent-replayed", "true")], "{}");
        assert_eq!(Heard::of(&replayed), Heard::Replayed);
        let shed = problem(429, "queue-full", r#","retry_after_ms":500"#);
        assert_eq!(
            Heard::of(&shed),
            Heard::Refused {
                why: Refusal::Shed,
                retry_after: Some(Duration::from_millis(500))
            }
        );
        let limited = reply(
            429,
            &[("retry-after", "2")],
            r#"{"type":"tag:resilient-relay,2025:rate-limited"}"#,
        );
        assert_eq!(
            Heard::of(&limited),
            Heard::Refused {
                why: Refusal::RateLimited,
                retry_after: Some(Duration::from_secs(2))
            }
        );
        let open = problem(503, "unavailable", "");
        assert!(matches!(
            Heard::of(&open),
            Heard::Refused {
                why: Refusal::Unavailable,
                ..
            }
        ));
        assert!(matches!(
            Heard::of(&problem(409, "in-flight", "")),
            Heard::Refused {
                why: Refusal::Conflict,
                ..
            }
        ));
        assert_eq!(
            Heard::of(&problem(503, "store-unavailable", "")),
            Heard::Other { status: 503 },
            "not a refusal the simulated relay makes"
        );
        assert_eq!(
            Heard::of(&problem(401, "bad-signature", "")),
            Heard::Other { status: 401 }
        );
    }

    #[test]
    fn a_status_says_whether_the_job_ended_and_when() {
        let live = reply(200, &[], r#"{"state":"queued","accepted_at_ms":5.0}"#);
        assert_eq!(
            JobSeen::of(&live),
            JobSeen::Live {
                accepted_at_ms: 5.0
            }
        );
        let done = reply(
            200,
            &[],
            r#"{"state":"dead-lettered","accepted_at_ms":5.0,"finished_at_ms":9.5}"#,
        );
        assert_eq!(
            JobSeen::of(&done),
            JobSeen::Ended {
                succeeded: false,
                accepted_at_ms: 5.0,
                finished_at_ms: 9.5
            }
        );
        assert_eq!(JobSeen::of(&reply(404, &[], "{}")), JobSeen::Gone);
        assert_eq!(
            JobSeen::of(&reply(200, &[], "garbage")),
            JobSeen::Unreadable
        );
    }

    #[test]
    fn every_send_of_a_request_carries_the_same_body_and_key() {
        assert_eq!(body(7), body(7));
        assert_ne!(body(7), body(8));
        assert_eq!(key_header("r1", 7).1, "lg-r1-7");
    }
}
