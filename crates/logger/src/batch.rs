//! The batch stage: turns Kafka messages into bulk-API lines and groups them
//! until a count, byte or age limit is reached.
//!
//! Documents are sent as they came, except two cases the bulk format or the
//! mapping cannot take: an object spread over several lines is compacted,
//! and a `timestamp` in Unix seconds (a JSON number, as the original's
//! servers write it) becomes the RFC 3339 string playground writes, since
//! the engine would read a bare number as milliseconds (a date in 1970).
//!
//! A batch also carries the acknowledgement data of every message it took,
//! including the ones that produced no document (invalid JSON, too old): the
//! highest offset per partition. The pipeline commits those offsets only
//! after the sink has acknowledged the whole batch, so a skipped message is
//! never committed ahead of an earlier event that is still in flight.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::config::IndexMode;
use super::metrics::{LoggerMetrics, RejectReason};

/// What the batch stage needs to know about one Kafka message.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp in milliseconds since the epoch, when the message has one.
    pub timestamp_ms: Option<i64>,
    pub payload: Option<&'a [u8]>,
}

/// How messages become documents.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub index: String,
    pub mode: IndexMode,
    /// Events older than this (by Kafka timestamp) are skipped.
    pub ignore_before: Option<Duration>,
    /// Keep the payload of invalid messages for the dead-letter topic.
    pub keep_dead_letters: bool,
}

/// Limits of one batch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

/// One document in a batch: `body[start..source]` is the action line,
/// `body[source..end]` the document line (both end with `\n`).
#[derive(Debug, Clone, Copy)]
pub struct Item {
    pub start: usize,
    pub source: usize,
    pub end: usize,
}

/// A message that could not become a document, kept for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The document id it would have had (`topic/partition/offset`).
    pub id: String,
    pub reason: RejectReason,
    pub error: String,
    pub payload: Vec<u8>,
}

/// Documents and acknowledgement data of a group of consecutive messages.
#[derive(Debug)]
pub struct Batch {
    pub body: Vec<u8>,
    pub items: Vec<Item>,
    /// Highest offset taken per partition (every message, indexed or not).
    pub offsets: BTreeMap<i32, i64>,
    pub dead: Vec<DeadLetter>,
    /// Messages taken, documents or not.
    pub events: usize,
    started: Option<Instant>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch {
            body: Vec::new(),
            items: Vec::new(),
            offsets: BTreeMap::new(),
            dead: Vec::new(),
            events: 0,
            started: None,
        }
    }

    /// Whether no message was taken yet.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Whether the count or byte limit is reached.
    pub fn is_full(&self, limits: &Limits) -> bool {
        self.events >= limits.max_events || self.body.len() >= limits.max_bytes
    }

    /// When the batch must be sent even if not full.
    pub fn deadline(&self, limits: &Limits) -> Option<Instant> {
        self.started.map(|t| t + limits.max_age)
    }

    /// The whole body, as sent on the first attempt.
    pub fn take_body(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.body))
    }

    /// Takes one message: records its offset, and either appends its document
    /// or counts why it has none.
    pub fn push(&mut self, msg: Incoming<'_>, enc: &Encoder, metrics: &LoggerMetrics, now_ms: i64) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
        self.events += 1;
        let high = self.offsets.entry(msg.partition).or_insert(msg.offset);
        *high = (*high).max(msg.offset);

        if let (Some(limit), Some(ts)) = (enc.ignore_before, msg.timestamp_ms) {
            let limit_ms = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
            if now_ms.saturating_sub(ts) > limit_ms {
                metrics.rejected(RejectReason::TooOld, 1);
                return;
            }
        }
        let payload = msg.payload.unwrap_or_default();
        let source = match document_line(payload) {
            Ok(source) => source,
            Err(error) => {
                metrics.rejected(RejectReason::InvalidJson, 1);
                let id = doc_id(&msg);
                tracing::warn!(id = %id, %error, "Skipping a message that is not a JSON object");
                if enc.keep_dead_letters {
                    self.dead.push(DeadLetter {
                        id,
                        reason: RejectReason::InvalidJson,
                        error,
                        payload: payload.to_vec(),
                    });
                }
                return;
            }
        };
        let start = self.body.len();
        let index = match enc.mode {
            IndexMode::Single => std::borrow::Cow::Borrowed(enc.index.as_str()),
            IndexMode::Daily => daily_index(&enc.index, msg.timestamp_ms.unwrap_or(now_ms)).into(),
        };
        self.body.extend_from_slice(b"{\"index\":{\"_index\":");
        write_json_str(&mut self.body, &index);
        self.body.extend_from_slice(b",\"_id\":");
        write_json_str(&mut self.body, &doc_id(&msg));
        self.body.extend_from_slice(b"}}\n");
        let source_at = self.body.len();
        match source {
            Source::Raw => self.body.extend_from_slice(payload),
            Source::Rewritten(v) => self.body.extend_from_slice(&v),
        }
        self.body.push(b'\n');
        self.items.push(Item { start, source: source_at, end: self.body.len() });
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

/// The deterministic document id of a message: a replay overwrites the same
/// document instead of adding a copy.
pub fn doc_id(msg: &Incoming<'_>) -> String {
    format!("{}/{}/{}", msg.topic, msg.partition, msg.offset)
}

enum Source {
    /// The payload is a JSON object on one line, its timestamp (if any) not a number: sent as it is.
    Raw,
    /// The payload as it must be sent: compacted onto one line (the bulk
    /// format is line-based), its timestamp rewritten, or both.
    Rewritten(Vec<u8>),
}

/// The only field of a record the batch stage reads. Deserializing into it
/// checks the whole object's syntax but builds nothing: the other fields are
/// skipped and the timestamp stays a slice of the payload.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
}

