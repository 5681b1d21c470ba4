//! playground: TCP and UDP servers for huge numbers of clients, sharing state
//! through a cache (embedded or memcached) and broadcasts through a bus
//! (embedded or Kafka), with a load generator to prove it.
//!
//! The layout follows tokio's mini-redis: a listener per transport, one
//! handler per connection over a framed connection (TCP) or per datagram
//! ([`udp`]), one module per command in [`executor`], and an explicit, phased
//! shutdown in [`lifecycle`].

pub mod admin;
pub mod bus;
pub mod cache;
pub mod config;
pub mod executor;
pub mod kafka;
pub mod lifecycle;
pub mod load;
pub mod logger;
pub mod logship;
pub mod metrics;
pub mod serve;
pub mod tcp;
pub mod telemetry;
pub mod udp;
