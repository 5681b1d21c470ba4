//! In-process fan-out of broadcast lines to every connected client.
//!
//! One `tokio::sync::broadcast` ring holds the last `capacity` lines; each
//! client is only a cursor into it, so a broadcast costs one allocation no
//! matter how many clients receive it, and an idle client costs a few bytes.
//! The ring is also each client's bounded outgoing queue: a client that falls
//! more than `capacity` lines behind is told so ([`Delivery::Lagged`]) and the
//! connection handler disconnects it, so a slow reader never delays others.

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// The sending side, shared by the bus implementation.
#[derive(Clone)]
pub struct Fanout {
    tx: broadcast::Sender<Bytes>,
}

/// What a subscriber gets next.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// One line to push, `\n` included.
    Line(Bytes),
    /// The subscriber fell behind and missed this many lines.
    Lagged(u64),
    /// The bus is gone (shutdown).
    Closed,
}

/// One client's view of the fan-out.
pub struct Subscription {
    // The stream keeps one boxed receive future alive between polls, so a
    // client is registered once rather than on every loop of its handler.
    stream: BroadcastStream<Bytes>,
}

impl Fanout {
    /// A fan-out whose subscribers may each fall `capacity` lines behind.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Fanout { tx }
    }

    /// Delivers `message` (without its line end) to every current subscriber.
    /// Returns how many subscribers it was queued for.
    pub fn deliver(&self, message: &[u8]) -> usize {
        let mut line = BytesMut::with_capacity(message.len() + 1);
        line.put_slice(message);
        line.put_u8(b'\n');
        self.tx.send(line.freeze()).unwrap_or(0)
    }

    /// A new subscriber, receiving what is delivered from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription { stream: BroadcastStream::new(self.tx.subscribe()) }
    }

    /// Number of current subscribers.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

impl Subscription {
    /// Waits for the next delivery. Cancel-safe.
    pub async fn next(&mut self) -> Delivery {
        match self.stream.next().await {
            Some(Ok(line)) => Delivery::Line(line),
            Some(Err(BroadcastStreamRecvError::Lagged(n))) => Delivery::Lagged(n),
            None => Delivery::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_gets_every_line_once() {
        let f = Fanout::new(8);
        let mut a = f.subscribe();
        let mut b = f.subscribe();
        assert_eq!(f.deliver(b"hi"), 2);
        assert_eq!(a.next().await, Delivery::Line(Bytes::from_static(b"hi\n")));
        assert_eq!(b.next().await, Delivery::Line(Bytes::from_static(b"hi\n")));
    }

    #[tokio::test]
    async fn slow_subscriber_is_told_it_lagged() {
        let f = Fanout::new(2);
        let mut slow = f.subscribe();
        for i in 0..5u8 {
            f.deliver(&[b'0' + i]);
        }
        assert_eq!(slow.next().await, Delivery::Lagged(3));
    }
}
