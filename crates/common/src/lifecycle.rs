//! The shutdown sequence of every server, in explicit phases:
//!
//! 1. running: `/readyz` is 200;
//! 2. draining (first SIGTERM/SIGINT): `/readyz` turns 503 at once so load
//!    balancers stop sending new clients, but everything keeps being served
//!    for SIGTERM_TIMEOUT (routes take time to update);
//! 3. reconnect: TCP clients are sent `reconnect` and given RECONNECT_GRACE
//!    to leave; UDP stops;
//! 4. close: whatever is left is closed, logs are flushed, exit 0.
//!
//! A second signal during draining skips the rest of the wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics::gauge;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// Shared state of the phases, cloned into every task that cares.
#[derive(Clone, Default)]
pub struct Lifecycle {
    ready: Arc<AtomicBool>,
    /// Cancelled when clients must be told to reconnect (end of draining).
    pub reconnect: CancellationToken,
    /// Cancelled when remaining connections must be closed.
    pub close: CancellationToken,
    /// Every connection and worker task, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

impl Lifecycle {
    /// A lifecycle in the not-yet-ready state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the instance takes new traffic.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Sets readiness (and the `playground_ready` gauge).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
        gauge!("playground_ready").set(if ready { 1.0 } else { 0.0 });
    }

    /// Runs phases 2–4 once a signal arrives; returns when it is safe to exit.
    pub async fn run_shutdown(&self, sigterm_timeout: Duration, reconnect_grace: Duration) {
        let signal = wait_for_signal().await;
        self.set_ready(false);
        info!(signal, seconds = sigterm_timeout.as_secs_f64(), "Shutting down: not ready, still serving");
        tokio::select! {
            _ = tokio::time::sleep(sigterm_timeout) => {}
            s = wait_for_signal() => info!(signal = s, "Second signal: skipping the rest of the wait"),
        }
        info!("Telling clients to reconnect");
        self.reconnect.cancel();
        self.tasks.close();
        if tokio::time::timeout(reconnect_grace, self.tasks.wait()).await.is_err() {
            info!(remaining = self.tasks.len(), "Closing the connections that are left");
        }
        self.close.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
        info!("Shutdown complete");
    }
}

/// Waits for SIGTERM or SIGINT and returns its name.
pub async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}
