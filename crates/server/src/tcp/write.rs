//! Writing to a connection: a batch goes out as far as the socket takes it
//! at once, without building a future ([`write_now`]); only the rest waits,
//! with WRITE_TIMEOUT ([`write_rest`]). Broadcasts waiting for the
//! connection are taken into the same batch, in its framing
//! ([`take_waiting`]).

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::Shared;
use super::handler::End;
use super::waits::Waits;
use crate::bus::{Delivery, Pushed};

/// The line a delivery pushes, or how the connection ends.
pub(super) fn pushed(delivery: Delivery, addr: &SocketAddr) -> Result<Pushed, End> {
    match delivery {
        Delivery::Line(pushed) => Ok(pushed),
        Delivery::Lagged(missed) => {
            debug!(%addr, missed, "client too slow for broadcasts; disconnecting");
            Err(End::SlowReader)
        }
        Delivery::Closed => Err(End::Reconnect),
    }
}

/// Appends the broadcasts already waiting to `out`, in the connection's
/// framing, and keeps each in `taken` until it is written.
pub(super) fn take_waiting(
    waits: &mut Waits,
    addr: &SocketAddr,
    packet: bool,
    out: &mut BytesMut,
    taken: &mut Vec<Pushed>,
    shared: &Shared,
) -> Result<(), End> {
    while let Some(delivery) = waits.try_delivery() {
        let pushed = pushed(delivery, addr)?;
        out.extend_from_slice(framed(pushed.line(), packet));
        taken.push(pushed);
        shared.metrics.delivered.increment(1);
    }
    Ok(())
}

/// A pushed line in the connection's framing: the fan-out's lines end in
/// `\n`; a packet connection gets the message bare.
pub(super) fn framed(line: &Bytes, packet: bool) -> &[u8] {
    if packet { &line[..line.len() - 1] } else { &line[..] }
}

/// Writes as much of `data` as the socket takes now, counts it, and says
/// how much (`None`: the connection failed). Not async, so that a reply
/// that fits the socket buffer builds no future in the connection's task;
/// the waker it leaves behind when the socket is full is replaced by the
/// task's when [`write_rest`] polls for the rest.
pub(super) fn write_now<W: AsyncWrite + Unpin>(writer: &mut W, data: &[u8], shared: &Shared) -> Option<usize> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut done = 0;
    while done < data.len() {
        match Pin::new(&mut *writer).poll_write(&mut cx, &data[done..]) {
            Poll::Ready(Ok(n)) if n > 0 => done += n,
            Poll::Ready(_) => return None,
            Poll::Pending => break,
        }
    }
    if done > 0 {
        shared.metrics.bytes_out.increment(done as u64);
    }
    Some(done)
}

/// What the socket did not take at once: waits for room, and gives up
/// after WRITE_TIMEOUT (false). Only a write that has to wait sets up the
/// timer (a clock read and a timer entry).
pub(super) async fn write_rest<W: AsyncWrite + Unpin>(writer: &mut W, data: &[u8], shared: &Shared) -> bool {
    let written = matches!(tokio::time::timeout(shared.write_timeout, writer.write_all(data)).await, Ok(Ok(())));
    if written {
        shared.metrics.bytes_out.increment(data.len() as u64);
    }
    written
}

/// Writes `data`; false when the client did not accept it in time.
pub(super) async fn write<W: AsyncWrite + Unpin>(writer: &mut W, data: &[u8], shared: &Shared) -> bool {
    match write_now(writer, data, shared) {
        Some(n) => n == data.len() || Box::pin(write_rest(writer, &data[n..], shared)).await,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use playground_common::Lifecycle;

    use super::*;
    use crate::bus::EmbeddedBus;
    use crate::cache::EmbeddedCache;
    use crate::config::TcpOptions;
    use crate::executor::Executor;

    /// A socket that takes `room` more bytes, then is full.
    struct Tight {
        taken: Vec<u8>,
        room: usize,
    }

    impl AsyncWrite for Tight {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.room);
            if n == 0 {
                return Poll::Pending;
            }
            self.room -= n;
            self.taken.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A reply the socket takes only in part is written as far as it goes
    /// at once; the rest is left to `write`, which finishes it once there
    /// is room, and gives up after WRITE_TIMEOUT while there is none.
    #[tokio::test(start_paused = true)]
    async fn a_reply_the_socket_takes_in_part_is_finished_by_the_timed_write() {
        let opts = TcpOptions::from_args(&[]);
        let executor = Arc::new(Executor::new(Arc::new(EmbeddedCache::new(10)), Arc::new(EmbeddedBus::new(16))));
        let shared = Shared::new(executor, Lifecycle::new(), &opts, None);
        let mut socket = Tight { taken: Vec::new(), room: 5 };
        assert_eq!(write_now(&mut socket, b"hello world\n", &shared), Some(5));
        assert_eq!(write_now(&mut socket, b" world\n", &shared), Some(0), "a full socket takes nothing");
        assert!(!write(&mut socket, b" world\n", &shared).await, "no room until the write timeout");
        socket.room = 100;
        assert!(write(&mut socket, b" world\n", &shared).await);
        assert_eq!(socket.taken, b"hello world\n");
    }
}
