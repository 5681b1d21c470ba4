//! The embedded in-process cache, used when no memcached is configured: a
//! bounded concurrent map (moka) honouring a time to live per entry. It serves
//! one process only, which the server says at start-up.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use moka::Expiry;
use moka::sync::Cache as Moka;

use super::{Cache, CacheError, CacheKey};

/// A stored value and the time to live it was stored with.
#[derive(Clone)]
struct Entry {
    value: Bytes,
    ttl: Duration,
}

/// Expires each entry after its own time to live.
struct PerEntryTtl;

impl Expiry<CacheKey, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &CacheKey, e: &Entry, _: Instant) -> Option<Duration> {
        Some(e.ttl)
    }

    fn expire_after_update(&self, _: &CacheKey, e: &Entry, _: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(e.ttl)
    }
}

/// An in-process cache holding at most `capacity` entries.
pub struct EmbeddedCache {
    map: Moka<CacheKey, Entry>,
}

impl EmbeddedCache {
    /// A cache that evicts the least recently used entries beyond `capacity`.
    pub fn new(capacity: u64) -> Self {
        let map = Moka::builder().max_capacity(capacity).expire_after(PerEntryTtl).build();
        EmbeddedCache { map }
    }
}

#[async_trait]
impl Cache for EmbeddedCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, CacheError> {
        Ok(self.map.get(key).map(|e| e.value))
    }

    async fn set(&self, key: &CacheKey, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        self.map.insert(key.clone(), Entry { value, ttl });
        Ok(())
    }

    fn describe(&self) -> String {
        "embedded (this process only)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use playground_protocol::Key;

    fn key(s: &'static str) -> CacheKey {
        CacheKey::client(&Key::new(Bytes::from_static(s.as_bytes())).unwrap())
    }

    #[tokio::test]
    async fn stores_and_expires() {
        let cache = EmbeddedCache::new(100);
        cache.set(&key("a"), Bytes::from_static(b"1"), Duration::from_millis(200)).await.unwrap();
        cache.set(&key("b"), Bytes::from_static(b"2"), Duration::from_secs(60)).await.unwrap();
        assert_eq!(cache.get(&key("a")).await.unwrap(), Some(Bytes::from_static(b"1")));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(cache.get(&key("a")).await.unwrap(), None);
        assert_eq!(cache.get(&key("b")).await.unwrap(), Some(Bytes::from_static(b"2")));
    }

    #[test]
    fn namespaces_never_collide() {
        let t = playground_protocol::Token::parse(b"0f8fad5b-d9cb-469f-a165-70867728950e").unwrap();
        let as_key = Key::new(Bytes::from_static(b"0f8fad5b-d9cb-469f-a165-70867728950e")).unwrap();
        assert_ne!(CacheKey::token(&t), CacheKey::client(&as_key));
        // Tokens are stored under themselves, as the original stored them.
        assert_eq!(CacheKey::token(&t).as_bytes(), t.as_bytes());
        assert!(CacheKey::client(&as_key).as_str().starts_with("c-"));
    }
}
