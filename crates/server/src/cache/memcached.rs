//! The memcached cache, shared by every instance. MEMCACHED_SERVICE is
//! resolved to all of its addresses (a headless Kubernetes service gives one
//! per pod) and re-resolved periodically; keys are spread over the nodes by
//! consistent hashing (SipHash with fixed keys, so every instance agrees) and
//! each node has a pool of connections (deadpool over async-memcached).
//!
//! A node that is down or restarting makes operations fail fast with
//! [`CacheError`] (the client sees `error: cache unavailable`); broken
//! connections are discarded and replaced on the next use, so recovery needs
//! no restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_memcached::{AsciiProtocol, Client};
use async_trait::async_trait;
use bytes::Bytes;
use deadpool::managed::{self, Metrics, Pool, RecycleError, RecycleResult};
use hashring::HashRing;
use tokio::time::timeout;
use tracing::{info, warn};

use super::{Cache, CacheError, CacheKey};
use crate::config::MemcachedOptions;
use crate::metrics::{CacheFailure, CacheOp, MemcachedMetrics};

/// Points per node on the ring, for an even spread of keys.
const VIRTUAL_NODES: u16 = 160;

/// Opens and checks connections to one node.
struct Manager {
    dsn: String,
    timeout: Duration,
}

impl managed::Manager for Manager {
    type Type = Client;
    type Error = CacheError;

    async fn create(&self) -> Result<Client, CacheError> {
        match timeout(self.timeout, Client::new(&self.dsn)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(CacheError(format!("connecting to {}: {e}", self.dsn))),
            Err(_) => Err(CacheError(format!("connecting to {}: timed out", self.dsn))),
        }
    }

    async fn recycle(&self, client: &mut Client, _: &Metrics) -> RecycleResult<CacheError> {
        // An operation cut short (timeout, error) leaves the connection in an
        // unknown state: never reuse it.
        if client.is_closed() { Err(RecycleError::message("connection closed")) } else { Ok(()) }
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
    pools: BTreeMap<SocketAddr, Pool<Manager>>,
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
        let empty = Topology { ring: HashRing::new(), pools: BTreeMap::new() };
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
    /// changed, keeping the pools of nodes that stay.
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
            || (addrs.len() == current.pools.len() && addrs.iter().all(|a| current.pools.contains_key(a)))
        {
            return;
        }
        let mut ring = HashRing::new();
        let mut pools = BTreeMap::new();
        for addr in addrs {
            let pool = match current.pools.get(&addr) {
                Some(p) => p.clone(),
                None => match self.pool(addr) {
                    Ok(p) => p,
                    Err(e) => {
                        warn!(%addr, error = %e, "cannot create a memcached pool");
                        continue;
                    }
                },
            };
            for replica in 0..VIRTUAL_NODES {
                ring.add(VirtualNode { addr, replica });
            }
            pools.insert(addr, pool);
        }
        info!(nodes = ?pools.keys().collect::<Vec<_>>(), "memcached nodes");
        *self.topology.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Topology { ring, pools });
    }

    fn pool(&self, addr: SocketAddr) -> Result<Pool<Manager>, String> {
        let manager = Manager { dsn: format!("tcp://{addr}"), timeout: self.opts.memcached_timeout };
        Pool::builder(manager)
            .max_size(self.opts.memcached_pool_size as usize)
            .wait_timeout(Some(self.opts.memcached_timeout))
            .create_timeout(Some(self.opts.memcached_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| e.to_string())
    }

    fn current(&self) -> Arc<Topology> {
        self.topology.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A connection to the node that owns `key`.
    async fn connection(&self, key: &CacheKey) -> Result<managed::Object<Manager>, CacheError> {
        let topology = self.current();
        let node = topology.ring.get(&key.as_bytes()).ok_or_else(|| CacheError("no memcached node".into()))?;
        let pool = topology.pools.get(&node.addr).ok_or_else(|| CacheError("no pool for node".into()))?;
        pool.get().await.map_err(|e| CacheError(format!("memcached {}: {e}", node.addr)))
    }

    /// Runs `op` on a connection under the operation time limit, and
    /// records its time and failure.
    async fn with_timeout<T, F>(&self, op: CacheOp, f: F) -> Result<T, CacheError>
    where
        F: std::future::Future<Output = Result<T, CacheError>>,
    {
        let start = Instant::now();
        let result = timeout(self.opts.memcached_timeout, f).await;
        let failure = match &result {
            Err(_) => Some(CacheFailure::Timeout),
            Ok(Err(_)) => Some(CacheFailure::Error),
            Ok(Ok(_)) => None,
        };
        self.metrics.record(op, start.elapsed(), failure);
        result.map_err(|_| CacheError("memcached timed out".into()))?
    }
}

#[async_trait]
impl Cache for MemcachedCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, CacheError> {
        self.with_timeout(CacheOp::Get, async {
            let mut conn = self.connection(key).await?;
            match conn.get(key.as_bytes()).await {
                Ok(v) => Ok(v.and_then(|v| v.data).map(Bytes::from)),
                Err(e) => Err(CacheError(e.to_string())),
            }
        })
        .await
    }

    async fn set(&self, key: &CacheKey, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        let ttl = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        self.with_timeout(CacheOp::Set, async {
            let mut conn = self.connection(key).await?;
            conn.set(key.as_bytes(), value.as_ref(), Some(ttl), None).await.map_err(|e| CacheError(e.to_string()))
        })
        .await
    }

    fn describe(&self) -> String {
        format!("memcached {}:{} ({} nodes)", self.host, self.opts.memcached_port, self.current().pools.len())
    }
}
