//! Start-up and shutdown of the server roles: builds the backends, the shared
//! executor, the admin server and the listeners, then runs the lifecycle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use playground_common::lifecycle::Lifecycle;
use playground_common::{admin, telemetry};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::bus::{Bus, EmbeddedBus, KafkaBus};
use crate::cache::{Cache, EmbeddedCache, MemcachedCache};
use crate::config::{BackendOptions, CommonOptions, ServeArgs, TcpArgs, TcpOptions, UdpArgs};
use crate::executor::Executor;
use crate::logship::{self, Shipper};
use crate::runtime::Spread;
use crate::{limits, metrics, tcp, udp};

/// Time allowed at shutdown to ship the last log events and broadcasts.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// Installs logging; with Kafka configured, also the log-shipping layer,
/// whose shipper is started once the runtime is up.
pub fn init_logging(common: &CommonOptions) -> anyhow::Result<Option<Shipper>> {
    let backends = &common.backends;
    let (layer, shipper) = match backends.kafka.connection.kafka_brokers {
        Some(_) => {
            let (l, s) = logship::channel(&common.process.instance_name(), backends.log_ship_queue as usize);
            (Some(l), Some(s))
        }
        None => (None, None),
    };
    telemetry::init(&common.process, layer)?;
    Ok(shipper)
}

/// `playground tcp`.
pub async fn run_tcp(args: TcpArgs, shipper: Option<Shipper>, spread: Spread) -> anyhow::Result<()> {
    run(&args.common, shipper, Some((args.port, &args.tcp)), None, spread).await
}

/// `playground udp`.
pub async fn run_udp(args: UdpArgs, shipper: Option<Shipper>, spread: Spread) -> anyhow::Result<()> {
    let udp = udp::Config::new(args.bind_address, args.port, args.buff_size, &args.udp);
    run(&args.common, shipper, None, Some(udp), spread).await
}

/// `playground serve`: every server in one process over one cache and bus.
pub async fn run_serve(args: ServeArgs, shipper: Option<Shipper>, spread: Spread) -> anyhow::Result<()> {
    let udp = udp::Config::new(args.tcp.bind_address, args.udp_port, args.tcp.buff_size, &args.udp);
    run(&args.common, shipper, Some((args.tcp_port, &args.tcp)), Some(udp), spread).await
}

/// The backends the configuration asks for.
struct Backends {
    /// One per runtime of the spread (the same embedded cache for all).
    caches: Vec<Arc<dyn Cache>>,
    bus: Arc<dyn Bus>,
    kafka: Option<Arc<KafkaBus>>,
    shared: bool,
}

async fn backends(
    opts: &BackendOptions,
    instance: &str,
    client_queue: usize,
    spread: &Spread,
) -> anyhow::Result<Backends> {
    let (caches, shared_cache): (Vec<Arc<dyn Cache>>, bool) = match &opts.memcached.memcached_service {
        Some(host) => (memcached_per_runtime(opts, host, spread).await?, true),
        None => (vec![Arc::new(EmbeddedCache::new(opts.cache_capacity))], false),
    };
    let (bus, kafka): (Arc<dyn Bus>, _) = match &opts.kafka.connection.kafka_brokers {
        Some(_) => {
            let k = KafkaBus::start(&opts.kafka, instance, client_queue).await?;
            (k.clone(), Some(k))
        }
        None => (Arc::new(EmbeddedBus::new(client_queue)), None),
    };
    let shared = shared_cache && kafka.is_some();
    Ok(Backends { caches, bus, kafka, shared })
}

/// A memcached client per runtime, started on it (its connections then wake
/// the runtime whose tasks use them), the pool size shared out between them.
async fn memcached_per_runtime(
    opts: &BackendOptions,
    host: &str,
    spread: &Spread,
) -> anyhow::Result<Vec<Arc<dyn Cache>>> {
    let runtimes = spread.handles().len() as u32;
    let mut memcached = opts.memcached.clone();
    memcached.memcached_pool_size = (memcached.memcached_pool_size / runtimes).max(1);
    let mut caches: Vec<Arc<dyn Cache>> = Vec::new();
    for handle in spread.handles() {
        let (opts, host) = (memcached.clone(), host.to_string());
        caches.push(handle.spawn(async move { MemcachedCache::start(&opts, host).await }).await?);
    }
    Ok(caches)
}

