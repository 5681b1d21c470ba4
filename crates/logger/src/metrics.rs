//! The logger's Prometheus metrics. The names are a contract with the Helm
//! chart (alerts and dashboard); handles are resolved once so the per-event
//! path never looks a metric up by name.

use metrics::{Counter, Histogram, counter, histogram};

/// Buckets of the logger's own histograms, for the recorder
/// (`playground_common::metrics::install`).
pub const BUCKETS: [(&str, &[f64]); 1] =
    [("playground_logger_batch_size", &[1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0])];

/// Why an event was not indexed (the `reason` label of the rejected counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The Kafka message is not a JSON object.
    InvalidJson,
    /// The search engine refused the document because of the mapping.
    Mapping,
    /// The search engine refused the document for another reason.
    Refused,
    /// Older than IGNORE_MESSAGES_BEFORE.
    TooOld,
}

impl RejectReason {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::Mapping => "mapping",
            RejectReason::Refused => "refused",
            RejectReason::TooOld => "too_old",
        }
    }
}

/// Handles of every logger metric.
#[derive(Clone)]
pub struct LoggerMetrics {
    pub consumed: Counter,
    pub indexed: Counter,
    rejected: [Counter; 4],
    pub retries: Counter,
    pub batch_size: Histogram,
    pub bulk_duration: Histogram,
}

impl LoggerMetrics {
    /// Resolves the handles (the recorder must be installed first, see
    /// `playground_common::metrics::install`, which describes them from
    /// `deploy/metrics.txt`).
    pub fn new() -> Self {
        let rejected = |r: RejectReason| counter!("playground_logger_events_rejected_total", "reason" => r.label());
        LoggerMetrics {
            consumed: counter!("playground_logger_events_consumed_total"),
            indexed: counter!("playground_logger_events_indexed_total"),
            rejected: [
                rejected(RejectReason::InvalidJson),
                rejected(RejectReason::Mapping),
                rejected(RejectReason::Refused),
                rejected(RejectReason::TooOld),
            ],
            retries: counter!("playground_logger_bulk_retries_total"),
            batch_size: histogram!("playground_logger_batch_size"),
            bulk_duration: histogram!("playground_logger_bulk_duration_seconds"),
        }
    }

    /// Counts `n` rejected events.
    pub fn rejected(&self, reason: RejectReason, n: u64) {
        self.rejected[reason as usize].increment(n);
    }
}

impl Default for LoggerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
