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
use super::runner::{Cancelled, Context, Ended};
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
    /// When the next request may go (None: when the current one is done).
    next_send: Option<Instant>,
    /// The schedule slot of the last paced request.
    slot: Instant,
    out: BytesMut,
}

impl Conn {
    /// The newest request, if it still waits within its read timeout.
    fn waiting(&self) -> Option<&Pending> {
        self.pending.back().filter(|p| !p.timed_out)
    }
}

impl Client {
    /// Runs until the client's time is up or the run is stopped.
    pub async fn run(mut self) {
        let ctx = self.ctx.clone();
        let end = ctx.client_end();
        let cancelled = ctx.cancel.clone().cancelled_owned();
        tokio::pin!(cancelled);
        while Instant::now() < end && !ctx.cancel.is_cancelled() {
            let attempt = tokio::select! {
                biased;
                _ = &mut cancelled => return,
                r = net::connect(self.target, self.source, ctx.timing.connect_timeout) => r,
            };
            let stream = match attempt {
                Ok(s) => s,
                Err(e) => {
                    ctx.stats.connect_failed(format!("{}: {e}", self.target));
                    if !ctx.pause(end, cancelled.as_mut()).await {
                        return;
                    }
                    continue;
                }
            };
            ctx.stats.opened();
            let ended = self.converse(stream, end, cancelled.as_mut()).await;
            ctx.stats.closed();
            if ended == Ended::Done || !ctx.pause(end, cancelled.as_mut()).await {
                return;
            }
        }
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
            next_send: Some(now),
            slot: now,
            out: BytesMut::new(),
        };
        let timer = sleep_until(end);
        tokio::pin!(timer);
        let ended = loop {
            let now = Instant::now();
            let closing = now >= end;
            if closing && conn.waiting().is_none() {
                break Ended::Done;
            }
            if !closing && conn.waiting().is_none() && conn.next_send.is_some_and(|t| t <= now) {
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
            let wake = match conn.waiting() {
                Some(p) => p.sent_at + ctx.timing.read_timeout,
                None => conn.next_send.map_or(end, |t| t.min(end)),
            };
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
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

    /// Sends the script's next request, if it has one.
    async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        conn: &mut Conn,
        now: Instant,
    ) -> std::io::Result<()> {
        conn.next_send = None;
        conn.out.clear();
        let Some(expect) = self.script.next(self.ctx.micros(now), &mut conn.out) else { return Ok(()) };
        writer.write_all(&conn.out).await?;
        self.ctx.stats.count.sent.fetch_add(1, Relaxed);
        conn.pending.push_back(Pending { expect, sent_at: now, timed_out: false });
        Ok(())
    }

    /// Schedules the request after the one just finished (replied or timed out).
    fn schedule_next(&self, conn: &mut Conn, now: Instant) {
        if self.script.wants_to_send() {
            conn.slot = self.ctx.pacer.next(conn.slot, now);
            conn.next_send = Some(conn.slot);
        }
    }

    fn on_timer(&mut self, conn: &mut Conn, now: Instant) {
        let read_timeout = self.ctx.timing.read_timeout;
        if let Some(p) = conn.pending.back_mut().filter(|p| !p.timed_out && now >= p.sent_at + read_timeout) {
            p.timed_out = true;
            self.ctx.stats.count.timeouts.fetch_add(1, Relaxed);
            self.schedule_next(conn, now);
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
            self.schedule_next(conn, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::load::delivery::Ledger;
    use crate::load::pace::Pacer;
    use crate::load::runner::Timing;
    use crate::load::script::{Role, ScriptConfig};
    use crate::load::stats::Stats;

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
        let start = Instant::now();
        let ctx = Arc::new(Context {
            stats: Stats::default(),
            ledger: Arc::new(Ledger::new("t")),
            pacer: Pacer::new(None, Duration::from_millis(10), start),
            cancel: CancellationToken::new(),
            start,
            deadline: None,
            timing: Timing {
                alive: Duration::from_millis(600),
                read_timeout: Duration::from_millis(100),
                reconnect_delay: Duration::from_millis(100),
                connect_timeout: Duration::from_secs(5),
                settle: Duration::ZERO,
            },
        });
        let config = ScriptConfig { payload: "p".into(), keys: 1, value_size: 1, seed: 1 };
        let script = Script::new(Role::Echo, 0, &config, ctx.ledger.clone());
        Client { id: 0, target, source: None, script, ctx: ctx.clone() }.run().await;
        let c = ctx.stats.count.snapshot();
        // The first request times out at 100 ms; its reply (at 150 ms) is late,
        // and the second request, sent at 100 ms, gets its own reply.
        assert_eq!((c.timeouts, c.late_replies, c.wrong_replies, c.resets), (1, 1, 0, 0), "{c:?}");
        assert_eq!(c.received + c.late_replies + c.unanswered, c.sent, "{c:?}");
        assert!(c.received > 10, "{c:?}");
        assert_eq!(ctx.stats.open.load(Relaxed), 0);
    }
}
