//! The playground servers: TCP and UDP, sharing state through a cache
//! (embedded or memcached) and broadcasts through a bus (embedded or Kafka).
//!
//! The layout follows tokio's mini-redis: a listener per transport, one
//! handler per connection over a framed connection ([`tcp`]) or per datagram
//! ([`udp`]), one module per command in [`executor`], and the explicit,
//! phased shutdown of `playground_common::lifecycle`.

pub mod bus;
pub mod cache;
pub mod config;
pub mod executor;
pub mod kafka;
pub mod limits;
pub mod logship;
pub mod metrics;
pub mod runtime;
pub mod serve;
pub mod tcp;
pub mod udp;
