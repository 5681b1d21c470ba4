//! The receive side of one socket: datagrams come in batches and the replies
//! answered at once go out together, until the reconnect phase. Two sources
//! sit behind one interface ([`Datagrams`]): on Linux up to UDP_BATCH
//! datagrams per `recvmmsg` and their replies in one `sendmmsg`
//! ([`super::mmsg`], measured to cost fewer system calls per reply);
//! elsewhere, or with UDP_BATCH=1, one `recv_from` and one `send_to` per
//! datagram.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::debug;

use super::Answer;
use crate::metrics::UdpMetrics;

/// Pause after a failed receive, so that a persistent error cannot spin.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(1);

/// Receives datagrams on `socket` until `reconnect` is cancelled, `batch` at
/// a time, into buffers of `capacity` bytes. `handle` takes each datagram and
/// returns the reply to send now, if there is one; those replies leave
/// together once the batch is handled.
pub async fn receive(
    socket: &UdpSocket,
    metrics: &UdpMetrics,
    batch: usize,
    capacity: usize,
    reconnect: &CancellationToken,
    handle: impl FnMut(Bytes, SocketAddr) -> Option<Answer>,
) {
    #[cfg(target_os = "linux")]
    if batch > 1 {
        let datagrams = batched::Batched::new(socket, metrics, batch, capacity, reconnect);
        return run(datagrams, reconnect, handle).await;
    }
    let _ = batch;
    run(OneByOne::new(socket, metrics, capacity, reconnect), reconnect, handle).await;
}

/// Sends one reply to `to`, encoded in `out`. An empty value read without a
/// line end is an empty datagram, as the original sent it.
pub async fn send(
    socket: &UdpSocket,
    metrics: &UdpMetrics,
    (reply, ending): Answer,
    to: SocketAddr,
    out: &mut BytesMut,
) {
    out.clear();
    reply.encode(out, ending);
    match socket.send_to(out, to).await {
        Ok(n) => {
            metrics.sent.increment(1);
            metrics.bytes_out.increment(n as u64);
        }
        Err(e) => {
            metrics.dropped_send_error.increment(1);
            debug!(error = %e, %to, "UDP send failed");
        }
    }
}

/// Where datagrams come from and where the immediate replies go.
trait Datagrams {
    /// Waits for datagrams; how many arrived, or `None` at the reconnect
    /// phase.
    async fn receive(&mut self) -> Option<usize>;
    /// Datagram `i` of the last receive and its sender (`None` for a sender
    /// that is not an IP address, which a UDP/IP socket never reports).
    fn get(&mut self, i: usize) -> Option<(Bytes, SocketAddr)>;
    /// Keeps a reply to send with the rest of the batch.
    fn reply(&mut self, answer: Answer, to: SocketAddr);
    /// Sends the replies kept since the last receive.
    async fn flush(&mut self);
}

/// The receive loop over either source.
async fn run(
    mut datagrams: impl Datagrams,
    reconnect: &CancellationToken,
    mut handle: impl FnMut(Bytes, SocketAddr) -> Option<Answer>,
) {
    let mut stop = Stop::new(reconnect);
    while let Some(n) = datagrams.receive().await {
        for i in 0..n {
            let Some((datagram, from)) = datagrams.get(i) else { continue };
            if let Some(answer) = handle(datagram, from) {
                datagrams.reply(answer, from);
            }
        }
        datagrams.flush().await;
        if stop.after(n) {
            return;
        }
    }
}

/// Notices the reconnect phase while datagrams keep coming. Polling the
/// cancellation takes two locks shared by every task, too costly per
/// datagram: the sources poll it only when their socket is empty, and this
/// checks it every 64 datagrams so that a flood cannot hide it.
struct Stop {
    token: CancellationToken,
    since_check: usize,
}

impl Stop {
    fn new(token: &CancellationToken) -> Self {
        Stop { token: token.clone(), since_check: 0 }
    }

    /// Counts `n` datagrams; true when the loop must stop.
    fn after(&mut self, n: usize) -> bool {
        self.since_check += n;
        if self.since_check < 64 {
            return false;
        }
        self.since_check = 0;
        self.token.is_cancelled()
    }
}

/// The reconnect phase as a future a source can wait on next to its socket.
fn cancelled(reconnect: &CancellationToken) -> Pin<Box<WaitForCancellationFutureOwned>> {
    Box::pin(reconnect.clone().cancelled_owned())
}

/// One `recv_from` and one `send_to` per datagram.
struct OneByOne<'a> {
    socket: &'a UdpSocket,
    metrics: &'a UdpMetrics,
    capacity: usize,
    buf: BytesMut,
    from: Option<SocketAddr>,
    reply: Option<(Answer, SocketAddr)>,
    out: BytesMut,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<'a> OneByOne<'a> {
    fn new(socket: &'a UdpSocket, metrics: &'a UdpMetrics, capacity: usize, reconnect: &CancellationToken) -> Self {
        OneByOne {
            socket,
            metrics,
            capacity,
            buf: BytesMut::with_capacity(capacity),
            from: None,
            reply: None,
            out: BytesMut::with_capacity(capacity),
            cancelled: cancelled(reconnect),
        }
    }
}