async fn run(
    common: &CommonOptions,
    shipper: Option<Shipper>,
    tcp: Option<(u16, &TcpOptions)>,
    udp: Option<udp::Config>,
    spread: Spread,
) -> anyhow::Result<()> {
    let prometheus = playground_common::metrics::install(&metrics::BUCKETS);
    // Present from the start (at 0) so dashboards and alerts see the series
    // whether or not shipping is configured.
    ::metrics::counter!("playground_log_events_dropped_total", "reason" => "queue_full").absolute(0);
    limits::raise_open_files(tcp.map(|(_, o)| u64::from(o.max_connections)));
    let lifecycle = Lifecycle::new();
    lifecycle.set_ready(false);
    let shipper = match shipper {
        Some(s) => Some(s.start(&common.backends.kafka)?),
        None => None,
    };
    let instance = common.process.instance_name();
    let client_queue = tcp.map_or(1024, |(_, o)| o.client_queue as usize);
    let b = backends(&common.backends, &instance, client_queue, &spread).await?;
    info!(pod = %instance, cache = %b.caches[0].describe(), bus = %b.bus.describe(), runtimes = spread.handles().len(), "Starting");
    if !b.shared {
        warn!(
            "Embedded cache or bus: state is not shared with other instances (set MEMCACHED_SERVICE and KAFKA_BROKERS to share it)"
        );
    }
    // One executor per runtime, over its own cache client and the one bus.
    let executors: Vec<Arc<Executor>> = (0..spread.handles().len())
        .map(|i| {
            let cache = b.caches[i % b.caches.len()].clone();
            Arc::new(Executor::new(cache, b.bus.clone()).with_token_ttl(common.backends.token_ttl))
        })
        .collect();
    let admin_addr = SocketAddr::new(common.process.admin_bind_address, common.process.admin_port);
    admin::start(admin_addr, prometheus, lifecycle.clone()).await?;

    let mut reconnect_grace = Duration::ZERO;
    if let Some((port, opts)) = tcp {
        let tls = tcp::Tls::start(&opts.tls, lifecycle.close.clone())?;
        let permits = Arc::new(Semaphore::new(opts.max_connections as usize));
        let mut addr = SocketAddr::new(opts.bind_address, port);
        for (i, handle) in spread.handles().iter().enumerate() {
            let listener = {
                let _runtime = handle.enter();
                tcp::listener_bind(addr, opts.listen_backlog, spread.shares_ports())?
            };
            // With port 0 the first listener picks the port; the others join it.
            addr = listener.local_addr()?;
            let shared = tcp::Shared::new(executors[i].clone(), lifecycle.clone(), opts, tls.clone());
            handle.spawn(tcp::serve(listener, shared, permits.clone()));
        }
        reconnect_grace = opts.reconnect_grace;
    }
    if let Some(mut config) = udp {
        // A runtime without a socket of its own would do no UDP work.
        config.sockets = config.sockets.max(spread.handles().len()).min(config.workers);
        let sockets = udp::bind(&config, &spread)?;
        udp::serve(sockets, &config, &executors, lifecycle.clone(), &spread);
        if tcp.is_none() {
            reconnect_grace = udp::DRAIN;
        }
    }
    lifecycle.set_ready(true);
    lifecycle.run_shutdown(common.sigterm_timeout, reconnect_grace).await;
    if let Some(k) = b.kafka {
        let _ = tokio::task::spawn_blocking(move || k.flush(FLUSH_LIMIT)).await;
    }
    if let Some(s) = shipper {
        s.flush(FLUSH_LIMIT).await;
    }
    Ok(())
}
