//! Answering datagrams. Each socket has one receive loop and its share of the
//! WORKERS slots and of the queue.
//!
//! A command runs at once in the receive loop: most complete without waiting
//! (`msg`, errors, the embedded cache), so they cost no task and no hand-off.
//! A command that has to wait (memcached) is moved, still running, to a task
//! of its own and keeps its slot until it is answered. When every slot is
//! busy, datagrams wait in a bounded queue that finishing workers drain; when
//! the queue is full they are dropped and counted, so overload costs a
//! counter, never memory.
//!
//! On Linux the loop receives up to UDP_BATCH datagrams per system call and
//! sends the replies it could answer at once together ([`super::mmsg`]);
//! elsewhere, or with UDP_BATCH=1, one datagram per call.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use playground_protocol::{Ending, ErrorReply, ProtocolError, Reply};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Config;
use crate::executor::{Executor, Peer, Transport};
use crate::metrics::{CommandMetrics, UdpMetrics};
use playground_common::lifecycle::Lifecycle;

/// A command that is running and may still wait for the cache.
type Running = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// A reply and how it ends: with `\n` only if the request did, so the
/// original's clients get byte-identical replies and `nc -u` stays readable.
type Answer = (Reply, Ending);

/// Pause after a failed receive, so that a persistent error cannot spin.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(1);

/// What every socket shares.
pub struct Shared {
    executor: Arc<Executor>,
    lifecycle: Lifecycle,
    commands: CommandMetrics,
    metrics: UdpMetrics,
    transport: Transport,
    max_command: usize,
    batch: usize,
}

impl Shared {
    /// Shared state for a server with `config`.
    pub fn new(executor: Arc<Executor>, lifecycle: Lifecycle, config: &Config) -> Self {
        Shared {
            executor,
            lifecycle,
            commands: CommandMetrics::new("udp"),
            metrics: UdpMetrics::new(),
            transport: Transport::Udp { check_ip: config.check_ip },
            max_command: config.max_command,
            batch: config.batch,
        }
    }
}

/// One socket with its receive loop, worker slots and queue. Slots and queue
/// are per socket so that the receive loops of different cores never touch
/// the same counters on the request path.
pub struct SocketWorker {
    socket: UdpSocket,
    shared: Arc<Shared>,
    slots: Slots,
    queue: Queue,
}

impl SocketWorker {
    /// A socket with `workers` slots and room for `queue` waiting datagrams.
    pub fn new(socket: UdpSocket, shared: Arc<Shared>, workers: usize, queue: usize) -> Arc<Self> {
        Arc::new(SocketWorker {
            socket,
            shared,
            slots: Slots { busy: AtomicUsize::new(0), max: workers },
            queue: Queue::new(queue),
        })
    }

    /// Receives and answers datagrams until the reconnect phase.
    pub async fn receive(self: Arc<Self>) {
        #[cfg(target_os = "linux")]
        if self.shared.batch > 1 {
            self.receive_batches().await;
            debug!("UDP receive loop stopped");
            return;
        }
        self.receive_one_by_one().await;
        debug!("UDP receive loop stopped");
    }

    /// Room for BUFF_SIZE, a `\r\n` that does not count against it, and one
    /// byte more: a datagram that fills the buffer was longer than that,
    /// whatever the kernel cut off.
    fn capacity(&self) -> usize {
        self.shared.max_command + 3
    }

    /// One `recv_from` and one `send_to` per datagram.
    async fn receive_one_by_one(self: &Arc<Self>) {
        let capacity = self.capacity();
        let mut buf = BytesMut::with_capacity(capacity);
        let mut out = BytesMut::with_capacity(capacity);
        let mut stop = Stop::new(&self.shared.lifecycle.reconnect);
        let cancelled = self.shared.lifecycle.reconnect.clone().cancelled_owned();
        tokio::pin!(cancelled);
        loop {
            // Once the previous datagram's bytes are dropped, this reuses the
            // same allocation: no allocation per datagram on the fast path.
            buf.clear();
            buf.resize(capacity, 0);
            let received = tokio::select! {
                biased;
                r = self.socket.recv_from(&mut buf) => r,
                _ = &mut cancelled => return,
            };
            let (len, from) = match received {
                Ok(r) => r,
                Err(e) => {
                    // Unconnected UDP sockets report almost nothing.
                    debug!(error = %e, "UDP receive failed");
                    tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                    continue;
                }
            };
            buf.truncate(len);
            if let Some(reply) = self.take(buf.split().freeze(), from) {
                self.send(reply, from, &mut out).await;
            }
            if stop.after(1) {
                return;
            }
        }
    }

