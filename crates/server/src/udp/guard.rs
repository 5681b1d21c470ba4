//! What keeps the UDP server from being a weapon against a spoofed source:
//! every reply is checked before it is sent. A reply larger on the wire than
//! UDP_MAX_AMPLIFICATION times its request (IP and UDP headers counted on
//! both) is dropped, and with UDP_REPLY_RATE each source IP gets at most that
//! many replies per second after a burst of UDP_REPLY_BURST. Both drops are
//! counted. Datagrams that get no reply anyway spend nothing.
//!
//! The token buckets are governor's (GCRA, one atomic word per source IP in
//! a sharded map), a well-kept crate rather than a hand-written table; the
//! buckets of sources that have refilled are forgotten every
//! [`FORGET_EVERY`], so a flood from many spoofed addresses costs memory for
//! one interval at most.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use super::{Answer, Config};
use crate::metrics::UdpMetrics;

/// How often the buckets of sources that have refilled are dropped.
pub const FORGET_EVERY: Duration = Duration::from_secs(10);

/// IPv4 (20 bytes) and UDP (8) headers around every datagram.
const IPV4_OVERHEAD: usize = 28;
/// IPv6 (40 bytes) and UDP (8) headers around every datagram.
const IPV6_OVERHEAD: usize = 48;

/// The reply checks of one server, shared by its sockets.
pub struct Guard {
    max_amplification: usize,
    per_source: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Guard {
    /// The checks `config` asks for.
    pub fn new(config: &Config) -> Self {
        let per_source = NonZeroU32::new(config.reply_rate).map(|rate| {
            let burst = NonZeroU32::new(config.reply_burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::dashmap(Quota::per_second(rate).allow_burst(burst))
        });
        Guard { max_amplification: config.max_amplification as usize, per_source }
    }

    /// Whether `answer` to a `request_len`-byte datagram from `from` may be
    /// sent; when not, the reason is counted in `metrics`.
    pub fn allows(&self, answer: &Answer, request_len: usize, from: SocketAddr, metrics: &UdpMetrics) -> bool {
        let (reply, ending) = answer;
        if !within_bound(reply.encoded_len(*ending), request_len, from.ip(), self.max_amplification) {
            metrics.dropped_amplification.increment(1);
            return false;
        }
        if let Some(limiter) = &self.per_source
            && limiter.check_key(&from.ip().to_canonical()).is_err()
        {
            metrics.dropped_rate_limited.increment(1);
            return false;
        }
        true
    }

    /// Forgets the buckets of sources that have refilled.
    pub fn forget_idle_sources(&self) {
        if let Some(limiter) = &self.per_source {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Whether there are buckets to forget.
    pub fn limits_sources(&self) -> bool {
        self.per_source.is_some()
    }
}

/// Forgets the buckets of quiet sources every [`FORGET_EVERY`] until
/// `reconnect` (when the server stops receiving).
pub async fn forget_idle_sources(guard: Arc<Guard>, reconnect: CancellationToken) {
    if !guard.limits_sources() {
        return;
    }
    let mut every = tokio::time::interval(FORGET_EVERY);
    loop {
        tokio::select! {
            _ = reconnect.cancelled() => return,
            _ = every.tick() => guard.forget_idle_sources(),
        }
    }
}

/// Whether a `reply`-byte payload answering a `request`-byte one stays
/// within `factor` on the wire, where both carry the headers of `ip`'s family
/// (an IPv4 client on an IPv6 socket is IPv4 on the wire).
fn within_bound(reply: usize, request: usize, ip: IpAddr, factor: usize) -> bool {
    let overhead = if ip.to_canonical().is_ipv4() { IPV4_OVERHEAD } else { IPV6_OVERHEAD };
    reply + overhead <= factor * (request + overhead)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use playground_protocol::Reply;

    use super::*;

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    #[test]
    fn headers_count_on_both_sides() {
        // 44 bytes of mcget, 256 of value: 284 / 72 on the wire over IPv4.
        assert!(within_bound(256, 44, V4, 4));
        assert!(!within_bound(256, 44, V4, 3));
        // Over IPv6 the same pair is 304 / 92.
        assert!(within_bound(256, 44, V6, 4));
        assert!(!within_bound(256, 44, V6, 3));
        // `msg` (3 bytes) and its 44-byte error: 72 / 31.
        assert!(within_bound(44, 3, V4, 3));
        assert!(!within_bound(44, 3, V4, 2));
        // An IPv4 client seen on an IPv6 socket.
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert!(!within_bound(44, 3, mapped, 2));
        assert!(within_bound(0, 0, V4, 1));
    }

    #[test]
    fn the_rate_limit_is_per_source_ip() {
        let config = |rate| Config {
            reply_rate: rate,
            reply_burst: 2,
            ..Config::new(V4, 0, 512, &crate::udp::tests::options(1, 1))
        };
        let metrics = UdpMetrics::new();
        let answer = (Reply::Success, playground_protocol::Ending::Bare);
        let guard = Guard::new(&config(1));
        let a = SocketAddr::new(V4, 1);
        let same_ip = SocketAddr::new(V4, 2);
        let other = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 1);
        assert!(guard.allows(&answer, 8, a, &metrics));
        assert!(guard.allows(&answer, 8, same_ip, &metrics));
        assert!(!guard.allows(&answer, 8, a, &metrics));
        assert!(guard.allows(&answer, 8, other, &metrics));
        let unlimited = Guard::new(&config(0));
        assert!((0..1000).all(|_| unlimited.allows(&answer, 8, a, &metrics)));
        assert!(!unlimited.limits_sources());
    }
}
