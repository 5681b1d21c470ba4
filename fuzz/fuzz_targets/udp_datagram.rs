//! UDP datagrams from a stranger (no token exists), through the executor the
//! server uses: no panic, and any reply is one line that stays within the
//! default amplification bound on the wire (IPv4 headers, 28 bytes).
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use playground_protocol::{Ending, Reply};
use playground_server::bus::EmbeddedBus;
use playground_server::cache::EmbeddedCache;
use playground_server::executor::{Executor, Peer, Transport};
use playground_server::metrics::CommandMetrics;

const HEADERS: usize = 28;
const BOUND: usize = 4;

struct World {
    rt: tokio::runtime::Runtime,
    executor: Executor,
    metrics: CommandMetrics,
}

static WORLD: LazyLock<World> = LazyLock::new(|| World {
    rt: tokio::runtime::Builder::new_current_thread().build().unwrap(),
    executor: Executor::new(Arc::new(EmbeddedCache::new(1000)), Arc::new(EmbeddedBus::new(16))),
    metrics: CommandMetrics::new("udp"),
});

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let peer = Peer { addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9)), transport: Transport::Udp { check_ip: false } };
    let datagram = Bytes::copy_from_slice(data);
    let ending = Ending::mirroring(&datagram);
    let reply = world.rt.block_on(world.executor.execute(datagram, &peer, None, &world.metrics));
    let mut out = BytesMut::new();
    reply.encode(&mut out, ending);
    assert_eq!(out.len(), reply.encoded_len(ending));
    let body = out.strip_suffix(b"\n").unwrap_or(&out);
    assert!(!body.contains(&b'\n'), "one line: {data:?} -> {out:?}");
    if !matches!(reply, Reply::Published) {
        assert!(out.len() + HEADERS <= BOUND * (data.len() + HEADERS), "{data:?} -> {out:?}");
    }
});
