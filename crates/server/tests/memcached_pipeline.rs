//! The memcached client against the real memcached (PLAYGROUND_MEMCACHED),
//! through a relay in this test that passes requests at once and holds
//! memcached's replies back until told: what becomes of the requests on a
//! connection when memcached leaves one unanswered past MEMCACHED_TIMEOUT,
//! when a caller leaves, and when the server is too busy to read a reply
//! that came in time.
//!
//! The steps are hundreds of milliseconds apart, so a slow machine shifts
//! them without changing the outcome; nothing here asserts a duration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use playground_protocol::Key;
use playground_server::cache::{Cache, CacheError, CacheKey, MemcachedCache};
use playground_server::config::MemcachedOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// MEMCACHED_TIMEOUT here, and the step between the tests' events.
const TIMEOUT: Duration = Duration::from_millis(1500);
const STEP: Duration = Duration::from_millis(300);
/// Callers carry no timer of their own: a command still unanswered after
/// this long hangs, which fails the test rather than stalling it.
const HANG: Duration = Duration::from_secs(30);

/// The real memcached's address, or `None` (the test is skipped, unless
/// PLAYGROUND_REQUIRE_SERVICES says the services must be there).
fn memcached() -> Option<SocketAddr> {
    match std::env::var("PLAYGROUND_MEMCACHED") {
        Ok(addr) => Some(addr.parse().expect("PLAYGROUND_MEMCACHED is ip:port")),
        Err(_) => {
            assert!(std::env::var("PLAYGROUND_REQUIRE_SERVICES").is_err(), "PLAYGROUND_MEMCACHED must be set");
            eprintln!("skipped: PLAYGROUND_MEMCACHED not set; run scripts/test");
            None
        }
    }
}

/// A relay to memcached on a runtime of its own: requests pass at once,
/// replies only up to the number of bytes allowed so far.
struct Relay {
    addr: SocketAddr,
    allowed: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    _runtime: Runtime,
}

impl Relay {
    fn start(upstream: SocketAddr) -> Relay {
        let runtime = Runtime::new().unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (allowed, _) = watch::channel(0);
        let accepted = Arc::new(AtomicUsize::new(0));
        let (count, allow) = (accepted.clone(), allowed.clone());
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let server = TcpStream::connect(upstream).await.unwrap();
                let ((mut client_r, client_w), (server_r, mut server_w)) = (client.into_split(), server.into_split());
                tokio::spawn(async move { tokio::io::copy(&mut client_r, &mut server_w).await });
                tokio::spawn(pass_replies(server_r, client_w, allow.subscribe()));
            }
        });
        Relay { addr, allowed, accepted, _runtime: runtime }
    }

    /// Lets `bytes` more bytes of replies through.
    fn release(&self, bytes: u64) {
        self.allowed.send_modify(|a| *a = a.saturating_add(bytes));
    }

    /// The memcached connections the client has opened through the relay.
    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Copies replies from memcached to the client as far as `allowed` says
/// (bytes in all, over every connection: the tests use one at a time).
async fn pass_replies(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut allowed: watch::Receiver<u64>) {
    let (mut held, mut sent, mut buf) = (Vec::new(), 0u64, [0u8; 4096]);
    loop {
        let room = allowed.borrow_and_update().saturating_sub(sent);
        let n = held.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if n > 0 {
            if to.write_all(&held[..n]).await.is_err() {
                return;
            }
            held.drain(..n);
            sent += n as u64;
            continue;
        }
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(k) => held.extend_from_slice(&buf[..k]),
            },
            changed = allowed.changed() => if changed.is_err() { return },
        }
    }
}

/// A memcached client through `relay` on `runtime` (its connections run
/// there): one connection, `in_flight` requests at most.
fn client(relay: &Relay, in_flight: u32, runtime: &Runtime) -> Arc<MemcachedCache> {
    let opts = MemcachedOptions {
        memcached_service: Some(relay.addr.ip().to_string()),
        memcached_port: relay.addr.port(),
        memcached_pool_size: 1,
        memcached_max_in_flight: in_flight,
        memcached_timeout: TIMEOUT,
        memcached_resolve_interval: Duration::from_secs(3600),
    };
    runtime.block_on(MemcachedCache::start(&opts, relay.addr.ip().to_string()))
}

/// A relay to the real memcached and a client through it on a new
/// multi-thread runtime, or `None` without memcached.
fn through_relay(in_flight: u32) -> Option<(Relay, Runtime, Arc<MemcachedCache>)> {
    let relay = Relay::start(memcached()?);
    let rt = Runtime::new().unwrap();
    let cache = client(&relay, in_flight, &rt);
    Some((relay, rt, cache))
}

