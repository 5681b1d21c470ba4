//! Log shipping: a `tracing` layer that publishes every log event of the
//! instance to KAFKA_LOGGING_TOPIC as
//! `{"pod": "...", "level": "INFO", "text": "...", "timestamp": "<RFC 3339 UTC, ms>"}`
//! with the pod name as key.
//!
//! The layer only formats the event and offers it to a bounded queue
//! (`try_send`): a request is never blocked by shipping. When the queue is
//! full the event is dropped and counted. A background task moves the queue
//! into librdkafka's own bounded queue; at shutdown, both are flushed.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics::{Counter, counter};
use rdkafka::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext};
use rdkafka::util::Timeout;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use crate::config::KafkaOptions;
use crate::kafka::QuietProducer;

/// One shipped event, in the shape the logger indexes.
#[derive(Debug, Serialize)]
pub struct LogEvent<'a> {
    pub pod: &'a str,
    pub level: &'a str,
    pub text: String,
    pub timestamp: String,
}

/// The layer installed in the subscriber.
pub struct ShipLayer {
    pod: Arc<str>,
    tx: mpsc::Sender<Vec<u8>>,
    dropped: Counter,
}

/// The receiving end, started once Kafka is configured.
pub struct Shipper {
    pod: Arc<str>,
    rx: mpsc::Receiver<Vec<u8>>,
    queue: usize,
}

/// A layer and its shipper, sharing a queue of `queue` events.
pub fn channel(pod: &str, queue: usize) -> (ShipLayer, Shipper) {
    let (tx, rx) = mpsc::channel(queue.max(1));
    let pod: Arc<str> = Arc::from(pod);
    let dropped = counter!("playground_log_events_dropped_total", "reason" => "queue_full");
    (ShipLayer { pod: pod.clone(), tx, dropped }, Shipper { pod, rx, queue })
}

impl<S: Subscriber> Layer<S> for ShipLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        // Never ship the shipper's own complaints (a loop when Kafka is down),
        // nor the Kafka client's.
        let target = event.metadata().target();
        if target.starts_with(module_path!()) || target.starts_with("rdkafka") {
            return;
        }
        let mut text = TextVisitor(String::new());
        event.record(&mut text);
        let line = LogEvent {
            pod: &self.pod,
            level: event.metadata().level().as_str(),
            text: text.0,
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        };
        let Ok(json) = serde_json::to_vec(&line) else { return };
        if self.tx.try_send(json).is_err() {
            self.dropped.increment(1);
        }
    }
}

/// Renders an event as its message followed by ` key=value` fields.
struct TextVisitor(String);

impl Visit for TextVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }
}

/// Counts deliveries reported by librdkafka.
struct Deliveries {
    shipped: Counter,
    failed: Counter,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.shipped.increment(1),
            Err(_) => self.failed.increment(1),
        }
    }
}

/// A running shipper; [`RunningShipper::flush`] at shutdown.
pub struct RunningShipper {
    producer: Arc<QuietProducer<Deliveries>>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio_util::sync::CancellationToken,
}

impl Shipper {
    /// Starts shipping to Kafka. Unreachable brokers are not an error:
    /// events wait in librdkafka's bounded queue until they come back.
    pub fn start(self, opts: &KafkaOptions) -> anyhow::Result<RunningShipper> {
        let context = Deliveries {
            shipped: counter!("playground_log_events_shipped_total"),
            failed: counter!("playground_log_events_dropped_total", "reason" => "delivery_failed"),
        };
        let config = crate::kafka::server_config(opts)?
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "50")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", self.queue.to_string())
            .set("message.timeout.ms", "300000")
            .set("client.id", format!("playground-logs-{}", self.pod))
            .clone();
        let producer = Arc::new(QuietProducer::create(&config, context)?);
        let topic = opts.kafka_logging_topic.clone();
        let full = counter!("playground_log_events_dropped_total", "reason" => "queue_full");
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(forward(self.rx, producer.clone(), topic, self.pod, full, stop.clone()));
        Ok(RunningShipper { producer, task, stop })
    }
}

async fn forward(
    mut rx: mpsc::Receiver<Vec<u8>>,
    producer: Arc<QuietProducer<Deliveries>>,
    topic: String,
    pod: Arc<str>,
    full: Counter,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let json = tokio::select! {
            j = rx.recv() => j,
            _ = stop.cancelled() => {
                // Take what is queued now, then stop.
                rx.close();
                rx.recv().await
            }
        };
        let Some(json) = json else { return };
        let record = BaseRecord::to(&topic).key(pod.as_ref()).payload(&json);
        if producer.send(record).is_err() {
            full.increment(1);
        }
    }
}

impl RunningShipper {
    /// Ships what is still queued, waiting at most `limit`.
    pub async fn flush(self, limit: Duration) {
        self.stop.cancel();
        let _ = tokio::time::timeout(limit, self.task).await;
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Timeout::After(limit))).await;
    }
}
