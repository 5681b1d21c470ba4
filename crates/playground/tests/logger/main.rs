//! `playground logger` against a real Kafka and a real OpenSearch: exact
//! indexing of the logs two running servers ship, SIGKILL and restart (and
//! the quick rejoin of static membership), a 30 s search
//! engine outage, rejected events, the original's records beside playground's,
//! and restarts over an existing index.
//!
//! They run when `PLAYGROUND_KAFKA` (SASL user `user`/`password`, as
//! `scripts/services/kafka` starts it) and `PLAYGROUND_OPENSEARCH` (an
//! `http://` URL) are set, as `scripts/test` does; without them each test
//! says so and returns, or fails when PLAYGROUND_REQUIRE_SERVICES is set.
//! Every test uses its own topic, consumer group and index, so they run in
//! parallel.
//!
//! The documents are always checked against the topic itself, read back
//! with an independent consumer: whatever produced the events (this file's
//! producer, or real server instances shipping their logs), each message
//! must be exactly one document with the id `topic/partition/offset`.
//!
//! The services and what the tests ask of them are in `services.rs`; the
//! events, the shipping servers and the logger's start in `shipping.rs`.

#[path = "../common/mod.rs"]
mod common;
mod services;
mod shipping;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, http_get, kafka_config};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::BaseRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};
use services::{Services, names, services};
use shipping::{Shipper, event, now_ms, rfc3339_ms, ship_from_two_instances, start_logger, wait_for};

#[test]
fn ten_thousand_events_from_two_running_servers_are_indexed_exactly() {
    let Some(s) = services("ten_thousand_events") else { return };
    let (topic, group, index, alias) = names("tenk");
    s.create_topic(&topic, 3);
    let mut logger = start_logger(&s, &topic, &group, &index, &alias, &[("BATCH_MAX_EVENTS", "1000")]);
    logger.wait_ready();
    let pods = ship_from_two_instances(&s, &topic, 10_000);
    let expected = s.read_topic(&topic);
    let total = expected.len() as u64;
    assert!(total >= 10_000, "{total} events shipped");
    wait_for(Duration::from_secs(120), "every shipped event through the alias", || s.count(&alias) >= total);
    logger.assert_running();

    let overwritten = s.assert_exactly_the_topic(&topic, &alias, &BTreeSet::new());
    assert_eq!(overwritten, 0, "no event was replayed in an undisturbed run");
    assert_eq!(s.count(&alias), total);

    // The explicit mapping, and the alias pointing at the index.
    let (_, mapping) = s.call(reqwest::Method::GET, &format!("{index}/_mapping"), None);
    let props = &mapping[&index]["mappings"]["properties"];
    for (field, ty) in [("pod", "keyword"), ("level", "keyword"), ("text", "text"), ("timestamp", "date")] {
        assert_eq!(props[field]["type"], ty, "{field} in {mapping}");
    }
    let (status, aliases) = s.call(reqwest::Method::GET, &format!("_alias/{alias}"), None);
    assert_eq!(status, 200);
    assert!(aliases.get(&index).is_some(), "{aliases}");

    // The types at work through the alias, against counts taken from the
    // topic: exact keyword matches, full-text search, a date range.
    let events: Vec<Value> = expected.values().map(|v| serde_json::from_slice(v).unwrap()).collect();
    let search = |query: Value| {
        let (status, v) = s.call(reqwest::Method::POST, &format!("{alias}/_count"), Some(json!({ "query": query })));
        assert_eq!(status, 200, "{v}");
        v["count"].as_u64().unwrap()
    };
    for pod in &pods {
        let want = events.iter().filter(|e| e["pod"] == pod.as_str()).count() as u64;
        assert!(want >= 4000, "{pod} shipped {want} events");
        assert_eq!(search(json!({ "term": { "pod": pod } })), want, "{pod}");
    }
    for level in ["DEBUG", "INFO"] {
        let want = events.iter().filter(|e| e["level"] == level).count() as u64;
        assert!(want > 0, "no {level} event shipped");
        assert_eq!(search(json!({ "term": { "level": level } })), want, "{level}");
    }
    let closed = events.iter().filter(|e| e["text"].as_str().unwrap().contains("connection closed")).count() as u64;
    assert!(closed >= 9000, "{closed} connection events");
    assert_eq!(search(json!({ "match_phrase": { "text": "connection closed" } })), closed);
    let hour_ago = rfc3339_ms(now_ms() - 3_600_000);
    assert_eq!(search(json!({ "range": { "timestamp": { "gte": hour_ago } } })), total);
    assert_eq!(search(json!({ "range": { "timestamp": { "lt": hour_ago } } })), 0);

    // Metrics, and every offset committed once indexed.
    wait_for(Duration::from_secs(10), "every offset committed", || s.all_committed(&topic, &group, 3));
    assert_eq!(logger.counter("playground_logger_events_consumed_total"), total as f64);
    assert_eq!(logger.counter("playground_logger_events_indexed_total"), total as f64);
    assert_eq!(logger.counter("playground_logger_events_rejected_total{reason=\"invalid_json\"}"), 0.0);
    assert!(logger.counter("playground_logger_batch_size_count") >= 10.0);
    assert!(logger.counter("playground_logger_bulk_duration_seconds_count") >= 10.0);
    let used: Vec<i32> = s.high_watermarks(&topic, 3).into_iter().filter(|&(_, h)| h > 0).map(|(p, _)| p).collect();
    wait_for(Duration::from_secs(10), "the lag gauge at 0", || {
        used.iter().all(|p| {
            let line = format!("playground_logger_consumer_lag{{partition=\"{p}\"}}");
            http_get(logger.admin, "/metrics").is_some_and(|(_, b)| b.contains(&format!("{line} 0\n")))
        })
    });
    s.delete_index(&index);
}

