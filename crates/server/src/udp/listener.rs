//! Binding the UDP port and starting the receive loops. UDP_SOCKETS sockets
//! (one by default) share the port through SO_REUSEPORT: the kernel hashes
//! each client's address to one socket, so each socket receives without
//! contending with the others, and one client's datagrams stay in order.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use playground_common::lifecycle::Lifecycle;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tracing::info;

use super::Config;
use super::dispatcher::{Shared, SocketWorker};
use super::guard::{self, Guard};
use crate::executor::Executor;
use crate::runtime::Spread;

/// Binds `config.sockets` sockets to `config.addr`, failing start-up when the
/// port is taken. With port 0 the first socket picks the port and the others
/// join it. Socket `i` belongs to runtime `spread.for_index(i)`.
pub fn bind(config: &Config, spread: &Spread) -> anyhow::Result<Vec<UdpSocket>> {
    let port = config.addr.port();
    let fail = |e: io::Error| anyhow::anyhow!("cannot listen on UDP port {port}: {e}");
    let first = {
        let _runtime = spread.for_index(0).enter();
        bind_one(config.addr, config.socket_buffer).map_err(fail)?
    };
    let addr = first.local_addr().map_err(fail)?;
    let mut sockets = vec![first];
    // Without SO_REUSEPORT a second bind would fail: keep one socket.
    let count = if cfg!(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_os = "macos")) {
        config.sockets
    } else {
        1
    };
    for i in 1..count {
        let _runtime = spread.for_index(i).enter();
        sockets.push(bind_one(addr, config.socket_buffer).map_err(fail)?);
    }
    Ok(sockets)
}

fn bind_one(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_os = "macos"))]
    socket.set_reuse_port(true)?;
    // Best effort: the kernel caps the sizes (net.core.rmem_max), and a
    // smaller buffer only means bursts are dropped sooner.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Starts one receive loop per socket in the lifecycle's task tracker, each
/// on its socket's runtime with that runtime's executor (`executors[i]` for
/// `spread.for_index(i)`). They answer until the lifecycle's reconnect phase
/// (the end of SIGTERM_TIMEOUT).
pub fn serve(
    sockets: Vec<UdpSocket>,
    config: &Config,
    executors: &[Arc<Executor>],
    lifecycle: Lifecycle,
    spread: &Spread,
) {
    let addr = sockets.first().and_then(|s| s.local_addr().ok()).map(|a| a.to_string()).unwrap_or_default();
    info!(%addr, transport = "udp", sockets = sockets.len(), workers = config.workers, queue = config.queue, batch = config.batch, check_ip = config.check_ip, "Listening");
    // One guard for every socket and runtime: a source's bucket is the same
    // whichever socket the kernel hands its datagrams to.
    let guard = Arc::new(Guard::new(config));
    lifecycle.tasks.spawn(guard::forget_idle_sources(guard.clone(), lifecycle.reconnect.clone()));
    let shared: Vec<_> =
        executors.iter().map(|e| Arc::new(Shared::new(e.clone(), lifecycle.clone(), config, guard.clone()))).collect();
    for (i, socket) in sockets.into_iter().enumerate() {
        let runtime = i % spread.handles().len();
        let worker = SocketWorker::new(
            socket,
            shared[runtime % shared.len()].clone(),
            config.share(config.workers, i),
            config.share(config.queue, i),
        );
        lifecycle.tasks.spawn_on(worker.receive(), spread.for_index(i));
    }
}
