//! The accept loop: enforces MAX_CONNECTIONS, spawns one handler task per
//! connection into the lifecycle's task tracker, and stops accepting when
//! clients are told to reconnect.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use playground_protocol::{ErrorReply, Reply};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use super::Shared;
use super::handler::handle;

/// Binds `addr` with a listen backlog of `backlog` (failing start-up when the
/// port is taken). A deep backlog matters when thousands of clients connect
/// at once, e.g. after another instance told them to reconnect. With
/// `share_port`, several listeners (one per runtime) bind the same port
/// (SO_REUSEPORT) and the kernel spreads connections over them. Must run
/// inside the runtime that will accept on it.
pub fn bind(addr: SocketAddr, backlog: u32, share_port: bool) -> anyhow::Result<TcpListener> {
    let fail = |e: std::io::Error| anyhow::anyhow!("cannot listen on TCP port {}: {e}", addr.port());
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_os = "macos"))]
    if share_port {
        socket.set_reuseport(true).map_err(fail)?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_os = "macos")))]
    if share_port {
        anyhow::bail!("RUNTIME=per-core needs SO_REUSEPORT, which this platform lacks");
    }
    socket.bind(addr).map_err(fail)?;
    socket.listen(backlog).map_err(fail)
}

/// Accepts connections until the lifecycle's reconnect phase. `permits`
/// (MAX_CONNECTIONS) is shared by every listener of the process.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, permits: Arc<Semaphore>) {
    let stop = shared.lifecycle.reconnect.clone();
    let mut backoff = Duration::from_millis(1);
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    info!(%addr, free_connection_slots = permits.available_permits(), "Listening");
    let mut refusals = RefusalLog::default();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, addr) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(1);
                a
            }
            Err(e) => {
                // Usually out of file descriptors: wait a little for some to
                // be released instead of spinning.
                error!(error = %e, "accept failed; retrying in {:?}", backoff);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shared.metrics.rejected_full.increment(1);
            refusals.refused(addr);
            tokio::spawn(refuse(stream, shared.write_timeout));
            continue;
        };
        shared.lifecycle.tasks.spawn(handle(stream, addr, shared.clone(), permit));
    }
    info!("Stopped accepting connections");
}

/// How often at most a refusal is logged.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// Refusals are logged at most once per [`REFUSAL_LOG_EVERY`], with how many
/// there were since the last line: a flood of refused clients must not become
/// a flood of log lines shipped to Kafka. The metric counts every one.
#[derive(Default)]
struct RefusalLog {
    last: Option<std::time::Instant>,
    since: u64,
}

impl RefusalLog {
    fn refused(&mut self, addr: SocketAddr) {
        self.since += 1;
        let now = std::time::Instant::now();
        if self.last.is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY) {
            warn!(%addr, refused = self.since, "Refusing connections: server full");
            self.last = Some(now);
            self.since = 0;
        }
    }
}

/// Tells a client the server is full, then closes.
async fn refuse(mut stream: TcpStream, write_timeout: Duration) {
    let refusal = Reply::from(ErrorReply::ServerFull).to_line();
    let _ = tokio::time::timeout(write_timeout, stream.write_all(&refusal)).await;
}
