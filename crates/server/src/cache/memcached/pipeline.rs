//! One memcached connection shared by many tasks. Requests are written in
//! the order they arrive, all that have queued up in one write, and each
//! reply goes to the oldest request still waiting (memcached answers in
//! order). Where a pool lends a connection to one request at a time, this
//! makes one system call carry many requests each way, for memcached too.
//!
//! A reply that cannot belong to the oldest request (the wrong key or the
//! wrong kind: the stream is out of step), a protocol error or a closed
//! socket closes the connection, and every request waiting on it fails at
//! once. So does a request that outlives MEMCACHED_TIMEOUT: its reply may
//! never come, and a connection that lost one reply would hand the next
//! reply to the wrong request.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{AbortHandle, Abortable};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::debug;

use super::codec::{Codec, ProtocolError, Reply, Request};
use crate::cache::CacheError;

/// The most requests written in one batch.
const MAX_BATCH: usize = 256;

type Answer = oneshot::Sender<Result<Reply, CacheError>>;

/// A request on its way to the writer.
struct Queued {
    request: Request,
    answer: Answer,
}

/// A request written and waiting for its reply: what the reply must match.
struct Waiting {
    /// The key of a `get` (a hit names it), or none for a `set`.
    get: Option<Bytes>,
    answer: Answer,
}

/// A pipelined connection; it closes when the last handle is dropped.
pub struct Connection {
    requests: mpsc::Sender<Queued>,
    halves: Halves,
}

/// Stops the writer and the reader of a connection. Abort handles rather
/// than a cancellation token: whether a connection is closed is asked on
/// every request, and a token takes a lock to answer (seen in `perf`).
#[derive(Clone)]
struct Halves([AbortHandle; 2]);

impl Halves {
    fn close(&self) {
        self.0.iter().for_each(AbortHandle::abort);
    }

    fn closed(&self) -> bool {
        self.0[0].is_aborted()
    }
}

impl Connection {
    /// Connects to `addr` within `limit`; at most `in_flight` requests queue
    /// to be written and as many wait for their reply (more wait for room).
    pub async fn open(addr: SocketAddr, limit: Duration, in_flight: usize) -> Result<Connection, CacheError> {
        let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(CacheError(format!("connecting to {addr}: {e}"))),
            Err(_) => return Err(CacheError(format!("connecting to {addr}: timed out"))),
        };
        // Requests are batched here already; Nagle would only delay them.
        stream.set_nodelay(true).map_err(|e| CacheError(format!("{addr}: {e}")))?;
        let (read, write) = stream.into_split();
        let (requests, queued) = mpsc::channel(in_flight.max(1));
        let (waiting_tx, waiting_rx) = mpsc::channel(in_flight.max(1));
        let ((writer, w), (reader, r)) = (AbortHandle::new_pair(), AbortHandle::new_pair());
        let halves = Halves([writer, reader]);
        tokio::spawn(run_half(halves.clone(), addr, Abortable::new(write_loop(queued, waiting_tx, write), w)));
        tokio::spawn(run_half(halves.clone(), addr, Abortable::new(read_loop(read, waiting_rx), r)));
        Ok(Connection { requests, halves })
    }

    /// Sends `request` and waits for its reply (the caller bounds the wait).
    pub async fn call(&self, request: Request) -> Result<Reply, CacheError> {
        let (answer, reply) = oneshot::channel();
        let gone = || CacheError("memcached connection closed".into());
        self.requests.send(Queued { request, answer }).await.map_err(|_| gone())?;
        reply.await.map_err(|_| gone())?
    }

    /// Closes the connection: every request on it fails now.
    pub fn close(&self) {
        self.halves.close();
    }

    /// Whether the connection is closed (by [`Connection::close`], an error
    /// or memcached).
    pub fn is_closed(&self) -> bool {
        self.halves.closed()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// Runs one half of a connection until it ends or the connection closes,
/// then closes the connection for the other half.
async fn run_half(halves: Halves, addr: SocketAddr, half: Abortable<impl Future<Output = Result<(), ProtocolError>>>) {
    if let Ok(Err(e)) = half.await {
        debug!(%addr, error = %e, "memcached connection closed");
    }
    halves.close();
}

/// Writes every queued request, in order, one flush per batch. A request's
/// answer joins the waiting line before its bytes leave, so its reply
/// always finds it there.
async fn write_loop(
    mut queued: mpsc::Receiver<Queued>,
    waiting: mpsc::Sender<Waiting>,
    write: OwnedWriteHalf,
) -> Result<(), ProtocolError> {
    let mut sink = FramedWrite::new(write, Codec);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queued.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Let the tasks that are ready run first: the commands of other
        // clients they carry join this write. Without it, the writer woke for
        // nearly every request (1.5 requests per write in `perf stat`), and
        // the server did about 30 % fewer cache commands per second under
        // load (docs/performance.md).
        if batch.len() < MAX_BATCH {
            tokio::task::yield_now().await;
            while let (true, Ok(q)) = (batch.len() < MAX_BATCH, queued.try_recv()) {
                batch.push(q);
            }
        }
        for Queued { request, answer } in batch.drain(..) {
            let get = match &request {
                Request::Get(key) => Some(key.clone()),
                Request::Set { .. } => None,
            };
            if waiting.send(Waiting { get, answer }).await.is_err() {
                return Ok(());
            }
            sink.feed(request).await?;
        }
        sink.flush().await?;
    }
    Ok(())
}

/// Hands each reply to the oldest waiting request, if it can be its reply.
async fn read_loop(read: OwnedReadHalf, mut waiting: mpsc::Receiver<Waiting>) -> Result<(), ProtocolError> {
    let mut replies = FramedRead::new(read, Codec);
    while let Some(reply) = replies.next().await {
        let reply = reply?;
        let Ok(Waiting { get, answer }) = waiting.try_recv() else {
            return Err(ProtocolError::Unexpected(format!("{reply:?} with no request waiting")));
        };
        let fits = match (&get, &reply) {
            (Some(key), Reply::Hit { key: got, .. }) => key == got,
            (Some(_), Reply::Miss | Reply::ServerError(_)) => true,
            (None, Reply::Stored | Reply::NotStored | Reply::ServerError(_)) => true,
            _ => false,
        };
        if !fits {
            return Err(ProtocolError::Unexpected(format!("{reply:?} for a request of key {get:?}")));
        }
        // The caller may have stopped waiting; its reply is dropped.
        let _ = answer.send(Ok(reply));
    }
    Err(ProtocolError::Io(std::io::ErrorKind::UnexpectedEof.into()))
}
