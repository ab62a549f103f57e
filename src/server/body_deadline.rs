//! A request body that must arrive whole before a deadline.
//!
//! A client that sends its head and then stalls, or trickles its body a
//! byte at a time, holds a connection and a handler for as long as it
//! likes. A per-frame timeout (tower-http's `TimeoutBody`) restarts on every
//! frame, so a trickle defeats it; this body has one deadline for all of it,
//! counted from when the head was read. Past it, reading fails and the
//! shared flag tells the request guard to answer 408 whatever the handler
//! made of the error. The timer is created only if the body ever has to
//! wait, so a body already in the buffer costs no timer at all.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

/// The error a body past its deadline reads as.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
pub struct BodyTimedOut;

pub struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl<B> DeadlineBody<B> {
    /// `inner`, which must be read whole by `deadline`; `expired` is set if not.
    pub fn new(inner: B, deadline: Instant, expired: Arc<AtomicBool>) -> Self {
        DeadlineBody {
            inner,
            deadline,
            sleep: None,
            expired,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.expired.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::time::Duration;

    /// A body whose first frame never comes.
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_at_its_deadline_and_says_so() {
        let expired = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_secs(30);
        let body = DeadlineBody::new(Stalled, deadline, expired.clone());
        let started = Instant::now();
        let err = body.collect().await.expect_err("times out");
        assert!(err.is::<BodyTimedOut>(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert!(expired.load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_arrives_in_time_is_untouched() {
        let expired = Arc::new(AtomicBool::new(false));
        let inner = http_body_util::Full::new(Bytes::from_static(b"{}"));
        let body = DeadlineBody::new(inner, Instant::now(), expired.clone());
        let bytes = body.collect().await.expect("read").to_bytes();
        assert_eq!(&bytes[..], b"{}");
        assert!(!expired.load(Ordering::Relaxed));
    }
}
