//! The Kafka bus: broadcasts published by any instance reach the clients of
//! every instance.
//!
//! Publishing uses an idempotent producer with `acks=all` and waits for the
//! acknowledgement, so `brd` only succeeds once the broadcast is durable.
//! Receiving uses one consumer per instance, assigned by hand to every
//! partition of the topic (no consumer group, no shared offsets), starting at
//! the instance's start time: a new instance never replays older broadcasts.
//! What it receives goes to the in-process [`Fanout`].
//!
//! Start-up waits (at most KAFKA_READY_TIMEOUT) until the producer knows the
//! topic's partitions and the consumer is assigned to all of them at a
//! definite offset, so the first `brd` after `/readyz` turns ready waits for
//! no initialisation. Kafka being unreachable never stops the server: a
//! background task keeps probing the brokers (through the producer, whose
//! connection never holds a long-polling fetch); while they are down, `brd`
//! fails at once with [`BusError`] instead of waiting for a timeout, and
//! everything resumes by itself when they come back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::{Bus, BusError, Fanout, Subscription};
use crate::config::KafkaOptions;
use crate::kafka::QuietProducer;
use crate::metrics::KafkaMetrics;

/// How often the brokers and the topic's partitions are checked.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How often they are checked while start-up waits for them.
const START_PROBE_EVERY: Duration = Duration::from_millis(100);

/// Hands each acknowledgement to the `brd` waiting for it.
struct Acks;

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<oneshot::Sender<Result<(), KafkaError>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiting: Self::DeliveryOpaque) {
        let _ = waiting.send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}

type Publisher = QuietProducer<Acks>;

/// The Kafka-backed [`Bus`].
pub struct KafkaBus {
    producer: Arc<Publisher>,
    topic: String,
    publish_timeout: Duration,
    reachable: Arc<AtomicBool>,
    fanout: Fanout,
    brokers: String,
    metrics: KafkaMetrics,
}

