//! One task per connection: read commands, execute them, write replies, push
//! broadcasts, enforce the idle timeout, and follow the shutdown phases. With
//! TLS the handshake comes first, and the same loop runs over the decrypted
//! stream (both framings alike).
//!
//! The connection's framing (line or the original's packet framing, see
//! [`super::codec`]) is decided by its first command: bytes that arrive
//! without a line ending start a short grace period, restarted by every
//! further segment; if it passes without a `\n`, the connection is a packet
//! connection for the rest of its life. Until then, pushed broadcasts wait
//! (they are sent in the framing the connection turns out to have), except
//! on a connection that has sent nothing at all, which gets them as lines as
//! it always did (an `nc` that only listens).
//!
//! In line framing a line must end within LINE_TIMEOUT of its first byte
//! (the codec says when one starts); otherwise the client gets
//! `error: line timeout` and the connection closes.
//!
//! The task sleeps until something happens (a command, a broadcast, the idle
//! or line deadline, the grace period, shutdown): there is no polling. Its state is
//! kept small because a server holds hundreds of thousands of them.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use futures::{FutureExt, StreamExt};
use playground_common::quiet::prefetch_all;
use playground_protocol::{Ending, ErrorReply, Frame, RECONNECT, Reply};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep, sleep, sleep_until};
use tokio_util::codec::FramedRead;
use tracing::debug;

use super::Shared;
use super::answer::{Answer, Conn, answer};
use super::codec::{FramingCodec, Input, READ_BUFFER};
use super::waits::{self, Waits};
use super::write::{framed, pushed, take_waiting, write};
use crate::bus::Delivery;
use crate::executor::{Peer, Session, Transport};

/// A connection whose socket stayed ready this many reads in a row looks at
/// shutdown and broadcasts before it reads again.
const LOOK_EVERY: u32 = 16;

/// Why a connection ended (for logs and metrics).
#[derive(Debug)]
pub(super) enum End {
    ClientClosed,
    Idle,
    SlowReader,
    LineTimeout,
    Reconnect,
    Io,
    Handshake,
}

/// Serves one client until it leaves, idles out, is too slow, or shutdown;
/// `permit`, its MAX_CONNECTIONS slot, is given back at the end.
///
/// A function returning a block, not an `async fn` (nor is [`serve`]): an
/// `async fn` keeps every argument twice in its state, as passed and as
/// moved into its body, and every connection's task, idle or not, is as
/// large as its state (docs/performance.md, "Small connection tasks").
#[expect(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice; see above")]
pub fn handle(
    stream: TcpStream,
    addr: SocketAddr,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = ()> {
    async move {
        shared.metrics.accepted.increment(1);
        shared.metrics.connections.increment(1.0);
        let peer = Peer { addr, transport: Transport::Tcp };
        let end = match &shared.tls {
            None => serve(stream, &peer, &shared).await.0,
            // Boxed: the handshake's and the TLS stream's state would otherwise
            // make every plain connection's task as large as a TLS one's.
            Some(tls) => Box::pin(serve_tls(tls, stream, &peer, &shared)).await,
        };
        debug!(%addr, ?end, "connection closed");
        match end {
            End::Idle => shared.metrics.idle_disconnects.increment(1),
            End::SlowReader => shared.metrics.slow_disconnects.increment(1),
            End::Handshake => shared.metrics.tls_handshake_failures.increment(1),
            End::LineTimeout => shared.metrics.line_timeout_disconnects.increment(1),
            _ => {}
        }
        shared.metrics.connections.decrement(1.0);
        drop(permit);
    }
}

/// The TLS handshake, then the same loop over the decrypted stream.
async fn serve_tls(tls: &super::Tls, stream: TcpStream, peer: &Peer, shared: &Shared) -> End {
    match tls.accept(stream).await {
        Ok(stream) => {
            let (end, mut stream) = serve(stream, peer, shared).await;
            // close_notify, so that the client sees a clean end.
            let _ = tokio::time::timeout(shared.write_timeout, stream.shutdown()).await;
            end
        }
        Err(error) => {
            debug!(addr = %peer.addr, %error, "TLS handshake failed");
            End::Handshake
        }
    }
}

/// What woke a connection's task.
enum Wake {
    Reconnect,
    Read(Option<std::io::Result<Input>>),
    GraceOver,
    Push(Delivery),
    Idle,
    LineTimeout,
}

impl From<waits::Ready> for Wake {
    fn from(ready: waits::Ready) -> Self {
        match ready {
            waits::Ready::Reconnect => Wake::Reconnect,
            waits::Ready::Push(delivery) => Wake::Push(delivery),
            waits::Ready::Idle => Wake::Idle,
        }
    }
}

/// What a connection reads or writes on every reply, kept in one struct.
/// A task's future lays its locals out wherever they fit around the
/// futures it awaits, so they were spread over about eight cache lines of
/// a 1.9 KB future; at 1,000 connections each of those lines is a cache
/// miss per reply (docs/performance.md, "Link-time optimisation, and the
/// hot state in one place"). The fields of one struct stay next to each
/// other, and `repr(C)` keeps them in the order written: everything a
/// reply reads or writes, the socket itself included (`frames` owns it),
/// comes before the waits' cold tail (docs/performance.md, "Fewer cache
/// lines per reply").
#[repr(C)]
pub(super) struct Hot<'a, S> {
    /// When the last command came: the idle deadline counts from it.
    pub last_command: Instant,
    /// When the line being read must be complete; armed while one is.
    pub line_timer: Option<Pin<Box<Sleep>>>,
    /// Armed only while the framing is undecided and bytes without a line
    /// ending wait: boxed so that a decided connection pays one pointer.
    pub grace: Option<Pin<Box<Sleep>>>,
    /// Reads in a row that found the socket ready, without a look at the rest.
    unlooked: u32,
    /// Whether the connection's framing was counted in the metrics.
    pub counted: bool,
    /// What running a command needs: the peer, the shared state, the
    /// connection's rate-limit buckets.
    pub conn: Conn<'a>,
    /// The socket (or TLS stream), read through the codec; written
    /// through [`FramedRead::get_mut`].
    pub frames: FramedRead<S, FramingCodec>,
    pub waits: Waits,
}

