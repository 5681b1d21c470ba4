//! `playground logger`: reads the log topic every instance ships to and
//! indexes the events into Elasticsearch or OpenSearch, with no event lost
//! and none duplicated.
//!
//! The design is a source → batch → sink pipeline with end-to-end
//! acknowledgement, as in Vector:
//!
//! - [`source`]: a Kafka consumer group over every partition of the topic;
//! - [`batch`]: messages become bulk lines with the id `topic/partition/offset`,
//!   grouped until a count, byte or age limit;
//! - [`sink`]: bulk requests, retried with backoff until every document has
//!   a final answer; up to BULK_CONCURRENCY batches are in flight;
//! - [`acks`]: batches complete in any order, but a batch's offsets are
//!   committed only once it and every older batch are acknowledged — so a
//!   commit never runs ahead of an event that is not indexed yet;
//! - [`search`]: the REST client and the index/alias set-up.
//!
//! Killed at any moment, the logger restarts from the last commit and
//! re-indexes the events after it under the same ids: each event ends up
//! exactly once in the index.

pub mod acks;
pub mod batch;
pub mod config;
pub mod metrics;
pub mod retry;
pub mod search;
pub mod sink;
pub mod source;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::Message;
use rdkafka::consumer::CommitMode;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::acks::{Acks, Offsets};
use self::batch::{Batch, Encoder, Incoming, Limits};
use self::config::LoggerArgs;
use self::metrics::LoggerMetrics;
use self::retry::Backoff;
use self::search::SearchClient;
use self::sink::{DeadLetterTopic, Sink};
use self::source::LogConsumer;
use crate::config::CommonOptions;
use crate::lifecycle::{Lifecycle, wait_for_signal};
use crate::{admin, telemetry};

/// Runs the logger until SIGTERM/SIGINT.
pub async fn run(args: LoggerArgs) -> anyhow::Result<()> {
    args.validate()?;
    // No log-shipping layer: the logger's own logs would go to the topic it
    // reads, and every warning about an event would become another event.
    telemetry::init(
        &CommonOptions {
            admin_port: args.process.admin_port,
            admin_bind_address: args.process.admin_bind_address,
            sigterm_timeout: args.process.shutdown_timeout,
            pod_name: None,
            log_level: args.process.log_level.clone(),
            log_format: args.process.log_format,
        },
        None,
    )?;
    let prometheus = crate::metrics::install();
    let metrics = LoggerMetrics::new();
    let lifecycle = Lifecycle::new();
    lifecycle.set_ready(false);
    admin::start(
        SocketAddr::new(args.process.admin_bind_address, args.process.admin_port),
        prometheus,
        lifecycle.clone(),
    )
    .await?;

    let search = SearchClient::new(&args.search)?;
    let consumer = source::consumer(&args.kafka)?;
    let dead_letter = match &args.kafka.dead_letter_topic {
        Some(topic) => Some(DeadLetterTopic { producer: source::producer(&args.kafka)?, topic: topic.clone() }),
        None => None,
    };
    info!(
        topic = %args.kafka.kafka_logging_topic,
        group = %args.kafka.kafka_consumer_group,
        endpoint = %args.search.elasticsearch_endpoint,
        index = %args.search.elasticsearch_logging_index,
        alias = %args.search.elasticsearch_alias,
        "Starting the logger"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        let lifecycle = lifecycle.clone();
        async move {
            let signal = wait_for_signal().await;
            lifecycle.set_ready(false);
            info!(signal, "Shutting down: finishing the batches in flight");
            shutdown.cancel();
        }
    });
    let set_up = Arc::new(SetUp::default());
    tokio::spawn(readiness(
        lifecycle.clone(),
        search.clone(),
        consumer.clone(),
        args.kafka.kafka_logging_topic.clone(),
        set_up.clone(),
        args.process.readiness_interval,
        shutdown.clone(),
    ));

    let backoff = Backoff { initial: args.pipeline.bulk_retry_initial, max: args.pipeline.bulk_retry_max };
    if !set_up_index(&search, backoff, &shutdown).await {
        info!("Stopped before the index was set up");
        return Ok(());
    }
    set_up.done.store(true, Ordering::Relaxed);
    set_up.changed.notify_one();

    let sink = Sink { search, metrics: metrics.clone(), backoff, dead_letter };
    let pipeline = Pipeline {
        consumer: &consumer,
        topic: &args.kafka.kafka_logging_topic,
        encoder: Encoder {
            index: args.search.elasticsearch_logging_index.clone(),
            mode: args.search.elasticsearch_index_mode,
            ignore_before: args.pipeline.ignore_messages_before,
            keep_dead_letters: args.kafka.dead_letter_topic.is_some(),
        },
        limits: Limits {
            max_events: args.pipeline.batch_max_events as usize,
            max_bytes: usize::try_from(args.pipeline.batch_max_bytes).unwrap_or(usize::MAX),
            max_age: args.pipeline.batch_timeout,
        },
        concurrency: args.pipeline.bulk_concurrency as usize,
        sink: &sink,
        metrics: &metrics,
    };
    pipeline.run(&shutdown, args.process.shutdown_timeout).await;
    info!("Logger stopped");
    Ok(())
}

