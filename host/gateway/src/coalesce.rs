//! Responses that are ready in the same pass of the scheduler leave together.
//!
//! A keep-alive client that waits for its answers sleeps in `epoll_wait`, and
//! every write that finds it asleep pays for waking it: on the reference VM
//! that wake-up (an inter-processor interrupt to an idle vCPU) was about a
//! fifth of the gateway worker's time per request. A connection wrapped here
//! yields to the scheduler once before it writes an answer, so the other
//! connections whose requests arrived in the same readiness batch run their
//! plugins first, and the answers then go out back to back: the first write
//! wakes the client and the others find it awake. Under light load nothing
//! else is queued and the yield costs one extra poll of the connection.
//!
//! See docs/adr/0014-write-coalescing-and-batch-thread.md for the measurements.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream that yields once before the first write after each flush.
#[derive(Debug)]
pub(crate) struct Coalesce<S> {
    inner: S,
    /// The connection already yielded for the write in progress.
    yielded: bool,
}

impl<S> Coalesce<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            yielded: false,
        }
    }

    /// `true` when the write may go ahead now; otherwise the task is woken
    /// again at once (behind whatever else is ready) and the write waits for
    /// that next poll.
    fn may_write(&mut self, cx: &mut Context<'_>) -> bool {
        if self.yielded {
            return true;
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        false
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.may_write(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !self.may_write(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if flushed.is_ready() {
            // The next answer yields again.
            self.yielded = false;
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The wrapper only delays: every byte written arrives, in order, and a
    /// write yields exactly once per flush.
    #[tokio::test]
    async fn writes_arrive_whole_after_one_yield_per_flush() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut a = Coalesce::new(a);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);

        // First attempt yields, the second writes.
        assert!(Pin::new(&mut a).poll_write(&mut cx, b"one ").is_pending());
        assert!(matches!(
            Pin::new(&mut a).poll_write(&mut cx, b"one "),
            Poll::Ready(Ok(4))
        ));
        // A second write before the flush goes straight through.
        assert!(matches!(
            Pin::new(&mut a).poll_write(&mut cx, b"two "),
            Poll::Ready(Ok(4))
        ));
        a.flush().await.ok();
        // After the flush, the next answer yields again.
        assert!(Pin::new(&mut a).poll_write(&mut cx, b"three").is_pending());
        a.write_all(b"three").await.ok();
        a.flush().await.ok();
        drop(a);

        let mut got = String::new();
        b.read_to_string(&mut got).await.ok();
        assert_eq!(got, "one two three");
    }
}
