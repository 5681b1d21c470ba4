//! Live counters and latency histograms of a run. Counters are atomics
//! shared by every client. Latencies go to a few mutex-guarded HDR
//! histograms picked by client number, so recording rarely contends and the
//! memory does not grow with the number of connections (one histogram per
//! connection would cost ~190 KB each). The once-a-second sampler drains them
//! (see [`super::timeline`]).
//!
//! A reply's latency is recorded twice: from the time its request was meant
//! to go by the schedule (corrected for coordinated omission, as wrk2 does)
//! and from the time it actually went (uncorrected). Send slots the schedule
//! skipped because the client was still waiting ([`Missed`]) are recorded in
//! the corrected histogram too, each as the latency its request would have
//! had, had it gone in its slot and been answered with the next reply.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;
use playground_protocol::ErrorReply;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters, shared by every client.
        #[derive(Debug, Default)]
        pub struct Counters { $($(#[$doc])* pub $name: AtomicU64,)* }

        /// A snapshot of the counters (or the difference of two).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
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

            /// The counts of two runs together.
            pub fn plus(&self, other: &Counts) -> Counts {
                Counts { $($name: self.$name.saturating_add(other.$name),)* }
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
    /// Connections a full server refused (`error: server full`, then it
    /// closes them): the client opens another after the reconnect delay.
    /// Not an error: the refusal is the server's limit working.
    refused,
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
    /// Send slots of the schedule (`--rate`, `--msg-interval`) that passed
    /// while the client still waited for a reply, and so were skipped.
    missed_slots,
}

impl Counts {
    /// Everything that went wrong (reconnects are not errors: they are the
    /// server's orderly shutdown).
    pub fn errors(&self) -> u64 {
        self.connect_errors + self.resets + self.timeouts + self.wrong_replies + self.publish_errors
    }
}

/// Send slots skipped right before a request: `count` slots, `period` apart,
/// the last one `period` before the request's own slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Missed {
    pub count: u64,
    pub period: Duration,
}

impl Missed {
    /// These slots and `more` slots together (the period of the later ones).
    pub fn and(self, more: Missed) -> Missed {
        if more.count == 0 { self } else { Missed { count: self.count + more.count, period: more.period } }
    }
}

/// When a request went: its slot in the schedule, the actual send, and the
/// slots skipped before it.
#[derive(Debug, Clone, Copy)]
pub struct SendTimes {
    pub intended: Instant,
    pub sent: Instant,
    pub missed: Missed,
}

/// Most distinct values recorded for the slots missed before one request;
/// beyond it they are recorded in as many groups, each value counted several
/// times, so that a long stall at a high rate costs bounded time.
const MAX_MISSED_VALUES: u64 = 100_000;

/// A new latency histogram in microseconds (1 µs to 1 h, 3 digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// The latency histograms of a run (or of one interval of it), in the JSON
/// report as HdrHistogram's compressed form ([`super::hdr`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// Request slot to reply (corrected), microseconds.
    #[serde(with = "super::hdr")]
    pub latency: Histogram<u64>,
    /// Actual send to reply (uncorrected), microseconds.
    #[serde(with = "super::hdr")]
    pub latency_uncorrected: Histogram<u64>,
    /// Broadcast sent to broadcast received, microseconds.
    #[serde(with = "super::hdr")]
    pub delivery: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies { latency: new_histogram(), latency_uncorrected: new_histogram(), delivery: new_histogram() }
    }
}

impl Latencies {
    /// Moves what the clients recorded so far into these histograms.
    pub fn drain(&mut self, stats: &Stats) {
        stats.latency.drain_into(&mut self.latency);
        stats.latency_uncorrected.drain_into(&mut self.latency_uncorrected);
        stats.delivery_latency.drain_into(&mut self.delivery);
    }

    /// Adds `other`'s values.
    pub fn add(&mut self, other: &Latencies) {
        let _ = self.latency.add(&other.latency);
        let _ = self.latency_uncorrected.add(&other.latency_uncorrected);
        let _ = self.delivery.add(&other.delivery);
    }

    /// Empties the histograms, keeping their memory.
    pub fn reset(&mut self) {
        self.latency.reset();
        self.latency_uncorrected.reset();
        self.delivery.reset();
    }
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

