//! One simulated TCP client: connects (from its source address, to its
//! target), lets its [`Script`] talk, matches replies, takes pushed
//! broadcasts, follows `reconnect` (reconnecting through the same address,
//! i.e. the load balancer, after a delay) and counts what failed.
//!
//! Requests go one at a time by default: the next is sent when the reply
//! came or the read timeout passed. With `--pipeline N`, up to N requests
//! within their read timeout are in flight at once, each sent in its own
//! slot of the schedule (nothing goes while a `login` is awaited: later
//! requests need its token). A request that timed out stays queued, because the
//! server answers every request in order: its late reply is recognised as
//! such instead of being taken for the reply to a newer request. A reply
//! that is the right one for a newer request than the oldest tells that the
//! older ones' replies will not come apart (with packet framing, they were
//! read together with another message): those count as unanswered, and the
//! pairing of later replies stays right.
//!
//! Lines or the original's packets ([`super::framing`]) only change what is
//! written and how a read is cut into messages; each message is then handled
//! the same way.
//!
//! The task sleeps on a single timer, moved to the earliest of: the reply
//! deadline, the next send, the end of the client's time. Idle clients thus
//! cost a socket, a small buffer and a sleeping task.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;
use playground_protocol::{ErrorReply, RECONNECT};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};

use super::delivery::{self, Inbox, Pushed};
use super::expect::{Expect, Verdict};
use super::framing::{self, Framing, Replies};
use super::net;
use super::pace::{Schedule, Step};
use super::runner::{self, Cancelled, Conversation, Ended};
use super::stats::SendTimes;

/// Requests left unanswered on one connection, beyond those `--pipeline`
/// keeps in flight, before it is given up as dead.
const MAX_PENDING: usize = 1024;

/// One simulated client over TCP.
pub struct Client(pub runner::Client);

/// A request waiting for its reply.
struct Pending {
    expect: Expect,
    times: SendTimes,
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
    /// The oldest request still waiting within its read timeout: requests
    /// time out in the order they were sent, so the ones after it wait too.
    fn first_waiting(&self) -> Option<&Pending> {
        self.pending.iter().find(|p| !p.timed_out)
    }

    /// Whether no more may go now: `depth` requests wait within their read
    /// timeout, or a `login` does (the next requests need its token).
    fn full(&self, depth: usize) -> bool {
        let waiting = self.pending.iter().rev().take_while(|p| !p.timed_out);
        let mut n = 0;
        for p in waiting {
            if p.expect == Expect::Token {
                return true;
            }
            n += 1;
        }
        n >= depth
    }
}

impl Conversation for Client {
    type Link = TcpStream;

    fn client(&self) -> &runner::Client {
        &self.0
    }

    async fn open(&self) -> std::io::Result<TcpStream> {
        net::connect(self.0.target, self.0.source, self.0.ctx.timing.connect_timeout).await
    }

