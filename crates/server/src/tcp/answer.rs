//! Answering what a connection read: each command runs through the shared
//! executor, the replies of pipelined commands and the broadcasts that came
//! meanwhile are gathered into one write, and the write is made.
//!
//! [`answer`] does all of that without awaiting anything, which is how
//! nearly every command is answered (a `msg`, whose reply the socket takes
//! at once). What needs an await, a command that goes to a backend or a
//! write the socket did not take whole, it hands back as a [`Later`], to be
//! finished by a future that only that case allocates. So the reply buffer
//! and the batch's state live on the stack: held in the connection's task
//! across those awaits, they were written into its state on every reply, a
//! cache line more per reply at 1,000 connections (docs/performance.md,
//! "Counted, not timed"). The reply buffer itself is the thread's: a batch
//! written whole gives it back, so a reply allocates nothing.

use std::cell::Cell;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use playground_protocol::{CommandKind, Ending, ErrorReply, Frame, ProtocolError, Reply, trim_packet};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep};

use super::Shared;
use super::codec::Input;
use super::handler::{End, Hot, track_line};
use super::limits::{Buckets, Limit};
use super::write::{take_waiting, write_now, write_rest};
use crate::bus::Pushed;
use crate::executor::{Backend, Peer, Session};

/// Replies to pipelined commands are gathered up to this size per write.
const MAX_BATCH: usize = 64 * 1024;

/// What running a command needs of its connection.
pub(super) struct Conn<'a> {
    pub peer: &'a Peer,
    pub shared: &'a Shared,
    /// The connection's rate limits.
    pub buckets: Buckets,
}

thread_local! {
    /// The reply buffer of the connections this thread serves, between
    /// their batches: taken by [`answer`], given back cleared once the batch
    /// is written. A batch that needs an await keeps it, and the next one on
    /// this thread starts a new buffer. At most one per thread, as large as
    /// the largest batch (MAX_BATCH and one reply).
    static REPLIES: Cell<Option<BytesMut>> = const { Cell::new(None) };
}

/// Gives the reply buffer back to the thread, for the next batch.
fn give_back(mut out: BytesMut) {
    out.clear();
    REPLIES.set(Some(out));
}

/// What [`answer`] left to do.
pub(super) enum Answer {
    /// Everything read was answered, and the answer written.
    Done,
    /// The connection ends.
    End(End),
    /// The rest needs an await: [`Later::finish`].
    Later(Later),
}

/// A batch that cannot be finished without an await.
pub(super) struct Later {
    out: BytesMut,
    /// Broadcasts taken into `out`, kept until it is written (dropping one
    /// tells the fan-out this socket is done with it).
    taken: Vec<Pushed>,
    wait: Wait,
}

/// What a [`Later`] waits for.
enum Wait {
    /// A command that needs a backend, and the ending its reply takes.
    Backend(Box<Backend>, Ending),
    /// Room in the socket for the rest of `out`: it took this much.
    Write(usize),
}

/// Answers `input`, what the connection's reader gave: runs the command,
/// adds the replies to the pipelined commands already buffered and the
/// broadcasts waiting, and writes them all, as far as that goes without
/// an await.
pub(super) fn answer<S>(hot: &mut Hot<'_, S>, input: Input) -> Answer
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = hot.conn.shared;
    if input == Input::Pending {
        hot.grace = Some(Box::pin(sleep(shared.framing_grace)));
        return Answer::Done;
    }
    track_line(&input, &mut hot.line_timer, shared.line_timeout);
    if input == Input::LineStarted {
        return Answer::Done;
    }
    hot.grace = None;
    if !hot.counted {
        hot.counted = true;
        shared.metrics.framing(hot.frames.decoder().is_packet());
    }
    hot.last_command = Instant::now();
    let (mut out, mut taken) = (REPLIES.take().unwrap_or_default(), Vec::new());
    let backend = match reply_now(input, hot.last_command, &hot.conn, &mut out) {
        Some(backend) => Some(backend),
        None => match batch(hot, &mut out, &mut taken) {
            Ok(backend) => backend,
            Err(end) => return Answer::End(end),
        },
    };
    if let Some((backend, ending)) = backend {
        return Answer::Later(Later { out, taken, wait: Wait::Backend(backend, ending) });
    }
    match write_now(hot.frames.get_mut(), &out, shared) {
        Some(n) if n == out.len() => {
            give_back(out);
            Answer::Done
        }
        Some(n) => Answer::Later(Later { out, taken, wait: Wait::Write(n) }),
        None => Answer::End(End::SlowReader),
    }
}

