//! The embedded in-process bus, used when no Kafka is configured: a publish
//! goes straight to this process's fan-out.

use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Bus, BusError, Fanout, Subscription};

/// A bus that reaches the clients of this process only.
pub struct EmbeddedBus {
    fanout: Fanout,
}

impl EmbeddedBus {
    /// A bus whose clients may each fall `client_queue` lines behind.
    pub fn new(client_queue: usize) -> Self {
        EmbeddedBus { fanout: Fanout::new(client_queue) }
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn publish(&self, _sender: SocketAddr, message: Bytes) -> Result<(), BusError> {
        self.fanout.deliver(&message);
        Ok(())
    }

    fn subscribe(&self) -> Subscription {
        self.fanout.subscribe()
    }

    fn describe(&self) -> String {
        "embedded (this process only)".into()
    }
}
