//! The sink stage: delivers a batch through the bulk API until every
//! document has a final answer, then hands the batch's offsets back for
//! committing (the end-to-end acknowledgement).
//!
//! What to send again, and when, is decided in [`super::retry`]; this module
//! is the loop that applies the decision. Documents the engine will never
//! take are counted, logged and optionally sent to the dead-letter topic.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::{error, warn};

use super::batch::{Batch, DeadLetter, Item};
use super::metrics::{LoggerMetrics, RejectReason};
use super::retry::{self, Backoff, Retry};
use super::search::{ItemOutcome, SearchClient, is_mapping_error};

/// The dead-letter topic and the producer that writes to it.
pub struct DeadLetterTopic {
    pub producer: FutureProducer,
    pub topic: String,
}

/// Everything a delivery needs.
pub struct Sink {
    pub search: SearchClient,
    pub metrics: LoggerMetrics,
    pub backoff: Backoff,
    pub dead_letter: Option<DeadLetterTopic>,
}

impl Sink {
    /// Delivers `batch` and returns its offsets once every document was
    /// indexed or rejected (and rejected ones written to the dead-letter
    /// topic). Never fails: it waits for the engine as long as it takes, and
    /// the caller drops the future to give up (at shutdown).
    pub async fn deliver(&self, mut batch: Batch) -> BTreeMap<i32, i64> {
        if !batch.items.is_empty() {
            self.metrics.batch_size.record(batch.items.len() as f64);
        }
        let whole = batch.take_body();
        let items = std::mem::take(&mut batch.items);
        let mut dead = std::mem::take(&mut batch.dead);
        let mut queue: VecDeque<usize> = (0..items.len()).collect();
        let mut chunk = items.len().max(1);
        let mut failures = 0u32;
        while !queue.is_empty() {
            let take = chunk.min(queue.len());
            let ids: Vec<usize> = queue.drain(..take).collect();
            let body = if take == items.len() { whole.clone() } else { Bytes::from(assemble(&whole, &items, &ids)) };
            let started = Instant::now();
            let result = self.search.bulk(body, take).await;
            self.metrics.bulk_duration.record(started.elapsed().as_secs_f64());
            if let Ok(outcomes) = &result
                && self.settle(&whole, &items, &ids, outcomes, &mut dead) > 0
            {
                failures = 0;
            }
            let retry: Vec<usize> = match retry::decide(&result, take) {
                Retry::No => Vec::new(),
                Retry::Documents { positions, index_missing } => {
                    if index_missing && let Err(e) = self.search.ensure_index().await {
                        warn!(error = %e, "Re-creating the log index failed");
                    }
                    positions.into_iter().map(|p| ids[p]).collect()
                }
                Retry::Request => {
                    if let Err(e) = &result
                        && (failures == 0 || failures.is_power_of_two())
                    {
                        warn!(error = %e, documents = take, attempt = failures + 1, "Bulk request failed; retrying");
                    }
                    ids
                }
                Retry::Halve => {
                    chunk = take / 2;
                    warn!(documents = take, next = chunk, "Bulk request too large for the search engine; splitting it");
                    put_back(&mut queue, ids);
                    continue;
                }
                Retry::Reject => {
                    self.metrics.rejected(RejectReason::Refused, 1);
                    let id = item_id(&whole, &items[ids[0]]);
                    error!(id = %id, "A single document is too large for the search engine; skipping it");
                    continue;
                }
            };
            if !retry.is_empty() {
                failures = failures.saturating_add(1);
                self.metrics.retries.increment(1);
                put_back(&mut queue, retry);
                tokio::time::sleep(self.backoff.delay(failures)).await;
            }
        }
        if let Some(dlq) = &self.dead_letter {
            for letter in dead {
                self.send_dead_letter(dlq, letter).await;
            }
        }
        batch.offsets
    }

