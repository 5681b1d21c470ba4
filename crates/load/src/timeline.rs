//! The run second by second. Once a second the sampler turns the counters
//! into the differences since the previous sample and drains the latency
//! histograms into that second's percentiles; the run's total histograms
//! are the sum of the seconds after the warm-up (`--warmup`), and its totals
//! count from the warm-up's end. The last interval ends with the run and may
//! be shorter than a second, which is why each row carries its length; the
//! warm-up ends an interval of its own.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::stats::{Counts, Latencies, Percentiles, Stats};

/// One interval of the timeline (normally one second).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Second {
    /// End of the interval, in seconds since the start.
    pub t: f64,
    /// Length of the interval in seconds.
    pub secs: f64,
    /// Connections open at the end of the interval.
    pub connections: i64,
    /// What happened during the interval.
    #[serde(flatten)]
    pub counts: Counts,
    /// Sum of the error counters during the interval.
    pub errors: u64,
    pub sent_per_sec: f64,
    pub received_per_sec: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub delivery_ms_p99: f64,
    /// Part of the warm-up: left out of the results.
    #[serde(default)]
    pub warmup: bool,
}

/// The timeline being sampled, with the run's total histograms.
#[derive(Debug)]
pub struct Timeline {
    last_at: Duration,
    last: Counts,
    pub seconds: Vec<Second>,
    /// Every latency after the warm-up so far.
    pub total: Latencies,
    /// The counters at the end of the warm-up (zero without one).
    pub base: Counts,
    /// When the warm-up ended, as sampled (zero without one).
    pub warmup_end: Duration,
    /// The interval histograms, kept to be reused.
    scratch: Option<Latencies>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            last_at: Duration::ZERO,
            last: Counts::default(),
            seconds: Vec::new(),
            total: Latencies::default(),
            base: Counts::default(),
            warmup_end: Duration::ZERO,
            scratch: None,
        }
    }
}

impl Timeline {
    /// Closes the interval ending `at` after the start, from the live stats;
    /// `warmup`: the interval is part of the warm-up.
    pub fn sample_stats(&mut self, at: Duration, stats: &Stats, warmup: bool) -> Option<&Second> {
        let mut interval = self.scratch.take().unwrap_or_default();
        interval.drain(stats);
        let open = stats.open.load(std::sync::atomic::Ordering::Relaxed);
        self.sample(at, stats.count.snapshot(), open, &interval, warmup);
        interval.reset();
        self.scratch = Some(interval);
        self.seconds.last()
    }

    /// Closes the interval ending `at`, given the counters then, the open
    /// connections and the interval's latencies.
    pub fn sample(&mut self, at: Duration, counts: Counts, open: i64, interval: &Latencies, warmup: bool) {
        if warmup {
            self.base = counts;
            self.warmup_end = at;
        } else {
            self.total.add(interval);
        }
        let diff = counts.since(&self.last);
        let secs = at.saturating_sub(self.last_at).as_secs_f64();
        // A sliver at the very end with nothing in it is not an interval.
        if secs < 0.05 && diff == Counts::default() && !self.seconds.is_empty() {
            return;
        }
        let per_sec = |n: u64| n as f64 / secs.max(1e-3);
        let (lat, del) = (Percentiles::of(&interval.latency), Percentiles::of(&interval.delivery));
        self.seconds.push(Second {
            t: at.as_secs_f64(),
            secs,
            connections: open,
            counts: diff,
            errors: diff.errors(),
            sent_per_sec: per_sec(diff.sent),
            received_per_sec: per_sec(diff.received),
            latency_ms_p50: lat.p50,
            latency_ms_p99: lat.p99,
            latency_ms_max: lat.max,
            delivery_ms_p99: del.p99,
            warmup,
        });
        self.last = counts;
        self.last_at = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(ms: &[u64]) -> Latencies {
        let mut h = Latencies::default();
        for m in ms {
            h.latency.record(m * 1000).unwrap();
        }
        h
    }

    fn counts(sent: u64, received: u64, timeouts: u64) -> Counts {
        Counts { sent, received, timeouts, ..Default::default() }
    }

    #[test]
    fn each_second_gets_its_own_counts_and_latencies() {
        let mut t = Timeline::default();
        let empty = Latencies::default();
        t.sample(Duration::from_secs(1), counts(100, 98, 2), 10, &hist(&[1, 1, 2]), false);
        t.sample(Duration::from_secs(2), counts(300, 297, 3), 12, &hist(&[5, 9]), false);
        t.sample(Duration::from_millis(2500), counts(350, 347, 3), 0, &empty, false);
        // Nothing happened in the last sliver: no row for it.
        t.sample(Duration::from_millis(2510), counts(350, 347, 3), 0, &empty, false);
        let s = &t.seconds;
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].counts.sent, s[0].counts.received, s[0].errors), (100, 98, 2));
        assert_eq!((s[1].counts.sent, s[1].counts.received, s[1].errors), (200, 199, 1));
        assert_eq!((s[1].t, s[1].connections), (2.0, 12));
        // HDR histograms answer with the top of a value's bucket (3 digits).
        assert!((s[1].latency_ms_max - 9.0).abs() < 0.01, "{}", s[1].latency_ms_max);
        assert_eq!(s[2].secs, 0.5);
        assert_eq!(s[2].sent_per_sec, 100.0, "50 messages in half a second");
        assert_eq!(s[2].latency_ms_p99, 0.0);
        assert_eq!(t.total.latency.len(), 5);
    }

    #[test]
    fn the_warmup_is_left_out_of_the_totals() {
        let mut t = Timeline::default();
        t.sample(Duration::from_secs(1), counts(100, 90, 10), 10, &hist(&[100]), true);
        t.sample(Duration::from_millis(1500), counts(150, 140, 10), 10, &hist(&[50]), true);
        t.sample(Duration::from_millis(2500), counts(250, 240, 10), 10, &hist(&[1, 2]), false);
        assert_eq!((t.base, t.warmup_end), (counts(150, 140, 10), Duration::from_millis(1500)));
        assert_eq!(t.total.latency.len(), 2);
        assert!(t.total.latency.max() < 3000);
        let marks: Vec<bool> = t.seconds.iter().map(|s| s.warmup).collect();
        assert_eq!(marks, [true, true, false]);
    }

    #[test]
    fn sampling_live_stats_drains_them() {
        let stats = Stats::default();
        stats.latency.record(1, Duration::from_millis(3));
        stats.count.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut t = Timeline::default();
        let first = t.sample_stats(Duration::from_secs(1), &stats, false).cloned().unwrap();
        assert_eq!(first.counts.sent, 1);
        assert!((first.latency_ms_p99 - 3.0).abs() < 0.01, "{}", first.latency_ms_p99);
        let second = t.sample_stats(Duration::from_secs(2), &stats, false).cloned().unwrap();
        assert_eq!((second.counts.sent, second.latency_ms_p99), (0, 0.0));
        assert_eq!(t.total.latency.len(), 1);
    }
}
