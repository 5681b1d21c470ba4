//! Broadcast accounting: did every client receive every broadcast sent while
//! it was connected?
//!
//! A broadcaster sends `brd:{token}:lg-{tag}-{sender}:{seq}:{send_us}`; the
//! `tag` is random per run, so broadcasts of another run on the same server
//! are recognised and set apart. A publication counts once the server has
//! confirmed it (see [`super::expect::Expect::Published`]).
//!
//! Each connection of a client is a window. It opens at the first right
//! reply on the connection (the server's task for it is running, so it is
//! subscribed: any broadcast *sent* later must reach it) and closes when the
//! connection ends, less `--settle` (broadcasts sent in that last stretch may
//! still be on their way). A client is expected to receive exactly the
//! confirmed publications sent inside its windows; the run's ledger compares
//! that with what the client received, per client.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::{BufMut, BytesMut};
use foldhash::HashMap;
use serde::{Deserialize, Serialize};

/// Marks a broadcast line of a load generator.
const PREFIX: &[u8] = b"lg-";

/// One received broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broadcast {
    pub sender: u32,
    pub seq: u64,
    pub send_us: u64,
}

/// What a pushed line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// A broadcast of this run.
    Ours(Broadcast),
    /// A broadcast of another load generator run.
    Foreign,
    /// Not a load generator's broadcast (a reply, or someone else's line).
    No,
}

/// Writes a broadcast message (without the line end).
pub fn put_message(out: &mut BytesMut, tag: &str, sender: u32, seq: u64, send_us: u64) {
    out.put_slice(PREFIX);
    out.put_slice(format!("{tag}-{sender}:{seq}:{send_us}").as_bytes());
}

/// Recognises a broadcast line of this run (`tag`) or of another one.
pub fn classify(line: &[u8], tag: &str) -> Pushed {
    let Some(rest) = line.strip_prefix(PREFIX) else { return Pushed::No };
    let Ok(rest) = std::str::from_utf8(rest) else { return Pushed::No };
    let mut fields = rest.split(':');
    let (Some(from), Some(seq), Some(send_us), None) = (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Pushed::No;
    };
    let Some((run, sender)) = from.rsplit_once('-') else { return Pushed::No };
    let (Ok(sender), Ok(seq), Ok(send_us)) = (sender.parse(), seq.parse(), send_us.parse()) else {
        return Pushed::No;
    };
    if run == tag { Pushed::Ours(Broadcast { sender, seq, send_us }) } else { Pushed::Foreign }
}

/// Whether a broadcast of a load generator starts past the first byte of
/// `read`: with packet framing, a sign of two messages read as one.
pub fn starts_within(read: &[u8]) -> bool {
    read.get(1..).is_some_and(|rest| rest.windows(PREFIX.len()).any(|w| w == PREFIX))
}

/// Which sequence numbers of one sender a connection has seen: the highest
/// and a bitmap of the 64 below it, enough to tell duplicates from late
/// arrivals without remembering every number.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    last: u64,
    below: u64,
}

impl Seen {
    /// Records `seq`; false if it was already seen (or is too old to tell).
    fn insert(&mut self, seq: u64) -> bool {
        if seq > self.last {
            let shift = seq - self.last;
            self.below = if shift >= 64 { 0 } else { self.below << shift };
            if self.last > 0 && shift <= 64 {
                self.below |= 1 << (shift - 1);
            }
            self.last = seq;
            return true;
        }
        let back = self.last - seq;
        if back == 0 || back > 64 || self.below & (1 << (back - 1)) != 0 {
            return false;
        }
        self.below |= 1 << (back - 1);
        true
    }
}

/// One connection's receipts, while it is open.
#[derive(Debug)]
pub struct Inbox {
    settle_us: u64,
    ready_us: Option<u64>,
    /// Receipts inside the window that no close can exclude any more.
    counted: u64,
    /// Send times of recent receipts, which a close may still exclude.
    recent: VecDeque<u64>,
    seen: HashMap<u32, Seen>,
}

