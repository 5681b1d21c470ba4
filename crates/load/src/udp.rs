//! One simulated UDP flow: its own socket, from its source address to its
//! target, through which its [`Script`] talks one request per datagram.
//!
//! `login` exists only over TCP: when the script asks for a token, the flow
//! sends that request over a short TCP connection to the same host on
//! `--tcp-port`, framed as `--framing` says, and closes it once answered.
//! Tokens outlive their connection, and over UDP the server only checks that
//! a token exists.
//!
//! Datagrams carry no line end, whatever `--framing` says: a datagram is one
//! command already, and the server answers without a line end in turn (a
//! reply that has one is accepted all the same).
//!
//! Requests go one at a time, paced like TCP's. Datagrams can be lost or
//! reordered, so replies are paired with requests by content
//! ([`Expect::answered_by`]; echoes carry their sequence number) rather than
//! by position: a request that timed out stays among the last [`MAX_LATE`],
//! so that its reply, if it ever comes, counts as late rather than wrong.
//! Those that drop out of that list, or are left when the flow ends, count as
//! unanswered, so every request sent is accounted for once.
//!
//! An ICMP "port unreachable" (nothing listens there, e.g. a restarting
//! server) counts as a reset; the flow opens a new socket after the
//! reconnect delay.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;
use playground_protocol::Ending;
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep_until, timeout};

use super::expect::{Expect, Verdict};
use super::framing::Replies;
use super::net;
use super::pace::{Schedule, Step};
use super::runner::{self, Cancelled, Conversation, Ended};
use super::stats::SendTimes;

/// Timed-out requests a flow remembers to recognise their late replies; a
/// reply later than that many timeouts is counted wrong.
const MAX_LATE: usize = 64;
/// Receive room beyond the longest right reply, for error replies. A longer
/// datagram is cut to the buffer, and so counted wrong, as it should be.
const ERROR_ROOM: usize = 256;

/// One simulated flow.
pub struct Client {
    pub client: runner::Client,
    /// Where the flow logs in over TCP.
    pub login: SocketAddr,
}

/// A request waiting for its reply.
struct Pending {
    expect: Expect,
    times: SendTimes,
}

/// The state of one socket.
struct Flow {
    /// The request in flight, within its read timeout.
    waiting: Option<Pending>,
    /// Requests that timed out, oldest first.
    late: VecDeque<Pending>,
    schedule: Schedule,
    out: BytesMut,
}

/// What sending the next request came to.
enum Sent {
    Ok,
    /// The socket failed (an ICMP error): open another.
    Lost,
    Cancelled,
}

impl Conversation for Client {
    type Link = UdpSocket;

    fn client(&self) -> &runner::Client {
        &self.client
    }

    async fn open(&self) -> std::io::Result<UdpSocket> {
        net::open_udp(self.client.target, self.client.source).await
    }

    async fn converse(&mut self, socket: UdpSocket, end: Instant, mut cancelled: Cancelled<'_>) -> Ended {
        let ctx = self.client.ctx.clone();
        // A new socket is a new source port: start the conversation afresh.
        self.client.script.on_connect();
        let now = Instant::now();
        let mut flow = Flow {
            waiting: None,
            late: VecDeque::new(),
            schedule: Schedule::starting(now, self.client.phase),
            out: BytesMut::new(),
        };
        let mut buf = vec![0u8; self.client.script.longest_reply() + ERROR_ROOM];
        let timer = sleep_until(end);
        tokio::pin!(timer);
        let ended = loop {
            let now = Instant::now();
            match flow.schedule.step(now, end, flow.waiting.is_some()) {
                Step::Close => break Ended::Done,
                Step::Send => match self.send(&socket, &mut flow, now, cancelled.as_mut()).await {
                    Sent::Ok => continue,
                    Sent::Cancelled => break Ended::Done,
                    Sent::Lost => {
                        ctx.stats.count.resets.fetch_add(1, Relaxed);
                        break Ended::Again;
                    }
                },
                Step::Wait => {}
            }
            let reply_due = flow.waiting.as_ref().map(|p| p.times.sent + ctx.timing.read_timeout);
            flow.schedule.set_timer(timer.as_mut(), reply_due, flow.waiting.is_some(), end);
            tokio::select! {
                biased;
                _ = cancelled.as_mut() => break Ended::Done,
                received = socket.recv(&mut buf) => match received {
                    Ok(n) => self.on_reply(trim(&buf[..n]), &mut flow),
                    // An ICMP error for an earlier datagram: nothing listens there now.
                    Err(_) => {
                        ctx.stats.count.resets.fetch_add(1, Relaxed);
                        break Ended::Again;
                    }
                },
                _ = &mut timer => self.on_timer(&mut flow, Instant::now()),
            }
        };
        let left = flow.late.len() + usize::from(flow.waiting.is_some());
        ctx.stats.count.unanswered.fetch_add(left as u64, Relaxed);
        ctx.stats.count.missed_slots.fetch_add(flow.schedule.take_missed(), Relaxed);
        ended
    }
}