impl Later {
    /// Runs the backend command, goes on with the batch (which may hand
    /// back further ones), and writes it; `Err` when the connection ends.
    pub(super) async fn finish<S>(mut self, hot: &mut Hot<'_, S>, session: &mut Session) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (shared, peer) = (hot.conn.shared, hot.conn.peer);
        loop {
            match self.wait {
                Wait::Backend(backend, ending) => {
                    let reply = shared.executor.execute_backend(backend, peer, Some(session), &shared.commands).await;
                    reply.encode(&mut self.out, ending);
                    self.wait = match batch(hot, &mut self.out, &mut self.taken)? {
                        Some((backend, ending)) => Wait::Backend(backend, ending),
                        None => Wait::Write(write_now(hot.frames.get_mut(), &self.out, shared).ok_or(End::SlowReader)?),
                    };
                }
                Wait::Write(n) => {
                    if n < self.out.len() && !write_rest(hot.frames.get_mut(), &self.out[n..], shared).await {
                        return Err(End::SlowReader);
                    }
                    give_back(self.out);
                    return Ok(());
                }
            }
        }
    }
}

/// Appends to `out` the broadcasts waiting and the replies to the
/// pipelined commands already buffered, until one needs a backend (handed
/// back, with the ending its reply takes) or the batch is full.
///
/// `now_or_never` never waits for the socket: a buffered `\n` may only end
/// a discarded over-long line. (A packet connection never has a buffered
/// `\n`: each read is taken whole.) Broadcasts go out with the replies: a
/// client that pipelines `brd` reads its own messages as they come instead
/// of falling CLIENT_QUEUE behind and being taken for a slow reader.
fn batch<S: AsyncRead + Unpin>(
    hot: &mut Hot<'_, S>,
    out: &mut BytesMut,
    taken: &mut Vec<Pushed>,
) -> Result<Option<(Box<Backend>, Ending)>, End> {
    let packet = hot.frames.decoder().is_packet();
    loop {
        take_waiting(&mut hot.waits, &hot.conn.peer.addr, packet, out, taken, hot.conn.shared)?;
        if out.len() >= MAX_BATCH || !hot.frames.read_buffer().contains(&b'\n') {
            return Ok(None);
        }
        match hot.frames.next().now_or_never() {
            Some(Some(Ok(frame))) => {
                track_line(&frame, &mut hot.line_timer, hot.conn.shared.line_timeout);
                if let Some(backend) = reply_now(frame, hot.last_command, &hot.conn, out) {
                    return Ok(Some(backend));
                }
            }
            _ => return Ok(None),
        }
    }
}

impl Conn<'_> {
    /// Runs one command, read at `read_at`, at once unless it needs a
    /// backend (handed back) or a rate limit refuses it.
    fn execute_now(&self, command: Bytes, read_at: Instant) -> Result<Reply, Box<Backend>> {
        let shared = self.shared;
        let kind = CommandKind::of_line(&command);
        match self.buckets.admit(kind) {
            Ok(()) => shared.executor.execute_now(command, kind, self.peer, &shared.commands, read_at.into_std()),
            Err(limit) => {
                match limit {
                    Limit::Command => &shared.metrics.rate_limited_command,
                    Limit::Brd => &shared.metrics.rate_limited_brd,
                }
                .increment(1);
                shared.commands.record(kind, false, Duration::ZERO);
                Ok(ErrorReply::RateLimited.into())
            }
        }
    }
}

/// Runs one frame, read at `read_at`, and appends its reply (if any) to
/// `out`, in the frame's framing, unless its command needs a backend: that
/// one comes back, with the ending its reply needs. A packet that is not a
/// known command gets no reply, as with the original; it is counted.
fn reply_now(input: Input, read_at: Instant, conn: &Conn<'_>, out: &mut BytesMut) -> Option<(Box<Backend>, Ending)> {
    let shared = conn.shared;
    let (reply, ending) = match input {
        Input::Line(Frame::Line(line)) => {
            shared.metrics.bytes_in.increment(line.len() as u64 + 1);
            let content_len = line.len() - usize::from(line.last() == Some(&b'\r'));
            let reply =
                if content_len > shared.max_line { Ok(too_long(shared)) } else { conn.execute_now(line, read_at) };
            (reply, Ending::Newline)
        }
        Input::Line(Frame::TooLong) => (Ok(too_long(shared)), Ending::Newline),
        Input::Packet(read) => {
            shared.metrics.bytes_in.increment(read.len() as u64);
            let command = trim_packet(read);
            let reply =
                if command.len() > shared.max_line { Ok(too_long(shared)) } else { conn.execute_now(command, read_at) };
            if matches!(&reply, Ok(Reply::Error(ErrorReply::Protocol(ProtocolError::UnknownCommand)))) {
                shared.metrics.packets_ignored.increment(1);
                return None;
            }
            (reply, Ending::Bare)
        }
        Input::Pending | Input::LineStarted => return None,
    };
    match reply {
        Ok(reply) => {
            reply.encode(out, ending);
            None
        }
        Err(backend) => Some((backend, ending)),
    }
}

fn too_long(shared: &Shared) -> Reply {
    shared.commands.record(None, false, Duration::ZERO);
    ProtocolError::LineTooLong.into()
}
