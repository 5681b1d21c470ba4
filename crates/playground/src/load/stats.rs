//! Counters and latency percentiles of a load run. Counters are atomics
//! shared by all connections; each connection keeps its own HDR histogram
//! and merges it at the end, so recording never contends.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Live counters of a run.
#[derive(Default)]
pub struct Stats {
    pub connections_opened: AtomicU64,
    pub connect_errors: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub timeouts: AtomicU64,
    pub wrong_replies: AtomicU64,
    pub reconnects: AtomicU64,
    pub resets: AtomicU64,
    latency: Mutex<Option<Histogram<u64>>>,
}

/// A new latency histogram in microseconds (1 µs to 1 h, 3 digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

impl Stats {
    /// Adds one connection's latencies.
    pub fn merge_latency(&self, h: &Histogram<u64>) {
        let mut guard = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let total = guard.get_or_insert_with(new_histogram);
        let _ = total.add(h);
    }

    /// The report of what ran so far.
    pub fn report(&self, elapsed: Duration) -> Report {
        let h = self.latency.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_else(new_histogram);
        let ms = |q: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 };
        let sent = self.sent.load(Relaxed);
        let received = self.received.load(Relaxed);
        let timeouts = self.timeouts.load(Relaxed);
        Report {
            elapsed_secs: elapsed.as_secs_f64(),
            connections_opened: self.connections_opened.load(Relaxed),
            connect_errors: self.connect_errors.load(Relaxed),
            sent,
            received,
            timeouts,
            timeout_percent: if sent == 0 { 0.0 } else { timeouts as f64 * 100.0 / sent as f64 },
            wrong_replies: self.wrong_replies.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            resets: self.resets.load(Relaxed),
            throughput_per_sec: received as f64 / elapsed.as_secs_f64().max(1e-9),
            latency_ms_p50: ms(0.50),
            latency_ms_p90: ms(0.90),
            latency_ms_p99: ms(0.99),
            latency_ms_p999: ms(0.999),
            latency_ms_max: if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
        }
    }
}

/// The final figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub elapsed_secs: f64,
    pub connections_opened: u64,
    pub connect_errors: u64,
    pub sent: u64,
    pub received: u64,
    pub timeouts: u64,
    pub timeout_percent: f64,
    pub wrong_replies: u64,
    pub reconnects: u64,
    pub resets: u64,
    pub throughput_per_sec: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_p999: f64,
    pub latency_ms_max: f64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "elapsed            {:.2} s", self.elapsed_secs)?;
        writeln!(f, "connections        {} opened, {} failed", self.connections_opened, self.connect_errors)?;
        writeln!(f, "packets sent       {}", self.sent)?;
        writeln!(f, "packets received   {}", self.received)?;
        writeln!(f, "timeouts           {} ({:.2} %)", self.timeouts, self.timeout_percent)?;
        writeln!(f, "wrong replies      {}", self.wrong_replies)?;
        writeln!(f, "reconnects         {}", self.reconnects)?;
        writeln!(f, "resets             {}", self.resets)?;
        writeln!(f, "throughput         {:.0} replies/s", self.throughput_per_sec)?;
        write!(
            f,
            "latency ms         p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            self.latency_ms_p50, self.latency_ms_p90, self.latency_ms_p99, self.latency_ms_p999, self.latency_ms_max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_inputs() {
        let stats = Stats::default();
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap(); // 1 ms .. 1000 ms
        }
        stats.merge_latency(&h);
        stats.sent.store(1000, Relaxed);
        stats.received.store(990, Relaxed);
        stats.timeouts.store(10, Relaxed);
        let r = stats.report(Duration::from_secs(2));
        assert!((r.latency_ms_p50 - 500.0).abs() < 1.0, "{}", r.latency_ms_p50);
        assert!((r.latency_ms_p99 - 990.0).abs() < 1.0, "{}", r.latency_ms_p99);
        assert!((r.latency_ms_max - 1000.0).abs() < 1.0);
        assert!((r.timeout_percent - 1.0).abs() < 1e-9);
        assert!((r.throughput_per_sec - 495.0).abs() < 1e-9);
    }

    #[test]
    fn empty_run_reports_zeros() {
        let r = Stats::default().report(Duration::from_secs(1));
        assert_eq!(r.sent, 0);
        assert_eq!(r.latency_ms_max, 0.0);
        assert!(r.to_string().contains("packets sent       0"));
    }
}
