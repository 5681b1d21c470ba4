//! The servers' Kafka clients: the client configuration (the shared
//! connection settings of `playground_common::kafka` with the servers'
//! brokers) and a producer whose polling thread sleeps while idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, ProducerContext};

use crate::config::KafkaOptions;

/// The servers' client configuration (KAFKA_BROKERS must be set).
pub fn server_config(opts: &KafkaOptions) -> anyhow::Result<ClientConfig> {
    let brokers = opts.connection.kafka_brokers.as_deref().unwrap_or_default();
    playground_common::kafka::client_config(&opts.connection, brokers)
}

/// How long a producer's polling thread waits for librdkafka at a time. It
/// wakes at once for a delivery report or an error; this only bounds how
/// long the thread outlives its producer.
const POLL_WAIT: Duration = Duration::from_secs(30);

/// A producer whose events (delivery reports, errors) are served by a
/// thread of its own that sleeps until librdkafka has one.
///
/// Written by hand because rdkafka's `ThreadedProducer` and `FutureProducer`
/// wake their polling thread every 100 ms to check whether to stop: ten
/// wake-ups a second per producer on a server with no traffic at all.
pub struct QuietProducer<C: ProducerContext + 'static> {
    producer: Arc<BaseProducer<C>>,
    stop: Arc<AtomicBool>,
}

impl<C: ProducerContext + 'static> QuietProducer<C> {
    /// Creates the producer and starts its polling thread.
    pub fn create(config: &ClientConfig, context: C) -> anyhow::Result<Self> {
        let producer: Arc<BaseProducer<C>> = Arc::new(config.create_with_context(context)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (polled, stopped) = (producer.clone(), stop.clone());
        std::thread::Builder::new().name("kafka-producer".into()).spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                polled.poll(POLL_WAIT);
            }
        })?;
        Ok(QuietProducer { producer, stop })
    }
}

impl<C: ProducerContext + 'static> std::ops::Deref for QuietProducer<C> {
    type Target = BaseProducer<C>;

    fn deref(&self) -> &BaseProducer<C> {
        &self.producer
    }
}

impl<C: ProducerContext + 'static> Drop for QuietProducer<C> {
    fn drop(&mut self) {
        // The thread ends within POLL_WAIT and releases the producer.
        self.stop.store(true, Ordering::Relaxed);
    }
}