impl Client {
    /// Sends the script's next request, if it has one: `login` over TCP,
    /// anything else as a datagram.
    async fn send(&mut self, socket: &UdpSocket, flow: &mut Flow, now: Instant, cancelled: Cancelled<'_>) -> Sent {
        flow.schedule.hold();
        flow.out.clear();
        // `login` goes over TCP, framed as `--framing` says; a datagram is one
        // command already, with no line end.
        let ending = if self.client.script.needs_login() { self.client.ctx.framing.ending() } else { Ending::Bare };
        let Some(expect) = self.client.script.next(self.client.ctx.micros(now), &mut flow.out, ending) else {
            // Nothing now: ask again at the next slot, if the script still wants to send.
            flow.schedule.after(&self.client.ctx.pacer, &self.client.script, now);
            return Sent::Ok;
        };
        let times = flow.schedule.sending(now);
        self.client.ctx.stats.count.missed_slots.fetch_add(times.missed.count, Relaxed);
        if expect == Expect::Token {
            return tokio::select! {
                biased;
                _ = cancelled => Sent::Cancelled,
                () = self.login(expect, flow, times) => Sent::Ok,
            };
        }
        if socket.send(&flow.out).await.is_err() {
            return Sent::Lost;
        }
        self.client.ctx.stats.count.sent.fetch_add(1, Relaxed);
        flow.waiting = Some(Pending { expect, times });
        Sent::Ok
    }

    /// Sends `login` (in `flow.out`) over TCP and judges the reply like any
    /// other. When the server cannot be reached, the flow tries again after
    /// the reconnect delay.
    async fn login(&mut self, mut expect: Expect, flow: &mut Flow, mut times: SendTimes) {
        let ctx = self.client.ctx.clone();
        let (count, timing) = (&ctx.stats.count, &ctx.timing);
        let retry = |flow: &mut Flow| flow.schedule.retry_at(Instant::now() + timing.reconnect_delay);
        let mut stream = match net::connect(self.login, self.client.source, timing.connect_timeout).await {
            Ok(s) => s,
            Err(e) => {
                ctx.stats.connect_failed(format!("login at {e}"));
                return retry(flow);
            }
        };
        if stream.write_all(&flow.out).await.is_err() {
            count.resets.fetch_add(1, Relaxed);
            return retry(flow);
        }
        count.sent.fetch_add(1, Relaxed);
        // Uncorrected, timed from the write; corrected, from the slot, the
        // connection's set-up included (the request was due then).
        times.sent = Instant::now();
        let mut replies = Replies::new(stream, ctx.framing);
        match timeout(timing.read_timeout, replies.next()).await {
            Err(_) => {
                count.timeouts.fetch_add(1, Relaxed);
                count.unanswered.fetch_add(1, Relaxed);
            }
            Ok(Err(_) | Ok(None)) => {
                count.resets.fetch_add(1, Relaxed);
                count.unanswered.fetch_add(1, Relaxed);
                return retry(flow);
            }
            Ok(Ok(Some(reply))) => {
                let now = Instant::now();
                if self.client.script.check(&mut expect, trim(&reply)) == Verdict::Right {
                    count.received.fetch_add(1, Relaxed);
                    ctx.stats.replied(self.client.id, now, &times);
                } else {
                    ctx.stats.wrong_reply(trim(&reply));
                }
            }
        }
        flow.schedule.after(&self.client.ctx.pacer, &self.client.script, Instant::now());
    }