/// The connection's loop, over the socket or the TLS stream, which it
/// owns (so that it lies in the hot state) and gives back at the end.
///
/// What it awaits only now and then (a backend command, the rest of a
/// write the socket did not take at once, shutdown, a broadcast's write)
/// it awaits boxed: held inline, those futures would be part of every
/// connection's state, idle or not (with them inline, and an `async fn`'s
/// second copy of each argument, a task took 1,448 bytes; it takes 664).
#[expect(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice (see `handle`)")]
fn serve<'a, S>(io: S, peer: &'a Peer, shared: &'a Shared) -> impl Future<Output = (End, S)> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + 'a,
{
    async move {
        let codec = FramingCodec::new(shared.framing, shared.max_line);
        let mut hot = Hot {
            last_command: Instant::now(),
            line_timer: None,
            grace: None,
            unlooked: 0,
            counted: false,
            conn: Conn { peer, shared, buckets: shared.quotas.buckets() },
            frames: FramedRead::with_capacity(io, codec, READ_BUFFER),
            waits: Waits::new(shared.lifecycle.reconnect.clone(), shared.executor.bus().subscribe()),
        };
        let end = serve_loop(&mut hot).await;
        (end, hot.frames.into_inner())
    }
}

/// The loop of [`serve`], until the connection ends.
#[expect(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice (see `handle`)")]
fn serve_loop<'h, S>(hot: &'h mut Hot<'_, S>) -> impl Future<Output = End> + 'h
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        let shared = hot.conn.shared;
        let mut session = Session::default();
        // The idle deadline moves on every command, but the timer is only re-armed
        // when it fires early: re-arming a timer per command would cost a lock.
        // Boxed: inline, its 112 bytes would lie between the hot state and
        // the loop's own, which every reply touches.
        let mut idle = Box::pin(sleep_until(hot.last_command + shared.idle_timeout));

        loop {
            // Broadcasts wait while the bytes of an undecided first command do.
            let push = hot.grace.is_none();
            // The socket first: when it is ready, nothing else is polled, since
            // a look at shutdown, broadcasts and the idle timer would cost a
            // cache miss per reply. When it is not ready, everything is. Two
            // exceptions keep a client that never lets its socket run dry from
            // holding the rest off: the line and grace timers, armed only while
            // a command is incomplete, go first; and after LOOK_EVERY replies
            // in a row without a wait, shutdown and broadcasts do once.
            let look_first = hot.unlooked >= LOOK_EVERY;
            // A `move` closure over one reference to the hot state: borrowing
            // its fields one by one, the closure would be eight pointers,
            // written into the task on every wait (a cache line of its own).
            let (state, mut idle_timer) = (&mut *hot, idle.as_mut());
            let wake = poll_fn(move |cx| {
                let hot = &mut *state;
                // Every line of the connection's hot state, and the two
                // outside it that the poll after a read touches, start
                // loading together (docs/performance.md, "Lines asked for
                // early").
                prefetch_all(hot);
                hot.waits.prefetch();
                if let Some(line) = &mut hot.line_timer
                    && line.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Wake::LineTimeout);
                }
                if let Some(grace) = &mut hot.grace
                    && grace.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Wake::GraceOver);
                }
                if look_first {
                    hot.unlooked = 0;
                    if let Poll::Ready(ready) = hot.waits.poll(cx, idle_timer.as_mut(), push) {
                        return Poll::Ready(ready.into());
                    }
                }
                if let Poll::Ready(frame) = hot.frames.poll_next_unpin(cx) {
                    hot.unlooked += 1;
                    return Poll::Ready(Wake::Read(frame));
                }
                hot.unlooked = 0;
                hot.waits.poll(cx, idle_timer.as_mut(), push).map(Wake::from)
            })
            .await;
            // Every wake but a read is handled in a future of its own, so that
            // what it holds across its awaits is no part of the task's state.
            let frame = match wake {
                Wake::Read(frame) => frame,
                other => match Box::pin(on_wake(other, hot, idle.as_mut())).await {
                    Woke::Frame(frame) => frame,
                    Woke::Continue => continue,
                    Woke::End(end) => return end,
                },
            };
            let frame = match frame {
                Some(Ok(frame)) => frame,
                None => return End::ClientClosed,
                Some(Err(_)) => return End::Io,
            };
            let later = match answer(hot, frame) {
                Answer::Done => continue,
                Answer::End(end) => return end,
                Answer::Later(later) => later,
            };
            if let Err(end) = Box::pin(later.finish(hot, &mut session)).await {
                return end;
            }
        }
    }
}

