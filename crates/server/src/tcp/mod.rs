//! The TCP server: a [`listener`] accepts connections and spawns one
//! [`handler`] task per client, which (after a TLS handshake when [`tls`] is
//! on) reads commands through the [`codec`] (line framing, or the original's
//! packet framing), runs them through the shared executor and [`write`]s the
//! replies and the broadcasts pushed to it, within the connection's rate
//! [`limits`].

mod answer;
pub mod codec;
mod handler;
mod limits;
mod listener;
pub mod tls;
mod waits;
mod write;

use std::sync::Arc;
use std::time::Duration;

pub use codec::FramingMode;
pub use listener::{bind as listener_bind, serve};
use playground_common::lifecycle::Lifecycle;
pub use tls::Tls;

use crate::config::TcpOptions;
use crate::executor::Executor;
use crate::metrics::{CommandMetrics, TcpMetrics};

/// Everything a connection handler needs, shared by all of them.
pub struct Shared {
    pub executor: Arc<Executor>,
    pub lifecycle: Lifecycle,
    pub commands: CommandMetrics,
    pub metrics: TcpMetrics,
    pub max_line: usize,
    pub framing: FramingMode,
    pub framing_grace: Duration,
    pub idle_timeout: Duration,
    pub line_timeout: Duration,
    pub write_timeout: Duration,
    /// TLS on the listener, when TLS_CERT is set.
    pub tls: Option<Tls>,
    pub quotas: limits::Quotas,
}

impl Shared {
    /// Shared state for a server with `opts` (and `tls`, made from them).
    pub fn new(executor: Arc<Executor>, lifecycle: Lifecycle, opts: &TcpOptions, tls: Option<Tls>) -> Arc<Self> {
        Arc::new(Shared {
            executor,
            lifecycle,
            commands: CommandMetrics::new("tcp"),
            metrics: TcpMetrics::new(),
            max_line: opts.buff_size as usize,
            framing: opts.tcp_framing,
            framing_grace: opts.framing_grace,
            idle_timeout: opts.idle_timeout,
            line_timeout: opts.line_timeout,
            write_timeout: opts.write_timeout,
            tls,
            quotas: limits::Quotas::new(opts),
        })
    }
}