    async fn converse(&mut self, mut stream: TcpStream, end: Instant, mut cancelled: Cancelled<'_>) -> Ended {
        let ctx = self.0.ctx.clone();
        let (reader, mut writer) = stream.split();
        let mut replies = Replies::new(reader, ctx.framing);
        self.0.script.on_connect();
        let now = Instant::now();
        let mut conn = Conn {
            pending: VecDeque::new(),
            inbox: Inbox::new(ctx.timing.settle.as_micros() as u64),
            schedule: Schedule::starting(now, self.0.phase),
            out: BytesMut::new(),
        };
        let timer = sleep_until(end);
        tokio::pin!(timer);
        let ended = loop {
            let now = Instant::now();
            let full = conn.full(ctx.pipeline);
            match conn.schedule.step(now, end, full) {
                Step::Close => break Ended::Done,
                Step::Send => {
                    if self.send(&mut writer, &mut conn, now).await.is_err() {
                        ctx.stats.count.resets.fetch_add(1, Relaxed);
                        break Ended::Again;
                    }
                    if conn.pending.len() > MAX_PENDING + ctx.pipeline {
                        ctx.stats.count.resets.fetch_add(1, Relaxed);
                        break Ended::Again;
                    }
                    continue;
                }
                Step::Wait => {}
            }
            let reply_due = conn.first_waiting().map(|p| p.times.sent + ctx.timing.read_timeout);
            conn.schedule.set_timer(timer.as_mut(), reply_due, full, end);
            tokio::select! {
                biased;
                _ = cancelled.as_mut() => break Ended::Done,
                message = replies.next() => match message {
                    Ok(Some(message)) => {
                        if message.as_ref() == RECONNECT.as_bytes() {
                            ctx.stats.count.reconnects.fetch_add(1, Relaxed);
                            break Ended::Again;
                        }
                        if is_refusal(&message) {
                            ctx.stats.count.refused.fetch_add(1, Relaxed);
                            break Ended::Again;
                        }
                        self.on_message(&message, &mut conn);
                    }
                    Ok(None) | Err(_) => {
                        ctx.stats.count.resets.fetch_add(1, Relaxed);
                        break Ended::Again;
                    }
                },
                _ = &mut timer => self.on_timer(&mut conn, Instant::now()),
            }
        };
        conn.inbox.close(self.0.id, ctx.micros(Instant::now()), &ctx.ledger);
        ctx.stats.count.unanswered.fetch_add(conn.pending.len() as u64, Relaxed);
        ctx.stats.count.missed_slots.fetch_add(conn.schedule.take_missed(), Relaxed);
        for p in &conn.pending {
            self.0.script.unanswered(&p.expect);
        }
        if ended == Ended::Done {
            let _ = writer.shutdown().await;
        }
        ended
    }
}

