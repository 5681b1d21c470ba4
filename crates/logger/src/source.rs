//! The source stage: a Kafka consumer in a consumer group over every
//! partition of the log topic, with automatic commits off. Offsets are
//! committed by the pipeline, in batch order, once the sink acknowledged a
//! batch; a restart or a rebalance resumes from the last commit, and the
//! deterministic document ids make the replay overwrite, never duplicate.
//!
//! The consumer is a static member of its group (`group.instance.id`), so an
//! instance that restarts under the same id, after `kill -9` too, takes its
//! partitions back at once instead of waiting for the dead member's session
//! to time out.
//!
//! librdkafka's statistics feed the consumer-lag gauge per partition (high
//! watermark minus committed offset: the events not yet safely indexed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use metrics::gauge;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::config::{KafkaOptions, OffsetReset};

/// Callbacks librdkafka runs on its own threads.
pub struct SourceContext {
    topic: String,
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        let Some(topic) = stats.topics.get(&self.topic) else { return };
        for (partition, p) in &topic.partitions {
            // -1 is librdkafka's internal "unassigned" partition; a negative lag
            // means "not known yet".
            if *partition >= 0 && p.consumer_lag >= 0 {
                gauge!("playground_logger_consumer_lag", "partition" => partition.to_string())
                    .set(p.consumer_lag as f64);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(error = %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => info!(partitions = ?partitions(tpl), "Partitions assigned"),
            Rebalance::Revoke(tpl) => info!(partitions = ?partitions(tpl), "Partitions revoked"),
            Rebalance::Error(e) => warn!(error = %e, "Rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => debug!(offsets = ?partitions(offsets), "Offsets committed"),
            // A commit for a partition that moved to another member fails; the
            // new owner replays from the previous commit, overwriting.
            Err(e) => warn!(error = %e, "Offset commit failed"),
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(i32, i64)> {
    tpl.elements().iter().map(|e| (e.partition(), e.offset().to_raw().unwrap_or(-1))).collect()
}

/// The consumer type of the logger.
pub type LogConsumer = StreamConsumer<SourceContext>;

/// Creates the consumer and subscribes it to the log topic; `instance_id`
/// makes it a static member of the group unless it is empty.
pub fn consumer(opts: &KafkaOptions, instance_id: &str) -> anyhow::Result<Arc<LogConsumer>> {
    let mut config = opts.client_config()?;
    if !instance_id.is_empty() {
        config.set("group.instance.id", instance_id);
    }
    config
        .set("group.id", &opts.kafka_consumer_group)
        .set("client.id", "playground-logger")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set(
            "auto.offset.reset",
            match opts.kafka_auto_offset_reset {
                OffsetReset::Earliest => "earliest",
                OffsetReset::Latest => "latest",
            },
        )
        .set("max.poll.interval.ms", millis(opts.kafka_max_poll_interval))
        .set("statistics.interval.ms", millis(opts.kafka_lag_interval))
        .set_log_level(RDKafkaLogLevel::Warning);
    let consumer: LogConsumer = config
        .create_with_context(SourceContext { topic: opts.kafka_logging_topic.clone() })
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka consumer: {e}"))?;
    consumer
        .subscribe(&[&opts.kafka_logging_topic])
        .map_err(|e| anyhow::anyhow!("cannot subscribe to KAFKA_LOGGING_TOPIC={}: {e}", opts.kafka_logging_topic))?;
    Ok(Arc::new(consumer))
}

/// Creates the producer of the dead-letter topic.
pub fn producer(opts: &KafkaOptions) -> anyhow::Result<FutureProducer> {
    let mut config = opts.client_config()?;
    config.set("client.id", "playground-logger-dlq").set("enable.idempotence", "true");
    config.create().map_err(|e| anyhow::anyhow!("cannot create the dead-letter producer: {e}"))
}

fn millis(d: Duration) -> String {
    d.as_millis().clamp(1, i32::MAX as u128).to_string()
}

/// Commits `offsets` (highest processed offset per partition) as the next
/// offsets to read.
pub fn commit(consumer: &LogConsumer, topic: &str, offsets: &BTreeMap<i32, i64>, mode: CommitMode) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (&partition, &offset) in offsets {
        if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset + 1)) {
            warn!(error = %e, partition, "Cannot build the offset commit");
            return;
        }
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        warn!(error = %e, "Offset commit failed");
    }
}

/// What the readiness probe learns from Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaState {
    /// The brokers answer a metadata request for the topic.
    pub reachable: bool,
    /// The group gave this instance at least one partition to read.
    pub holds_partitions: bool,
}

/// Asks the brokers for the topic's metadata and the consumer for its
/// assignment (for /readyz).
pub async fn state(consumer: Arc<LogConsumer>, topic: String, timeout: Duration) -> KafkaState {
    tokio::task::spawn_blocking(move || KafkaState {
        reachable: consumer.fetch_metadata(Some(&topic), timeout).is_ok(),
        holds_partitions: consumer.assignment().is_ok_and(|a| a.count() > 0),
    })
    .await
    .unwrap_or(KafkaState { reachable: false, holds_partitions: false })
}