/// Checks that `payload` is one JSON object and returns how to put it on one line.
fn document_line(payload: &[u8]) -> Result<Source, String> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(if payload.is_empty() { "empty message".into() } else { "not a JSON object".into() });
    }
    // JSON is UTF-8 (RFC 8259), and the search engine refuses anything else;
    // serde_json skips the fields it does not read without checking them, so
    // the check is made here (found by the `logger_record` fuzz target).
    std::str::from_utf8(payload).map_err(|e| format!("not UTF-8: {e}"))?;
    let record: Record<'_> = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let rewritten = match record.timestamp {
        Some(ts) if ts.get().starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
            Some(with_timestamp(payload, ts, &seconds_to_rfc3339(ts.get())?))
        }
        _ => None,
    };
    let line = rewritten.as_deref().unwrap_or(payload);
    if !line.contains(&b'\n') {
        return Ok(rewritten.map_or(Source::Raw, Source::Rewritten));
    }
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    serde_json::to_vec(&value).map(Source::Rewritten).map_err(|e| e.to_string())
}

/// The RFC 3339 UTC form with milliseconds (what playground's servers write)
/// of a JSON number of Unix seconds, integer or fractional. A number that is
/// no time of a log event (negative, or past what RFC 3339 can write, such
/// as milliseconds sent as seconds) makes the record invalid.
fn seconds_to_rfc3339(number: &str) -> Result<String, String> {
    let invalid = || format!("timestamp {number} is not a time in Unix seconds");
    let seconds: f64 = number.parse().map_err(|_| invalid())?;
    // Rounded to the microsecond first: a decimal fraction such as .123 has
    // no exact binary form and would otherwise lose a millisecond.
    let micros = (seconds * 1e6).round();
    if !(0.0..((LAST_SECOND + 1) * 1_000_000) as f64).contains(&micros) {
        return Err(invalid());
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros as u64);
    Ok(humantime::format_rfc3339_millis(at).to_string())
}

