//! Performing the relay's downstream calls for real.
//!
//! The relay says "start attempt `call` with this payload"; something has to
//! do it and report back with the same [`CallId`], so that the relay can tell
//! a current answer from a late one. Two callers: the built-in flaky
//! downstream (draws its fate from a seeded stream and answers after a
//! sleep, or at once when the delay is zero), and a real HTTP service.
//!
//! A call never outlives its bound: the relay's attempt timeout when it has
//! one (the relay's own timer reports the timeout, so the task just stops),
//! else `call_timeout_max`, reported here as a timeout.

use super::client::HttpClient;
use super::flaky::SharedFlaky;
use crate::relay::{CallError, CallId, RouteId, RETRY_AFTER_MAX};
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{StatusCode, Uri};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// An attempt's result, fed back to the relay.
#[derive(Debug)]
pub struct CallDone {
    pub call: CallId,
    pub result: Result<Bytes, CallError>,
    /// The downstream's `Retry-After` on a 429 or 503, if it sent one the
    /// relay can read (see [`retry_after`]).
    pub retry_after: Option<Duration>,
}

/// One attempt to perform.
#[derive(Clone, Debug)]
pub struct CallRequest {
    pub call: CallId,
    pub key: Option<Arc<str>>,
    pub payload: Bytes,
    /// The relay's per-attempt timeout, if any.
    pub timeout: Option<Duration>,
    pub correlation_id: Option<Arc<str>>,
}

/// Who performs the calls.
#[allow(clippy::large_enum_variant)] // one per server: its size does not matter
pub enum Caller {
    Flaky(SharedFlaky),
    Http(HttpCaller),
    /// Hands every call to another task, which answers on the sender it is
    /// given: a driver that plays the downstream itself (the actor's tests,
    /// under a paused clock).
    Handoff(mpsc::Sender<Handoff>),
}

/// One caller per route, in the relay's route order; one caller alone
/// serves every route.
pub struct Callers(Vec<Caller>);

impl Callers {
    pub fn new(callers: Vec<Caller>) -> Callers {
        Callers(callers)
    }

    /// Starts `req` on `route`'s caller, as [`Caller::start`].
    pub fn start(
        &mut self,
        route: RouteId,
        req: CallRequest,
        done: &mpsc::Sender<CallDone>,
    ) -> Option<CallDone> {
        let i = if self.0.len() == 1 { 0 } else { route.index() };
        match self.0.get_mut(i) {
            Some(caller) => caller.start(req, done),
            // The relay only calls routes it has, and there is a caller each.
            None => Some(CallDone {
                call: req.call,
                result: Err(CallError::ServerError),
                retry_after: None,
            }),
        }
    }
}

impl From<Caller> for Callers {
    fn from(caller: Caller) -> Callers {
        Callers(vec![caller])
    }
}

/// A call passed to whoever plays the downstream, with where to answer.
#[derive(Debug)]
pub struct Handoff {
    pub request: CallRequest,
    pub done: mpsc::Sender<CallDone>,
}

/// Calls to a real downstream at `url`.
pub struct HttpCaller {
    pub client: HttpClient,
    pub url: Uri,
    /// Bound on a call when the relay sets none.
    pub call_timeout_max: Duration,
}

/// Time a call task waits past the relay's own deadline before giving up
/// quietly: the relay has reported the timeout by then.
const GRACE: Duration = Duration::from_millis(100);

impl Caller {
    /// Starts `req`. A zero-delay in-process answer is returned at once (the
    /// caller feeds it back); every other answer arrives on `done`.
    pub fn start(&mut self, req: CallRequest, done: &mpsc::Sender<CallDone>) -> Option<CallDone> {
        match self {
            Caller::Flaky(flaky) => {
                let (fate, in_flight) = flaky.call();
                let result = fate.result.map(|()| flaky_answer(&req));
                // The built-in downstream sends this header on its 429s.
                let retry_after = (result == Err(CallError::Throttled))
                    .then(|| flaky.lock().retry_after().min(RETRY_AFTER_MAX));
                if fate.delay.is_zero() {
                    drop(in_flight);
                    return Some(CallDone {
                        call: req.call,
                        result,
                        retry_after,
                    });
                }
                let cutoff = req.timeout.map(|t| t + GRACE);
                spawn_reply(done.clone(), req.call, cutoff, async move {
                    tokio::time::sleep(fate.delay).await;
                    drop(in_flight);
                    (result, retry_after)
                });
                None
            }
            Caller::Http(http) => {
                let (cutoff, report_timeout) = match req.timeout {
                    Some(t) => (t + GRACE, false),
                    None => (http.call_timeout_max, true),
                };
                let (client, url) = (http.client.clone(), http.url.clone());
                let call = req.call;
                let work = async move { http_call(&client, &url, &req).await };
                let done = done.clone();
                tokio::spawn(async move {
                    let (result, retry_after) = match tokio::time::timeout(cutoff, work).await {
                        Ok(answer) => answer,
                        Err(_) if report_timeout => (Err(CallError::Timeout), None),
                        Err(_) => return,
                    };
                    let _ = done
                        .send(CallDone {
                            call,
                            result,
                            retry_after,
                        })
                        .await;
                });
                None
            }
            Caller::Handoff(calls) => {
                let call = req.call;
                let handoff = Handoff {
                    request: req,
                    done: done.clone(),
                };
                // Nobody is there to take it: the call failed at once.
                calls.try_send(handoff).err().map(|_| CallDone {
                    call,
                    result: Err(CallError::ServerError),
                    retry_after: None,
                })
            }
        }
    }
}