impl KafkaBus {
    /// Connects, waits (bounded) until broadcasts can flow both ways, and
    /// starts consuming broadcasts published from now on. An unreachable
    /// Kafka is not an error.
    pub async fn start(opts: &KafkaOptions, instance: &str, client_queue: usize) -> anyhow::Result<Arc<Self>> {
        let base = crate::kafka::server_config(opts)?;
        let timeout_ms = opts.kafka_publish_timeout.as_millis().max(1).to_string();
        let producer_config = base
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", &timeout_ms)
            .set("client.id", format!("playground-bcast-{instance}"))
            .clone();
        let producer = Arc::new(QuietProducer::create(&producer_config, Acks)?);
        // A group id is required by librdkafka even with manual assignment;
        // a unique one keeps instances from sharing anything.
        let group = format!("playground-bcast-{instance}-{}", uuid::Uuid::new_v4());
        let consumer: StreamConsumer = base
            .clone()
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            // The first instance to look for the topic creates it (when the
            // brokers allow it), so broadcasts work on a fresh cluster.
            .set("allow.auto.create.topics", "true")
            // The broker answers a fetch as soon as a broadcast arrives; the
            // wait only bounds how often an idle consumer asks again.
            .set("fetch.wait.max.ms", opts.kafka_fetch_wait.as_millis().max(1).to_string())
            .set("fetch.error.backoff.ms", "100")
            .create()?;
        let bus = Arc::new(KafkaBus {
            producer: producer.clone(),
            topic: opts.kafka_bcast_topic.clone(),
            publish_timeout: opts.kafka_publish_timeout,
            reachable: Arc::new(AtomicBool::new(false)),
            fanout: Fanout::new(client_queue),
            brokers: opts.connection.kafka_brokers.clone().unwrap_or_default(),
            metrics: KafkaMetrics::new(),
        });
        let consumer = Arc::new(consumer);
        let started_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        let mut assigner =
            Assigner { producer, consumer: consumer.clone(), topic: bus.topic.clone(), started_ms, assigned: 0 };
        let until = Instant::now() + opts.kafka_ready_timeout;
        while !assigner.probe(&bus.reachable).await {
            if Instant::now() >= until {
                warn!(topic = %bus.topic, "broadcasts not ready yet; serving anyway, they start once Kafka answers");
                break;
            }
            tokio::time::sleep(START_PROBE_EVERY).await;
        }
        let reachable = bus.reachable.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                assigner.probe(&reachable).await;
            }
        });
        tokio::spawn(receive(consumer, bus.fanout.clone(), bus.metrics.clone()));
        Ok(bus)
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(&self, sender: SocketAddr, message: Bytes) -> Result<(), BusError> {
        if !self.reachable.load(Ordering::Relaxed) {
            self.metrics.publish_unreachable.increment(1);
            return Err(BusError("Kafka unreachable".into()));
        }
        let key = sender.to_string();
        let (acked, ack) = oneshot::channel();
        let record = BaseRecord::with_opaque_to(&self.topic, Box::new(acked)).key(&key).payload(message.as_ref());
        let start = Instant::now();
        if let Err((e, _)) = self.producer.send(record) {
            self.metrics.publish_error.increment(1);
            warn!(error = %e, "broadcast not queued");
            return Err(BusError(e.to_string()));
        }
        // librdkafka is told the same bound (message.timeout.ms), but it
        // checks it about once a second and, with idempotence, not for a
        // message already sent on a connection that was reset: a reset
        // broker took 4 s to report a 2 s timeout. So the bound a client
        // sees is enforced here, and the message, if the broker did get it,
        // may still be delivered later ("not confirmed", docs/reliability.md).
        let result = match tokio::time::timeout(self.publish_timeout, ack).await {
            Ok(Ok(result)) => result.map_err(|e| e.to_string()),
            Ok(Err(_)) => Err("producer gone".to_string()),
            Err(_) => Err("no acknowledgement within KAFKA_PUBLISH_TIMEOUT".to_string()),
        };
        self.metrics.publish_latency.record(start.elapsed().as_secs_f64());
        result.map_err(|e| {
            self.metrics.publish_error.increment(1);
            warn!(error = %e, "broadcast not published");
            BusError(e)
        })
    }

    fn subscribe(&self) -> Subscription {
        self.fanout.subscribe()
    }

    fn describe(&self) -> String {
        format!("kafka {} topic {}", self.brokers, self.topic)
    }
}

impl KafkaBus {
    /// Flushes what the producer still holds (at shutdown).
    pub fn flush(&self, limit: Duration) {
        let _ = self.producer.flush(Timeout::After(limit));
    }
}

/// Keeps the consumer assigned to every partition of the topic. New
/// partitions start at the instance's start time; partitions already
/// assigned keep their position.
struct Assigner {
    producer: Arc<Publisher>,
    consumer: Arc<StreamConsumer>,
    topic: String,
    started_ms: i64,
    assigned: usize,
}

impl Assigner {
    /// Checks the brokers through the producer (updating `reachable`, and
    /// teaching the producer the topic's partitions) and assigns new
    /// partitions. True when both sides are ready: reachable, and every
    /// partition of an existing topic assigned.
    async fn probe(&mut self, reachable: &AtomicBool) -> bool {
        let topic = self.topic.clone();
        let (p, t) = (self.producer.clone(), topic.clone());
        // Metadata calls block: keep them off the async workers.
        match tokio::task::spawn_blocking(move || partitions(&p, &t)).await {
            Ok(Ok(count)) => {
                if !reachable.swap(true, Ordering::Relaxed) {
                    info!(topic, partitions = count, "Kafka reachable: broadcasts enabled");
                }
                if count > self.assigned {
                    let (c, t, since) = (self.consumer.clone(), topic.clone(), self.started_ms);
                    match tokio::task::spawn_blocking(move || assign(&c, &t, count, since)).await {
                        Ok(Ok(())) => {
                            info!(topic, partitions = count, "consuming broadcasts");
                            self.assigned = count;
                        }
                        Ok(Err(e)) => warn!(error = %e, "cannot assign broadcast partitions yet"),
                        Err(e) => warn!(error = %e, "assignment task failed"),
                    }
                }
                count > 0 && self.assigned == count
            }
            Ok(Err(e)) => {
                if reachable.swap(false, Ordering::Relaxed) {
                    warn!(error = %e, "Kafka unreachable: broadcasts unavailable until it is back");
                } else {
                    debug!(error = %e, "Kafka still unreachable");
                }
                false
            }
            Err(e) => {
                warn!(error = %e, "probe task failed");
                false
            }
        }
    }
}