/// Creates the index and alias, retrying until the engine answers.
async fn set_up_index(search: &SearchClient, backoff: Backoff, shutdown: &CancellationToken) -> bool {
    let mut attempt = 0;
    loop {
        match search.ensure_index().await {
            Ok(()) => return true,
            Err(e) => {
                attempt += 1;
                warn!(error = %e, attempt, "Cannot set up the log index yet; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff.delay(attempt)) => {}
        }
    }
}

/// Whether the index set-up is done, and a wake-up for the readiness probe
/// so `/readyz` turns true as soon as it is.
#[derive(Default)]
struct SetUp {
    done: AtomicBool,
    changed: tokio::sync::Notify,
}

/// Keeps `/readyz` true only while both Kafka and the search engine answer
/// (and the index is set up), so a dashboard or a rollout sees a logger that
/// cannot make progress.
async fn readiness(
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
        let (search_ok, kafka_ok) = tokio::join!(
            tokio::time::timeout(probe_timeout, search.health()),
            source::reachable(consumer.clone(), topic.clone(), probe_timeout),
        );
        let search_ok = matches!(search_ok, Ok(Ok(())));
        let ready = search_ok && kafka_ok && set_up.done.load(Ordering::Relaxed);
        if shutdown.is_cancelled() {
            break;
        }
        lifecycle.set_ready(ready);
        if was_ready != Some(ready) {
            info!(ready, kafka = kafka_ok, search_engine = search_ok, "Readiness changed");
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

struct Pipeline<'a> {
    consumer: &'a LogConsumer,
    topic: &'a str,
    encoder: Encoder,
    limits: Limits,
    concurrency: usize,
    sink: &'a Sink,
    metrics: &'a LoggerMetrics,
}

impl Pipeline<'_> {
    async fn run(&self, shutdown: &CancellationToken, shutdown_timeout: Duration) {
        let mut stream = self.consumer.stream();
        let mut batch = Batch::new();
        let mut acks = Acks::default();
        let mut inflight = FuturesUnordered::new();
        let mut read_errors = 0u64;
        let deliver = |seq: u64, batch: Batch| async move { (seq, self.sink.deliver(batch).await) };
        loop {
            // Acknowledged batches wait for the older ones before their
            // offsets are committed; bounding them bounds that wait's memory.
            let room = inflight.len() < self.concurrency && acks.outstanding() < self.concurrency * 4;
            let deadline = batch.deadline(&self.limits);
            if room
                && !batch.is_empty()
                && (batch.is_full(&self.limits) || deadline.is_some_and(|d| d <= Instant::now()))
            {
                inflight.push(deliver(acks.register(), std::mem::take(&mut batch)));
                continue;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some((seq, offsets)) = inflight.next(), if !inflight.is_empty() => {
                    if let Some(ready) = acks.complete(seq, offsets) {
                        source::commit(self.consumer, self.topic, &ready, CommitMode::Async);
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()), if room && deadline.is_some() => {}
                next = stream.next(), if !batch.is_full(&self.limits) => {
                    let now = now_ms();
                    let mut next = next;
                    // Take what is already buffered without going back to the
                    // scheduler for each message.
                    loop {
                        match next {
                            Some(Ok(m)) => {
                                self.metrics.consumed.increment(1);
                                let incoming = Incoming {
                                    topic: m.topic(),
                                    partition: m.partition(),
                                    offset: m.offset(),
                                    timestamp_ms: m.timestamp().to_millis(),
                                    payload: m.payload(),
                                };
                                batch.push(incoming, &self.encoder, self.metrics, now);
                            }
                            Some(Err(e)) => {
                                read_errors += 1;
                                if read_errors.is_power_of_two() {
                                    warn!(error = %e, count = read_errors, "Error reading the log topic");
                                }
                            }
                            None => break,
                        }
                        if batch.is_full(&self.limits) {
                            break;
                        }
                        match futures::FutureExt::now_or_never(stream.next()) {
                            Some(n) => next = n,
                            None => break,
                        }
                    }
                }
            }
        }
        // Shutdown: send what was read, wait (bounded) for every batch in
        // flight, commit what is acknowledged in order, and stop.
        if !batch.is_empty() {
            inflight.push(deliver(acks.register(), batch));
        }
        let pending = inflight.len();
        let mut last = Offsets::new();
        let drained = tokio::time::timeout(shutdown_timeout, async {
            while let Some((seq, offsets)) = inflight.next().await {
                if let Some(ready) = acks.complete(seq, offsets) {
                    last.extend(ready);
                }
            }
        })
        .await;
        if !last.is_empty() {
            // Synchronous, so the offsets are stored before the process exits.
            source::commit(self.consumer, self.topic, &last, CommitMode::Sync);
        }
        match drained {
            Ok(()) => info!(batches = pending, "Batches in flight indexed and committed"),
            Err(_) => warn!(
                seconds = shutdown_timeout.as_secs_f64(),
                "Batches still in flight at the end of SHUTDOWN_TIMEOUT; they will be indexed again at the next start"
            ),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
