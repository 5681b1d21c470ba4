//! The logger's record decoding on any Kafka payload and timestamp: no
//! panic, every message is accounted for (a document or a rejection), and
//! the bulk body stays well-formed NDJSON: each document is one line of JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use playground_logger::batch::{Batch, Encoder, Incoming};
use playground_logger::config::IndexMode;
use playground_logger::metrics::LoggerMetrics;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, payload)) = data.split_first() else { return };
    let encoder = Encoder {
        index: "fuzz".into(),
        mode: if flags & 1 == 0 { IndexMode::Single } else { IndexMode::Daily },
        ignore_before: None,
        keep_dead_letters: flags & 2 != 0,
    };
    let timestamp_ms = (flags & 4 != 0).then(|| i64::from(flags) * 86_400_000 * 365);
    let mut batch = Batch::new();
    let metrics = LoggerMetrics::new();
    let msg = Incoming { topic: "t", partition: 0, offset: 7, timestamp_ms, payload: Some(payload) };
    batch.push(msg, &encoder, &metrics, 1_700_000_000_000);
    assert_eq!(batch.events, 1);
    assert!(batch.items.len() + batch.dead.len() <= 1);
    for item in &batch.items {
        let action = &batch.body[item.start..item.source];
        let document = &batch.body[item.source..item.end];
        for line in [action, document] {
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "{payload:?}");
            assert_eq!(line.last(), Some(&b'\n'));
            // JSON's grammar in UTF-8; numbers of any size are JSON (what the
            // search engine makes of 1e400 is the mapping's business).
            std::str::from_utf8(line).expect("each bulk line is UTF-8");
            serde_json::from_slice::<serde::de::IgnoredAny>(line).expect("each bulk line is JSON");
        }
    }
});
