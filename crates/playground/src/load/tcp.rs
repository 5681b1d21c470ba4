//! One TCP load connection running the echo scenario: sends `msg:` lines,
//! matches each reply, follows `reconnect` (reconnecting through the same
//! address, i.e. the load balancer, after a delay) and counts what failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_util::codec::FramedRead;

use super::stats::{Stats, new_histogram};
use super::{LoadArgs, Scenario};
use crate::tcp::codec::{Frame, LineCodec};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REPLY: usize = 64 * 1024;

type Lines = FramedRead<OwnedReadHalf, LineCodec>;

/// One simulated client.
pub struct Worker {
    pub id: u32,
    pub target: SocketAddr,
    pub args: LoadArgs,
    pub stats: Arc<Stats>,
    pub deadline: Option<Instant>,
}

/// How a connection ended.
enum Ended {
    /// The client's time is up.
    Done,
    /// The server said `reconnect`, or the connection was lost.
    Again,
}

impl Worker {
    /// Runs until the connection's time is up; returns its latencies (µs).
    pub async fn run(self) -> Histogram<u64> {
        let mut hist = new_histogram();
        let mut end = Instant::now() + self.args.alive;
        if let Some(d) = self.deadline {
            end = end.min(d);
        }
        let mut seq = 0u64;
        while Instant::now() < end {
            let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(self.target)).await {
                Ok(Ok(s)) => s,
                _ => {
                    self.stats.connect_errors.fetch_add(1, Relaxed);
                    self.pause(end).await;
                    continue;
                }
            };
            self.stats.connections_opened.fetch_add(1, Relaxed);
            let _ = stream.set_nodelay(true);
            match self.converse(stream, end, &mut seq, &mut hist).await {
                Ended::Done => break,
                Ended::Again => self.pause(end).await,
            }
        }
        hist
    }

    async fn pause(&self, end: Instant) {
        sleep_until((Instant::now() + self.args.reconnect_delay).min(end)).await;
    }

    async fn converse(&self, stream: TcpStream, end: Instant, seq: &mut u64, hist: &mut Histogram<u64>) -> Ended {
        let (reader, mut writer) = stream.into_split();
        let mut lines = FramedRead::new(reader, LineCodec::new(MAX_REPLY));
        let prefix = format!("{}-{}-", self.args.payload, self.id);
        if self.args.scenario == Scenario::Idle {
            return if self.wait_until(end, &mut lines).await { Ended::Again } else { Ended::Done };
        }
        let mut next_send = Instant::now();
        while Instant::now() < end {
            *seq += 1;
            let expected = format!("{prefix}{seq}");
            if writer.write_all(format!("msg:{expected}\n").as_bytes()).await.is_err() {
                self.stats.resets.fetch_add(1, Relaxed);
                return Ended::Again;
            }
            self.stats.sent.fetch_add(1, Relaxed);
            let sent_at = Instant::now();
            let reply_deadline = (sent_at + self.args.read_timeout).min(end);
            loop {
                let line = match timeout_at(reply_deadline, lines.next()).await {
                    Err(_) => {
                        self.stats.timeouts.fetch_add(1, Relaxed);
                        break;
                    }
                    Ok(Some(Ok(Frame::Line(line)))) => line,
                    Ok(Some(Ok(Frame::TooLong))) => {
                        self.stats.wrong_replies.fetch_add(1, Relaxed);
                        break;
                    }
                    Ok(_) => {
                        self.stats.resets.fetch_add(1, Relaxed);
                        return Ended::Again;
                    }
                };
                if line == expected.as_bytes() {
                    self.stats.received.fetch_add(1, Relaxed);
                    let _ = hist.record(sent_at.elapsed().as_micros().max(1) as u64);
                    break;
                }
                if self.is_reconnect(&line) {
                    return Ended::Again;
                }
                if !line.starts_with(prefix.as_bytes()) {
                    self.stats.wrong_replies.fetch_add(1, Relaxed);
                    break;
                }
                // A late reply to an earlier message, already counted as a timeout.
            }
            if !self.args.msg_interval.is_zero() {
                next_send += self.args.msg_interval;
                if self.wait_until(next_send.min(end), &mut lines).await {
                    return Ended::Again;
                }
            }
        }
        let _ = writer.shutdown().await;
        Ended::Done
    }

    /// Waits until `at` while watching for `reconnect`; true if it came.
    async fn wait_until(&self, at: Instant, lines: &mut Lines) -> bool {
        let pause = sleep_until(at);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => return false,
                line = lines.next() => match line {
                    Some(Ok(Frame::Line(l))) if self.is_reconnect(&l) => return true,
                    Some(Ok(_)) => {}
                    _ => {
                        self.stats.resets.fetch_add(1, Relaxed);
                        pause.await;
                        return true;
                    }
                }
            }
        }
    }

    fn is_reconnect(&self, line: &Bytes) -> bool {
        let hit = line.as_ref() == b"reconnect";
        if hit {
            self.stats.reconnects.fetch_add(1, Relaxed);
        }
        hit
    }
}
