//! The UDP server over real loopback sockets with a cache that answers only
//! when the test lets it: worker slots, the queue, overload drops and the
//! stop at the reconnect phase.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use playground_common::lifecycle::Lifecycle;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use super::*;
use crate::bus::EmbeddedBus;
use crate::cache::{Cache, CacheError, CacheKey};
use crate::config::UdpOptions;
use crate::executor::Executor;
use crate::runtime::Spread;

/// Every key holds a token owner; each `get` waits for a permit of `gate`.
struct GatedCache {
    gate: Arc<Semaphore>,
}

#[async_trait]
impl Cache for GatedCache {
    async fn get(&self, _: &CacheKey) -> Result<Option<Bytes>, CacheError> {
        let permit = self.gate.acquire().await.map_err(|e| CacheError(e.to_string()))?;
        permit.forget();
        Ok(Some(Bytes::from_static(b"127.0.0.1:1")))
    }

    async fn set(&self, _: &CacheKey, _: Bytes, _: Duration) -> Result<(), CacheError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "gated".into()
    }
}

pub(super) fn options(workers: u32, queue: u32) -> UdpOptions {
    UdpOptions {
        udp_sockets: 1,
        workers,
        udp_queue: queue,
        udp_check_ip: false,
        udp_batch: 32,
        udp_socket_buffer: 1 << 20,
        udp_max_amplification: 4,
        udp_reply_rate: 0,
        udp_reply_burst: 100,
    }
}

/// Starts a server on an ephemeral loopback port; returns its address.
fn start(opts: &UdpOptions, gate: Arc<Semaphore>, lifecycle: &Lifecycle) -> std::net::SocketAddr {
    let config = Config::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 512, opts);
    let sockets = bind(&config, &Spread::current()).unwrap();
    let addr = sockets[0].local_addr().unwrap();
    let executor = Arc::new(Executor::new(Arc::new(GatedCache { gate }), Arc::new(EmbeddedBus::new(16))));
    serve(sockets, &config, &[executor], lifecycle.clone(), &Spread::current());
    addr
}

async fn client(server: std::net::SocketAddr) -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.connect(server).await.unwrap();
    c
}

async fn recv(c: &UdpSocket, wait: Duration) -> Option<String> {
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(wait, c.recv(&mut buf)).await.ok()?.ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

const TOKEN: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

#[tokio::test]
async fn busy_workers_queue_then_drop_and_msg_still_waits_its_turn() {
    let prometheus = playground_common::metrics::install(&[]);
    let gate = Arc::new(Semaphore::new(0));
    let lifecycle = Lifecycle::new();
    let server = start(&options(1, 1), gate.clone(), &lifecycle);
    let c = client(server).await;
    // 1 runs (waiting for the cache), 2 waits in the queue, 3 is dropped.
    for i in 1..=3 {
        c.send(format!("mcget:{TOKEN}:k{i}").as_bytes()).await.unwrap();
    }
    assert_eq!(recv(&c, Duration::from_millis(200)).await, None, "nothing may be answered before the cache is");
    let overload = prometheus
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("playground_udp_packets_dropped_total{reason=\"overload\"} ").map(str::to_string))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(overload.is_some_and(|v| v >= 1.0), "overload drop not counted: {overload:?}");
    // Both waiting commands need two cache reads each (token, then key).
    gate.add_permits(4);
    let mut replies = Vec::new();
    while let Some(r) = recv(&c, Duration::from_millis(500)).await {
        replies.push(r);
    }
    // The cache says every key holds the owner address, so mcget returns it,
    // with no line ending because the request had none (queued or not).
    assert_eq!(replies, vec!["127.0.0.1:1".to_string(); 2]);
    // The slot and the queue are free again: commands complete at once.
    c.send(b"msg:free\n").await.unwrap();
    assert_eq!(recv(&c, Duration::from_secs(2)).await.as_deref(), Some("free\n"));
}

#[tokio::test]
async fn many_waiting_commands_are_all_answered_when_they_fit() {
    for batch in [1, 32] {
        many_waiting_commands(batch).await;
    }
}

async fn many_waiting_commands(batch: u32) {
    let gate = Arc::new(Semaphore::new(0));
    let lifecycle = Lifecycle::new();
    let server = start(&UdpOptions { udp_batch: batch, ..options(4, 100) }, gate.clone(), &lifecycle);
    let c = client(server).await;
    for i in 0..50 {
        c.send(format!("mcget:{TOKEN}:k{i}").as_bytes()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.add_permits(100);
    let mut n = 0;
    while recv(&c, Duration::from_millis(500)).await.is_some() {
        n += 1;
    }
    assert_eq!(n, 50, "UDP_BATCH={batch}");
}

#[tokio::test]
async fn receiving_stops_at_the_reconnect_phase() {
    let lifecycle = Lifecycle::new();
    let server = start(&options(4, 4), Arc::new(Semaphore::new(0)), &lifecycle);
    let c = client(server).await;
    c.send(b"msg:before").await.unwrap();
    assert_eq!(recv(&c, Duration::from_secs(2)).await.as_deref(), Some("before"));
    lifecycle.reconnect.cancel();
    lifecycle.tasks.close();
    tokio::time::timeout(Duration::from_secs(2), lifecycle.tasks.wait()).await.expect("receive loops stop");
    let _ = c.send(b"msg:after").await;
    assert_eq!(recv(&c, Duration::from_millis(200)).await, None);
}

#[test]
fn sockets_never_outnumber_workers_and_shares_add_up() {
    let mut opts = options(3, 10);
    opts.udp_sockets = 8;
    let c = Config::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 512, &opts);
    assert_eq!(c.sockets, 3);
    opts.udp_sockets = 2;
    let c = Config::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 512, &opts);
    assert_eq!((c.share(3, 0), c.share(3, 1)), (2, 1));
    assert_eq!((c.share(10, 0), c.share(10, 1)), (5, 5));
    opts.udp_sockets = 0;
    let c = Config::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 100_000, &opts);
    assert!(c.sockets >= 1);
    assert_eq!(c.max_command, 65_507);
}