#[test]
fn sigkill_mid_stream_then_restart_indexes_every_event_exactly_once() {
    let Some(s) = services("sigkill") else { return };
    let (topic, group, index, alias) = names("kill");
    s.create_topic(&topic, 3);
    let total = 6000;
    // Small batches with several in flight, so that at the kill some batches
    // are indexed but not committed and others not indexed at all.
    let settings = [("BATCH_MAX_EVENTS", "100"), ("BATCH_TIMEOUT", "50ms"), ("BULK_CONCURRENCY", "3")];
    let mut logger = start_logger(&s, &topic, &group, &index, &alias, &settings);
    logger.wait_ready();
    std::thread::scope(|scope| {
        let shipper = Shipper::new(&s, &topic, "playground-tcp-a");
        let producing = scope.spawn(move || shipper.ship(0..total, 100, Duration::from_millis(40)));
        wait_for(Duration::from_secs(60), "a part of the stream indexed", || {
            logger.counter("playground_logger_events_indexed_total") >= 1500.0
        });
        logger.assert_running();
        logger.signal("KILL");
        let status = logger.wait_exit(Duration::from_secs(10));
        assert!(!status.success(), "killed, not exited: {status}");
        assert!(s.count(&alias) < total as u64, "the kill must happen mid-stream");
        logger = start_logger(&s, &topic, &group, &index, &alias, &settings);
        producing.join().unwrap();
    });
    wait_for(Duration::from_secs(120), "every event indexed after the restart", || s.count(&alias) >= total as u64);
    wait_for(Duration::from_secs(20), "every offset committed", || s.all_committed(&topic, &group, 3));
    let overwritten = s.assert_exactly_the_topic(&topic, &alias, &BTreeSet::new());
    assert_eq!(s.count(&alias), total as u64, "count after the restart");
    eprintln!("sigkill: {overwritten} documents were indexed again after the restart and overwritten in place");
    logger.assert_running();
    s.delete_index(&index);
}