    /// Records the latency of a request slot skipped before one whose reply
    /// took `latency` from its slot (see [`Missed`]).
    fn record_missed(&self, id: u32, latency: Duration, missed: Missed) {
        if missed.count == 0 {
            return;
        }
        let groups = missed.count.min(MAX_MISSED_VALUES);
        let per_group = missed.count / groups;
        let mut h = self.0[id as usize % SHARDS].lock().unwrap_or_else(|p| p.into_inner());
        for g in 0..groups {
            // The last group takes the remainder.
            let n = if g + 1 == groups { missed.count - per_group * (groups - 1) } else { per_group };
            let back = missed.period.saturating_mul(u32::try_from(g * per_group + 1).unwrap_or(u32::MAX));
            let us = (latency.saturating_add(back).as_micros() as u64).clamp(1, 3_600_000_000);
            let _ = h.record_n(us, n);
        }
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
    /// Request slot to reply (corrected for coordinated omission).
    pub latency: Shards,
    /// Actual send to reply.
    pub latency_uncorrected: Shards,
    /// Broadcast sent to broadcast received.
    pub delivery_latency: Shards,
    last_connect_error: Mutex<Option<String>>,
    /// Wrong replies that are the servers' error replies, by error.
    error_replies: Mutex<BTreeMap<String, u64>>,
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

    /// Records the latency of a right reply received at `now` to a request
    /// sent as `times` says: from its slot, from its send, and for the slots
    /// skipped before it.
    pub fn replied(&self, id: u32, now: Instant, times: &SendTimes) {
        let corrected = now.saturating_duration_since(times.intended);
        self.latency.record(id, corrected);
        self.latency_uncorrected.record(id, now.saturating_duration_since(times.sent));
        self.latency.record_missed(id, corrected, times.missed);
    }

    /// Remembers why the last connection attempt failed, for the report.
    pub fn connect_failed(&self, why: String) {
        self.count.connect_errors.fetch_add(1, Relaxed);
        *self.last_connect_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Counts a reply that is not the right one, and which server error it
    /// is, if it is one (`error: finding key K` counts without its key).
    pub fn wrong_reply(&self, reply: &[u8]) {
        self.count.wrong_replies.fetch_add(1, Relaxed);
        let Some(error) = ErrorReply::parse(reply) else { return };
        let text = match error {
            ErrorReply::NotFound(_) => "error: finding key".to_string(),
            _ => String::from_utf8_lossy(reply).into_owned(),
        };
        *self.error_replies.lock().unwrap_or_else(|p| p.into_inner()).entry(text).or_default() += 1;
    }

    /// The servers' error replies among the wrong replies, by error.
    pub fn error_replies(&self) -> BTreeMap<String, u64> {
        self.error_replies.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why the last connection attempt failed, if one did.
    pub fn last_connect_error(&self) -> Option<String> {
        self.last_connect_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
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
    fn missed_slots_are_recorded_from_their_own_slot() {
        let stats = Stats::default();
        let t0 = Instant::now();
        let missed = Missed { count: 2, period: Duration::from_millis(10) };
        let times = SendTimes { intended: t0, sent: t0 + Duration::from_millis(4), missed };
        stats.replied(0, t0 + Duration::from_millis(5), &times);
        let (mut corrected, mut raw) = (new_histogram(), new_histogram());
        stats.latency.drain_into(&mut corrected);
        stats.latency_uncorrected.drain_into(&mut raw);
        let values: Vec<u64> = corrected.iter_recorded().map(|v| v.value_iterated_to() / 1000).collect();
        assert_eq!(values, [5, 15, 25], "the reply and the two slots before it");
        assert_eq!((raw.len(), raw.max() / 1000), (1, 1));
        // A huge stall is recorded in bounded groups, every slot counted.
        let many = Missed { count: 1_000_003, period: Duration::from_micros(1) };
        stats.replied(0, t0 + Duration::from_millis(5), &SendTimes { missed: many, ..times });
        let mut h = new_histogram();
        stats.latency.drain_into(&mut h);
        assert_eq!(h.len(), 1_000_004);
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