/// `payload` with the value `ts` replaced by the string `time`. `ts` is a
/// slice of `payload` (a borrowed `RawValue` from `from_slice` always is),
/// so its place is found by address, with no second parse.
fn with_timestamp(payload: &[u8], ts: &RawValue, time: &str) -> Vec<u8> {
    let at = ts.get().as_ptr() as usize - payload.as_ptr() as usize;
    let mut out = Vec::with_capacity(payload.len() + time.len());
    out.extend_from_slice(&payload[..at]);
    write_json_str(&mut out, time);
    out.extend_from_slice(&payload[at + ts.get().len()..]);
    out
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The last second RFC 3339 (and humantime, which panics past it) can write:
/// 9999-12-31T23:59:59Z.
const LAST_SECOND: u64 = 253_402_300_799;

/// `<prefix>-YYYY.MM.DD` of the UTC day of `ms`. A producer chooses the Kafka
/// timestamp, so any value can come: times before 1970 fall on 1970-01-01,
/// times after year 9999 on 9999-12-31, rather than stopping the stream.
pub fn daily_index(prefix: &str, ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0).min(LAST_SECOND * 1000);
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let day = humantime::format_rfc3339_seconds(at).to_string();
    format!("{prefix}-{}", day[..10].replace('-', "."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc() -> Encoder {
        Encoder { index: "logs".into(), mode: IndexMode::Single, ignore_before: None, keep_dead_letters: true }
    }

    fn msg(offset: i64, payload: &[u8]) -> Incoming<'_> {
        Incoming { topic: "t", partition: 2, offset, timestamp_ms: Some(1_700_000_000_000), payload: Some(payload) }
    }

    #[test]
    fn documents_invalid_messages_and_offsets() {
        let m = LoggerMetrics::new();
        let mut b = Batch::new();
        let now = 1_700_000_000_000;
        b.push(msg(7, br#"{"pod":"a","text":"x"}"#), &enc(), &m, now);
        b.push(msg(8, b"not json"), &enc(), &m, now);
        b.push(msg(9, b"[1,2]"), &enc(), &m, now);
        b.push(msg(10, b"{\"pod\":\n \"b\"}"), &enc(), &m, now);
        b.push(msg(11, b"{\"unterminated\": "), &enc(), &m, now);
        b.push(Incoming { payload: None, ..msg(12, b"") }, &enc(), &m, now);
        assert_eq!(b.events, 6);
        assert_eq!(b.offsets.get(&2), Some(&12));
        assert_eq!(b.items.len(), 2);
        assert_eq!(b.dead.len(), 4);
        assert_eq!(b.dead[0].id, "t/2/8");
        let body = String::from_utf8(b.body.clone()).unwrap();
        assert_eq!(
            body,
            "{\"index\":{\"_index\":\"logs\",\"_id\":\"t/2/7\"}}\n{\"pod\":\"a\",\"text\":\"x\"}\n\
             {\"index\":{\"_index\":\"logs\",\"_id\":\"t/2/10\"}}\n{\"pod\":\"b\"}\n"
        );
        let it = b.items[1];
        assert_eq!(&b.body[it.source..it.end], b"{\"pod\":\"b\"}\n");
    }

    #[test]
    fn limits() {
        let m = LoggerMetrics::new();
        let limits = Limits { max_events: 3, max_bytes: 1 << 20, max_age: Duration::from_secs(1) };
        let mut b = Batch::new();
        assert!(b.deadline(&limits).is_none());
        for i in 0..3 {
            assert!(!b.is_full(&limits));
            b.push(msg(i, b"{}"), &enc(), &m, 0);
        }
        assert!(b.is_full(&limits));
        assert!(b.deadline(&limits).is_some());
        let small = Limits { max_events: 100, max_bytes: 10, max_age: Duration::from_secs(1) };
        let mut b = Batch::new();
        b.push(msg(0, b"{}"), &enc(), &m, 0);
        assert!(b.is_full(&small));
    }

    #[test]
    fn too_old_events_are_skipped_but_acknowledged() {
        let m = LoggerMetrics::new();
        let e = Encoder { ignore_before: Some(Duration::from_secs(30)), ..enc() };
        let mut b = Batch::new();
        let ts = 1_700_000_000_000;
        b.push(msg(1, b"{}"), &e, &m, ts + 31_000);
        b.push(msg(2, b"{}"), &e, &m, ts + 29_000);
        assert_eq!(b.items.len(), 1);
        assert_eq!(b.offsets.get(&2), Some(&2));
    }

    /// The document line the batch holds for `payload`, or the reason it has none.
    fn document(payload: &str) -> Result<String, String> {
        let m = LoggerMetrics::new();
        let mut b = Batch::new();
        b.push(msg(1, payload.as_bytes()), &enc(), &m, 0);
        match (b.items.first(), b.dead.first()) {
            (Some(it), _) => Ok(String::from_utf8(b.body[it.source..it.end - 1].to_vec()).unwrap()),
            (None, Some(dead)) => Err(dead.error.clone()),
            (None, None) => panic!("neither a document nor a dead letter"),
        }
    }

    #[test]
    fn the_originals_unix_seconds_become_rfc3339() {
        assert_eq!(
            document(r#"{"pod":"tcp-7f9c","text":"Listening","timestamp":1764496800}"#).unwrap(),
            r#"{"pod":"tcp-7f9c","text":"Listening","timestamp":"2025-11-30T10:00:00.000Z"}"#
        );
        // Fractional seconds keep their milliseconds, digits below are cut.
        assert_eq!(
            document(r#"{"timestamp":1764496800.123,"pod":"a"}"#).unwrap(),
            r#"{"timestamp":"2025-11-30T10:00:00.123Z","pod":"a"}"#
        );
        assert_eq!(
            document(r#"{"timestamp":1764496800.9999}"#).unwrap(),
            r#"{"timestamp":"2025-11-30T10:00:00.999Z"}"#
        );
        assert_eq!(document(r#"{"timestamp":1.7644968005e9}"#).unwrap(), r#"{"timestamp":"2025-11-30T10:00:00.500Z"}"#);
        assert_eq!(document(r#"{"timestamp":0}"#).unwrap(), r#"{"timestamp":"1970-01-01T00:00:00.000Z"}"#);
        // Spaces around the number and a record spread over lines.
        assert_eq!(
            document("{ \"pod\" : \"a\",\n  \"timestamp\" :  1764496800 }").unwrap(),
            r#"{"pod":"a","timestamp":"2025-11-30T10:00:00.000Z"}"#
        );
    }

    #[test]
    fn playground_records_go_through_byte_for_byte() {
        for record in [
            r#"{"pod":"tcp-1","level":"INFO","text":"...","timestamp":"2026-11-30T10:00:00.123Z"}"#,
            r#"{ "pod": "tcp-1", "text": "spaces kept", "timestamp": "2026-11-30T10:00:00.123Z" }"#,
            r#"{"pod":"tcp-1","text":"timestamp 1764496800 in the text"}"#,
            r#"{"pod":"tcp-1","timestamp":null,"extra":{"timestamp":1764496800}}"#,
        ] {
            assert_eq!(document(record).unwrap(), record);
        }
    }

    #[test]
    fn numbers_that_are_no_time_make_the_record_invalid() {
        let m = LoggerMetrics::new();
        let mut b = Batch::new();
        for (i, ts) in
            ["-1", "-0.5", "1e400", "1764496800123", "253402300800", "99999999999999999999999"].into_iter().enumerate()
        {
            let payload = format!(r#"{{"pod":"a","timestamp":{ts}}}"#);
            b.push(msg(i as i64, payload.as_bytes()), &enc(), &m, 0);
        }
        assert!(b.items.is_empty());
        assert_eq!(b.dead.len(), 6);
        assert!(b.dead.iter().all(|d| d.reason == RejectReason::InvalidJson));
        assert_eq!(b.dead[0].error, "timestamp -1 is not a time in Unix seconds");
        assert_eq!(b.dead[0].payload, br#"{"pod":"a","timestamp":-1}"#);
        // The last second RFC 3339 can write is still a time.
        assert_eq!(document(r#"{"timestamp":253402300799}"#).unwrap(), r#"{"timestamp":"9999-12-31T23:59:59.000Z"}"#);
    }

    #[test]
    fn a_record_that_is_not_utf8_is_invalid() {
        let m = LoggerMetrics::new();
        let mut b = Batch::new();
        b.push(msg(1, b"{\"pod\":\"x\",\"text\":\"a\\n\xff\xfeb\"}"), &enc(), &m, 0);
        assert!(b.items.is_empty());
        assert_eq!(b.dead.len(), 1);
        assert_eq!(b.dead[0].reason, RejectReason::InvalidJson);
        assert!(b.dead[0].error.starts_with("not UTF-8"), "{}", b.dead[0].error);
    }

    #[test]
    fn daily_names() {
        assert_eq!(daily_index("logs", 0), "logs-1970.01.01");
        assert_eq!(daily_index("logs", 1_709_164_800_000), "logs-2024.02.29");
        assert_eq!(daily_index("logs", 1_735_689_599_999), "logs-2024.12.31");
        assert_eq!(daily_index("logs", -1), "logs-1970.01.01");
        assert_eq!(daily_index("logs", i64::MAX), "logs-9999.12.31");
        let m = LoggerMetrics::new();
        let e = Encoder { mode: IndexMode::Daily, ..enc() };
        let mut b = Batch::new();
        b.push(msg(1, b"{}"), &e, &m, 0);
        assert!(String::from_utf8_lossy(&b.body).contains("\"logs-2023.11.14\""));
        // The original's records take their day from the Kafka timestamp too,
        // like playground's, whatever their own timestamp says.
        b.push(msg(2, br#"{"pod":"a","timestamp":1764496800}"#), &e, &m, 0);
        let body = String::from_utf8_lossy(&b.body);
        assert!(body.ends_with(
            "\"logs-2023.11.14\",\"_id\":\"t/2/2\"}}\n{\"pod\":\"a\",\"timestamp\":\"2025-11-30T10:00:00.000Z\"}\n"
        ));
    }
}
