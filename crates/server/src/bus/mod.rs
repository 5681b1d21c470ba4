//! The broadcast bus: `brd` publishes through it, and every connected client
//! of every instance receives what was published. The command executor only
//! sees the [`Bus`] trait; the embedded bus serves one process, Kafka serves
//! many. Either way, delivery inside a process goes through one [`Fanout`].

mod embedded;
mod fanout;
mod kafka;

use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::Bytes;

pub use embedded::EmbeddedBus;
pub use fanout::{Delivery, Fanout, Pushed, Subscription};
pub use kafka::KafkaBus;

/// The bus did not accept the message; the client gets
/// `error: broadcast unavailable`.
#[derive(Debug, thiserror::Error)]
#[error("broadcast unavailable: {0}")]
pub struct BusError(pub String);

/// Publish to all instances; subscribe to what reaches this one.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes `message` from `sender` to every client of every instance.
    async fn publish(&self, sender: SocketAddr, message: Bytes) -> Result<(), BusError>;
    /// A subscription to every broadcast this instance receives from now on.
    fn subscribe(&self) -> Subscription;
    /// A short description for logs.
    fn describe(&self) -> String;
}
