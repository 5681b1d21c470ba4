//! What a connection knows about itself: the tokens `login` issued on it and
//! until when each is valid. A token this connection was given needs no
//! memcached round trip to be checked (it is bound to this connection's
//! `ip:port` by construction), so `mcset`, `mcget` and `brd` cost one round
//! trip instead of two. Any other token (issued on another connection, by
//! another instance, or written by the original servers) is checked in the
//! cache as before.
//!
//! The local record never outlives the cache entry: it is valid until the
//! moment `login` began storing the token plus the time to live, less
//! [`CLOCK_MARGIN`] (memcached counts expiry in whole seconds on a clock that
//! it advances once a second, so its entry may vanish up to two seconds
//! early). Once the
//! record lapses the cache is asked again, which by then no longer holds the
//! token. A token evicted from memcached before its time, or lost to a
//! memcached restart, stays valid on the connection that received it until
//! that same moment, never later.

use std::time::{Duration, Instant};

use playground_protocol::Token;

/// Tokens remembered per connection; a client that logs in again and again
/// keeps its latest ones local, older ones are checked in the cache.
const REMEMBERED: usize = 4;
/// How much earlier than the time to live a local record lapses: the most
/// memcached's coarse clock can expire an entry early.
pub const CLOCK_MARGIN: Duration = Duration::from_secs(2);

/// The tokens issued on one connection. Empty until its first `login`, when
/// it costs one empty `Vec`.
#[derive(Debug, Default)]
pub struct Session {
    issued: Vec<(Token, Instant)>,
}

impl Session {
    /// Remembers `token`, stored in the cache at `stored_at` (taken before
    /// the write was sent) for `ttl`.
    pub(super) fn issued(&mut self, token: Token, stored_at: Instant, ttl: Duration) {
        let whole_seconds = Duration::from_secs(ttl.as_secs().max(1));
        let Some(lifetime) = whole_seconds.checked_sub(CLOCK_MARGIN).filter(|d| !d.is_zero()) else {
            return;
        };
        if self.issued.len() == REMEMBERED {
            self.issued.remove(0);
        }
        self.issued.push((token, stored_at + lifetime));
    }

    /// Whether this connection was given `token` and its record has not
    /// lapsed at `now`.
    pub(super) fn vouches_for(&self, token: &Token, now: Instant) -> bool {
        self.issued.iter().any(|(t, until)| t == token && now < *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> Token {
        Token::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn a_record_lapses_before_the_cache_entry_could() {
        let mut s = Session::default();
        let t0 = Instant::now();
        s.issued(token("a"), t0, Duration::from_secs(10));
        assert!(s.vouches_for(&token("a"), t0));
        assert!(s.vouches_for(&token("a"), t0 + Duration::from_millis(7_999)));
        assert!(!s.vouches_for(&token("a"), t0 + Duration::from_secs(8)));
        assert!(!s.vouches_for(&token("b"), t0));
    }

    #[test]
    fn a_lifetime_within_the_margin_is_never_vouched_for_locally() {
        let mut s = Session::default();
        let t0 = Instant::now();
        s.issued(token("a"), t0, Duration::from_millis(2_500));
        s.issued(token("b"), t0, Duration::ZERO);
        assert!(!s.vouches_for(&token("a"), t0));
        assert!(!s.vouches_for(&token("b"), t0));
    }

    #[test]
    fn only_the_latest_tokens_are_remembered() {
        let mut s = Session::default();
        let t0 = Instant::now();
        let names = ["t0", "t1", "t2", "t3", "t4"];
        for n in names {
            s.issued(token(n), t0, Duration::from_secs(60));
        }
        assert!(!s.vouches_for(&token("t0"), t0));
        assert!(names[1..].iter().all(|n| s.vouches_for(&token(n), t0)));
    }
}