impl Datagrams for OneByOne<'_> {
    async fn receive(&mut self) -> Option<usize> {
        loop {
            // Once the previous datagram's bytes are dropped, this reuses the
            // same allocation: no allocation per datagram on the fast path.
            self.buf.clear();
            self.buf.resize(self.capacity, 0);
            let received = tokio::select! {
                biased;
                r = self.socket.recv_from(&mut self.buf) => r,
                _ = &mut self.cancelled => return None,
            };
            match received {
                Ok((len, from)) => {
                    self.buf.truncate(len);
                    self.from = Some(from);
                    return Some(1);
                }
                Err(e) => {
                    // Unconnected UDP sockets report almost nothing.
                    debug!(error = %e, "UDP receive failed");
                    tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                }
            }
        }
    }

    fn get(&mut self, _: usize) -> Option<(Bytes, SocketAddr)> {
        Some((self.buf.split().freeze(), self.from?))
    }

    fn reply(&mut self, answer: Answer, to: SocketAddr) {
        self.reply = Some((answer, to));
    }

    async fn flush(&mut self) {
        if let Some((answer, to)) = self.reply.take() {
            send(self.socket, self.metrics, answer, to, &mut self.out).await;
        }
    }
}

#[cfg(target_os = "linux")]
mod batched {
    //! Up to UDP_BATCH datagrams per `recvmmsg`, their immediate replies in
    //! one `sendmmsg`.

    use std::net::SocketAddr;
    use std::os::fd::{AsRawFd, RawFd};
    use std::pin::Pin;

    use bytes::{Bytes, BytesMut};
    use tokio::io::Interest;
    use tokio::net::UdpSocket;
    use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
    use tracing::debug;

    use super::super::mmsg::{RecvBatch, SendBatch};
    use super::{Answer, Datagrams, RECEIVE_ERROR_PAUSE, cancelled};
    use crate::metrics::UdpMetrics;

    pub struct Batched<'a> {
        socket: &'a UdpSocket,
        metrics: &'a UdpMetrics,
        fd: RawFd,
        batch: RecvBatch,
        replies: SendBatch,
        out: BytesMut,
        cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    }

    impl<'a> Batched<'a> {
        pub fn new(
            socket: &'a UdpSocket,
            metrics: &'a UdpMetrics,
            batch: usize,
            capacity: usize,
            reconnect: &CancellationToken,
        ) -> Self {
            Batched {
                socket,
                metrics,
                fd: socket.as_raw_fd(),
                batch: RecvBatch::new(batch, capacity),
                replies: SendBatch::new(batch),
                out: BytesMut::with_capacity(capacity),
                cancelled: cancelled(reconnect),
            }
        }
    }

    impl Datagrams for Batched<'_> {
        async fn receive(&mut self) -> Option<usize> {
            loop {
                match self.socket.try_io(Interest::READABLE, || self.batch.recv(self.fd)) {
                    Ok(n) => {
                        self.replies.clear();
                        return Some(n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        tokio::select! {
                            biased;
                            r = self.socket.readable() => if let Err(e) = r {
                                debug!(error = %e, "UDP socket not readable");
                                tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                            },
                            _ = &mut self.cancelled => return None,
                        }
                    }
                    Err(e) => {
                        debug!(error = %e, "UDP receive failed");
                        tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                    }
                }
            }
        }

        fn get(&mut self, i: usize) -> Option<(Bytes, SocketAddr)> {
            let (data, from) = self.batch.get(i);
            let from = from?;
            Some((Bytes::copy_from_slice(data), from))
        }

        fn reply(&mut self, (reply, ending): Answer, to: SocketAddr) {
            self.out.clear();
            reply.encode(&mut self.out, ending);
            self.replies.push(&self.out, to);
        }

        /// Sends the batch's replies, waiting while the socket buffer is full.
        async fn flush(&mut self) {
            let metrics = self.metrics;
            let replies = &mut self.replies;
            while !replies.is_done() {
                match self.socket.try_io(Interest::WRITABLE, || replies.send(self.fd)) {
                    Ok((count, bytes)) => {
                        metrics.sent.increment(count as u64);
                        metrics.bytes_out.increment(bytes as u64);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if let Err(e) = self.socket.writable().await {
                            debug!(error = %e, "UDP socket not writable");
                            while !replies.is_done() {
                                metrics.dropped_send_error.increment(1);
                                replies.skip();
                            }
                        }
                    }
                    Err(e) => {
                        // The first reply left failed (e.g. no route to its
                        // sender): give it up, send the others.
                        debug!(error = %e, "UDP send failed");
                        metrics.dropped_send_error.increment(1);
                        replies.skip();
                    }
                }
            }
        }
    }
}
