//! In-process fan-out of broadcast lines to every connected client.
//!
//! One `tokio::sync::broadcast` ring holds the last `capacity` lines; each
//! client is only a cursor into it, so a broadcast costs one allocation no
//! matter how many clients receive it, and an idle client costs a few bytes.
//! The ring is also each client's bounded outgoing queue: a client that falls
//! more than `capacity` lines behind is told so ([`Delivery::Lagged`]) and the
//! connection handler disconnects it, so a slow reader never delays others.
//!
//! Each broadcast also counts the subscribers it was queued for. A
//! subscriber is done with it when it drops the [`Pushed`] it received (the
//! handler keeps it until the line is written to its socket) or leaves
//! without reading it; when the last one is done, the time since the bus
//! handed the broadcast over is recorded in
//! `playground_broadcast_fanout_duration_seconds`: the server's own share of
//! a broadcast's latency. A broadcast some subscriber skipped because it
//! lagged is not recorded (that subscriber is disconnected).

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use metrics::Histogram;
use playground_common::quiet::WakeFlag;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// The sending side, shared by the bus implementation.
#[derive(Clone)]
pub struct Fanout {
    tx: broadcast::Sender<Arc<Broadcast>>,
    fanout_time: Histogram,
    /// Broadcasts delivered so far, counted once each is in the ring.
    sent: Arc<AtomicU64>,
}

/// One broadcast in the ring.
struct Broadcast {
    line: Bytes,
    since: Instant,
    /// Subscribers not yet done with it, plus the count added once it was
    /// queued (so it can go below zero meanwhile; the one that brings it to
    /// zero records the time).
    left: AtomicIsize,
    fanout_time: Histogram,
}

impl Broadcast {
    /// Adds `n` to the subscribers left; records the fan-out time if that
    /// makes it the last.
    fn settle(&self, n: isize) {
        if self.left.fetch_add(n, Ordering::AcqRel) + n == 0 {
            self.fanout_time.record(self.since.elapsed().as_secs_f64());
        }
    }
}

/// A broadcast line as one subscriber received it; dropping it tells the
/// fan-out this subscriber is done with it.
pub struct Pushed(Arc<Broadcast>);

impl std::fmt::Debug for Pushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Pushed").field(&self.0.line).finish()
    }
}

impl Pushed {
    /// The line to push, `\n` included.
    pub fn line(&self) -> &Bytes {
        &self.0.line
    }
}

impl Drop for Pushed {
    fn drop(&mut self) {
        self.0.settle(-1);
    }
}

/// What a subscriber gets next.
#[derive(Debug)]
pub enum Delivery {
    /// One line to push.
    Line(Pushed),
    /// The subscriber fell behind and missed this many lines.
    Lagged(u64),
    /// The bus is gone (shutdown).
    Closed,
}

/// One client's view of the fan-out. It is polled through a [`WakeFlag`]
/// the caller owns, so that a connection waits on it and on its other
/// wakes with one registration.
///
/// `repr(C)`: the two fields [`Subscription::try_next`] reads after every
/// command come first, next to the connection's wake flag
/// (docs/performance.md, "Fewer cache lines per reply").
#[repr(C)]
pub struct Subscription {
    sent: Arc<AtomicU64>,
    /// `sent` when the stream last had nothing to give.
    seen: u64,
    // The stream keeps one boxed receive future alive between polls, so a
    // client is registered once rather than on every loop of its handler;
    // the flag spares that loop the channel's shared lock each time it
    // polls the stream without a broadcast having come.
    stream: BroadcastStream<Arc<Broadcast>>,
}

impl Fanout {
    /// A fan-out whose subscribers may each fall `capacity` lines behind.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Fanout {
            tx,
            fanout_time: metrics::histogram!("playground_broadcast_fanout_duration_seconds"),
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Delivers `message` (without its line end) to every current subscriber.
    /// Returns how many subscribers it was queued for.
    pub fn deliver(&self, message: &[u8]) -> usize {
        let mut line = BytesMut::with_capacity(message.len() + 1);
        line.put_slice(message);
        line.put_u8(b'\n');
        let broadcast = Arc::new(Broadcast {
            line: line.freeze(),
            since: Instant::now(),
            left: AtomicIsize::new(0),
            fanout_time: self.fanout_time.clone(),
        });
        let queued = self.tx.send(broadcast.clone()).unwrap_or(0);
        self.sent.fetch_add(1, Ordering::Release);
        if queued > 0 {
            broadcast.settle(queued as isize);
        }
        queued
    }

    /// A new subscriber, receiving what is delivered from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription { stream: BroadcastStream::new(self.tx.subscribe()), sent: self.sent.clone(), seen: 0 }
    }

    /// Number of current subscribers.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

impl Subscription {
    /// Starts loading the count of broadcasts sent, which [`Subscription::try_next`]
    /// reads after every command.
    pub fn prefetch(&self) {
        playground_common::quiet::prefetch(Arc::as_ptr(&self.sent));
    }

    /// Waits for the next delivery, polled through `flag`. Cancel-safe.
    pub async fn next(&mut self, flag: &mut WakeFlag) -> Delivery {
        poll_fn(|cx| flag.poll(cx, |cx| self.poll_next(cx))).await
    }

