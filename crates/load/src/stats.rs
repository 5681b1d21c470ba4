//! Live counters and latency histograms of a run. Counters are atomics
//! shared by every client. Latencies go to a few mutex-guarded HDR
//! histograms picked by client number, so recording rarely contends and the
//! memory does not grow with the number of connections (one histogram per
//! connection would cost ~190 KB each). The once-a-second sampler drains them
//! (see [`super::timeline`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters, shared by every client.
        #[derive(Debug, Default)]
        pub struct Counters { $($(#[$doc])* pub $name: AtomicU64,)* }

        /// A snapshot of the counters (or the difference of two).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct Counts { $($(#[$doc])* pub $name: u64,)* }

        impl Counters {
            /// The current values.
            pub fn snapshot(&self) -> Counts {
                Counts { $($name: self.$name.load(Relaxed),)* }
            }
        }

        impl Counts {
            /// What happened between `earlier` and `self`.
            pub fn since(&self, earlier: &Counts) -> Counts {
                Counts { $($name: self.$name.saturating_sub(earlier.$name),)* }
            }
        }
    };
}

counters! {
    /// Connections established (first ones and reconnections).
    connections_opened,
    /// Connection attempts that failed or timed out.
    connect_errors,
    /// Requests sent.
    sent,
    /// Right replies received in time.
    received,
    /// Right replies received after the read timeout (already counted as timeouts).
    late_replies,
    /// Requests without a reply within the read timeout.
    timeouts,
    /// Replies that were not the expected ones.
    wrong_replies,
    /// With packet framing: reads that held more than one message, as far as
    /// can be told (each also counted as a wrong reply).
    merged_reads,
    /// Requests still without a reply when their connection ended (server
    /// shutdown, lost connection, end of the run).
    unanswered,
    /// `reconnect` lines received.
    reconnects,
    /// Connections lost (closed or reset by the other side, failed writes).
    resets,
    /// Broadcasts the server confirmed publishing.
    published,
    /// Broadcasts the server refused to publish.
    publish_errors,
    /// Broadcasts of this run received (every receiver counts).
    deliveries,
    /// Broadcasts received twice on one connection.
    duplicate_deliveries,
    /// Broadcasts of other load generator runs, ignored.
    foreign_broadcasts,
}

impl Counts {
    /// Everything that went wrong (reconnects are not errors: they are the
    /// server's orderly shutdown).
    pub fn errors(&self) -> u64 {
        self.connect_errors + self.resets + self.timeouts + self.wrong_replies + self.publish_errors
    }
}

/// A new latency histogram in microseconds (1 µs to 1 h, 3 digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// A handful of histograms that clients record into by client number.
#[derive(Debug)]
pub struct Shards(Box<[Mutex<Histogram<u64>>]>);

/// Histograms per kind of latency; a power of two above the usual core count.
const SHARDS: usize = 8;

impl Default for Shards {
    fn default() -> Self {
        Shards((0..SHARDS).map(|_| Mutex::new(new_histogram())).collect())
    }
}

impl Shards {
    /// Records one latency for client `id`.
    pub fn record(&self, id: u32, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
        let mut h = self.0[id as usize % SHARDS].lock().unwrap_or_else(|p| p.into_inner());
        let _ = h.record(us);
    }

    /// Moves everything recorded so far into `into`.
    pub fn drain_into(&self, into: &mut Histogram<u64>) {
        for shard in self.0.iter() {
            let mut h = shard.lock().unwrap_or_else(|p| p.into_inner());
            let _ = into.add(&*h);
            h.reset();
        }
    }
}

/// Everything the clients of a run record.
#[derive(Debug, Default)]
pub struct Stats {
    pub count: Counters,
    /// Connections open now.
    pub open: AtomicI64,
    /// The most connections open at once.
    pub peak_open: AtomicI64,
    /// Request to reply.
    pub latency: Shards,
    /// Broadcast sent to broadcast received.
    pub delivery_latency: Shards,
    last_connect_error: Mutex<Option<String>>,
}

impl Stats {
    /// A connection opened.
    pub fn opened(&self) {
        self.count.connections_opened.fetch_add(1, Relaxed);
        let now = self.open.fetch_add(1, Relaxed) + 1;
        self.peak_open.fetch_max(now, Relaxed);
    }

    /// A connection closed.
    pub fn closed(&self) {
        self.open.fetch_sub(1, Relaxed);
    }

    /// Remembers why the last connection attempt failed, for the report.
    pub fn connect_failed(&self, why: String) {
        self.count.connect_errors.fetch_add(1, Relaxed);
        *self.last_connect_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Why the last connection attempt failed, if one did.
    pub fn last_connect_error(&self) -> Option<String> {
        self.last_connect_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// The percentiles of a histogram in microseconds.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_inputs() {
        let stats = Stats::default();
        for ms in 1..=1000u64 {
            stats.latency.record(ms as u32, Duration::from_millis(ms));
        }
        let mut h = new_histogram();
        stats.latency.drain_into(&mut h);
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        let near = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 1e-9;
        assert!(near(p.p50, 500.0), "{p:?}");
        assert!(near(p.p90, 900.0), "{p:?}");
        assert!(near(p.p99, 990.0), "{p:?}");
        assert!(near(p.p999, 999.0), "{p:?}");
        assert!(near(p.max, 1000.0), "{p:?}");
        assert!(near(p.mean, 500.5), "{p:?}");
        // Drained: the next interval starts empty.
        let mut again = new_histogram();
        stats.latency.drain_into(&mut again);
        assert!(again.is_empty());
    }

    #[test]
    fn extreme_latencies_are_clamped_not_lost() {
        let s = Shards::default();
        s.record(0, Duration::ZERO);
        s.record(1, Duration::from_secs(10 * 3600));
        let mut h = new_histogram();
        s.drain_into(&mut h);
        assert_eq!(h.len(), 2);
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }

    #[test]
    fn counts_and_differences() {
        let c = Counters::default();
        c.sent.fetch_add(10, Relaxed);
        c.timeouts.fetch_add(2, Relaxed);
        let first = c.snapshot();
        c.sent.fetch_add(5, Relaxed);
        c.wrong_replies.fetch_add(1, Relaxed);
        c.reconnects.fetch_add(1, Relaxed);
        let d = c.snapshot().since(&first);
        assert_eq!((d.sent, d.timeouts, d.wrong_replies), (5, 0, 1));
        assert_eq!(c.snapshot().errors(), 3, "reconnects are not errors");
    }
}
