//! The running pipeline: reads the topic into batches, keeps up to
//! BULK_CONCURRENCY batches in flight to the sink, commits offsets in order
//! as batches are acknowledged ([`super::acks`]), and at shutdown delivers
//! what was read and commits what was acknowledged before it stops.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use rdkafka::Message;
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::acks::{Acks, Offsets};
use super::batch::{Batch, Encoder, Incoming, Limits};
use super::metrics::LoggerMetrics;
use super::sink::Sink;
use super::source::{self, LogConsumer};

/// Everything the pipeline reads from and delivers to.
pub struct Pipeline<'a> {
    pub consumer: &'a LogConsumer,
    pub topic: &'a str,
    pub encoder: Encoder,
    pub limits: Limits,
    /// BULK_CONCURRENCY: batches in flight at once.
    pub concurrency: usize,
    pub sink: &'a Sink,
    pub metrics: &'a LoggerMetrics,
}

impl Pipeline<'_> {
    /// Runs until `shutdown`, then drains for at most `shutdown_timeout`.
    pub async fn run(&self, shutdown: &CancellationToken, shutdown_timeout: Duration) {
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
                    self.read(next, &mut stream, &mut batch, &mut read_errors);
                }
            }
        }
        // Shutdown: send what was read, then drain what is in flight.
        if !batch.is_empty() {
            inflight.push(deliver(acks.register(), batch));
        }
        self.drain(inflight, acks, shutdown_timeout).await;
    }

    /// Adds `next` to the batch, then the messages already buffered, without
    /// going back to the scheduler for each message, until the batch is full.
    fn read<'m>(
        &self,
        mut next: Option<KafkaResult<BorrowedMessage<'m>>>,
        stream: &mut (impl Stream<Item = KafkaResult<BorrowedMessage<'m>>> + Unpin),
        batch: &mut Batch,
        read_errors: &mut u64,
    ) {
        let now = now_ms();
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
                    *read_errors += 1;
                    // Logged at powers of two so a broken broker cannot
                    // flood the logs.
                    if read_errors.is_power_of_two() {
                        warn!(error = %e, count = *read_errors, "Error reading the log topic");
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

    /// Waits (at most `timeout`) for every batch in flight and commits what
    /// is acknowledged, in order.
    async fn drain<F>(&self, mut inflight: FuturesUnordered<F>, mut acks: Acks, timeout: Duration)
    where
        F: Future<Output = (u64, Offsets)>,
    {
        let pending = inflight.len();
        let mut last = Offsets::new();
        let drained = tokio::time::timeout(timeout, async {
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
                seconds = timeout.as_secs_f64(),
                "Batches still in flight at the end of SHUTDOWN_TIMEOUT; they will be indexed again at the next start"
            ),
        }
    }
}

/// The wall clock in milliseconds, for the events' dates.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
