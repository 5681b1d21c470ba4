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
use playground_protocol::{Command, ErrorReply, Reply, Token, parse};

use crate::bus::Bus;
use crate::cache::{Cache, CacheKey};
use crate::metrics::{COMMANDS, CommandMetrics};

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
        let label = command_label(&line);
        let tcp_only = matches!(peer.transport, Transport::Udp { .. }) && matches!(COMMANDS[label], "login" | "brd");
        let reply = match parse(line) {
            // Over UDP, say a TCP-only command is TCP-only even when it is
            // malformed: fixing its fields would not help.
            _ if tcp_only => ErrorReply::TcpOnly(COMMANDS[label]).into(),
            Ok(command) => self.run(command, peer).await,
            Err(e) => e.into(),
        };
        metrics.record(label, !reply.is_error(), started.elapsed());
        reply
    }

    async fn run(&self, command: Command, peer: &Peer) -> Reply {
        let tcp_only = |name| Reply::Error(ErrorReply::TcpOnly(name));
        match (command, peer.transport) {
            (Command::Login, Transport::Udp { .. }) => tcp_only("login"),
            (Command::Brd { .. }, Transport::Udp { .. }) => tcp_only("brd"),
            (Command::Login, Transport::Tcp) => login::run(self, peer).await,
            (Command::Msg { content }, _) => msg::run(content),
            (Command::McSet { token, key, value }, _) => mcset::run(self, peer, &token, &key, value).await,
            (Command::McGet { token, key }, _) => mcget::run(self, peer, &token, &key).await,
            (Command::Brd { token, message }, Transport::Tcp) => brd::run(self, peer, &token, message).await,
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

/// The index into [`COMMANDS`] of the line's command word.
fn command_label(line: &[u8]) -> usize {
    let word = line.split(|&b| b == b':').next().unwrap_or_default();
    let word = word.strip_suffix(b"\n").unwrap_or(word);
    let word = word.strip_suffix(b"\r").unwrap_or(word);
    COMMANDS.iter().position(|c| c.as_bytes() == word).unwrap_or(COMMANDS.len() - 1)
}

#[cfg(test)]
mod tests;
