//! One simulated TCP client: connects (from its source address, to its
//! target), lets its [`Script`] talk, matches replies, takes pushed
//! broadcasts, follows `reconnect` (reconnecting through the same address,
//! i.e. the load balancer, after a delay) and counts what failed.
//!
//! Requests go one at a time: the next is sent when the reply came or the
//! read timeout passed. A request that timed out stays queued, because the
//! server answers every request in order: its late reply is recognised as
//! such instead of being taken for the reply to a newer request.
//!
//! The task sleeps on a single timer, moved to the earliest of: the reply
//! deadline, the next send, the end of the client's time. Idle clients thus
//! cost a socket, a small buffer and a sleeping task.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};
use tokio_util::codec::FramedRead;

use super::delivery::{self, Inbox, Pushed};
use super::net;
use super::pace::{Schedule, Step};
use super::runner::{Cancelled, Context, Conversation, Ended};
use super::script::{Expect, Script, Verdict};
use crate::tcp::codec::{Frame, LineCodec};

/// Longest line accepted from the server.
const MAX_REPLY: usize = 64 * 1024;
/// Initial read buffer: replies are short, and it grows when needed.
const READ_BUFFER: usize = 256;
/// Requests left unanswered on one connection before it is given up as dead.
const MAX_PENDING: usize = 1024;

/// One simulated client.
pub struct Client {
    pub id: u32,
    pub target: SocketAddr,
    pub source: Option<IpAddr>,
    pub script: Script,
    pub ctx: Arc<Context>,
}

/// A request waiting for its reply.
struct Pending {
    expect: Expect,
    sent_at: Instant,
    timed_out: bool,
}

/// The state of one connection.
struct Conn {
    pending: VecDeque<Pending>,
    inbox: Inbox,
    schedule: Schedule,
    out: BytesMut,
}

impl Conn {
    /// The newest request, if it still waits within its read timeout.
    fn waiting(&self) -> Option<&Pending> {
        self.pending.back().filter(|p| !p.timed_out)
    }
}

impl Conversation for Client {
    type Link = TcpStream;

    fn ctx(&self) -> &Arc<Context> {
        &self.ctx
    }

    fn target(&self) -> SocketAddr {
        self.target
    }

    async fn open(&self) -> std::io::Result<TcpStream> {
        net::connect(self.target, self.source, self.ctx.timing.connect_timeout).await
    }

    async fn converse(&mut self, mut stream: TcpStream, end: Instant, mut cancelled: Cancelled<'_>) -> Ended {
        let ctx = self.ctx.clone();
        let (reader, mut writer) = stream.split();
        let mut lines = FramedRead::with_capacity(reader, LineCodec::new(MAX_REPLY), READ_BUFFER);
        self.script.on_connect();
        let now = Instant::now();
        let mut conn = Conn {
            pending: VecDeque::new(),
            inbox: Inbox::new(ctx.timing.settle.as_micros() as u64),
            schedule: Schedule::starting(now),
            out: BytesMut::new(),
        };
        let timer = sleep_until(end);
        tokio::pin!(timer);
        let ended = loop {
            let now = Instant::now();
            match conn.schedule.step(now, end, conn.waiting().is_some()) {
                Step::Close => break Ended::Done,
                Step::Send => {
                    if self.send(&mut writer, &mut conn, now).await.is_err() {
                        ctx.stats.count.resets.fetch_add(1, Relaxed);
                        break Ended::Again;
                    }
                    if conn.pending.len() > MAX_PENDING {
                        ctx.stats.count.resets.fetch_add(1, Relaxed);
                        break Ended::Again;
                    }
                    continue;
                }
                Step::Wait => {}
            }
            let reply_due = conn.waiting().map(|p| p.sent_at + ctx.timing.read_timeout);
            conn.schedule.set_timer(timer.as_mut(), reply_due, end);
            tokio::select! {
                biased;
                _ = cancelled.as_mut() => break Ended::Done,
                frame = lines.next() => match frame {
                    Some(Ok(Frame::Line(line))) => {
                        if line.as_ref() == b"reconnect" {
                            ctx.stats.count.reconnects.fetch_add(1, Relaxed);
                            break Ended::Again;
                        }
                        self.on_line(&line, &mut conn);
                    }
                    Some(Ok(Frame::TooLong)) => self.on_line(b"", &mut conn),
                    Some(Err(_)) | None => {
                        ctx.stats.count.resets.fetch_add(1, Relaxed);
                        break Ended::Again;
                    }
                },
                _ = &mut timer => self.on_timer(&mut conn, Instant::now()),
            }
        };
        conn.inbox.close(self.id, ctx.micros(Instant::now()), &ctx.ledger);
        ctx.stats.count.unanswered.fetch_add(conn.pending.len() as u64, Relaxed);
        for p in &conn.pending {
            self.script.unanswered(&p.expect);
        }
        if ended == Ended::Done {
            let _ = writer.shutdown().await;
        }
        ended
    }
}

