//! Request bodies that must keep arriving. A body times out when no byte came for the body
//! timeout, or when it falls behind the minimum rate: after `timeout + received / min_rate`
//! since the request started (Apache's mod_reqtimeout rule), so a trickle of one byte a second
//! cannot hold a connection while a slow but honest upload can.

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
    /// The longest wait for the next byte, and the grace before `min_rate` counts.
    pub timeout: Duration,
    /// Bytes per second the body must average after the grace; 0: no rate, only the wait.
    pub min_rate: u64,
}

impl BodyPace {
    /// When a body started at `started`, of which `received` bytes arrived, the last at `last`,
    /// times out.
    pub fn deadline(&self, started: Instant, last: Instant, received: u64) -> Instant {
        let idle = last + self.timeout;
        if self.min_rate == 0 {
            return idle;
        }
        let credit = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        idle.min(started + self.timeout + credit)
    }
}

/// The error a timed-out body yields to whoever reads it.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled or arrived too slowly")]
pub struct BodyTimedOut;

/// `inner`, failing with [`BodyTimedOut`] (and raising `expired`) past its pace's deadline.
pub struct TimedBody<B> {
    inner: B,
    pace: BodyPace,
    started: Instant,
    received: u64,
    sleep: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl<B> TimedBody<B> {
    /// The clock starts now (when the request head has been read).
    pub fn new(inner: B, pace: BodyPace, expired: Arc<AtomicBool>) -> TimedBody<B> {
        let started = Instant::now();
        TimedBody {
            inner,
            pace,
            started,
            received: 0,
            sleep: Box::pin(tokio::time::sleep_until(pace.deadline(started, started, 0))),
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
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) {
                    this.received += data.len() as u64;
                    let deadline = this
                        .pace
                        .deadline(this.started, Instant::now(), this.received);
                    this.sleep.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_ready() {
                    this.expired.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(BodyTimedOut.into())));
                }
                Poll::Pending
            }
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
    fn a_stalled_body_times_out_one_timeout_after_its_last_byte() {
        let t0 = Instant::now();
        let fast = t0 + Duration::from_secs(1);
        // 1 MiB in the first second earns 1024 s of credit: only the wait bounds it.
        assert_eq!(
            PACE.deadline(t0, fast, 1 << 20),
            fast + Duration::from_secs(30)
        );
        let no_rate = BodyPace {
            min_rate: 0,
            ..PACE
        };
        let late = t0 + Duration::from_secs(3600);
        assert_eq!(
            no_rate.deadline(t0, late, 1),
            late + Duration::from_secs(30)
        );
    }

    #[test]
    fn a_trickle_times_out_once_it_falls_behind_the_minimum_rate() {
        let t0 = Instant::now();
        // One byte a second for 29 s: 29 bytes earn 28 ms; the deadline stays near 30 s.
        let last = t0 + Duration::from_secs(29);
        let d = PACE.deadline(t0, last, 29);
        assert!(d < t0 + Duration::from_millis(30_050), "{:?}", d - t0);
        assert!(d > t0 + Duration::from_secs(30), "{:?}", d - t0);
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
        tx.send(Ok(Frame::data(Bytes::from_static(b"ab"))))
            .await
            .unwrap();
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
