//! What one client says and which replies are right, independent of the
//! transport. A [`Script`] writes its next request and returns what it
//! [`Expect`]s; the transport's driver sends it, matches the reply to it and
//! asks the script for a [`Verdict`]. A TCP or UDP driver thus shares the
//! scenarios; only framing, timing and pushed lines are the driver's.
//!
//! TCP answers in order, so its driver pairs replies with requests by
//! position. Datagrams can be lost or reordered, so the UDP driver pairs them
//! by content ([`Expect::answered_by`]: echoes carry the client and sequence
//! number) and tells the script when a request may never be answered
//! ([`Script::unanswered`]).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use playground_protocol::{Command, CommandKind, Ending, Key, Reply, Token};

use super::delivery::{self, Ledger};
use super::expect::{self, Expect, Verdict};

/// What a client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `msg:` and its echo.
    Echo,
    /// `login`, then `mcset`/`mcget` of its own keys.
    Cache,
    /// `login`, then `brd` (and receives like everyone).
    Broadcaster,
    /// `login`, then only receives broadcasts.
    Listener,
    /// Nothing at all: holds its connection.
    Idle,
}

/// Cache data are valid 360 s on the server; older values are written again
/// instead of read, so expiry is never mistaken for loss.
const VALUE_FRESH_US: u64 = 300_000_000;

/// A value this client stored, and when.
#[derive(Debug, Clone)]
struct Stored {
    value: Bytes,
    at_us: u64,
}

/// One client's conversation, kept across reconnections.
pub struct Script {
    role: Role,
    id: u32,
    ledger: Arc<Ledger>,
    payload: Arc<str>,
    seq: u64,
    token: Option<Token>,
    rng: fastrand::Rng,
    keys: Vec<Option<Stored>>,
    key_count: u32,
    value_size: usize,
}

/// Settings shared by every script of a run.
#[derive(Debug, Clone)]
pub struct ScriptConfig {
    pub payload: Arc<str>,
    pub keys: u32,
    pub value_size: usize,
    pub seed: u64,
}

