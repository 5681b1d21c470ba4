//! Answering datagrams. Each socket has one receive loop ([`super::receiver`])
//! and its share of the WORKERS slots and of the queue
//! ([`super::admission`]); this module decides, datagram by datagram, where
//! the command runs.
//!
//! A command runs at once in the receive loop: most complete without waiting
//! (`msg`, errors, the embedded cache), so they cost no task and no hand-off.
//! A command that has to wait (memcached) is moved, still running, to a task
//! of its own and keeps its slot until it is answered. When every slot is
//! busy, datagrams wait in the bounded queue that finishing workers drain;
//! when the queue is full they are dropped and counted, so overload costs a
//! counter, never memory. Every reply passes the [`Guard`] before it is
//! sent.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use playground_common::lifecycle::Lifecycle;
use playground_protocol::{Ending, ErrorReply, ProtocolError, Reply};
use tokio::net::UdpSocket;
use tracing::debug;

use super::admission::{Admission, Wait};
use super::guard::Guard;
use super::{Answer, Config, receiver};
use crate::executor::{Executor, Peer, Transport};
use crate::metrics::{CommandMetrics, UdpMetrics};

/// A command that is running and may still wait for the cache.
type Running = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// What every socket shares.
pub struct Shared {
    executor: Arc<Executor>,
    lifecycle: Lifecycle,
    commands: CommandMetrics,
    metrics: UdpMetrics,
    guard: Arc<Guard>,
    transport: Transport,
    max_command: usize,
    batch: usize,
}

impl Shared {
    /// Shared state for a server with `config`, checking replies with `guard`
    /// (one for every socket of the server).
    pub fn new(executor: Arc<Executor>, lifecycle: Lifecycle, config: &Config, guard: Arc<Guard>) -> Self {
        Shared {
            executor,
            lifecycle,
            commands: CommandMetrics::new("udp"),
            metrics: UdpMetrics::new(),
            guard,
            transport: Transport::Udp { check_ip: config.check_ip },
            max_command: config.max_command,
            batch: config.batch,
        }
    }
}

/// One socket with its worker slots and queue.
pub struct SocketWorker {
    socket: UdpSocket,
    shared: Arc<Shared>,
    admission: Admission<(Bytes, SocketAddr)>,
}

impl SocketWorker {
    /// A socket with `workers` slots and room for `queue` waiting datagrams.
    pub fn new(socket: UdpSocket, shared: Arc<Shared>, workers: usize, queue: usize) -> Arc<Self> {
        Arc::new(SocketWorker { socket, shared, admission: Admission::new(workers, queue) })
    }

    /// Receives and answers datagrams until the reconnect phase.
    pub async fn receive(self: Arc<Self>) {
        let shared = &self.shared;
        let reconnect = &shared.lifecycle.reconnect;
        receiver::receive(&self.socket, &shared.metrics, shared.batch, self.capacity(), reconnect, |datagram, from| {
            self.take(datagram, from)
        })
        .await;
        debug!("UDP receive loop stopped");
    }

    /// Room for BUFF_SIZE, a `\r\n` that does not count against it, and one
    /// byte more: a datagram that fills the buffer was longer than that,
    /// whatever the kernel cut off.
    fn capacity(&self) -> usize {
        self.shared.max_command + 3
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
        if !self.admission.try_admit() {
            match self.admission.wait((datagram, from)) {
                Wait::Full => metrics.dropped_overload.increment(1),
                Wait::Queued => {}
                Wait::Drain => self.spawn_worker(None),
            }
            return None;
        }
        // Run the command here; only if it has to wait is it moved.
        let mut running = self.clone().answer(datagram, from);
        match poll_once(running.as_mut()) {
            Poll::Ready(answer) => {
                if self.admission.release() {
                    self.spawn_worker(None);
                }
                self.deliverable(answer, len, from)
            }
            Poll::Pending => {
                self.spawn_worker(Some((running, len, from)));
                None
            }
        }
    }

    /// Runs one datagram through the executor.
    fn answer(self: Arc<Self>, datagram: Bytes, from: SocketAddr) -> Running {
        Box::pin(async move {
            let peer = Peer { addr: from, transport: self.shared.transport };
            let ending = Ending::mirroring(&datagram);
            (self.shared.executor.execute(datagram, &peer, None, &self.shared.commands).await, ending)
        })
    }

    /// The reply, unless the datagram was not a command (those get no
    /// reply, so a spoofed source cannot aim our answers at someone else) or
    /// the [`Guard`] stops it.
    fn deliverable(&self, answer: Answer, request_len: usize, from: SocketAddr) -> Option<Answer> {
        // Only `brd` publishes without a reply, and it is TCP-only; nothing to send.
        if answer.0 == Reply::Published {
            return None;
        }
        if matches!(answer.0, Reply::Error(ErrorReply::Protocol(ProtocolError::UnknownCommand))) {
            self.shared.metrics.dropped_unknown.increment(1);
            return None;
        }
        self.shared.guard.allows(&answer, request_len, from, &self.shared.metrics).then_some(answer)
    }

    /// A task holding one slot: finishes `first`, then drains the queue.
    fn spawn_worker(self: &Arc<Self>, first: Option<(Running, usize, SocketAddr)>) {
        let this = self.clone();
        let close = self.shared.lifecycle.close.clone();
        self.shared.lifecycle.tasks.spawn(async move {
            tokio::select! {
                _ = close.cancelled() => {}
                _ = this.work(first) => {}
            }
        });
    }

    async fn work(self: Arc<Self>, first: Option<(Running, usize, SocketAddr)>) {
        let mut out = BytesMut::new();
        if let Some((running, len, from)) = first
            && let Some(answer) = self.deliverable(running.await, len, from)
        {
            self.send(answer, from, &mut out).await;
        }
        loop {
            while let Some((datagram, from)) = self.admission.next_waiting() {
                let len = datagram.len();
                let answer = self.clone().answer(datagram, from).await;
                if let Some(answer) = self.deliverable(answer, len, from) {
                    self.send(answer, from, &mut out).await;
                }
            }
            if !self.admission.release() {
                return;
            }
        }
    }

    async fn send(&self, answer: Answer, to: SocketAddr, out: &mut BytesMut) {
        receiver::send(&self.socket, &self.shared.metrics, answer, to, out).await;
    }
}

/// Polls a command once, in the receive loop, without a task: the fast path
/// for the commands that complete without waiting, which then cost no spawn,
/// no hand-off and no wake-up. The waker does nothing: a command that is not
/// ready is moved to a task of its own, whose first poll registers the task's
/// real waker with whatever the command waits on (futures keep the waker of
/// their latest poll), so no wake-up is lost.
fn poll_once<F: Future + ?Sized>(running: Pin<&mut F>) -> Poll<F::Output> {
    running.poll(&mut Context::from_waker(Waker::noop()))
}

/// The length of a datagram's command without its line end.
fn command_len(datagram: &[u8]) -> usize {
    let d = datagram.strip_suffix(b"\n").unwrap_or(datagram);
    d.strip_suffix(b"\r").unwrap_or(d).len()
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
