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

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use playground_protocol::{ErrorReply, ProtocolError, Reply};
use tokio::net::UdpSocket;
use tracing::debug;

use super::Config;
use crate::executor::{Executor, Peer, Transport};
use crate::lifecycle::Lifecycle;
use crate::metrics::{CommandMetrics, UdpMetrics};

/// A command that is running and may still wait for the cache.
type Running = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// What every socket shares.
pub struct Shared {
    executor: Arc<Executor>,
    lifecycle: Lifecycle,
    commands: CommandMetrics,
    metrics: UdpMetrics,
    transport: Transport,
    max_command: usize,
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
        let metrics = &self.shared.metrics;
        // Room for BUFF_SIZE, a `\r\n` that does not count against it, and
        // one byte more: a datagram that fills the buffer was longer than
        // that, whatever the kernel cut off.
        let capacity = self.shared.max_command + 3;
        let mut buf = BytesMut::with_capacity(capacity);
        let mut out = BytesMut::with_capacity(capacity);
        let reconnect = self.shared.lifecycle.reconnect.clone();
        let stop = reconnect.clone().cancelled_owned();
        tokio::pin!(stop);
        let mut since_check = 0u32;
        loop {
            // Once the previous datagram's bytes are dropped, this reuses the
            // same allocation: no allocation per datagram on the fast path.
            buf.clear();
            buf.resize(capacity, 0);
            // Receiving comes first: polling the cancellation takes two locks
            // shared by every task, too costly per datagram. It is polled
            // whenever the socket is empty, and checked every 64 datagrams so
            // that a flood cannot hide it.
            let received = tokio::select! {
                biased;
                r = self.socket.recv_from(&mut buf) => r,
                _ = &mut stop => break,
            };
            since_check += 1;
            if since_check == 64 {
                since_check = 0;
                if reconnect.is_cancelled() {
                    break;
                }
            }
            let (len, from) = match received {
                Ok(r) => r,
                Err(e) => {
                    // Unconnected UDP sockets report almost nothing; do not
                    // spin if something persistent does come up.
                    debug!(error = %e, "UDP receive failed");
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    continue;
                }
            };
            metrics.received.increment(1);
            metrics.bytes_in.increment(len as u64);
            buf.truncate(len);
            let datagram = buf.split().freeze();
            if len == capacity || command_len(&datagram) > self.shared.max_command {
                metrics.dropped_oversize.increment(1);
                continue;
            }
            if !self.slots.try_take() {
                self.enqueue(datagram, from);
                continue;
            }
            // Run the command here; only if it has to wait is it moved.
            let mut running = self.clone().answer(datagram, from);
            let polled = running.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            match polled {
                Poll::Ready(reply) => {
                    self.respond(reply, from, &mut out).await;
                    self.release();
                }
                Poll::Pending => self.spawn_worker(Some((running, from))),
            }
        }
        debug!("UDP receive loop stopped");
    }

    /// Runs one datagram through the executor.
    fn answer(self: Arc<Self>, datagram: Bytes, from: SocketAddr) -> Running {
        Box::pin(async move {
            let peer = Peer { addr: from, transport: self.shared.transport };
            self.shared.executor.execute(datagram, &peer, &self.shared.commands).await
        })
    }

    /// Sends `reply` to `to`, except to datagrams that are not a command.
    async fn respond(&self, reply: Reply, to: SocketAddr, out: &mut BytesMut) {
        let metrics = &self.shared.metrics;
        if matches!(reply, Reply::Error(ErrorReply::Protocol(ProtocolError::UnknownCommand))) {
            // No reply: a spoofed source must not be able to aim our answers
            // at someone else.
            metrics.dropped_unknown.increment(1);
            return;
        }
        out.clear();
        reply.encode(out);
        if out.is_empty() {
            return;
        }
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
            let reply = running.await;
            self.respond(reply, from, &mut out).await;
        }
        loop {
            while let Some((datagram, from)) = self.queue.pop() {
                let reply = self.clone().answer(datagram, from).await;
                self.respond(reply, from, &mut out).await;
            }
            self.slots.give_back();
            // Same race as in `enqueue`, seen from this side.
            if self.queue.is_empty() || !self.slots.try_take() {
                return;
            }
        }
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