/// What a wake other than a read left the connection's loop to do.
enum Woke {
    /// Answer this input.
    Frame(Option<std::io::Result<Input>>),
    /// Wait again.
    Continue,
    End(End),
}

/// Handles a wake that is not a read: shutdown, the end of the framing's
/// grace period, a broadcast, the idle and line timers.
async fn on_wake<S>(wake: Wake, hot: &mut Hot<'_, S>, idle: Pin<&mut Sleep>) -> Woke
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (shared, addr) = (hot.conn.shared, &hot.conn.peer.addr);
    match wake {
        Wake::Read(frame) => Woke::Frame(frame),
        Wake::Reconnect => Woke::End(say_reconnect(&mut hot.frames, shared).await),
        // Bytes that arrived as the timer fired still belong to the first
        // command; if there are none, the grace period is over: the
        // original's packet framing, and the waiting bytes its first command.
        Wake::GraceOver => Woke::Frame(hot.frames.next().now_or_never().unwrap_or_else(|| {
            let mut buf = std::mem::take(hot.frames.read_buffer_mut());
            let first = hot.frames.decoder_mut().decide_packet(&mut buf);
            *hot.frames.read_buffer_mut() = buf;
            Some(Ok(Input::Packet(first)))
        })),
        Wake::Push(delivery) => {
            // Kept until written: dropping it tells the fan-out this socket is done.
            let first = match pushed(delivery, addr) {
                Ok(pushed) => pushed,
                Err(end) => return Woke::End(end),
            };
            shared.metrics.delivered.increment(1);
            let packet = hot.frames.decoder().is_packet();
            let mut out = BytesMut::from(framed(first.line(), packet));
            let mut taken = vec![first];
            // Broadcasts that came in a burst go out in the same write:
            // lines keep their boundaries, packets must not be merged.
            if !packet && let Err(end) = take_waiting(&mut hot.waits, addr, false, &mut out, &mut taken, shared) {
                return Woke::End(end);
            }
            if write(hot.frames.get_mut(), &out, shared).await { Woke::Continue } else { Woke::End(End::SlowReader) }
        }
        Wake::Idle => {
            let deadline = hot.last_command + shared.idle_timeout;
            if Instant::now() >= deadline {
                return Woke::End(End::Idle);
            }
            idle.reset(deadline);
            hot.waits.idle_moved();
            Woke::Continue
        }
        Wake::LineTimeout => {
            let mut notice = BytesMut::new();
            Reply::from(ErrorReply::LineTimeout).encode(&mut notice, Ending::Newline);
            write(hot.frames.get_mut(), &notice, shared).await;
            Woke::End(End::LineTimeout)
        }
    }
}

/// Keeps the line timer: armed when a line starts (or turns out too long
/// before it started), dropped when one ends. Boxed, so that a connection
/// without a partial line pays one pointer.
pub(super) fn track_line(frame: &Input, timer: &mut Option<Pin<Box<Sleep>>>, timeout: Duration) {
    match frame {
        Input::LineStarted | Input::Line(Frame::TooLong) => {
            timer.get_or_insert_with(|| Box::pin(sleep(timeout)));
        }
        Input::Line(Frame::Line(_)) => *timer = None,
        Input::Packet(_) | Input::Pending => {}
    }
}

