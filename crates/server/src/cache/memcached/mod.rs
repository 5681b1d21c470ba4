//! The memcached cache, shared by every instance. MEMCACHED_SERVICE is
//! resolved to all of its addresses (a headless Kubernetes service gives one
//! per pod) and re-resolved periodically; keys are spread over the nodes by
//! consistent hashing (SipHash with fixed keys, so every instance agrees) and
//! each node has MEMCACHED_POOL_SIZE connections, each carrying the requests
//! of many clients at once ([`pipeline`]), taken in turn.
//!
//! A node that is down or restarting makes operations fail fast with
//! [`CacheError`] (the client sees `error: cache unavailable`); broken
//! connections are replaced on the next use, so recovery needs no restart.

mod codec;
mod pipeline;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use hashring::HashRing;
use tracing::{info, warn};

use self::codec::{Reply, Request};
use self::pipeline::{CallError, Connection};
use super::{Cache, CacheError, CacheKey};
use crate::config::MemcachedOptions;
use crate::metrics::{CacheFailure, CacheOp, MemcachedMetrics};

/// Points per node on the ring, for an even spread of keys.
const VIRTUAL_NODES: u16 = 160;

/// The connections to one node, used in turn, each opened on first use
/// and again once it has closed.
struct Node {
    addr: SocketAddr,
    slots: Vec<Mutex<Option<Arc<Connection>>>>,
    next: AtomicUsize,
}

impl Node {
    fn new(addr: SocketAddr, connections: u32) -> Node {
        Node { addr, slots: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(), next: AtomicUsize::new(0) }
    }

    /// The next connection in turn, opened if it is not open.
    async fn connection(&self, opts: &MemcachedOptions) -> Result<Arc<Connection>, CallError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let open = |s: &Option<Arc<Connection>>| s.as_ref().filter(|c| !c.is_closed()).cloned();
        if let Some(c) = open(&slot.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(c);
        }
        let in_flight = opts.memcached_max_in_flight as usize;
        let fresh = Arc::new(Connection::open(self.addr, opts.memcached_timeout, in_flight).await?);
        // Another request may have opened this slot meanwhile: keep one.
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        Ok(open(&slot).unwrap_or_else(|| slot.insert(fresh).clone()))
    }
}

/// A point on the ring.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct VirtualNode {
    addr: SocketAddr,
    replica: u16,
}

/// The nodes and the ring over them, replaced whole when DNS changes.
struct Topology {
    ring: HashRing<VirtualNode>,
    nodes: BTreeMap<SocketAddr, Arc<Node>>,
}

/// The memcached-backed [`Cache`].
pub struct MemcachedCache {
    opts: MemcachedOptions,
    host: String,
    topology: RwLock<Arc<Topology>>,
    metrics: MemcachedMetrics,
}

impl MemcachedCache {
    /// Resolves the service and starts following it. An unresolvable name
    /// is not fatal: operations fail until it resolves.
    pub async fn start(opts: &MemcachedOptions, host: String) -> Arc<Self> {
        let empty = Topology { ring: HashRing::new(), nodes: BTreeMap::new() };
        let cache = Arc::new(MemcachedCache {
            opts: opts.clone(),
            host,
            topology: RwLock::new(Arc::new(empty)),
            metrics: MemcachedMetrics::new(),
        });
        cache.refresh().await;
        let weak = Arc::downgrade(&cache);
        let every = opts.memcached_resolve_interval.max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match weak.upgrade() {
                    Some(cache) => cache.refresh().await,
                    None => return,
                }
            }
        });
        cache
    }

    /// Resolves the service again and rebuilds the ring if the set of nodes
    /// changed, keeping the connections of nodes that stay.
    async fn refresh(&self) {
        let target = (self.host.as_str(), self.opts.memcached_port);
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(target).await {
            Ok(a) => a.collect(),
            Err(e) => {
                warn!(service = %self.host, error = %e, "cannot resolve MEMCACHED_SERVICE; keeping the known nodes");
                return;
            }
        };
        let current = self.current();
        if addrs.is_empty()
            || (addrs.len() == current.nodes.len() && addrs.iter().all(|a| current.nodes.contains_key(a)))
        {
            return;
        }
        let mut ring = HashRing::new();
        let mut nodes = BTreeMap::new();
        for addr in addrs {
            let node = current.nodes.get(&addr).cloned();
            let node = node.unwrap_or_else(|| Arc::new(Node::new(addr, self.opts.memcached_pool_size)));
            for replica in 0..VIRTUAL_NODES {
                ring.add(VirtualNode { addr, replica });
            }
            nodes.insert(addr, node);
        }
        info!(nodes = ?nodes.keys().collect::<Vec<_>>(), "memcached nodes");
        *self.topology.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Topology { ring, nodes });
    }

    fn current(&self) -> Arc<Topology> {
        self.topology.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends `request` to the node that owns `key`, and records its time and
    /// failure. No timer here: the connection fails its requests when
    /// memcached leaves one unanswered for MEMCACHED_TIMEOUT (see
    /// [`pipeline`]), so a busy server is never taken for a slow memcached.
    async fn call(&self, op: CacheOp, key: &CacheKey, request: Request) -> Result<Reply, CacheError> {
        let start = Instant::now();
        let result = self.send(key, request).await;
        let failure = match &result {
            Err(CallError::TimedOut) => Some(CacheFailure::Timeout),
            Err(CallError::Failed(_)) | Ok(Reply::ServerError(_) | Reply::NotStored) => Some(CacheFailure::Error),
            Ok(_) => None,
        };
        self.metrics.record(op, start.elapsed(), failure);
        match result {
            Ok(Reply::ServerError(e)) => Err(CacheError(format!("memcached: {e}"))),
            Ok(Reply::NotStored) => Err(CacheError("memcached: not stored".into())),
            Ok(reply) => Ok(reply),
            Err(CallError::TimedOut) => Err(CacheError("memcached timed out".into())),
            Err(CallError::Failed(e)) => Err(e),
        }
    }

    async fn send(&self, key: &CacheKey, request: Request) -> Result<Reply, CallError> {
        let topology = self.current();
        let none = |what: &str| CallError::Failed(CacheError(what.into()));
        let node = topology.ring.get(&key.as_bytes()).ok_or_else(|| none("no memcached node"))?;
        let node = topology.nodes.get(&node.addr).ok_or_else(|| none("no connections for node"))?;
        node.connection(&self.opts).await?.call(request).await
    }
}

#[async_trait]
impl Cache for MemcachedCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, CacheError> {
        match self.call(CacheOp::Get, key, Request::Get(key.bytes())).await? {
            Reply::Hit { value, .. } => Ok(Some(value)),
            _ => Ok(None),
        }
    }

    async fn set(&self, key: &CacheKey, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        // Whole seconds, at least one (0 would mean "never expires"). Tokens
        // and client data live 30 days at most, below the point where memcached
        // reads a time to live as a point in time.
        let ttl_secs = u32::try_from(ttl.as_secs().max(1)).unwrap_or(u32::MAX);
        self.call(CacheOp::Set, key, Request::Set { key: key.bytes(), value, ttl_secs }).await.map(drop)
    }

    fn describe(&self) -> String {
        format!("memcached {}:{} ({} nodes)", self.host, self.opts.memcached_port, self.current().nodes.len())
    }
}