impl Client {
    /// Sends the script's next request, if it has one, and schedules the one
    /// after it unless the connection is then full.
    async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        conn: &mut Conn,
        now: Instant,
    ) -> std::io::Result<()> {
        conn.schedule.hold();
        conn.out.clear();
        let Some(expect) = self.0.script.next(self.0.ctx.micros(now), &mut conn.out, self.0.ctx.framing.ending())
        else {
            // Nothing now: ask again at the next slot, if the script still wants to send.
            conn.schedule.after(&self.0.ctx.pacer, &self.0.script, now);
            return Ok(());
        };
        let times = conn.schedule.sending(now);
        writer.write_all(&conn.out).await?;
        let count = &self.0.ctx.stats.count;
        count.sent.fetch_add(1, Relaxed);
        count.missed_slots.fetch_add(times.missed.count, Relaxed);
        conn.pending.push_back(Pending { expect, times, timed_out: false });
        if !conn.full(self.0.ctx.pipeline) {
            conn.schedule.after(&self.0.ctx.pacer, &self.0.script, now);
        }
        Ok(())
    }

    fn on_timer(&mut self, conn: &mut Conn, now: Instant) {
        let read_timeout = self.0.ctx.timing.read_timeout;
        let first = conn.pending.iter_mut().find(|p| !p.timed_out);
        if let Some(p) = first.filter(|p| now >= p.times.sent + read_timeout) {
            p.timed_out = true;
            self.0.ctx.stats.count.timeouts.fetch_add(1, Relaxed);
            if conn.schedule.held() {
                conn.schedule.after(&self.0.ctx.pacer, &self.0.script, now);
            }
        }
    }

    /// A message from the server: a pushed broadcast, or a reply.
    fn on_message(&mut self, message: &[u8], conn: &mut Conn) {
        // Borrowed, not cloned: every client shares this Arc, and a count
        // change per message would bounce its cache line between cores.
        let ctx = &*self.0.ctx;
        let count = &ctx.stats.count;
        let now = Instant::now();
        match delivery::classify(message, ctx.ledger.tag()) {
            Pushed::Ours(b) => {
                let now_us = ctx.micros(now);
                if conn.inbox.receive(b, now_us) {
                    count.deliveries.fetch_add(1, Relaxed);
                    let took = std::time::Duration::from_micros(now_us.saturating_sub(b.send_us));
                    ctx.stats.delivery_latency.record(self.0.id, took);
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
        // The oldest request's reply, unless it is the right one of a newer
        // request: then the older ones' replies will not come apart.
        let newer = conn.pending.iter().position(|p| p.expect.answered_by(message)).unwrap_or(0);
        for skipped in conn.pending.drain(..newer) {
            count.unanswered.fetch_add(1, Relaxed);
            self.0.script.unanswered(&skipped.expect);
        }
        let Some(front) = conn.pending.front_mut() else {
            self.wrong(message, None);
            return;
        };
        let publication = matches!(front.expect, Expect::Published { .. });
        match self.0.script.check(&mut front.expect, message) {
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
                ctx.stats.replied(self.0.id, now, &front.times);
                conn.inbox.ready(ctx.micros(now));
            }
            Verdict::Wrong => self.wrong(message, front.expect.right_reply()),
            Verdict::PublishFailed => {
                count.publish_errors.fetch_add(1, Relaxed);
            }
        }
        let done = conn.pending.pop_front();
        if conn.schedule.held() && done.is_some_and(|d| !d.timed_out) {
            conn.schedule.after(&self.0.ctx.pacer, &self.0.script, now);
        }
    }

    /// Counts a message that is no right reply (to `expected`, if known in
    /// advance), and whether it looks like several read as one.
    fn wrong(&self, message: &[u8], expected: Option<&[u8]>) {
        let stats = &self.0.ctx.stats;
        stats.wrong_reply(message);
        if self.0.ctx.framing == Framing::Packet && framing::looks_merged(message, expected) {
            stats.count.merged_reads.fetch_add(1, Relaxed);
        }
    }
}

/// Whether `message` is a full server's refusal (`error: server full`).
fn is_refusal(message: &[u8]) -> bool {
    message.starts_with(b"error: server") && ErrorReply::parse(message) == Some(ErrorReply::ServerFull)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::runner::Context;
    use crate::script::Script;
    use crate::testing;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    use tokio::net::TcpListener;

    /// A line server for one connection: for each line `answer` says how
    /// long to wait and what to write then (possibly nothing).
    async fn line_server(mut answer: impl FnMut(&str) -> (Duration, String) + Send + 'static) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let (wait, reply) = answer(&line);
                tokio::time::sleep(wait).await;
                if w.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        addr
    }

    fn echo(line: &str) -> String {
        format!("{}\n", line.strip_prefix("msg:").unwrap_or(line))
    }

    /// An echo server whose first reply comes `delay` late.
    async fn slow_first_echo(delay: Duration) -> SocketAddr {
        let mut first = true;
        line_server(move |line| (if std::mem::take(&mut first) { delay } else { Duration::ZERO }, echo(line))).await
    }

    /// An echo server that answers only once `batch` requests have come,
    /// all at once: a client that waits for each reply gets none in time.
    async fn batching_echo(batch: usize) -> SocketAddr {
        let (mut held, mut count) = (String::new(), 0);
        line_server(move |line| {
            held += &echo(line);
            count += 1;
            (Duration::ZERO, if count % batch == 0 { std::mem::take(&mut held) } else { String::new() })
        })
        .await
    }

    /// Runs one client of `ctx` against `target` until the context's end.
    async fn run_one(target: SocketAddr, script: Script, ctx: &Arc<Context>) {
        Client(runner::Client { id: 0, target, source: None, script, phase: Duration::ZERO, ctx: ctx.clone() })
            .run(ctx.cancel.clone())
            .await;
    }

    /// A server that refuses its first connection as a full server does
    /// (`error: server full`, then closes it; here only once the client's
    /// first line is read, so that the close is no reset) and answers every
    /// line of the next ones with `reply`.
    async fn refusing_then(reply: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (first, _) = listener.accept().await.unwrap();
            let (r, mut w) = first.into_split();
            let _ = BufReader::new(r).lines().next_line().await;
            w.write_all(b"error: server full\n").await.unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(_)) = lines.next_line().await {
                        if w.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_full_servers_refusal_is_no_error_and_the_client_connects_again() {
        let target = refusing_then("error: cache unavailable\n").await;
        let ctx = testing::context();
        run_one(target, testing::echo_script(&ctx), &ctx).await;
        let c = ctx.stats.count.snapshot();
        assert_eq!((c.refused, c.resets, c.connections_opened), (1, 0, 2), "{c:?}");
        assert!(c.wrong_replies > 0 && c.errors() == c.wrong_replies, "{c:?}");
        // The wrong replies are the server's error replies, counted by error.
        let errors = ctx.stats.error_replies();
        assert_eq!(errors.into_iter().collect::<Vec<_>>(), [("error: cache unavailable".to_string(), c.wrong_replies)]);
    }

    #[tokio::test]
    async fn a_late_reply_is_recognised_not_taken_for_the_next_one() {
        let target = slow_first_echo(Duration::from_millis(150)).await;
        let ctx = testing::context();
        let script = testing::echo_script(&ctx);
        run_one(target, script, &ctx).await;
        // The first request times out at 100 ms; its reply (at 150 ms) is late,
        // and the second request, sent at 100 ms, gets its own reply.
        testing::assert_one_late_reply(&ctx);
    }

    /// A server with the original's framing that holds back its first
    /// reply until the second request came, then writes both replies at
    /// once: what TCP may do to two writes. A request with a line end stops
    /// it, which shows as a reset.
    async fn merging_packet_echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let (mut held, mut reads) = (Vec::new(), 0);
            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                if buf[..n].contains(&b'\n') {
                    return;
                }
                held.extend_from_slice(buf[..n].strip_prefix(b"msg:").unwrap_or(&buf[..n]));
                reads += 1;
                if reads > 1 && stream.write_all(&std::mem::take(&mut held)).await.is_err() {
                    return;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn pipelined_requests_are_in_flight_together() {
        let target = batching_echo(4).await;
        let ctx = testing::pipelined(4);
        let script = testing::echo_script(&ctx);
        run_one(target, script, &ctx).await;
        let c = ctx.stats.count.snapshot();
        // Four requests go before any reply, so every batch is answered.
        assert_eq!((c.timeouts, c.wrong_replies, c.resets), (0, 0, 0), "{c:?}");
        assert!(c.received >= 40, "{c:?}");
        assert_eq!(c.received + c.unanswered, c.sent, "{c:?}");
        // One at a time, the first request never gets its reply in time.
        let ctx = testing::context();
        let script = testing::echo_script(&ctx);
        let target = batching_echo(4).await;
        run_one(target, script, &ctx).await;
        let c = ctx.stats.count.snapshot();
        assert!(c.timeouts >= 3, "{c:?}");
    }

    #[tokio::test]
    async fn a_merged_packet_read_is_counted_and_later_replies_still_pair() {
        let target = merging_packet_echo().await;
        let ctx = testing::framed(Framing::Packet);
        let script = testing::echo_script(&ctx);
        run_one(target, script, &ctx).await;
        let c = ctx.stats.count.snapshot();
        // The first request times out and its reply comes merged with the
        // second's: one wrong, merged read. The second then times out too,
        // and is given up as unanswered when the third's reply comes; every
        // later reply pairs with its own request.
        assert_eq!((c.timeouts, c.wrong_replies, c.merged_reads, c.late_replies, c.resets), (2, 1, 1, 0, 0), "{c:?}");
        assert_eq!(c.received + c.wrong_replies + c.unanswered, c.sent, "{c:?}");
        assert!(c.received > 10, "{c:?}");
    }
}
