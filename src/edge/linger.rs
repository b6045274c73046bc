//! A lingering close: when the server closes a connection whose request body it did not read
//! (a 413 from the declared length, a 408), the client may still be sending. Closing a socket
//! with unread input makes the kernel answer with a reset, which can destroy the error answer
//! before the client reads it. So, as nginx's `lingering_close`, a shutdown first sends FIN
//! (the answer is complete), then reads and discards what still arrives until the client
//! closes too, for at most [`LINGER_TIME`] and [`LINGER_BYTES`]: bounded either way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The longest a closing connection keeps reading.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// The most a closing connection reads and discards: above the largest body a client is
/// likely to send past a `--max-body` limit (a 24 MiB upload over a 24M limit was cut at 16 MiB
/// and reset before the client read its 413, under load); the 2 s bound stays.
pub const LINGER_BYTES: u64 = 64 << 20;

pub struct Linger<IO> {
    io: IO,
    /// Set once the write side is shut: the rest of the input is drained until this fires.
    deadline: Option<Pin<Box<Sleep>>>,
    drained: u64,
}

impl<IO> Linger<IO> {
    pub fn new(io: IO) -> Linger<IO> {
        Linger {
            io,
            deadline: None,
            drained: 0,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Linger<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.deadline.is_none() {
            if let Err(e) = std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx)) {
                return Poll::Ready(Err(e));
            }
            this.deadline = Some(Box::pin(tokio::time::sleep(LINGER_TIME)));
        }
        let mut scratch = [0u8; 8192];
        loop {
            if this.drained >= LINGER_BYTES {
                return Poll::Ready(Ok(()));
            }
            if let Some(deadline) = this.deadline.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => this.drained += buf.filled().len() as u64,
                // Reset or any failure: nothing more to wait for.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

use std::future::Future;