    fn on_timer(&mut self, flow: &mut Flow, now: Instant) {
        let read_timeout = self.client.ctx.timing.read_timeout;
        let Some(p) = flow.waiting.take_if(|p| now >= p.times.sent + read_timeout) else { return };
        let count = &self.client.ctx.stats.count;
        count.timeouts.fetch_add(1, Relaxed);
        self.client.script.unanswered(&p.expect);
        flow.late.push_back(p);
        if flow.late.len() > MAX_LATE {
            flow.late.pop_front();
            count.unanswered.fetch_add(1, Relaxed);
        }
        flow.schedule.after(&self.client.ctx.pacer, &self.client.script, now);
    }

    /// A datagram from the target: the reply to the request in flight, or a
    /// late one to a request that timed out.
    fn on_reply(&mut self, reply: &[u8], flow: &mut Flow) {
        let ctx = &*self.client.ctx;
        let count = &ctx.stats.count;
        let now = Instant::now();
        let for_waiting = flow.waiting.as_ref().is_some_and(|p| p.expect.answered_by(reply));
        let late = if for_waiting { None } else { flow.late.iter().position(|p| p.expect.answered_by(reply)) };
        if let Some(mut p) = late.and_then(|i| flow.late.remove(i)) {
            // Judged all the same: the script learns from it (a token).
            self.client.script.check(&mut p.expect, reply);
            count.late_replies.fetch_add(1, Relaxed);
            ctx.stats.replied(self.client.id, now, &p.times);
            return;
        }
        // Any other reply belongs to the request in flight; without one, it
        // is the (wrong, e.g. `error: invalid token`) reply of the oldest
        // request that timed out.
        let (mut p, in_time) = match flow.waiting.take() {
            Some(p) => (p, true),
            None => match flow.late.pop_front() {
                Some(p) => (p, false),
                None => {
                    ctx.stats.wrong_reply(reply);
                    return;
                }
            },
        };
        match self.client.script.check(&mut p.expect, reply) {
            Verdict::Right if in_time => {
                count.received.fetch_add(1, Relaxed);
                ctx.stats.replied(self.client.id, now, &p.times);
            }
            Verdict::Right => {
                count.late_replies.fetch_add(1, Relaxed);
                ctx.stats.replied(self.client.id, now, &p.times);
            }
            // Broadcasts (the only source of the other verdicts) are refused over UDP.
            Verdict::Wrong | Verdict::PublishFailed | Verdict::More => ctx.stats.wrong_reply(reply),
        }
        if in_time {
            flow.schedule.after(&self.client.ctx.pacer, &self.client.script, now);
        }
    }
}

/// A reply without its line end.
fn trim(reply: &[u8]) -> &[u8] {
    let reply = reply.strip_suffix(b"\n").unwrap_or(reply);
    reply.strip_suffix(b"\r").unwrap_or(reply)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::testing;

    /// A UDP echo server that holds back its first reply for `delay` while
    /// answering the others at once, so that reply arrives out of order.
    async fn slow_first_echo(delay: Duration) -> SocketAddr {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut first = true;
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let reply = buf[..n].strip_prefix(b"msg:").unwrap_or(&buf[..n]).to_vec();
                let socket = socket.clone();
                let wait = if std::mem::take(&mut first) { delay } else { Duration::ZERO };
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = socket.send_to(&reply, from).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_late_reply_is_recognised_by_its_sequence_number() {
        let target = slow_first_echo(Duration::from_millis(150)).await;
        let ctx = testing::context();
        let script = testing::echo_script(&ctx);
        let login = "127.0.0.1:9".parse().unwrap();
        Client {
            client: runner::Client { id: 0, target, source: None, script, phase: Duration::ZERO, ctx: ctx.clone() },
            login,
        }
        .run(ctx.cancel.clone())
        .await;
        // The first datagram times out at 100 ms; its reply comes at 150 ms,
        // while a newer request waits, and is told apart from that one's.
        testing::assert_one_late_reply(&ctx);
    }
}