/// Shutdown: sends `reconnect` in the connection's framing, then waits for
/// the client to leave until the lifecycle closes what is left.
async fn say_reconnect<S>(frames: &mut FramedRead<S, FramingCodec>, shared: &Shared) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ending = if frames.decoder().is_packet() { Ending::Bare } else { Ending::Newline };
    let notice = [RECONNECT.as_bytes(), ending.as_bytes()].concat();
    if write(frames.get_mut(), &notice, shared).await {
        let close = shared.lifecycle.close.cancelled();
        tokio::pin!(close);
        loop {
            tokio::select! {
                _ = &mut close => break,
                f = frames.next() => if f.is_none() || matches!(f, Some(Err(_))) { break },
            }
        }
    }
    End::Reconnect
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
    use crate::tcp::Shared;

    /// A client whose bytes never run out: every read is a buffer full of
    /// `msg:x` lines, at once (no tokio budget is spent on it, as none is on
    /// a socket that has data before its budget runs out). At read `at` it
    /// begins shutdown; it ends after `reads`.
    struct Endless {
        reads: u32,
        at: u32,
        last: u32,
        shutdown: Option<Lifecycle>,
    }

    impl AsyncRead for Endless {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.reads += 1;
            if self.reads == self.at
                && let Some(lifecycle) = self.shutdown.take()
            {
                lifecycle.reconnect.cancel();
                lifecycle.close.cancel();
            }
            if self.reads <= self.last {
                while buf.remaining() >= 6 {
                    buf.put_slice(b"msg:x\n");
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Shutdown is not held off by a client that never lets the socket run
    /// dry: the connection looks at it every LOOK_EVERY reads and says
    /// `reconnect` (without that look, this client would be served until
    /// its bytes ran out).
    #[tokio::test]
    async fn a_socket_that_never_runs_dry_still_hears_of_shutdown() {
        let opts = TcpOptions::from_args(&[]);
        let executor = Arc::new(Executor::new(Arc::new(EmbeddedCache::new(10)), Arc::new(EmbeddedBus::new(16))));
        let shared = Shared::new(executor, Lifecycle::new(), &opts, None);
        let client = Endless { reads: 0, at: 100, last: 10_000, shutdown: Some(shared.lifecycle.clone()) };
        let peer = Peer { addr: "127.0.0.1:9".parse().unwrap(), transport: Transport::Tcp };
        // What the server writes, the test keeps.
        let (end, stream) = serve(tokio::io::join(client, Vec::new()), &peer, &shared).await;
        let (_, written) = stream.into_inner();
        assert!(matches!(end, End::Reconnect), "ended {end:?}");
        assert!(written.ends_with(b"x\nreconnect\n"), "no reconnect after the replies");
        let replies = written.len() / 2;
        assert!(replies < 100 * 21 + 21 * LOOK_EVERY as usize, "{replies} replies after shutdown began");
    }

    /// Every connection's task is as large as its largest state, also while
    /// it idles: the TLS handshake and stream must not be part of a plain
    /// connection's (they made it 1.4 KB larger, 3.1 KB in all), nor the
    /// futures of the rare awaits, nor a second copy of each argument that
    /// an `async fn` keeps (with those, the task was 1,448 bytes).
    #[tokio::test]
    async fn a_plain_connection_task_stays_small() {
        let opts = TcpOptions::from_args(&[]);
        let executor = Arc::new(Executor::new(Arc::new(EmbeddedCache::new(10)), Arc::new(EmbeddedBus::new(16))));
        let shared = Shared::new(executor, Lifecycle::new(), &opts, None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let peer = Peer { addr, transport: Transport::Tcp };
        let serve_size = std::mem::size_of_val(&serve(stream, &peer, &shared));
        let permit = Arc::new(tokio::sync::Semaphore::new(1)).try_acquire_owned().unwrap();
        let task_size =
            std::mem::size_of_val(&handle(TcpStream::connect(addr).await.unwrap(), addr, shared.clone(), permit));
        assert!(task_size <= serve_size + 256, "task {task_size} bytes, its loop {serve_size}");
        // 664 bytes now; 720 with the idle timer inline and the socket
        // borrowed through its halves, 880 with the wakes other than a read
        // handled in the loop itself, 1,008 with the `async fn`s back, 1,448
        // with the rare awaits inline.
        assert!(task_size <= 720, "a connection's task takes {task_size} bytes");
    }
}
