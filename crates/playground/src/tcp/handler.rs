//! One task per connection: read lines, execute them, write replies, push
//! broadcasts, enforce the idle timeout, and follow the shutdown phases.
//!
//! The task sleeps until something happens (a line, a broadcast, the idle
//! deadline, shutdown): there is no polling. Its state is kept small because
//! a server holds hundreds of thousands of them.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use playground_protocol::{ProtocolError, Reply};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};
use tokio_util::codec::FramedRead;
use tracing::debug;

use super::Shared;
use super::codec::{Frame, LineCodec};
use crate::bus::Delivery;
use crate::executor::{Peer, Transport};

/// Initial read buffer per connection; it grows only for long lines, so idle
/// connections stay cheap.
const READ_BUFFER: usize = 128;
/// Replies to pipelined commands are gathered up to this size per write.
const MAX_BATCH: usize = 64 * 1024;

/// Why a connection ended (for logs and metrics).
#[derive(Debug)]
enum End {
    ClientClosed,
    Idle,
    SlowReader,
    Reconnect,
    Io,
}

/// Serves one client until it leaves, idles out, is too slow, or shutdown.
pub async fn handle(mut stream: TcpStream, addr: SocketAddr, shared: &Shared) {
    shared.metrics.accepted.increment(1);
    shared.metrics.connections.increment(1.0);
    let end = serve(&mut stream, addr, shared).await;
    debug!(%addr, ?end, "connection closed");
    match end {
        End::Idle => shared.metrics.idle_disconnects.increment(1),
        End::SlowReader => shared.metrics.slow_disconnects.increment(1),
        _ => {}
    }
    shared.metrics.connections.decrement(1.0);
}

async fn serve(stream: &mut TcpStream, addr: SocketAddr, shared: &Shared) -> End {
    let (reader, mut writer) = stream.split();
    // One extra byte so a `\r` before the `\n` does not count against BUFF_SIZE.
    let mut frames = FramedRead::with_capacity(reader, LineCodec::new(shared.max_line + 1), READ_BUFFER);
    let mut broadcasts = shared.executor.bus().subscribe();
    let peer = Peer { addr, transport: Transport::Tcp };
    let reconnect = shared.lifecycle.reconnect.clone().cancelled_owned();
    tokio::pin!(reconnect);
    // The idle deadline moves on every command, but the timer is only re-armed
    // when it fires early: re-arming a timer per command would cost a lock.
    let mut last_command = Instant::now();
    let idle = sleep_until(last_command + shared.idle_timeout);
    tokio::pin!(idle);

    loop {
        tokio::select! {
            _ = &mut reconnect => return say_reconnect(&mut frames, &mut writer, shared).await,
            frame = frames.next() => {
                let Some(Ok(frame)) = frame else {
                    return if frame.is_none() { End::ClientClosed } else { End::Io };
                };
                last_command = Instant::now();
                let mut out = BytesMut::new();
                reply_to(frame, &peer, shared, &mut out).await;
                // Pipelined commands already buffered get their replies in the same write.
                // `now_or_never` never waits for the socket: a buffered `\n` may
                // only end a discarded over-long line.
                while out.len() < MAX_BATCH && frames.read_buffer().contains(&b'\n') {
                    match frames.next().now_or_never() {
                        Some(Some(Ok(frame))) => reply_to(frame, &peer, shared, &mut out).await,
                        _ => break,
                    }
                }
                if !out.is_empty() && !write(&mut writer, &out, shared).await {
                    return End::SlowReader;
                }
            }
            delivery = broadcasts.next() => match delivery {
                Delivery::Line(line) => {
                    if !write(&mut writer, &line, shared).await {
                        return End::SlowReader;
                    }
                    shared.metrics.delivered.increment(1);
                }
                Delivery::Lagged(missed) => {
                    debug!(%addr, missed, "client too slow for broadcasts; disconnecting");
                    return End::SlowReader;
                }
                Delivery::Closed => return End::Reconnect,
            },
            _ = &mut idle => {
                let deadline = last_command + shared.idle_timeout;
                if Instant::now() >= deadline {
                    return End::Idle;
                }
                idle.as_mut().reset(deadline);
            }
        }
    }
}

/// Runs one frame and appends its reply (if any) to `out`.
async fn reply_to(frame: Frame, peer: &Peer, shared: &Shared, out: &mut BytesMut) {
    let reply = match frame {
        Frame::Line(line) => {
            shared.metrics.bytes_in.increment(line.len() as u64 + 1);
            let content_len = line.len() - usize::from(line.last() == Some(&b'\r'));
            if content_len > shared.max_line {
                too_long(shared)
            } else {
                shared.executor.execute(line, peer, &shared.commands).await
            }
        }
        Frame::TooLong => too_long(shared),
    };
    reply.encode(out);
}

fn too_long(shared: &Shared) -> Reply {
    shared.commands.record(crate::metrics::COMMANDS.len() - 1, false, Duration::ZERO);
    ProtocolError::LineTooLong.into()
}

/// Writes `data`; false when the client did not accept it in time.
async fn write<W: AsyncWrite + Unpin>(writer: &mut W, data: &[u8], shared: &Shared) -> bool {
    match tokio::time::timeout(shared.write_timeout, writer.write_all(data)).await {
        Ok(Ok(())) => {
            shared.metrics.bytes_out.increment(data.len() as u64);
            true
        }
        _ => false,
    }
}

/// Shutdown: sends `reconnect`, then waits for the client to leave until the
/// lifecycle closes what is left.
async fn say_reconnect<R, W>(frames: &mut FramedRead<R, LineCodec>, writer: &mut W, shared: &Shared) -> End
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    const RECONNECT: Bytes = Bytes::from_static(b"reconnect\n");
    if write(writer, &RECONNECT, shared).await {
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