impl Inbox {
    /// An inbox whose windows end `settle_us` before the connection does.
    pub fn new(settle_us: u64) -> Inbox {
        Inbox { settle_us, ready_us: None, counted: 0, recent: VecDeque::new(), seen: HashMap::default() }
    }

    /// Opens the window at the connection's first right reply.
    pub fn ready(&mut self, now_us: u64) {
        self.ready_us.get_or_insert(now_us);
    }

    /// Records a receipt; false for a duplicate.
    pub fn receive(&mut self, b: Broadcast, now_us: u64) -> bool {
        if !self.seen.entry(b.sender).or_default().insert(b.seq) {
            return false;
        }
        if self.ready_us.is_some_and(|ready| b.send_us >= ready) {
            self.recent.push_back(b.send_us);
        }
        // A window closes at `now - settle` at the earliest, so what was sent
        // before that is inside it for good.
        let settled = now_us.saturating_sub(self.settle_us);
        while self.recent.front().is_some_and(|&s| s < settled) {
            self.recent.pop_front();
            self.counted += 1;
        }
        true
    }

    /// Closes the window (if it opened) into the ledger.
    pub fn close(self, client: u32, now_us: u64, ledger: &Ledger) {
        let Some(from_us) = self.ready_us else { return };
        let to_us = now_us.saturating_sub(self.settle_us);
        if to_us <= from_us {
            return;
        }
        let received = self.counted + self.recent.iter().filter(|&&s| s < to_us).count() as u64;
        ledger.windows.lock().unwrap_or_else(|p| p.into_inner()).push(Window { client, from_us, to_us, received });
    }
}

/// A closed window of one client.
#[derive(Debug, Clone, Copy)]
struct Window {
    client: u32,
    from_us: u64,
    to_us: u64,
    received: u64,
}

/// The run's publications and windows.
#[derive(Debug)]
pub struct Ledger {
    tag: String,
    publishes: Mutex<Vec<u64>>,
    windows: Mutex<Vec<Window>>,
}

/// Expected and received broadcasts of one client, over all its windows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientDeliveries {
    pub client: u32,
    pub windows: u32,
    pub expected: u64,
    pub received: u64,
    /// Expected but not received, added up window by window.
    pub missing: u64,
}

/// The delivery check of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryCheck {
    /// Publications the server confirmed.
    pub published: u64,
    /// Clients with at least one window.
    pub clients: u64,
    pub expected: u64,
    pub received: u64,
    pub missing: u64,
    /// Received beyond what was expected (publications that were never
    /// confirmed, e.g. because their sender's connection dropped).
    pub extra: u64,
    pub clients_missing: u64,
    pub per_client: Vec<ClientDeliveries>,
}

impl Ledger {
    /// A ledger for the run marked `tag` (no `-` or `:` in it).
    pub fn new(tag: &str) -> Ledger {
        Ledger { tag: tag.to_string(), publishes: Mutex::default(), windows: Mutex::default() }
    }

    /// The run's mark.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Records a confirmed publication sent at `send_us`.
    pub fn published(&self, send_us: u64) {
        self.publishes.lock().unwrap_or_else(|p| p.into_inner()).push(send_us);
    }