#[test]
fn after_sigkill_a_restarted_logger_rejoins_at_once_and_is_ready_only_with_partitions() {
    let Some(s) = services("rejoin") else { return };
    let (topic, group, index, alias) = names("rejoin");
    s.create_topic(&topic, 3);
    let settings = [("BATCH_TIMEOUT", "100ms")];
    let mut logger = start_logger(&s, &topic, &group, &index, &alias, &settings);
    logger.wait_ready();
    let shipper = Shipper::new(&s, &topic, "playground-tcp-a");
    shipper.ship(0..100, 0, Duration::ZERO);
    wait_for(Duration::from_secs(60), "the first events", || s.count(&alias) >= 100);
    logger.signal("KILL");
    assert!(!logger.wait_exit(Duration::from_secs(10)).success());

    // The same instance (same host name, the default LOGGER_INSTANCE_ID)
    // comes back: Kafka hands it its partitions without waiting for the
    // killed member's session (45 s) to time out.
    let restarted = Instant::now();
    let mut logger = start_logger(&s, &topic, &group, &index, &alias, &settings);
    logger.wait_ready();
    assert!(logger.log().contains("Partitions assigned"), "ready before holding partitions:\n{}", logger.log());
    shipper.ship(100..200, 0, Duration::ZERO);
    wait_for(Duration::from_secs(20), "the events shipped after the restart", || s.count(&alias) >= 200);
    let took = restarted.elapsed();
    assert!(took < Duration::from_secs(30), "{took:?} from restart to indexing, the session timeout is 45 s");
    eprintln!("rejoin: restart to indexed in {took:?}");
    s.delete_index(&index);
}

#[test]
fn a_logger_holding_no_partition_is_not_ready() {
    let Some(s) = services("idle-member") else { return };
    let (topic, group, index, alias) = names("idle");
    s.create_topic(&topic, 1);
    let mut a = start_logger(&s, &topic, &group, &index, &alias, &[("LOGGER_INSTANCE_ID", "a")]);
    a.wait_ready();
    // One partition, two members: one of them holds nothing.
    let mut b = start_logger(&s, &topic, &group, &index, &alias, &[("LOGGER_INSTANCE_ID", "b")]);
    wait_for(Duration::from_secs(60), "exactly one ready member", || {
        b.log().contains("Partitions assigned") && a.ready().is_some() && a.ready() != b.ready()
    });
    a.assert_running();
    b.assert_running();
    s.delete_index(&index);
}

/// A second OpenSearch node on its own ports and state directory, which this
/// test may stop without disturbing the shared one.
struct PrivateOpenSearch {
    port: u16,
    transport: u16,
    state: PathBuf,
}

