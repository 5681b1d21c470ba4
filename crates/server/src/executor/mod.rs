//! The one command executor every transport shares: it parses a line, runs
//! the command against the [`Cache`] and [`Bus`] traits, records metrics and
//! returns the [`Reply`]. Each command lives in its own module.

mod brd;
mod login;
mod mcget;
mod mcset;
mod msg;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::Counter;
use playground_protocol::{Command, CommandKind, ErrorReply, Reply, Token, parse};

use crate::bus::Bus;
use crate::cache::{Cache, CacheKey};
use crate::metrics::CommandMetrics;

/// How long a login token lives (the original's 20 minutes).
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
}

impl Executor {
    /// An executor over the given backends.
    pub fn new(cache: Arc<dyn Cache>, bus: Arc<dyn Bus>) -> Self {
        let published = metrics::counter!("playground_broadcasts_published_total");
        Executor { cache, bus, published }
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
    pub async fn execute(&self, line: Bytes, peer: &Peer, metrics: &CommandMetrics) -> Reply {
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
                Ok(command) => self.run(command, peer).await,
                Err(e) => e.into(),
            },
        };
        metrics.record(kind, !reply.is_error(), started.elapsed());
        reply
    }

    async fn run(&self, command: Command, peer: &Peer) -> Reply {
        match command {
            Command::Login => login::run(self, peer).await,
            Command::Msg { content } => msg::run(content),
            Command::McSet { token, key, value } => mcset::run(self, peer, &token, &key, value).await,
            Command::McGet { token, key } => mcget::run(self, peer, &token, &key).await,
            Command::Brd { token, message } => brd::run(self, peer, &token, message).await,
        }
    }

    /// Whether `token` is valid for `peer` under its transport's rule.
    /// `Err` means the cache could not be asked.
    async fn token_valid(&self, token: &Token, peer: &Peer) -> Result<bool, ErrorReply> {
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
