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

/// A parsed command that needs a backend (a memcached round trip or a Kafka
/// publication): [`Executor::execute_now`] hands it back, and
/// [`Executor::execute_backend`] runs it. Handed around boxed: it is as
/// large as its command's fields, and the allocation is small beside the
/// round trip that follows.
#[derive(Debug)]
pub struct Backend {
    command: Command,
    kind: Option<CommandKind>,
    started: Instant,
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
        let kind = CommandKind::of_line(&line);
        match self.execute_now(line, kind, peer, metrics, Instant::now()) {
            Ok(reply) => reply,
            Err(backend) => self.execute_backend(backend, peer, session, metrics).await,
        }
    }

    /// [`Executor::execute`] in two steps, for a caller that answers most
    /// commands without awaiting anything: parses `line` and runs it at
    /// once when it needs no backend (`msg`, and every refusal), recording
    /// it in `metrics`; a command that needs one comes back, to be run by
    /// [`Executor::execute_backend`]. A connection's task that awaits
    /// nothing for `msg` writes no future into its state, which at 1,000
    /// connections is a cache miss per line of it (docs/performance.md,
    /// "No future on the echo path"). Its latency is measured from
    /// `started`: a connection passes the time it read the line, which it
    /// has taken anyway (one clock read fewer per command). `kind` is
    /// [`CommandKind::of_line`] of `line`, which a caller that applies rate
    /// limits has found already.
    pub fn execute_now(
        &self,
        line: Bytes,
        kind: Option<CommandKind>,
        peer: &Peer,
        metrics: &CommandMetrics,
        started: Instant,
    ) -> Result<Reply, Box<Backend>> {
        let reply = match kind {
            // The transport rule, decided once, by kind: over UDP a TCP-only
            // command is refused even when it is malformed, since fixing its
            // fields would not help.
            Some(k) if k.tcp_only() && matches!(peer.transport, Transport::Udp { .. }) => {
                ErrorReply::TcpOnly(k.word()).into()
            }
            _ => match parse(line) {
                Ok(Command::Msg { content }) => msg::run(content),
                Ok(command) => return Err(Box::new(Backend { command, kind, started })),
                Err(e) => e.into(),
            },
        };
        metrics.record(kind, !reply.is_error(), started.elapsed());
        Ok(reply)
    }

    /// Runs a command that [`Executor::execute_now`] handed back, and
    /// records it in `metrics` from when it started.
    pub async fn execute_backend(
        &self,
        backend: Box<Backend>,
        peer: &Peer,
        session: Option<&mut Session>,
        metrics: &CommandMetrics,
    ) -> Reply {
        let Backend { command, kind, started } = *backend;
        let reply = self.run(command, peer, session).await;
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