    /// Polls for the next delivery. `cx` must always be the same flag's
    /// (see [`WakeFlag::poll`]): another waker would take the channel's
    /// lock to replace the one registered.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Delivery> {
        self.stream.poll_next_unpin(cx).map(Self::delivery)
    }

    /// The next delivery if one is there already, without waiting. When
    /// nothing was delivered since the stream last came up empty, this is
    /// one atomic load: polling the channel instead would take the lock
    /// every subscriber shares (measured: the largest user-space cost of a
    /// command). A delivery this misses is not lost: the next poll through
    /// `flag` gets it.
    pub fn try_next(&mut self, flag: &mut WakeFlag) -> Option<Delivery> {
        let sent = self.sent.load(Ordering::Acquire);
        if sent == self.seen {
            return None;
        }
        match flag.poll_now(|cx| self.poll_next(cx)) {
            Poll::Ready(next) => Some(next),
            // Pending with the task's budget used up says nothing of the
            // channel: look again next time.
            Poll::Pending if !tokio::task::coop::has_budget_remaining() => None,
            Poll::Pending => {
                self.seen = sent;
                None
            }
        }
    }

    fn delivery(next: Option<Result<Arc<Broadcast>, BroadcastStreamRecvError>>) -> Delivery {
        match next {
            Some(Ok(broadcast)) => Delivery::Line(Pushed(broadcast)),
            Some(Err(BroadcastStreamRecvError::Lagged(n))) => Delivery::Lagged(n),
            None => Delivery::Closed,
        }
    }
}

impl Drop for Subscription {
    /// A subscriber that leaves is done with what it had not read yet.
    fn drop(&mut self) {
        while let Some(Some(Ok(broadcast))) = self.stream.next().now_or_never() {
            drop(Pushed(broadcast));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Delivery {
        fn text(self) -> String {
            match self {
                Delivery::Line(p) => String::from_utf8(p.line().to_vec()).unwrap(),
                other => panic!("not a line: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_line_once() {
        let f = Fanout::new(8);
        let (mut a, mut fa) = (f.subscribe(), WakeFlag::default());
        let (mut b, mut fb) = (f.subscribe(), WakeFlag::default());
        assert_eq!(f.deliver(b"hi"), 2);
        assert_eq!(a.next(&mut fa).await.text(), "hi\n");
        assert_eq!(b.next(&mut fb).await.text(), "hi\n");
    }

    #[tokio::test]
    async fn try_next_takes_what_is_there_and_never_waits() {
        let f = Fanout::new(8);
        let (mut a, mut fa) = (f.subscribe(), WakeFlag::default());
        assert!(a.try_next(&mut fa).is_none());
        f.deliver(b"1");
        f.deliver(b"2");
        assert_eq!(a.try_next(&mut fa).map(Delivery::text).as_deref(), Some("1\n"));
        assert_eq!(a.try_next(&mut fa).map(Delivery::text).as_deref(), Some("2\n"));
        assert!(a.try_next(&mut fa).is_none());
        assert!(a.try_next(&mut fa).is_none());
        // Sent before it subscribed: never its own, and no reason to look again.
        let (mut late, mut fl) = (f.subscribe(), WakeFlag::default());
        assert!(late.try_next(&mut fl).is_none());
        f.deliver(b"3");
        assert_eq!(late.try_next(&mut fl).map(Delivery::text).as_deref(), Some("3\n"));
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), a.next(&mut fa)).await;
        assert_eq!(next.expect("a delivery after an empty try_next is not missed").text(), "3\n");
    }

    #[tokio::test]
    async fn a_subscriber_waiting_after_an_empty_try_next_is_woken() {
        let f = Fanout::new(8);
        let (mut a, mut fa) = (f.subscribe(), WakeFlag::default());
        f.deliver(b"1");
        assert_eq!(a.try_next(&mut fa).map(Delivery::text).as_deref(), Some("1\n"));
        assert!(a.try_next(&mut fa).is_none(), "came up empty: now waiting on the flag");
        let waiter = tokio::spawn(async move { (a.next(&mut fa).await.text(), a.next(&mut fa).await.text()) });
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        f.deliver(b"2");
        tokio::task::yield_now().await;
        f.deliver(b"3");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(got, ("2\n".to_string(), "3\n".to_string()));
    }

    /// A task whose tokio budget is used up gets Pending from the channel
    /// whatever it holds: that must not count as having looked.
    #[tokio::test]
    async fn a_pending_for_want_of_budget_is_not_taken_for_an_empty_channel() {
        let f = Fanout::new(8);
        let (mut a, mut fa) = (f.subscribe(), WakeFlag::default());
        f.deliver(b"1");
        while tokio::task::consume_budget().now_or_never().is_some() {}
        assert!(a.try_next(&mut fa).is_none(), "no budget: the channel is not read");
        tokio::task::yield_now().await;
        assert_eq!(a.try_next(&mut fa).map(Delivery::text).as_deref(), Some("1\n"));
    }

    #[tokio::test]
    async fn slow_subscriber_is_told_it_lagged() {
        let f = Fanout::new(2);
        let (mut slow, mut fs) = (f.subscribe(), WakeFlag::default());
        for i in 0..5u8 {
            f.deliver(&[b'0' + i]);
        }
        assert!(matches!(slow.next(&mut fs).await, Delivery::Lagged(3)));
    }

    #[tokio::test]
    async fn a_broadcast_is_settled_when_the_last_subscriber_is_done() {
        let f = Fanout::new(8);
        let (mut a, mut fa) = (f.subscribe(), WakeFlag::default());
        let b = f.subscribe();
        f.deliver(b"x");
        let Delivery::Line(pushed) = a.next(&mut fa).await else { panic!() };
        let broadcast = pushed.0.clone();
        assert_eq!(broadcast.left.load(Ordering::Acquire), 2);
        drop(pushed);
        assert_eq!(broadcast.left.load(Ordering::Acquire), 1);
        // b leaves without reading it.
        drop(b);
        assert_eq!(broadcast.left.load(Ordering::Acquire), 0);
    }
}