    /// Applies the final answers of a bulk answer: counts the indexed
    /// documents, and counts, logs and keeps for the dead-letter topic the
    /// ones the engine will never take, so they never hold the stream.
    /// Returns how many were indexed.
    fn settle(
        &self,
        whole: &[u8],
        items: &[Item],
        ids: &[usize],
        outcomes: &[ItemOutcome],
        dead: &mut Vec<DeadLetter>,
    ) -> u64 {
        let mut indexed = 0u64;
        for (&i, outcome) in ids.iter().zip(outcomes) {
            match outcome {
                ItemOutcome::Indexed => indexed += 1,
                // Sent again: see `retry::decide`.
                ItemOutcome::Retry { .. } => {}
                ItemOutcome::Rejected { status, kind, reason } => {
                    let label = if is_mapping_error(kind) { RejectReason::Mapping } else { RejectReason::Refused };
                    self.metrics.rejected(label, 1);
                    let doc = &whole[items[i].source..items[i].end - 1];
                    let id = item_id(whole, &items[i]);
                    warn!(id = %id, status, kind = %kind, reason = %reason, "The search engine rejected a document; skipping it");
                    if self.dead_letter.is_some() {
                        dead.push(DeadLetter {
                            id,
                            reason: label,
                            error: format!("{kind}: {reason}"),
                            payload: doc.to_vec(),
                        });
                    }
                }
            }
        }
        self.metrics.indexed.increment(indexed);
        indexed
    }

    /// Writes one rejected event to the dead-letter topic, retrying until
    /// Kafka takes it (its offset is not committed before).
    async fn send_dead_letter(&self, dlq: &DeadLetterTopic, letter: DeadLetter) {
        let mut attempt = 0;
        loop {
            let headers = OwnedHeaders::new()
                .insert(Header { key: "reason", value: Some(letter.reason.label()) })
                .insert(Header { key: "error", value: Some(truncate(&letter.error, 1000)) });
            let record = FutureRecord::to(&dlq.topic).key(&letter.id).payload(&letter.payload).headers(headers);
            match dlq.producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => return,
                Err((e, _)) => {
                    attempt += 1;
                    warn!(error = %e, topic = %dlq.topic, attempt, "Writing to the dead-letter topic failed; retrying");
                    tokio::time::sleep(self.backoff.delay(attempt)).await;
                }
            }
        }
    }
}

/// The request body of some of the batch's documents.
fn assemble(whole: &[u8], items: &[Item], ids: &[usize]) -> Vec<u8> {
    let mut body = Vec::with_capacity(ids.iter().map(|&i| items[i].end - items[i].start).sum());
    for &i in ids {
        body.extend_from_slice(&whole[items[i].start..items[i].end]);
    }
    body
}

/// Puts documents back at the front of the queue, in their order.
fn put_back(queue: &mut VecDeque<usize>, ids: Vec<usize>) {
    for i in ids.into_iter().rev() {
        queue.push_front(i);
    }
}

/// The `_id` of an item, read back from its action line (for logs).
fn item_id(whole: &[u8], item: &Item) -> String {
    let action = &whole[item.start..item.source];
    serde_json::from_slice::<serde_json::Value>(action)
        .ok()
        .and_then(|v| v.pointer("/index/_id").and_then(|s| s.as_str()).map(str::to_string))
        .unwrap_or_default()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_bodies_and_ids() {
        let whole = b"{\"index\":{\"_id\":\"a\"}}\n{}\n{\"index\":{\"_id\":\"b\"}}\n{\"x\":1}\n";
        let items = [Item { start: 0, source: 22, end: 25 }, Item { start: 25, source: 47, end: 55 }];
        assert_eq!(&whole[items[1].start..items[1].source], b"{\"index\":{\"_id\":\"b\"}}\n");
        assert_eq!(assemble(whole, &items, &[1]), b"{\"index\":{\"_id\":\"b\"}}\n{\"x\":1}\n");
        assert_eq!(item_id(whole, &items[0]), "a");
        let mut q: VecDeque<usize> = [5, 6].into();
        put_back(&mut q, vec![1, 2]);
        assert_eq!(q, [1, 2, 5, 6]);
        assert_eq!(truncate("héllo", 2), "h");
    }
}