impl PrivateOpenSearch {
    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services/opensearch")
    }

    fn run(&self, action: &str) {
        let out = Command::new(Self::script())
            .arg(action)
            .env("OPENSEARCH_PORT", self.port.to_string())
            .env("OPENSEARCH_TRANSPORT_PORT", self.transport.to_string())
            .env("OPENSEARCH_HEAP", "-Xms256m -Xmx512m")
            .env("PLAYGROUND_STATE", &self.state)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "opensearch {action} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start() -> PrivateOpenSearch {
        let port = free_port();
        let mut transport = free_port();
        while transport == port {
            transport = free_port();
        }
        let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("opensearch-outage-{port}"));
        let _ = std::fs::remove_dir_all(&state);
        let node = PrivateOpenSearch { port, transport, state };
        node.run("start");
        node
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateOpenSearch {
    fn drop(&mut self) {
        let _ = Command::new(Self::script())
            .arg("stop")
            .env("OPENSEARCH_PORT", self.port.to_string())
            .env("OPENSEARCH_TRANSPORT_PORT", self.transport.to_string())
            .env("PLAYGROUND_STATE", &self.state)
            .output();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

#[test]
fn opensearch_down_30s_mid_stream_loses_and_duplicates_nothing() {
    let Some(s) = services("outage") else { return };
    let (topic, group, index, alias) = names("outage");
    s.create_topic(&topic, 3);
    let node = PrivateOpenSearch::start();
    let url = node.url();
    let settings = [
        ("ELASTICSEARCH_ENDPOINT", url.as_str()),
        ("BATCH_MAX_EVENTS", "200"),
        ("BULK_RETRY_MAX", "2s"),
        ("ELASTICSEARCH_TIMEOUT", "5s"),
    ];
    let mut logger = start_logger(&s, &topic, &group, &index, &alias, &settings);
    logger.wait_ready();
    let count = |s: &Services| {
        let (status, v) = s.call_url(reqwest::Method::GET, &format!("{url}/{alias}/_count"), None);
        if status == 200 { v["count"].as_u64().unwrap_or(0) } else { 0 }
    };
    let shipper = Shipper::new(&s, &topic, "playground-tcp-a");
    shipper.ship(0..1000, 100, Duration::from_millis(20));
    wait_for(Duration::from_secs(60), "the first events indexed", || count(&s) >= 1000);

    node.run("stop");
    let down = Instant::now();
    // The stream goes on while the engine is away.
    let mut next = 1000;
    while down.elapsed() < Duration::from_secs(30) {
        shipper.ship(next..next + 100, 100, Duration::ZERO);
        next += 100;
        logger.assert_running();
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(logger.ready(), Some(false), "not ready while the search engine is down");
    assert!(logger.counter("playground_logger_bulk_retries_total") >= 1.0, "retries counted");
    node.run("start");
    shipper.ship(next..next + 1000, 100, Duration::from_millis(20));
    let total = next + 1000;
    wait_for(Duration::from_secs(120), "every event indexed after the outage", || count(&s) >= total as u64);
    logger.assert_running();
    wait_for(Duration::from_secs(20), "ready again", || logger.ready() == Some(true));
    wait_for(Duration::from_secs(20), "every offset committed", || s.all_committed(&topic, &group, 3));
    assert_eq!(count(&s), total as u64);
    let node_view = Services {
        kafka: s.kafka.clone(),
        search: url.clone(),
        rt: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
        // A client of its own: pooled connections belong to the runtime that opened them.
        http: reqwest::Client::new(),
    };
    node_view.assert_exactly_the_topic(&topic, &alias, &BTreeSet::new());
}

#[test]
fn invalid_json_and_mapping_rejects_are_counted_and_the_stream_goes_on() {
    let Some(s) = services("rejects") else { return };
    let (topic, group, index, alias) = names("rejects");
    s.create_topic(&topic, 1);
    let dlq = format!("{topic}-dlq");
    s.create_topic(&dlq, 1);
    let mut logger = start_logger(&s, &topic, &group, &index, &alias, &[("DEAD_LETTER_TOPIC", &dlq)]);
    logger.wait_ready();
    let shipper = Shipper::new(&s, &topic, "playground-tcp-a");
    for i in 0..50 {
        shipper.send_raw(Some(0), event("playground-tcp-a", i).as_bytes());
    }
    shipper.send_raw(Some(0), b"Listening on 0.0.0.0:40000 (not JSON)");
    for i in 50..100 {
        shipper.send_raw(Some(0), event("playground-tcp-a", i).as_bytes());
    }
    let bad_date = json!({ "pod": "playground-tcp-a", "level": "INFO", "text": "bad", "timestamp": "yesterday" });
    shipper.send_raw(Some(0), bad_date.to_string().as_bytes());
    for i in 100..150 {
        shipper.send_raw(Some(0), event("playground-tcp-a", i).as_bytes());
    }
    shipper.flush();

    wait_for(Duration::from_secs(60), "the valid events indexed", || s.count(&alias) >= 150);
    wait_for(Duration::from_secs(20), "the offsets committed past both rejects", || {
        s.committed(&topic, &group, 1).get(&0) == Some(&152)
    });
    assert_eq!(logger.counter("playground_logger_events_rejected_total{reason=\"invalid_json\"}"), 1.0);
    assert_eq!(logger.counter("playground_logger_events_rejected_total{reason=\"mapping\"}"), 1.0);
    assert_eq!(logger.counter("playground_logger_events_consumed_total"), 152.0);
    assert_eq!(logger.counter("playground_logger_events_indexed_total"), 150.0);
    let skipped: BTreeSet<String> = [format!("{topic}/0/50"), format!("{topic}/0/101")].into();
    s.assert_exactly_the_topic(&topic, &alias, &skipped);

    // Both went to the dead-letter topic, with the reason.
    let consumer: BaseConsumer = kafka_config(&s.kafka).set("group.id", format!("{dlq}-reader")).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&dlq, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut letters = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while letters.len() < 2 && Instant::now() < until {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            let reason = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "reason").and_then(|h| h.value.map(|v| v.to_vec())))
                .unwrap_or_default();
            letters.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(&reason).into_owned(),
            ));
        }
    }
    letters.sort();
    assert_eq!(
        letters,
        vec![(format!("{topic}/0/101"), "mapping".to_string()), (format!("{topic}/0/50"), "invalid_json".to_string())]
    );
    logger.assert_running();
    s.delete_index(&index);
}