impl Client {
    /// Sends the script's next request, if it has one.
    async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        conn: &mut Conn,
        now: Instant,
    ) -> std::io::Result<()> {
        conn.schedule.hold();
        conn.out.clear();
        let Some(expect) = self.script.next(self.ctx.micros(now), &mut conn.out) else { return Ok(()) };
        writer.write_all(&conn.out).await?;
        self.ctx.stats.count.sent.fetch_add(1, Relaxed);
        conn.pending.push_back(Pending { expect, sent_at: now, timed_out: false });
        Ok(())
    }

    fn on_timer(&mut self, conn: &mut Conn, now: Instant) {
        let read_timeout = self.ctx.timing.read_timeout;
        if let Some(p) = conn.pending.back_mut().filter(|p| !p.timed_out && now >= p.sent_at + read_timeout) {
            p.timed_out = true;
            self.ctx.stats.count.timeouts.fetch_add(1, Relaxed);
            conn.schedule.after(&self.ctx.pacer, &self.script, now);
        }
    }

    /// A line from the server: a pushed broadcast, or the reply to the oldest request.
    fn on_line(&mut self, line: &[u8], conn: &mut Conn) {
        // Borrowed, not cloned: every client shares this Arc, and a count
        // change per line would bounce its cache line between cores.
        let ctx = &*self.ctx;
        let count = &ctx.stats.count;
        let now = Instant::now();
        match delivery::classify(line, ctx.ledger.tag()) {
            Pushed::Ours(b) => {
                let now_us = ctx.micros(now);
                if conn.inbox.receive(b, now_us) {
                    count.deliveries.fetch_add(1, Relaxed);
                    let took = std::time::Duration::from_micros(now_us.saturating_sub(b.send_us));
                    ctx.stats.delivery_latency.record(self.id, took);
                } else {
                    count.duplicate_deliveries.fetch_add(1, Relaxed);
                }
                return;
            }
            Pushed::Foreign => {
                count.foreign_broadcasts.fetch_add(1, Relaxed);
                return;
            }
            Pushed::No => {}
        }
        let last = conn.pending.len() == 1;
        let Some(front) = conn.pending.front_mut() else {
            count.wrong_replies.fetch_add(1, Relaxed);
            return;
        };
        let publication = matches!(front.expect, Expect::Published { .. });
        match self.script.check(&mut front.expect, line) {
            Verdict::More => return,
            Verdict::Right => {
                if front.timed_out {
                    count.late_replies.fetch_add(1, Relaxed);
                } else {
                    count.received.fetch_add(1, Relaxed);
                }
                if publication {
                    count.published.fetch_add(1, Relaxed);
                }
                ctx.stats.latency.record(self.id, now - front.sent_at);
                conn.inbox.ready(ctx.micros(now));
            }
            Verdict::Wrong => {
                count.wrong_replies.fetch_add(1, Relaxed);
            }
            Verdict::PublishFailed => {
                count.publish_errors.fetch_add(1, Relaxed);
            }
        }
        let done = conn.pending.pop_front();
        if last && done.is_some_and(|d| !d.timed_out) {
            conn.schedule.after(&self.ctx.pacer, &self.script, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::testing;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    /// An echo server whose first reply comes `delay` late.
    async fn slow_first_echo(delay: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            let mut first = true;
            while let Ok(Some(line)) = lines.next_line().await {
                if std::mem::take(&mut first) {
                    tokio::time::sleep(delay).await;
                }
                let reply = format!("{}\n", line.strip_prefix("msg:").unwrap_or(&line));
                if w.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_late_reply_is_recognised_not_taken_for_the_next_one() {
        let target = slow_first_echo(Duration::from_millis(150)).await;
        let ctx = testing::context();
        let script = testing::echo_script(&ctx);
        Client { id: 0, target, source: None, script, ctx: ctx.clone() }.run().await;
        // The first request times out at 100 ms; its reply (at 150 ms) is late,
        // and the second request, sent at 100 ms, gets its own reply.
        testing::assert_one_late_reply(&ctx);
    }
}
