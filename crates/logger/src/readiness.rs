//! The logger's `/readyz`: true only while both Kafka and the search engine
//! answer, the index is set up and the consumer group gave this instance
//! partitions to read, so a dashboard or a rollout sees a logger that cannot
//! make progress (a restarted one before it has rejoined, or a member with
//! nothing to read because the group has more members than partitions).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use playground_common::lifecycle::Lifecycle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::search::SearchClient;
use super::source::{self, LogConsumer};

/// Whether the index set-up is done, and a wake-up for the readiness probe
/// so `/readyz` turns true as soon as it is.
#[derive(Default)]
pub struct SetUp {
    done: AtomicBool,
    changed: tokio::sync::Notify,
}

impl SetUp {
    /// Marks the index as set up and wakes the probe.
    pub fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }
}

/// Probes Kafka and the search engine every `interval` (and as soon as the
/// set-up is done) and sets the lifecycle's readiness, until `shutdown`.
pub async fn run(
    lifecycle: Lifecycle,
    search: SearchClient,
    consumer: Arc<LogConsumer>,
    topic: String,
    set_up: Arc<SetUp>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let probe_timeout = interval.clamp(Duration::from_secs(2), Duration::from_secs(5));
    let mut was_ready = None;
    while !shutdown.is_cancelled() {
        let (search_ok, kafka) = tokio::join!(
            tokio::time::timeout(probe_timeout, search.health()),
            source::state(consumer.clone(), topic.clone(), probe_timeout),
        );
        let search_ok = matches!(search_ok, Ok(Ok(())));
        let ready = search_ok && kafka.reachable && kafka.holds_partitions && set_up.done.load(Ordering::Relaxed);
        // A probe that was running when shutdown began must not turn
        // readiness back on.
        if shutdown.is_cancelled() {
            break;
        }
        lifecycle.set_ready(ready);
        if was_ready != Some(ready) {
            info!(
                ready,
                kafka = kafka.reachable,
                partitions = kafka.holds_partitions,
                search_engine = search_ok,
                "Readiness changed"
            );
            was_ready = Some(ready);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
            _ = set_up.changed.notified() => {}
        }
    }
    lifecycle.set_ready(false);
}
