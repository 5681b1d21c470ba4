//! Start-up and shutdown of the server roles: builds the backends, the shared
//! executor, the admin server and the listeners, then runs the lifecycle.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::{info, warn};

use crate::bus::{Bus, EmbeddedBus};
use crate::cache::{Cache, EmbeddedCache};
use crate::config::{BackendOptions, CommonOptions, ServeArgs, TcpArgs, TcpOptions, UdpArgs};
use crate::executor::Executor;
use crate::lifecycle::Lifecycle;
use crate::{admin, metrics, tcp, udp};

/// `playground tcp`.
pub async fn run_tcp(args: TcpArgs) -> anyhow::Result<()> {
    run(&args.common, &args.backends, Some((args.port, &args.tcp)), None).await
}

/// `playground udp`.
pub async fn run_udp(args: UdpArgs) -> anyhow::Result<()> {
    let udp = udp::Config::new(args.bind_address, args.port, args.buff_size, &args.udp);
    run(&args.common, &args.backends, None, Some(udp)).await
}

/// `playground serve`: every server in one process over one cache and bus.
pub async fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let udp = udp::Config::new(args.tcp.bind_address, args.udp_port, args.tcp.buff_size, &args.udp);
    run(&args.common, &args.backends, Some((args.tcp_port, &args.tcp)), Some(udp)).await
}

/// Builds the cache and bus the configuration asks for.
fn backends(opts: &BackendOptions, client_queue: usize) -> (Arc<dyn Cache>, Arc<dyn Bus>) {
    let cache: Arc<dyn Cache> = Arc::new(EmbeddedCache::new(opts.cache_capacity));
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(client_queue));
    (cache, bus)
}

async fn run(
    common: &CommonOptions,
    backend: &BackendOptions,
    tcp: Option<(u16, &TcpOptions)>,
    udp: Option<udp::Config>,
) -> anyhow::Result<()> {
    let prometheus = metrics::install();
    let lifecycle = Lifecycle::new();
    lifecycle.set_ready(false);
    let client_queue = tcp.map_or(1024, |(_, o)| o.client_queue as usize);
    let (cache, bus) = backends(backend, client_queue);
    info!(pod = %common.instance_name(), cache = %cache.describe(), bus = %bus.describe(), "Starting");
    if cache.describe().starts_with("embedded") {
        warn!(
            "Embedded cache and bus: state is not shared with other instances (set MEMCACHED_SERVICE and KAFKA_BROKERS to share it)"
        );
    }
    let executor = Arc::new(Executor::new(cache, bus));
    admin::start(SocketAddr::new(common.admin_bind_address, common.admin_port), prometheus, lifecycle.clone()).await?;

    let mut reconnect_grace = std::time::Duration::ZERO;
    if let Some((port, opts)) = tcp {
        let listener = tcp::listener_bind(SocketAddr::new(opts.bind_address, port), opts.listen_backlog)?;
        let shared = tcp::Shared::new(executor.clone(), lifecycle.clone(), opts);
        tokio::spawn(tcp::serve(listener, shared, opts.max_connections as usize));
        reconnect_grace = opts.reconnect_grace;
    }
    if let Some(config) = udp {
        let sockets = udp::bind(&config)?;
        udp::serve(sockets, &config, executor.clone(), lifecycle.clone());
        if tcp.is_none() {
            reconnect_grace = udp::DRAIN;
        }
    }
    lifecycle.set_ready(true);
    lifecycle.run_shutdown(common.sigterm_timeout, reconnect_grace).await;
    Ok(())
}
