//! Request bodies that must keep arriving. Only time spent waiting on the client counts (from
//! when a reader asks for more until it arrives), so a busy server never times out a prompt
//! client. A body times out when one wait lasts the body timeout, or when the waits add up to
//! more than `timeout + received / min_rate` (Apache's mod_reqtimeout rule): a trickle of one
//! byte a second cannot hold a connection while a slow but honest upload can.

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How fast a request body must arrive.
#[derive(Clone, Copy, Debug)]
pub struct BodyPace {
    /// The longest wait for the next bytes, and the grace before `min_rate` counts.
    pub timeout: Duration,
    /// Bytes per second the body must average after the grace; 0: no rate, only the wait.
    pub min_rate: u64,
}

impl BodyPace {
    /// How long the wait that starts now may last, when earlier waits took `waited` and
    /// `received` bytes arrived.
    pub fn allowance(&self, waited: Duration, received: u64) -> Duration {
        if self.min_rate == 0 {
            return self.timeout;
        }
        let credit = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        self.timeout
            .min((self.timeout + credit).saturating_sub(waited))
    }
}

/// The error a timed-out body yields to whoever reads it.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled or arrived too slowly")]
pub struct BodyTimedOut;

/// `inner`, failing with [`BodyTimedOut`] (and raising `expired`) when it keeps its reader
/// waiting too long.
pub struct TimedBody<B> {
    inner: B,
    pace: BodyPace,
    received: u64,
    /// Time spent in finished waits.
    waited: Duration,
    /// The wait in progress: when it started, and its deadline.
    waiting: Option<(Instant, Pin<Box<Sleep>>)>,
    expired: Arc<AtomicBool>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, pace: BodyPace, expired: Arc<AtomicBool>) -> TimedBody<B> {
        TimedBody {
            inner,
            pace,
            received: 0,
            waited: Duration::ZERO,
            waiting: None,
            expired,
        }
    }
}

impl<B> Body for TimedBody<B>
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
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            let (waited, received, pace) = (this.waited, this.received, this.pace);
            let (_, sleep) = this.waiting.get_or_insert_with(|| {
                let now = Instant::now();
                let deadline = now + pace.allowance(waited, received);
                (now, Box::pin(tokio::time::sleep_until(deadline)))
            });
            if sleep.as_mut().poll(cx).is_ready() {
                this.expired.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(BodyTimedOut.into())));
            }
            return Poll::Pending;
        }
        if let Some((since, _)) = this.waiting.take() {
            this.waited += since.elapsed();
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => unreachable!("handled above"),
        }
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

    const PACE: BodyPace = BodyPace {
        timeout: Duration::from_secs(30),
        min_rate: 1024,
    };

    #[test]
    fn one_wait_may_last_the_timeout_when_the_body_keeps_up() {
        // 1 MiB arrived after 1 s of waiting: 1024 s of credit; only the single wait bounds it.
        assert_eq!(
            PACE.allowance(Duration::from_secs(1), 1 << 20),
            Duration::from_secs(30)
        );
        let no_rate = BodyPace {
            min_rate: 0,
            ..PACE
        };
        assert_eq!(
            no_rate.allowance(Duration::from_secs(3600), 1),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_trickle_times_out_once_it_falls_behind_the_minimum_rate() {
        // One byte a second for 29 s: 29 bytes earn 28 ms; about a second is left.
        let left = PACE.allowance(Duration::from_secs(29), 29);
        assert!(
            left > Duration::from_millis(1000) && left < Duration::from_millis(1050),
            "{left:?}"
        );
        // Past it: nothing left, the next wait times out at once.
        assert_eq!(PACE.allowance(Duration::from_secs(31), 29), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_timed_out_body_fails_its_reader_and_raises_the_flag() {
        use http_body_util::BodyExt;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let inner = http_body_util::StreamBody::new(tokio_stream_from(rx));
        let expired = Arc::new(AtomicBool::new(false));
        let pace = BodyPace {
            timeout: Duration::from_millis(200),
            min_rate: 0,
        };
        let mut body = TimedBody::new(inner, pace, expired.clone());
        // A reader busy elsewhere for longer than the timeout is not the client's fault.
        tx.send(Ok(Frame::data(Bytes::from_static(b"ab"))))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"ab"));
        let waited = std::time::Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(waited.elapsed() >= Duration::from_millis(150));
        assert!(err.is::<BodyTimedOut>(), "{err}");
        assert!(expired.load(Ordering::Relaxed));
        drop(tx);
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