impl Script {
    /// Client `id` playing `role`.
    pub fn new(role: Role, id: u32, config: &ScriptConfig, ledger: Arc<Ledger>) -> Script {
        let rng = fastrand::Rng::with_seed(config.seed ^ u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Script {
            role,
            id,
            ledger,
            payload: config.payload.clone(),
            seq: 0,
            token: None,
            rng,
            keys: Vec::new(),
            key_count: config.keys,
            value_size: config.value_size,
        }
    }

    /// A new connection: tokens are bound to the connection, so log in again.
    pub fn on_connect(&mut self) {
        self.token = None;
    }

    /// Whether the client has something to send.
    pub fn wants_to_send(&self) -> bool {
        match self.role {
            Role::Idle => false,
            Role::Listener => self.token.is_none(),
            Role::Echo | Role::Cache | Role::Broadcaster => true,
        }
    }

    /// Whether the next request is `login`: the client needs a token first.
    pub fn needs_login(&self) -> bool {
        self.role != Role::Echo && self.token.is_none()
    }

    /// Writes the next request (one or more commands, each followed by
    /// `ending`) to `out` and returns its expectation; `None` if there is
    /// nothing to send now.
    pub fn next(&mut self, now_us: u64, out: &mut BytesMut, ending: Ending) -> Option<Expect> {
        if !self.wants_to_send() {
            return None;
        }
        if self.needs_login() {
            Command::Login.encode(out, ending);
            return Some(Expect::Token);
        }
        self.seq += 1;
        Some(match (self.role, self.token.clone()) {
            (Role::Cache, Some(token)) => self.cache_request(token, now_us, out, ending)?,
            (Role::Broadcaster, Some(token)) => self.broadcast_request(token, now_us, out, ending),
            _ => {
                let echo = Bytes::from(format!("{}-{}-{}", self.payload, self.id, self.seq));
                Command::Msg { content: echo.clone() }.encode(out, ending);
                Expect::Echo(echo)
            }
        })
    }

    fn cache_request(&mut self, token: Token, now_us: u64, out: &mut BytesMut, ending: Ending) -> Option<Expect> {
        if self.keys.is_empty() {
            self.keys = vec![None; self.key_count as usize];
        }
        let fresh = |s: &Option<Stored>| s.as_ref().is_some_and(|s| now_us.saturating_sub(s.at_us) < VALUE_FRESH_US);
        let read = self.keys.iter().any(fresh) && self.rng.bool();
        if read {
            // A random fresh key: probe from a random start.
            let start = self.rng.usize(..self.keys.len());
            let key = (0..self.keys.len()).map(|i| (start + i) % self.keys.len()).find(|&k| fresh(&self.keys[k]));
            if let Some(key) = key {
                let value = self.keys[key].as_ref().map(|s| s.value.clone()).unwrap_or_default();
                Command::McGet { token, key: self.key(key as u32)? }.encode(out, ending);
                return Some(Expect::Value { key: key as u32, value });
            }
        }
        let key = self.rng.u32(..self.key_count);
        let value: Bytes = (0..self.value_size).map(|_| self.rng.alphanumeric() as u8).collect::<Vec<u8>>().into();
        Command::McSet { token, key: self.key(key)?, value: value.clone() }.encode(out, ending);
        // The server handles a connection's commands in order, so a read sent
        // after this write sees this value if the write succeeds.
        self.keys[key as usize] = Some(Stored { value, at_us: now_us });
        Some(Expect::Stored { key })
    }

    /// `brd` and the `msg:` probe that tells when it is done (see
    /// [`Expect::Published`]).
    fn broadcast_request(&mut self, token: Token, now_us: u64, out: &mut BytesMut, ending: Ending) -> Expect {
        let mut message = BytesMut::new();
        delivery::put_message(&mut message, self.ledger.tag(), self.id, self.seq, now_us);
        Command::Brd { token, message: message.freeze() }.encode(out, ending);
        let ack = Bytes::from(format!("{}-ack-{}-{}", self.ledger.tag(), self.id, self.seq));
        Command::Msg { content: ack.clone() }.encode(out, ending);
        Expect::Published { send_us: now_us, ack, failed: false }
    }

    /// Key number `key` of this client. Its name is made of a run tag, numbers
    /// and `-`, always a valid key: were it not, the request is skipped
    /// rather than the run stopped.
    fn key(&self, key: u32) -> Option<Key> {
        let key = Key::new(Bytes::from(format!("lg-{}-{}-{key}", self.ledger.tag(), self.id)));
        debug_assert!(key.is_some(), "invalid key name for client {}", self.id);
        key
    }

    /// Judges one reply line to `expect`.
    pub fn check(&mut self, expect: &mut Expect, line: &[u8]) -> Verdict {
        if *expect == Expect::Token {
            // The one right reply not known in advance: keep it.
            if let Some(Reply::Token(token)) = Reply::parse(CommandKind::Login, line) {
                self.token = Some(token);
                return Verdict::Right;
            }
        } else if expect.answered_by(line) {
            return match expect {
                Expect::Published { failed: true, .. } => Verdict::PublishFailed,
                Expect::Published { send_us, .. } => {
                    self.ledger.published(*send_us);
                    Verdict::Right
                }
                _ => Verdict::Right,
            };
        }
        // A wrong reply: the server may say why.
        let error = match Reply::parse(expect.kind(), line) {
            Some(Reply::Error(e)) => Some(e),
            _ => None,
        };
        if error.as_ref().is_some_and(expect::token_lost) {
            // Tokens die with their connection or in the cache: log in again.
            self.token = None;
        }
        match expect {
            Expect::Stored { key } | Expect::Value { key, .. } => {
                self.forget(*key);
                Verdict::Wrong
            }
            Expect::Published { failed, .. } if error.is_some() && !*failed => {
                *failed = true;
                Verdict::More
            }
            _ => Verdict::Wrong,
        }
    }

    /// A request whose reply never came: its connection ended first (after
    /// `reconnect` the server reads no more commands; a lost connection may
    /// have been cut either side of one), or, where requests can be lost, it
    /// timed out. Whether the server carried it out is unknown, so the key of
    /// an unanswered write holds an unknown value: the next use of that key
    /// writes it again instead of reading it.
    pub fn unanswered(&mut self, expect: &Expect) {
        if let Expect::Stored { key } = expect {
            self.forget(*key);
        }
    }

    /// The longest right reply this client can get: echoes of the payload
    /// with two numbers, values, tokens.
    pub fn longest_reply(&self) -> usize {
        (self.payload.len() + 2 * 20 + 2).max(self.value_size).max(playground_protocol::TOKEN_LEN)
    }

    /// After a failed write or a wrong read the server's value is unknown.
    fn forget(&mut self, key: u32) {
        if let Some(slot) = self.keys.get_mut(key as usize) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"0f8fad5b-d9cb-469f-a165-70867728950e";

    fn script(role: Role) -> Script {
        let config = ScriptConfig { payload: "12345".into(), keys: 4, value_size: 8, seed: 7 };
        Script::new(role, 3, &config, Arc::new(Ledger::new("t1")))
    }

    fn step(s: &mut Script, now_us: u64) -> (String, Expect) {
        let mut out = BytesMut::new();
        let e = s.next(now_us, &mut out, Ending::Newline).expect("a request");
        (String::from_utf8(out.to_vec()).unwrap(), e)
    }

    #[test]
    fn echo_numbers_its_messages() {
        let mut s = script(Role::Echo);
        let (line, mut e) = step(&mut s, 0);
        assert_eq!(line, "msg:12345-3-1\n");
        assert_eq!(s.check(&mut e, b"12345-3-1"), Verdict::Right);
        let (line, mut e) = step(&mut s, 0);
        assert_eq!(line, "msg:12345-3-2\n");
        assert_eq!(s.check(&mut e, b"12345-3-1"), Verdict::Wrong);
    }

    #[test]
    fn cache_logs_in_writes_then_reads_back() {
        let mut s = script(Role::Cache);
        let (line, mut e) = step(&mut s, 0);
        assert_eq!((line.as_str(), &e), ("login\n", &Expect::Token));
        assert_eq!(s.check(&mut e, TOKEN), Verdict::Right);
        let (line, mut e) = step(&mut s, 1);
        assert!(line.starts_with("mcset:0f8fad5b-d9cb-469f-a165-70867728950e:lg-t1-3-"), "{line}");
        assert_eq!(s.check(&mut e, b"success"), Verdict::Right);
        let mut reads = 0;
        for now in 2..50 {
            let (line, mut e) = step(&mut s, now);
            match &e {
                Expect::Value { value, .. } => {
                    reads += 1;
                    assert!(line.starts_with("mcget:"), "{line}");
                    let value = value.clone();
                    assert_eq!(s.check(&mut e, &value), Verdict::Right);
                }
                Expect::Stored { .. } => assert_eq!(s.check(&mut e, b"success"), Verdict::Right),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(reads > 10, "{reads}");
        // A lost token means logging in again.
        let (_, mut e) = step(&mut s, 60);
        assert_eq!(s.check(&mut e, b"error: invalid token"), Verdict::Wrong);
        assert_eq!(step(&mut s, 61).1, Expect::Token);
    }

    #[test]
    fn replies_are_recognised_by_content() {
        let mut s = script(Role::Echo);
        let (_, first) = step(&mut s, 0);
        let (_, second) = step(&mut s, 0);
        assert!(first.answered_by(b"12345-3-1") && !first.answered_by(b"12345-3-2"));
        assert!(second.answered_by(b"12345-3-2"));
        assert!(Expect::Token.answered_by(TOKEN) && !Expect::Token.answered_by(b"error: invalid token"));
        assert!(s.longest_reply() >= "12345-4294967295-18446744073709551615".len());
    }

    #[test]
    fn a_write_that_timed_out_is_not_read_back() {
        let mut s = script(Role::Cache);
        let (_, mut e) = step(&mut s, 0);
        s.check(&mut e, TOKEN);
        let (_, written) = step(&mut s, 1);
        assert!(matches!(written, Expect::Stored { .. }), "{written:?}");
        s.unanswered(&written);
        // With its only key forgotten, the client writes again instead of reading.
        for now in 2..10 {
            let (_, e) = step(&mut s, now);
            assert!(matches!(e, Expect::Stored { .. }), "{e:?}");
            s.unanswered(&e);
        }
    }

    #[test]
    fn a_write_left_unanswered_is_not_read_back() {
        // One key, so that every read would be of the write left unanswered.
        let config = ScriptConfig { payload: "12345".into(), keys: 1, value_size: 8, seed: 7 };
        let mut s = Script::new(Role::Cache, 3, &config, Arc::new(Ledger::new("t1")));
        let (_, mut e) = step(&mut s, 0);
        s.check(&mut e, TOKEN);
        for now in 1..40 {
            let (_, e) = step(&mut s, now);
            // The previous write's connection ended before its reply: the
            // server may never have stored that value.
            assert!(matches!(e, Expect::Stored { key: 0 }), "read a value the server may not have: {e:?}");
            s.unanswered(&e);
            s.on_connect();
            let (_, mut e) = step(&mut s, now);
            s.check(&mut e, TOKEN);
        }
    }

    #[test]
    fn stale_values_are_written_again_not_read() {
        let mut s = script(Role::Cache);
        let (_, mut e) = step(&mut s, 0);
        s.check(&mut e, TOKEN);
        for now in 0..20 {
            let (_, mut e) = step(&mut s, now);
            let reply: Vec<u8> = match &e {
                Expect::Value { value, .. } => value.to_vec(),
                _ => b"success".to_vec(),
            };
            s.check(&mut e, &reply);
        }
        let (_, e) = step(&mut s, VALUE_FRESH_US + 100);
        assert!(matches!(e, Expect::Stored { .. }), "{e:?}");
    }

    #[test]
    fn broadcaster_publishes_and_learns_of_failures() {
        let mut s = script(Role::Broadcaster);
        let (_, mut e) = step(&mut s, 0);
        s.check(&mut e, TOKEN);
        let (line, mut e) = step(&mut s, 42);
        assert_eq!(line, format!("brd:{}:lg-t1-3:1:42\nmsg:t1-ack-3-1\n", std::str::from_utf8(TOKEN).unwrap()));
        assert_eq!(s.check(&mut e, b"t1-ack-3-1"), Verdict::Right);
        let (_, mut e) = step(&mut s, 50);
        assert_eq!(s.check(&mut e, b"error: broadcast unavailable"), Verdict::More);
        assert_eq!(s.check(&mut e, b"t1-ack-3-2"), Verdict::PublishFailed);
        assert_eq!(s.ledger.publish_count(), 1);
    }

    #[test]
    fn listeners_log_in_once_and_idle_clients_say_nothing() {
        let mut l = script(Role::Listener);
        let (_, mut e) = step(&mut l, 0);
        l.check(&mut e, TOKEN);
        assert!(!l.wants_to_send());
        l.on_connect();
        assert!(l.wants_to_send());
        assert!(script(Role::Idle).next(0, &mut BytesMut::new(), Ending::Newline).is_none());
    }
}
