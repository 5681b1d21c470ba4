//! One UDP load flow running the echo scenario: its own socket, connected to
//! the target (so only the target's datagrams are read, and an ICMP "port
//! unreachable" shows up as an error), sends `msg:` datagrams, matches each
//! reply and counts timeouts. A lost datagram costs the flow one read
//! timeout; a reply that arrives later is recognised and skipped.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use hdrhistogram::Histogram;
use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep_until, timeout_at};

use super::stats::{Stats, new_histogram};
use super::{LoadArgs, Scenario};

/// One simulated client.
pub struct Worker {
    pub id: u32,
    pub target: SocketAddr,
    pub args: LoadArgs,
    pub stats: Arc<Stats>,
    pub deadline: Option<Instant>,
}

/// How a conversation ended.
enum Ended {
    /// The flow's time is up.
    Done,
    /// The server refused (nothing listening): try again after a delay.
    Again,
}

impl Worker {
    /// Runs until the flow's time is up; returns its latencies (µs).
    pub async fn run(self) -> Histogram<u64> {
        let mut hist = new_histogram();
        let mut end = Instant::now() + self.args.alive;
        if let Some(d) = self.deadline {
            end = end.min(d);
        }
        let mut seq = 0u64;
        while Instant::now() < end {
            let Ok(socket) = self.open().await else {
                self.stats.connect_errors.fetch_add(1, Relaxed);
                self.pause(end).await;
                continue;
            };
            self.stats.connections_opened.fetch_add(1, Relaxed);
            match self.converse(&socket, end, &mut seq, &mut hist).await {
                Ended::Done => break,
                Ended::Again => self.pause(end).await,
            }
        }
        hist
    }

    async fn open(&self) -> std::io::Result<UdpSocket> {
        let local: SocketAddr =
            if self.target.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(self.target).await?;
        Ok(socket)
    }

    async fn pause(&self, end: Instant) {
        sleep_until((Instant::now() + self.args.reconnect_delay).min(end)).await;
    }

    async fn converse(&self, socket: &UdpSocket, end: Instant, seq: &mut u64, hist: &mut Histogram<u64>) -> Ended {
        if self.args.scenario == Scenario::Idle {
            sleep_until(end).await;
            return Ended::Done;
        }
        let prefix = format!("{}-{}-", self.args.payload, self.id);
        // Big enough for any reply this flow expects, plus a little: a longer
        // datagram is a wrong reply anyway.
        let mut buf = vec![0u8; prefix.len() + 64];
        let mut next_send = Instant::now();
        while Instant::now() < end {
            *seq += 1;
            let expected = format!("{prefix}{seq}");
            if socket.send(format!("msg:{expected}").as_bytes()).await.is_err() {
                self.stats.resets.fetch_add(1, Relaxed);
                return Ended::Again;
            }
            self.stats.sent.fetch_add(1, Relaxed);
            let sent_at = Instant::now();
            let reply_deadline = (sent_at + self.args.read_timeout).min(end);
            loop {
                let n = match timeout_at(reply_deadline, socket.recv(&mut buf)).await {
                    Err(_) => {
                        self.stats.timeouts.fetch_add(1, Relaxed);
                        break;
                    }
                    Ok(Err(_)) => {
                        // ICMP port unreachable: no server there (yet).
                        self.stats.resets.fetch_add(1, Relaxed);
                        return Ended::Again;
                    }
                    Ok(Ok(n)) => n,
                };
                let reply = &buf[..n];
                let reply = reply.strip_suffix(b"\n").unwrap_or(reply);
                if reply == expected.as_bytes() {
                    self.stats.received.fetch_add(1, Relaxed);
                    let _ = hist.record(sent_at.elapsed().as_micros().max(1) as u64);
                    break;
                }
                if !reply.starts_with(prefix.as_bytes()) {
                    self.stats.wrong_replies.fetch_add(1, Relaxed);
                    break;
                }
                // A late reply to an earlier datagram, already counted as a timeout.
            }
            if !self.args.msg_interval.is_zero() {
                next_send += self.args.msg_interval;
                sleep_until(next_send.min(end)).await;
            }
        }
        Ended::Done
    }
}
