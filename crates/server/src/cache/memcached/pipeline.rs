//! One memcached connection shared by many tasks. Requests are written in
//! the order they arrive, all that have queued up in one write, and each
//! reply goes to the oldest request still waiting (memcached answers in
//! order). Where a pool lends a connection to one request at a time, this
//! makes one system call carry many requests each way, for memcached too.
//!
//! A reply that cannot belong to the oldest request (the wrong key or the
//! wrong kind: the stream is out of step), a protocol error or a closed
//! socket closes the connection, and every request waiting on it fails at
//! once.
//!
//! So does a request memcached has not answered within MEMCACHED_TIMEOUT of
//! its being written: the reader holds the oldest written request and
//! watches its deadline, and only after reading every reply that has already
//! come. The clock is memcached's alone. A server too busy to run the reader
//! for a while (a broadcast to thousands of clients, thousands of clients
//! leaving at once) finds the replies waiting in the socket when it gets to
//! them; a timer in each caller would have failed those requests although
//! memcached had answered them in time. Every other wait ends too: a request
//! queued behind a stalled connection fails when it closes.
//!
//! A caller that stops waiting (its client left) keeps its place in line if
//! its request was written: the reply is read and dropped, so the next reply
//! still goes to the next request. If it was not written yet, it never is.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{AbortHandle, Abortable};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::debug;

use super::codec::{Codec, ProtocolError, Reply, Request};
use crate::cache::CacheError;

/// The most requests written in one batch.
const MAX_BATCH: usize = 256;

type Answer = oneshot::Sender<Result<Reply, CallError>>;

/// Why a request got no reply.
#[derive(Debug)]
pub enum CallError {
    /// memcached did not answer (or accept the connection) within
    /// MEMCACHED_TIMEOUT.
    TimedOut,
    /// Anything else: the connection failed or closed.
    Failed(CacheError),
}

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
    /// When it was handed to the socket.
    written: Instant,
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
    /// Connects to `addr` within `limit`, which is also the time memcached
    /// has to answer each request; at most `in_flight` requests queue to be
    /// written and as many wait for their reply (more wait for room).
    pub async fn open(addr: SocketAddr, limit: Duration, in_flight: usize) -> Result<Connection, CallError> {
        let failed = |e: String| CallError::Failed(CacheError(format!("connecting to {addr}: {e}")));
        let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => return Err(CallError::TimedOut),
        };
        // Requests are batched here already; Nagle would only delay them.
        stream.set_nodelay(true).map_err(|e| failed(e.to_string()))?;
        let (read, write) = stream.into_split();
        let (requests, queued) = mpsc::channel(in_flight.max(1));
        let (waiting_tx, waiting_rx) = mpsc::channel(in_flight.max(1));
        let ((writer, w), (reader, r)) = (AbortHandle::new_pair(), AbortHandle::new_pair());
        let halves = Halves([writer, reader]);
        tokio::spawn(run_half(halves.clone(), addr, Abortable::new(write_loop(queued, waiting_tx, write), w)));
        tokio::spawn(run_half(halves.clone(), addr, Abortable::new(read_loop(read, waiting_rx, limit), r)));
        Ok(Connection { requests, halves })
    }

    /// Sends `request` and waits for its reply, or for the connection to
    /// time out or close.
    pub async fn call(&self, request: Request) -> Result<Reply, CallError> {
        let (answer, reply) = oneshot::channel();
        let gone = || CallError::Failed(CacheError("memcached connection closed".into()));
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
/// always finds it there. A request whose caller has stopped waiting by the
/// time there is room in that line is dropped unwritten.
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
            let Ok(room) = waiting.reserve().await else { return Ok(()) };
            if answer.is_closed() {
                continue;
            }
            let get = match &request {
                Request::Get(key) => Some(key.clone()),
                Request::Set { .. } => None,
            };
            room.send(Waiting { get, answer, written: Instant::now() });
            sink.feed(request).await?;
        }
        sink.flush().await?;
    }
    Ok(())
}

/// Hands each reply to the oldest waiting request, if it can be its reply,
/// and times the connection out when memcached leaves that request
/// unanswered for `limit` (replies already received are read first).
async fn read_loop(
    read: OwnedReadHalf,
    mut waiting: mpsc::Receiver<Waiting>,
    limit: Duration,
) -> Result<(), ProtocolError> {
    let mut replies = FramedRead::new(read, Codec);
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    loop {
        // The oldest request written: the next reply is its own. The writer
        // queues it before its bytes leave, so a reply never comes first.
        let oldest = match waiting.try_recv() {
            Ok(w) => w,
            Err(TryRecvError::Disconnected) => return Ok(()),
            Err(TryRecvError::Empty) => tokio::select! {
                biased;
                w = waiting.recv() => match w {
                    Some(w) => w,
                    None => return Ok(()),
                },
                reply = replies.next() => return Err(match reply {
                    Some(Ok(r)) => ProtocolError::Unexpected(format!("{r:?} with no request waiting")),
                    Some(Err(e)) => e,
                    None => closed(),
                }),
            },
        };
        deadline.as_mut().reset((oldest.written + limit).into());
        let reply = tokio::select! {
            biased;
            reply = replies.next() => reply,
            () = &mut deadline => {
                time_out(oldest, &mut waiting);
                return Err(ProtocolError::Io(std::io::ErrorKind::TimedOut.into()));
            }
        };
        let reply = reply.ok_or_else(closed)??;
        let Waiting { get, answer, .. } = oldest;
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
}

/// memcached closed the connection.
fn closed() -> ProtocolError {
    ProtocolError::Io(std::io::ErrorKind::UnexpectedEof.into())
}

/// Answers the request memcached left unanswered, and every one written
/// after it, with [`CallError::TimedOut`]; the connection then closes.
fn time_out(oldest: Waiting, waiting: &mut mpsc::Receiver<Waiting>) {
    let _ = oldest.answer.send(Err(CallError::TimedOut));
    while let Ok(w) = waiting.try_recv() {
        let _ = w.answer.send(Err(CallError::TimedOut));
    }
}