/// Number of partitions of `topic`; an error when the brokers cannot be
/// reached. Asking for a missing topic creates it when the brokers
/// auto-create topics (else the deployment does), so it counts as reachable
/// with 0 partitions until it exists.
fn partitions(producer: &Publisher, topic: &str) -> anyhow::Result<usize> {
    let md = producer.client().fetch_metadata(Some(topic), Timeout::After(Duration::from_secs(2)))?;
    Ok(md.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len()))
}

/// Assigns partitions `0..count`: known ones at their current position, new
/// ones at the first offset at or after `started_ms`.
fn assign(consumer: &StreamConsumer, topic: &str, count: usize, started_ms: i64) -> anyhow::Result<()> {
    let current: HashMap<i32, Offset> = consumer
        .position()
        .map(|tpl| tpl.elements().iter().map(|e| (e.partition(), e.offset())).collect())
        .unwrap_or_default();
    let mut by_time = TopicPartitionList::new();
    // The end of each new partition, read before the time lookup: where to
    // start if nothing was published since the start time. A definite offset
    // (rather than "the end", resolved by the first fetch) leaves no moment
    // in which a broadcast published now could be skipped.
    let mut ends = HashMap::new();
    for p in 0..count as i32 {
        if !current.contains_key(&p) {
            ends.insert(p, consumer.fetch_watermarks(topic, p, Timeout::After(Duration::from_secs(5)))?.1);
            by_time.add_partition_offset(topic, p, Offset::Offset(started_ms))?;
        }
    }
    let starts = if by_time.count() > 0 { offsets_for_times(consumer, by_time)? } else { TopicPartitionList::new() };
    let mut tpl = TopicPartitionList::new();
    for p in 0..count as i32 {
        let offset = match current.get(&p) {
            Some(Offset::Offset(o)) => Offset::Offset(*o),
            _ => starts.find_partition(topic, p).map(|e| e.offset()).unwrap_or(Offset::End),
        };
        // No message at or after the start time yet: read whatever comes next.
        let offset = match (offset, ends.get(&p)) {
            (Offset::Offset(o), _) => Offset::Offset(o),
            (_, Some(end)) => Offset::Offset(*end),
            _ => Offset::End,
        };
        tpl.add_partition_offset(topic, p, offset)?;
    }
    consumer.assign(&tpl)?;
    Ok(())
}

fn offsets_for_times(consumer: &StreamConsumer, tpl: TopicPartitionList) -> anyhow::Result<TopicPartitionList> {
    Ok(consumer.offsets_for_times(tpl, Timeout::After(Duration::from_secs(5)))?)
}

/// Moves every received broadcast into the fan-out, recording how long after
/// its publication it arrived.
async fn receive(consumer: Arc<StreamConsumer>, fanout: Fanout, metrics: KafkaMetrics) {
    loop {
        match consumer.recv().await {
            Ok(msg) => {
                if let Some(published_ms) = msg.timestamp().to_millis() {
                    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
                    // Clocks of other hosts may be ahead: never a negative delay.
                    metrics.delay.record(now_ms.saturating_sub(published_ms).max(0) as f64 / 1000.0);
                }
                if let Some(payload) = msg.payload() {
                    fanout.deliver(payload);
                }
            }
            Err(e) => {
                metrics.consume_error.increment(1);
                debug!(error = %e, "broadcast consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