/// A client-data key no earlier run used.
fn fresh_key(name: &str) -> CacheKey {
    let unique = format!("pipeline-{name}-{}", uuid::Uuid::new_v4().simple());
    CacheKey::client(&Key::new(Bytes::from(unique)).unwrap())
}

fn value(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

const TTL: Duration = Duration::from_secs(60);

/// Starts `set key v` on `runtime`, as a client's command would; it fails
/// the test if it is never answered.
fn spawn_set(
    runtime: &Runtime,
    cache: &Arc<MemcachedCache>,
    key: &CacheKey,
    v: &'static str,
) -> JoinHandle<Result<(), CacheError>> {
    let (cache, key) = (cache.clone(), key.clone());
    runtime.spawn(async move {
        let set = tokio::time::timeout(HANG, cache.set(&key, value(v), TTL)).await;
        set.expect("a cache command was never answered: the connection did not time out")
    })
}

#[test]
fn an_unanswered_request_fails_its_connection_and_a_new_one_serves() {
    let Some((relay, rt, cache)) = through_relay(64) else { return };
    let (a, b) = (fresh_key("a"), fresh_key("b"));

    let first = spawn_set(&rt, &cache, &a, "va");
    std::thread::sleep(STEP);
    let second = spawn_set(&rt, &cache, &b, "vb");
    rt.block_on(async {
        // No reply within MEMCACHED_TIMEOUT of the first write: both fail
        // (the second with it, not at its own deadline), and the connection
        // closes rather than waiting on.
        assert!(first.await.unwrap().is_err());
        assert!(second.await.unwrap().is_err());
    });
    relay.release(u64::MAX);
    rt.block_on(async {
        cache.set(&a, value("again"), TTL).await.unwrap();
        assert_eq!(cache.get(&a).await.unwrap(), Some(value("again")));
    });
    assert_eq!(relay.connections(), 2, "a new connection replaced the stalled one");
}

#[test]
fn a_request_whose_caller_left_before_it_was_written_is_not_sent() {
    // One request in flight (and the reader's current one): the third
    // waits to be written.
    let Some((relay, rt, cache)) = through_relay(1) else { return };
    let keys = [fresh_key("a"), fresh_key("b"), fresh_key("c")];

    let mut sets = Vec::new();
    for (key, v) in keys.iter().zip(["va", "vb", "vc"]) {
        sets.push(spawn_set(&rt, &cache, key, v));
        std::thread::sleep(STEP / 3);
    }
    // The third set's client goes away (its task is dropped) before there
    // is room for it.
    let left = sets.pop().unwrap();
    left.abort();
    std::thread::sleep(STEP);
    relay.release(u64::MAX);
    rt.block_on(async {
        for set in sets {
            set.await.unwrap().unwrap();
        }
        assert_eq!(cache.get(&keys[2]).await.unwrap(), None, "the abandoned set was never written");
        assert_eq!(cache.get(&keys[1]).await.unwrap(), Some(value("vb")));
    });
    assert_eq!(relay.connections(), 1);
}

#[test]
fn a_reply_that_came_in_time_counts_even_if_the_server_reads_it_late() {
    let Some(upstream) = memcached() else { return };
    let relay = Relay::start(upstream);
    // The memcached connection lives on `busy`, a runtime of one worker,
    // which is kept busy past MEMCACHED_TIMEOUT while memcached's reply
    // comes (a broadcast to thousands of clients, say). The command waits on
    // another worker, free to notice the time.
    let busy = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let cache = client(&relay, 64, &busy);
    let waiting = Runtime::new().unwrap();
    let (first, second) = (fresh_key("first"), fresh_key("second"));

    // The first command opens the connection, on `busy`.
    let first_set = spawn_set(&busy, &cache, &first, "v1");
    std::thread::sleep(STEP);
    let second_set = spawn_set(&waiting, &cache, &second, "v2");
    std::thread::sleep(STEP);
    let burst = busy.spawn(async { std::thread::sleep(TIMEOUT + 2 * STEP) });
    std::thread::sleep(STEP);
    relay.release(u64::MAX);
    waiting.block_on(async {
        second_set.await.unwrap().expect("memcached answered within MEMCACHED_TIMEOUT");
        first_set.await.unwrap().expect("memcached answered within MEMCACHED_TIMEOUT");
        burst.await.unwrap();
        assert_eq!(cache.get(&second).await.unwrap(), Some(value("v2")));
    });
    assert_eq!(relay.connections(), 1);
}
