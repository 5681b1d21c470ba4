//! The cache every instance shares: login tokens and client data, each with a
//! time to live. The command executor only sees the [`Cache`] trait; the
//! embedded implementation serves a single process, memcached serves many.

mod embedded;
mod memcached;

use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use playground_protocol::{CLIENT_PREFIX, Key, Token};

pub use embedded::EmbeddedCache;
pub use memcached::MemcachedCache;

/// The cache did not answer; the client gets `error: cache unavailable`.
#[derive(Debug, thiserror::Error)]
#[error("cache unavailable: {0}")]
pub struct CacheError(pub String);

/// A key in the cache. It can only be built from a validated [`Token`] or
/// [`Key`], each in its own namespace, so a client can never name a token or
/// anything outside the client-data namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(Bytes);

impl CacheKey {
    /// The key under which a token and its owner's `ip:port` are stored:
    /// the token itself, as the original stored it, so that original and
    /// playground instances sharing one memcached honour each other's logins.
    pub fn token(token: &Token) -> CacheKey {
        CacheKey(Bytes::copy_from_slice(token.as_bytes()))
    }

    /// The key under which a client's data is stored (`c-{key}` as in the
    /// original, so data written by it stays readable). No token starts with
    /// `c-` (see [`Token`]), so the two namespaces never meet.
    pub fn client(key: &Key) -> CacheKey {
        CacheKey::prefixed(CLIENT_PREFIX, key.as_bytes())
    }

    fn prefixed(prefix: &[u8], rest: &[u8]) -> CacheKey {
        let mut b = BytesMut::with_capacity(prefix.len() + rest.len());
        b.put_slice(prefix);
        b.put_slice(rest);
        CacheKey(b.freeze())
    }

    /// The key's bytes: printable ASCII without spaces, at most 66 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key's bytes, shared.
    pub fn bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// The key as text (always ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Get and set with a time to live.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The value stored under `key`, if any and not expired.
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, CacheError>;
    /// Stores `value` under `key` for `ttl`.
    async fn set(&self, key: &CacheKey, value: Bytes, ttl: Duration) -> Result<(), CacheError>;
    /// A short description for logs (`embedded`, `memcached ...`).
    fn describe(&self) -> String;
}