    /// Up to UDP_BATCH datagrams per `recvmmsg`, their immediate replies in
    /// one `sendmmsg`.
    #[cfg(target_os = "linux")]
    async fn receive_batches(self: &Arc<Self>) {
        use std::os::fd::AsRawFd;

        use tokio::io::Interest;

        use super::mmsg::{RecvBatch, SendBatch};

        let capacity = self.capacity();
        let fd = self.socket.as_raw_fd();
        let mut batch = RecvBatch::new(self.shared.batch, capacity);
        let mut replies = SendBatch::new(self.shared.batch);
        let mut out = BytesMut::with_capacity(capacity);
        let mut stop = Stop::new(&self.shared.lifecycle.reconnect);
        let cancelled = self.shared.lifecycle.reconnect.clone().cancelled_owned();
        tokio::pin!(cancelled);
        loop {
            let n = match self.socket.try_io(Interest::READABLE, || batch.recv(fd)) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::select! {
                        biased;
                        r = self.socket.readable() => if let Err(e) = r {
                            debug!(error = %e, "UDP socket not readable");
                            tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                        },
                        _ = &mut cancelled => return,
                    }
                    continue;
                }
                Err(e) => {
                    debug!(error = %e, "UDP receive failed");
                    tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                    continue;
                }
            };
            replies.clear();
            for i in 0..n {
                let (data, from) = batch.get(i);
                let Some(from) = from else { continue };
                if let Some((reply, ending)) = self.take(Bytes::copy_from_slice(data), from) {
                    out.clear();
                    reply.encode(&mut out, ending);
                    // An empty value read without a line end is an empty datagram, as the original sent.
                    replies.push(&out, from);
                }
            }
            self.flush(&mut replies, fd).await;
            if stop.after(n) {
                return;
            }
        }
    }

    /// Sends a batch of replies, waiting while the socket buffer is full.
    #[cfg(target_os = "linux")]
    async fn flush(&self, replies: &mut super::mmsg::SendBatch, fd: std::os::fd::RawFd) {
        let metrics = &self.shared.metrics;
        while !replies.is_done() {
            match self.socket.try_io(tokio::io::Interest::WRITABLE, || replies.send(fd)) {
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

    /// Takes one received datagram: counts it, drops it if it is too long,
    /// queues it if every worker is busy, otherwise runs it here. Returns the
    /// reply to send now, if there is one.
    fn take(self: &Arc<Self>, datagram: Bytes, from: SocketAddr) -> Option<Answer> {
        let metrics = &self.shared.metrics;
        let len = datagram.len();
        metrics.received.increment(1);
        metrics.bytes_in.increment(len as u64);
        if len >= self.capacity() || command_len(&datagram) > self.shared.max_command {
            metrics.dropped_oversize.increment(1);
            return None;
        }
        if !self.slots.try_take() {
            self.enqueue(datagram, from);
            return None;
        }
        // Run the command here; only if it has to wait is it moved.
        let mut running = self.clone().answer(datagram, from);
        match running.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(answer) => {
                self.release();
                self.deliverable(answer)
            }
            Poll::Pending => {
                self.spawn_worker(Some((running, from)));
                None
            }
        }
    }

    /// Runs one datagram through the executor.
    fn answer(self: Arc<Self>, datagram: Bytes, from: SocketAddr) -> Running {
        Box::pin(async move {
            let peer = Peer { addr: from, transport: self.shared.transport };
            let ending = Ending::mirroring(&datagram);
            (self.shared.executor.execute(datagram, &peer, &self.shared.commands).await, ending)
        })
    }

    /// The reply, unless the datagram was not a command: those get no reply,
    /// so a spoofed source cannot aim our answers at someone else.
    fn deliverable(&self, answer: Answer) -> Option<Answer> {
        // Only `brd` publishes without a reply, and it is TCP-only; nothing to send.
        if answer.0 == Reply::Published {
            return None;
        }
        if matches!(answer.0, Reply::Error(ErrorReply::Protocol(ProtocolError::UnknownCommand))) {
            self.shared.metrics.dropped_unknown.increment(1);
            return None;
        }
        Some(answer)
    }

    /// Sends one reply to `to`.
    async fn send(&self, (reply, ending): Answer, to: SocketAddr, out: &mut BytesMut) {
        out.clear();
        reply.encode(out, ending);
        let metrics = &self.shared.metrics;
        match self.socket.send_to(out, to).await {
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

    /// Queues a datagram while every slot is busy, or drops it when full.
    fn enqueue(self: &Arc<Self>, datagram: Bytes, from: SocketAddr) {
        if !self.queue.push(datagram, from) {
            self.shared.metrics.dropped_overload.increment(1);
            return;
        }
        // A worker may have finished between the full slots and the push,
        // and found the queue empty: make sure someone drains it.
        if self.slots.try_take() {
            self.spawn_worker(None);
        }
    }

    /// Gives a slot back, then drains the queue if datagrams are waiting.
    fn release(self: &Arc<Self>) {
        self.slots.give_back();
        if !self.queue.is_empty() && self.slots.try_take() {
            self.spawn_worker(None);
        }
    }

    /// A task holding one slot: finishes `first`, then drains the queue.
    fn spawn_worker(self: &Arc<Self>, first: Option<(Running, SocketAddr)>) {
        let this = self.clone();
        let close = self.shared.lifecycle.close.clone();
        self.shared.lifecycle.tasks.spawn(async move {
            tokio::select! {
                _ = close.cancelled() => {}
                _ = this.work(first) => {}
            }
        });
    }

    async fn work(self: Arc<Self>, first: Option<(Running, SocketAddr)>) {
        let mut out = BytesMut::new();
        if let Some((running, from)) = first {
            if let Some(answer) = self.deliverable(running.await) {
                self.send(answer, from, &mut out).await;
            }
        }
        loop {
            while let Some((datagram, from)) = self.queue.pop() {
                let answer = self.clone().answer(datagram, from).await;
                if let Some(answer) = self.deliverable(answer) {
                    self.send(answer, from, &mut out).await;
                }
            }
            self.slots.give_back();
            // Same race as in `enqueue`, seen from this side.
            if self.queue.is_empty() || !self.slots.try_take() {
                return;
            }
        }
    }
}

/// Notices the reconnect phase while datagrams keep coming. Polling the
/// cancellation takes two locks shared by every task, too costly per
/// datagram: the loops poll it only when their socket is empty, and this
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

/// The length of a datagram's command without its line end.
fn command_len(datagram: &[u8]) -> usize {
    let d = datagram.strip_suffix(b"\n").unwrap_or(datagram);
    d.strip_suffix(b"\r").unwrap_or(d).len()
}

/// Busy workers of one socket, counted without a lock.
struct Slots {
    busy: AtomicUsize,
    max: usize,
}

impl Slots {
    fn try_take(&self) -> bool {
        if self.busy.fetch_add(1, SeqCst) < self.max {
            return true;
        }
        self.busy.fetch_sub(1, SeqCst);
        false
    }

    fn give_back(&self) {
        self.busy.fetch_sub(1, SeqCst);
    }
}

/// Datagrams waiting for a worker. The mutex is only taken when every slot
/// is busy; the receive loop's per-datagram check reads the atomic length.
struct Queue {
    items: Mutex<VecDeque<(Bytes, SocketAddr)>>,
    len: AtomicUsize,
    max: usize,
}

impl Queue {
    fn new(max: usize) -> Self {
        Queue { items: Mutex::new(VecDeque::new()), len: AtomicUsize::new(0), max }
    }

    fn push(&self, datagram: Bytes, from: SocketAddr) -> bool {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        if items.len() >= self.max {
            return false;
        }
        items.push_back((datagram, from));
        self.len.fetch_add(1, SeqCst);
        true
    }

    fn pop(&self) -> Option<(Bytes, SocketAddr)> {
        if self.is_empty() {
            return None;
        }
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let item = items.pop_front();
        if item.is_some() {
            self.len.fetch_sub(1, SeqCst);
        }
        item
    }

    fn is_empty(&self) -> bool {
        self.len.load(SeqCst) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::command_len;

    #[test]
    fn line_ends_do_not_count_against_buff_size() {
        assert_eq!(command_len(b"msg:x"), 5);
        assert_eq!(command_len(b"msg:x\n"), 5);
        assert_eq!(command_len(b"msg:x\r\n"), 5);
        assert_eq!(command_len(b"msg:x\r"), 5);
        assert_eq!(command_len(b"\n\n"), 1);
        assert_eq!(command_len(b""), 0);
    }
}
