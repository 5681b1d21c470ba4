//! The one command executor every transport shares: it parses a line, runs
//! the command against the [`Cache`] and [`Bus`] traits, records metrics and
//! returns the [`Reply`]. Each command lives in its own module.

mod brd;
mod login;
mod mcget;
mod mcset;
mod msg;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::Counter;
use playground_protocol::{Command, CommandKind, ErrorReply, Reply, Token, parse};

use crate::bus::Bus;
use crate::cache::{Cache, CacheKey};
use crate::metrics::{CommandMetrics, TokenCheckMetrics};
pub use session::Session;

/// How long a login token lives by default (the original's 20 minutes).
pub const TOKEN_TTL: Duration = Duration::from_secs(20 * 60);
/// How long client data lives (the original's 360 seconds).
pub const CLIENT_DATA_TTL: Duration = Duration::from_secs(360);

/// The transport a command arrived on; it decides the token rule and which
/// commands are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A connection: tokens are bound to its remote `ip:port`.
    Tcp,
    /// Datagrams: a token must exist; its IP must match only if configured.
    Udp { check_ip: bool },
}

/// Who sent a command.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The remote address.
    pub addr: SocketAddr,
    /// The transport it came over.
    pub transport: Transport,
}

/// Runs commands for every transport.
pub struct Executor {
    cache: Arc<dyn Cache>,
    bus: Arc<dyn Bus>,
    published: Counter,
    token_ttl: Duration,
    token_checks: TokenCheckMetrics,
}

impl Executor {
    /// An executor over the given backends, issuing tokens for [`TOKEN_TTL`].
    pub fn new(cache: Arc<dyn Cache>, bus: Arc<dyn Bus>) -> Self {
        let published = metrics::counter!("playground_broadcasts_published_total");
        Executor { cache, bus, published, token_ttl: TOKEN_TTL, token_checks: TokenCheckMetrics::new() }
    }

    /// The same, issuing tokens that live `ttl`.
    pub fn with_token_ttl(self, ttl: Duration) -> Self {
        Executor { token_ttl: ttl, ..self }
    }

    /// The bus, for subscribing connections to broadcasts.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.cache
    }

    /// Parses and runs one line from `peer`, recording it in `metrics`.
    /// `session` is the connection's own record of the tokens it was issued
    /// (TCP); without one (UDP) every token is checked in the cache.
    pub async fn execute(
        &self,
        line: Bytes,
        peer: &Peer,
        session: Option<&mut Session>,
        metrics: &CommandMetrics,
    ) -> Reply {
        let started = Instant::now();
        let kind = CommandKind::of_line(&line);
        let reply = match kind {
            // The transport rule, decided once, by kind: over UDP a TCP-only
            // command is refused even when it is malformed, since fixing its
            // fields would not help.
            Some(k) if k.tcp_only() && matches!(peer.transport, Transport::Udp { .. }) => {
                ErrorReply::TcpOnly(k.word()).into()
            }
            _ => match parse(line) {
                Ok(command) => self.run(command, peer, session).await,
                Err(e) => e.into(),
            },
        };
        metrics.record(kind, !reply.is_error(), started.elapsed());
        reply
    }

    /// The commands that reach a backend (a memcached round trip, a Kafka
    /// publication) run boxed: held inline, their futures would be part of
    /// every connection's task, also while it idles (measured: 250-440 more
    /// bytes of RSS per idle connection in a release build). The allocation
    /// is small beside the round trip; `msg` needs none.
    async fn run(&self, command: Command, peer: &Peer, session: Option<&mut Session>) -> Reply {
        let vouched = |token: &Token| session.as_ref().is_some_and(|s| s.vouches_for(token, Instant::now()));
        match command {
            Command::Login => Box::pin(login::run(self, peer, session)).await,
            Command::Msg { content } => msg::run(content),
            Command::McSet { token, key, value } => {
                let known = vouched(&token);
                Box::pin(mcset::run(self, peer, &token, known, &key, value)).await
            }
            Command::McGet { token, key } => {
                let known = vouched(&token);
                Box::pin(mcget::run(self, peer, &token, known, &key)).await
            }
            Command::Brd { token, message } => {
                let known = vouched(&token);
                Box::pin(brd::run(self, peer, &token, known, message)).await
            }
        }
    }

    /// Whether `token` is valid for `peer` under its transport's rule:
    /// at once when the connection issued it itself (`known`), otherwise by
    /// asking the cache. `Err` means the cache could not be asked.
    async fn token_valid(&self, token: &Token, known: bool, peer: &Peer) -> Result<bool, ErrorReply> {
        if known {
            self.token_checks.connection.increment(1);
            return Ok(true);
        }
        self.token_checks.cache.increment(1);
        let owner = self.cache.get(&CacheKey::token(token)).await.map_err(|_| ErrorReply::CacheUnavailable)?;
        let Some(owner) = owner else { return Ok(false) };
        Ok(match peer.transport {
            Transport::Tcp => owner == peer.addr.to_string().as_bytes(),
            Transport::Udp { check_ip: false } => true,
            Transport::Udp { check_ip: true } => std::str::from_utf8(&owner)
                .ok()
                .and_then(|s| s.parse::<SocketAddr>().ok())
                .is_some_and(|a| a.ip() == peer.addr.ip()),
        })
    }
}

#[cfg(test)]
mod tests;