#[test]
fn the_originals_records_are_indexed_with_their_dates_beside_playgrounds() {
    let Some(s) = services("original") else { return };
    let (topic, group, index, alias) = names("original");
    s.create_topic(&topic, 1);
    let mut logger = start_logger(&s, &topic, &group, &index, &alias, &[("BATCH_TIMEOUT", "100ms")]);
    logger.wait_ready();
    // As the original's servers ship them: no level, Unix seconds (whole or not).
    let shipper = Shipper::new(&s, &topic, "tcp-7f9c");
    let original = json!({ "pod": "tcp-7f9c", "text": "Listening", "timestamp": 1_764_496_800 });
    let fractional = json!({ "pod": "tcp-7f9c", "text": "Client connected", "timestamp": 1_764_496_801.25 });
    shipper.send_raw(Some(0), original.to_string().as_bytes());
    shipper.send_raw(Some(0), fractional.to_string().as_bytes());
    shipper.send_raw(Some(0), br#"{"pod":"tcp-7f9c","text":"no time","timestamp":-1}"#);
    shipper.send_raw(Some(0), event("playground-tcp-a", 0).as_bytes());
    shipper.flush();
    wait_for(Duration::from_secs(60), "the three valid records through the alias", || s.count(&alias) >= 3);
    wait_for(Duration::from_secs(20), "the offsets committed past the invalid one", || {
        s.committed(&topic, &group, 1).get(&0) == Some(&4)
    });
    assert_eq!(logger.counter("playground_logger_events_rejected_total{reason=\"invalid_json\"}"), 1.0);

    // One index behind the alias; the original's times as RFC 3339, playground's record as it was shipped.
    let docs = s.documents(&alias);
    let (status, hits) =
        s.call(reqwest::Method::POST, &format!("{alias}/_search"), Some(json!({ "query": { "match_all": {} } })));
    assert_eq!(status, 200, "{hits}");
    let indices: BTreeSet<&str> =
        hits["hits"]["hits"].as_array().unwrap().iter().map(|h| h["_index"].as_str().unwrap()).collect();
    assert_eq!(indices, [index.as_str()].into());
    let mut want = BTreeMap::new();
    want.insert(
        format!("{topic}/0/0"),
        json!({ "pod": "tcp-7f9c", "text": "Listening", "timestamp": "2025-11-30T10:00:00.000Z" }),
    );
    want.insert(
        format!("{topic}/0/1"),
        json!({ "pod": "tcp-7f9c", "text": "Client connected", "timestamp": "2025-11-30T10:00:01.250Z" }),
    );
    want.insert(
        format!("{topic}/0/3"),
        serde_json::from_slice(&s.read_topic(&topic)[&format!("{topic}/0/3")]).unwrap(),
    );
    let have: BTreeMap<String, Value> = docs.into_iter().map(|(id, (source, _))| (id, source)).collect();
    assert_eq!(have, want);

    // The engine reads those dates as dates: ranges find the original's
    // records at their second, playground's now, and nothing in 1970.
    let search = |query: Value| {
        let (status, v) = s.call(reqwest::Method::POST, &format!("{alias}/_count"), Some(json!({ "query": query })));
        assert_eq!(status, 200, "{v}");
        v["count"].as_u64().unwrap()
    };
    let range = |gte: &str, lt: &str| search(json!({ "range": { "timestamp": { "gte": gte, "lt": lt } } }));
    assert_eq!(range("2025-11-30T10:00:00Z", "2025-11-30T10:00:01Z"), 1);
    assert_eq!(range("2025-11-30T10:00:01.250Z", "2025-11-30T10:00:01.251Z"), 1);
    assert_eq!(range(&rfc3339_ms(now_ms() - 3_600_000), &rfc3339_ms(now_ms() + 60_000)), 1);
    assert_eq!(range("1970-01-01T00:00:00Z", "2000-01-01T00:00:00Z"), 0);
    logger.assert_running();
    s.delete_index(&index);
}

#[test]
fn restart_keeps_the_existing_index_mapping_and_alias() {
    let Some(s) = services("restart") else { return };
    let (topic, group, index, alias) = names("restart");
    s.create_topic(&topic, 3);
    // SCRAM-SHA-512 here, PLAIN elsewhere: both SASL mechanisms are exercised.
    let settings = [("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"), ("BATCH_TIMEOUT", "200ms")];
    let mut logger = start_logger(&s, &topic, &group, &index, &alias, &settings);
    logger.wait_ready();
    let shipper = Shipper::new(&s, &topic, "playground-tcp-a");
    shipper.ship(0..300, 0, Duration::ZERO);
    wait_for(Duration::from_secs(60), "the first run's events", || s.count(&alias) >= 300);

    // Graceful stop: the batch in flight is finished and committed, exit 0.
    logger.signal("TERM");
    let status = logger.wait_exit(Duration::from_secs(40));
    assert!(status.success(), "exit status {status}; log:\n{}", logger.log());
    assert!(s.all_committed(&topic, &group, 3), "committed at shutdown");

    // An operator's changes in between: one more field, one more alias.
    let (st, v) = s.call(
        reqwest::Method::PUT,
        &format!("{index}/_mapping"),
        Some(json!({ "properties": { "trace_id": { "type": "keyword" } } })),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.call(reqwest::Method::PUT, &format!("{index}/_alias/{alias}-ops"), None);
    assert_eq!(st, 200, "{v}");
    let (_, mapping_before) = s.call(reqwest::Method::GET, &format!("{index}/_mapping"), None);

    let mut logger = start_logger(&s, &topic, &group, &index, &alias, &settings);
    logger.wait_ready();
    assert!(logger.log().contains("Using the existing index and alias"), "{}", logger.log());
    shipper.ship(300..600, 0, Duration::ZERO);
    wait_for(Duration::from_secs(60), "the second run's events", || s.count(&alias) >= 600);

    let (_, mapping_after) = s.call(reqwest::Method::GET, &format!("{index}/_mapping"), None);
    assert_eq!(mapping_after, mapping_before, "the mapping is kept as it was");
    assert_eq!(mapping_after[&index]["mappings"]["properties"]["timestamp"]["type"], "date");
    let (_, aliases) = s.call(reqwest::Method::GET, &format!("{index}/_alias"), None);
    let names: BTreeSet<&str> = aliases[&index]["aliases"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(names, [alias.as_str(), format!("{alias}-ops").as_str()].into(), "{aliases}");
    // Nothing of the first run was indexed again: the shutdown committed it.
    let overwritten = s.assert_exactly_the_topic(&topic, &alias, &BTreeSet::new());
    assert_eq!(overwritten, 0);
    logger.assert_running();
    s.delete_index(&index);
}

#[test]
fn daily_indices_behind_the_alias() {
    let Some(s) = services("daily") else { return };
    let (topic, group, prefix, alias) = names("daily");
    s.create_topic(&topic, 1);
    let mut logger = start_logger(
        &s,
        &topic,
        &group,
        &prefix,
        &alias,
        &[("ELASTICSEARCH_INDEX_MODE", "daily"), ("BATCH_TIMEOUT", "100ms")],
    );
    logger.wait_ready();
    let shipper = Shipper::new(&s, &topic, "playground-tcp-a");
    let day = 86_400_000;
    let t0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    for (i, ts) in [t0 + 1000, t0 + day + 1000, t0 + day + 2000].into_iter().enumerate() {
        let body =
            json!({ "pod": "p", "level": "INFO", "text": format!("day event {i}"), "timestamp": rfc3339_ms(ts) });
        let payload = body.to_string();
        let record = BaseRecord::to(&topic).key("p").payload(&payload).timestamp(ts);
        shipper.producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    shipper.flush();
    wait_for(Duration::from_secs(60), "three events through the alias", || s.count(&alias) >= 3);
    assert_eq!(s.count(&format!("{prefix}-2026.01.01")), 1);
    assert_eq!(s.count(&format!("{prefix}-2026.01.02")), 2);
    let (_, mapping) = s.call(reqwest::Method::GET, &format!("{prefix}-2026.01.02/_mapping"), None);
    assert_eq!(mapping[format!("{prefix}-2026.01.02")]["mappings"]["properties"]["pod"]["type"], "keyword");
    s.assert_exactly_the_topic(&topic, &alias, &BTreeSet::new());
    logger.assert_running();
    s.delete_index(&format!("{prefix}-*"));
    s.call(reqwest::Method::DELETE, &format!("_index_template/{prefix}"), None);
}