/// Runs `work` and sends its result, unless `cutoff` passes first.
fn spawn_reply<F>(done: mpsc::Sender<CallDone>, call: CallId, cutoff: Option<Duration>, work: F)
where
    F: std::future::Future<Output = (Result<Bytes, CallError>, Option<Duration>)> + Send + 'static,
{
    tokio::spawn(async move {
        let (result, retry_after) = match cutoff {
            Some(c) => match tokio::time::timeout(c, work).await {
                Ok(r) => r,
                Err(_) => return,
            },
            None => work.await,
        };
        // The actor holds the receiver for its whole life; a send fails
        // only after it stopped, when nobody needs the answer.
        let _ = done
            .send(CallDone {
                call,
                result,
                retry_after,
            })
            .await;
    });
}

/// The built-in downstream's answer: a small JSON object naming the attempt.
fn flaky_answer(req: &CallRequest) -> Bytes {
    Bytes::from(format!(
        r#"{{"ok":true,"job":"{}","attempt":{},"payload_bytes":{}}}"#,
        req.call.job,
        req.call.attempt,
        req.payload.len()
    ))
}

/// The header naming the idempotency key on calls (same as clients use).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The header carrying the correlation id.
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// One POST to the downstream; the status decides the outcome, and a 429
/// or 503 may say when to try again.
async fn http_call(
    client: &HttpClient,
    url: &Uri,
    req: &CallRequest,
) -> (Result<Bytes, CallError>, Option<Duration>) {
    let mut headers = Vec::with_capacity(3);
    // Without a client key the job id names the logical request, so the
    // downstream can still tell a retry from a new request.
    let key = match &req.key {
        Some(k) => HeaderValue::from_str(k).ok(),
        None => HeaderValue::from_str(&format!("job-{}", req.call.job)).ok(),
    };
    if let Some(k) = key {
        headers.push((IDEMPOTENCY_KEY, k));
    }
    if let Some(cid) = req.correlation_id.as_deref() {
        if let Ok(v) = HeaderValue::from_str(cid) {
            headers.push((CORRELATION_ID, v));
        }
    }
    let reply = match client.post_json(url, &headers, req.payload.clone()).await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::debug!(job = %req.call.job, attempt = req.call.attempt, error = %e, "call failed");
            return (Err(CallError::ServerError), None);
        }
    };
    let wait = match reply.status.as_u16() {
        429 | 503 => retry_after(&reply.headers),
        _ => None,
    };
    (classify(reply.status).map(|()| reply.body), wait)
}

/// A `Retry-After` in delay-seconds (RFC 9110 §10.2.3), at most
/// [`RETRY_AFTER_MAX`]. An HTTP date, a negative or garbled value, or
/// several headers are not understood and give `None`: the retry then
/// waits its backoff only.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let mut values = headers.get_all(RETRY_AFTER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = value.to_str().ok()?.trim();
    let digits = !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits {
        return None;
    }
    // All digits: only an overflow fails, and an overflow is past the cap.
    let secs = text.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(RETRY_AFTER_MAX))
}

/// Maps a downstream status onto the relay's outcomes.
pub fn classify(status: StatusCode) -> Result<(), CallError> {
    match status.as_u16() {
        200..=299 => Ok(()),
        408 => Err(CallError::Timeout),
        429 => Err(CallError::Throttled),
        400..=499 => Err(CallError::ClientError),
        _ => Err(CallError::ServerError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_answer_is_json_naming_the_attempt() {
        let req = CallRequest {
            call: CallId {
                job: crate::relay::JobId::new(3, 1),
                attempt: 2,
            },
            key: None,
            payload: Bytes::from_static(b"{}"),
            timeout: None,
            correlation_id: None,
        };
        let answer: serde_json::Value =
            serde_json::from_slice(&flaky_answer(&req)).expect("valid JSON");
        assert_eq!(answer["job"], "3-1");
        assert_eq!(answer["attempt"], 2);
    }

    #[test]
    fn retry_after_reads_bounded_delay_seconds_and_refuses_the_rest() {
        let read = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(RETRY_AFTER, HeaderValue::from_str(v).expect("header"));
            }
            retry_after(&h)
        };
        assert_eq!(read(&["3"]), Some(Duration::from_secs(3)));
        assert_eq!(read(&[" 0 "]), Some(Duration::ZERO));
        assert_eq!(read(&["99999999999999999999"]), Some(RETRY_AFTER_MAX));
        assert_eq!(read(&["86400"]), Some(RETRY_AFTER_MAX), "capped");
        for garbage in [
            "",
            "-1",
            "1.5",
            "soon",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "+2",
        ] {
            assert_eq!(read(&[garbage]), None, "{garbage:?}");
        }
        assert_eq!(read(&["1", "2"]), None, "two headers disagree");
        assert_eq!(read(&[]), None);
        let mut h = HeaderMap::new();
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_bytes(b"\xff").expect("opaque"),
        );
        assert_eq!(retry_after(&h), None, "not text");
    }

    #[test]
    fn statuses_map_onto_outcomes() {
        for (status, outcome) in [
            (StatusCode::OK, Ok(())),
            (StatusCode::ACCEPTED, Ok(())),
            (StatusCode::TOO_MANY_REQUESTS, Err(CallError::Throttled)),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Err(CallError::ClientError),
            ),
            (StatusCode::SERVICE_UNAVAILABLE, Err(CallError::ServerError)),
            (StatusCode::MOVED_PERMANENTLY, Err(CallError::ServerError)),
        ] {
            assert_eq!(classify(status), outcome, "{status}");
        }
    }
}