    /// Confirmed publications so far.
    pub fn publish_count(&self) -> usize {
        self.publishes.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Compares, per client, what was expected with what was received.
    pub fn check(&self) -> DeliveryCheck {
        let mut sent = self.publishes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        sent.sort_unstable();
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut per: HashMap<u32, ClientDeliveries> = HashMap::default();
        let mut check = DeliveryCheck { published: sent.len() as u64, ..Default::default() };
        for w in windows {
            let expected = (sent.partition_point(|&s| s < w.to_us) - sent.partition_point(|&s| s < w.from_us)) as u64;
            let c = per.entry(w.client).or_insert(ClientDeliveries {
                client: w.client,
                windows: 0,
                expected: 0,
                received: 0,
                missing: 0,
            });
            c.windows += 1;
            c.expected += expected;
            c.received += w.received;
            c.missing += expected.saturating_sub(w.received);
            check.extra += w.received.saturating_sub(expected);
        }
        let mut per: Vec<ClientDeliveries> = per.into_values().collect();
        per.sort_unstable_by_key(|c| c.client);
        check.clients = per.len() as u64;
        check.expected = per.iter().map(|c| c.expected).sum();
        check.received = per.iter().map(|c| c.received).sum();
        check.missing = per.iter().map(|c| c.missing).sum();
        check.clients_missing = per.iter().filter(|c| c.missing > 0).count() as u64;
        check.per_client = per;
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(sender: u32, seq: u64, send_us: u64) -> Broadcast {
        Broadcast { sender, seq, send_us }
    }

    #[test]
    fn messages_round_trip_and_strangers_are_told_apart() {
        let mut out = BytesMut::new();
        put_message(&mut out, "ab12", 7, 3, 1_500_000);
        assert_eq!(&out[..], b"lg-ab12-7:3:1500000");
        assert_eq!(classify(&out, "ab12"), Pushed::Ours(b(7, 3, 1_500_000)));
        assert_eq!(classify(&out, "zz99"), Pushed::Foreign);
        for other in [&b"12345-1-1"[..], b"hello", b"lg-ab12-7:3", b"lg-ab12-7:x:1", b"lg-ab12:1:1", b"lg-a-1:2:3:4"] {
            assert_eq!(classify(other, "ab12"), Pushed::No, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn duplicates_and_late_arrivals() {
        let mut s = Seen::default();
        assert!(s.insert(1));
        assert!(s.insert(3));
        assert!(!s.insert(3));
        assert!(s.insert(2), "late but new");
        assert!(!s.insert(2));
        assert!(!s.insert(1));
        assert!(s.insert(100));
        assert!(!s.insert(30), "too old to tell: not counted twice");
        assert!(s.insert(99));
    }

    #[test]
    fn expected_against_received_per_client() {
        let ledger = Ledger::new("t");
        for send_us in [100, 200, 300, 400, 500, 900] {
            ledger.published(send_us);
        }
        // Client 1: ready at 150, closes at 1000 with a settle of 200, so its
        // window is [150, 800): 200..500 are expected (4), it got 3.
        let mut inbox = Inbox::new(200);
        inbox.receive(b(9, 1, 100), 120); // before its window
        inbox.ready(150);
        inbox.receive(b(9, 2, 200), 250);
        inbox.receive(b(9, 2, 200), 260); // duplicate
        inbox.receive(b(9, 4, 400), 450);
        inbox.receive(b(9, 5, 500), 990);
        inbox.receive(b(9, 6, 900), 995); // in the settle stretch
        inbox.close(1, 1000, &ledger);
        // Client 2 never got a right reply: no window.
        Inbox::new(200).close(2, 1000, &ledger);
        // Client 3 got everything in its windows [0, 350) and [360, 600).
        for (from, to, got) in [(0u64, 550u64, &[100u64, 200, 300][..]), (360, 800, &[400, 500])] {
            let mut inbox = Inbox::new(200);
            inbox.ready(from);
            for (i, s) in got.iter().enumerate() {
                inbox.receive(b(9, i as u64 + *s, *s), s + 10);
            }
            inbox.close(3, to, &ledger);
        }
        let check = ledger.check();
        assert_eq!(check.published, 6);
        assert_eq!(check.clients, 2);
        let c1 = &check.per_client[0];
        assert_eq!((c1.client, c1.expected, c1.received, c1.missing), (1, 4, 3, 1));
        let c3 = &check.per_client[1];
        assert_eq!((c3.client, c3.windows, c3.expected, c3.received, c3.missing), (3, 2, 5, 5, 0));
        assert_eq!((check.expected, check.received, check.missing, check.clients_missing), (9, 8, 1, 1));
    }
}
