//! The real services of the logger's suite: Kafka (SASL/PLAIN, as
//! `scripts/services/kafka` starts it) and OpenSearch, reached from the
//! environment, with what the tests ask of them: topics made and read back
//! with an independent consumer, committed offsets, and the documents of an
//! index checked against the topic they came from.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

use super::common::kafka_config;

/// The real services, or `None` (the test then returns) when not configured.
pub struct Services {
    pub kafka: String,
    pub search: String,
    pub rt: tokio::runtime::Runtime,
    pub http: reqwest::Client,
}

pub fn services(test: &str) -> Option<Services> {
    let (Ok(kafka), Ok(search)) = (std::env::var("PLAYGROUND_KAFKA"), std::env::var("PLAYGROUND_OPENSEARCH")) else {
        assert!(
            std::env::var("PLAYGROUND_REQUIRE_SERVICES").is_err(),
            "PLAYGROUND_KAFKA and PLAYGROUND_OPENSEARCH must be set (scripts/test does it)"
        );
        eprintln!("{test}: PLAYGROUND_KAFKA and PLAYGROUND_OPENSEARCH are not set; not run (scripts/test sets them)");
        return None;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    Some(Services { kafka, search: search.trim_end_matches('/').to_string(), rt, http })
}

/// Names unique to one test run: topic, group, index and alias.
pub fn names(test: &str) -> (String, String, String, String) {
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() % 100_000_000;
    let base = format!("lt-{test}-{}-{nonce}", std::process::id());
    (format!("{base}-topic"), format!("{base}-group"), format!("{base}-index"), format!("{base}-alias"))
}

impl Services {
    /// `method url` with an optional JSON body; (status, JSON answer), status 0
    /// when nothing answered.
    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/{}", self.search, path.trim_start_matches('/'));
        self.call_url(method, &url, body)
    }

    pub fn call_url(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
        self.rt.block_on(async {
            let mut req = self.http.request(method, url);
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b.to_string());
            }
            // Status 0: no answer (the node is down), for the callers that poll.
            let Ok(resp) = req.send().await else { return (0, Value::Null) };
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.unwrap_or_default();
            (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        })
    }

    /// Creates a topic with 3 partitions (so several partitions are in play).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = kafka_config(&self.kafka).create().unwrap();
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let res = self.rt.block_on(admin.create_topics([&new], &AdminOptions::new())).unwrap();
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
        }
    }

    /// Every message of the topic, by document id: what the index must hold.
    pub fn read_topic(&self, topic: &str) -> BTreeMap<String, Vec<u8>> {
        let consumer: BaseConsumer = kafka_config(&self.kafka)
            .set("group.id", format!("{topic}-checker"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let partitions: Vec<i32> = meta.topics()[0].partitions().iter().map(|p| p.id()).collect();
        let mut tpl = TopicPartitionList::new();
        let mut remaining = BTreeMap::new();
        for &p in &partitions {
            let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
            if high > low {
                remaining.insert(p, high);
                tpl.add_partition_offset(topic, p, Offset::Offset(low)).unwrap();
            }
        }
        let mut out = BTreeMap::new();
        if remaining.is_empty() {
            return out;
        }
        consumer.assign(&tpl).unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        while !remaining.is_empty() {
            assert!(Instant::now() < until, "reading {topic} back took too long");
            let Some(m) = consumer.poll(Duration::from_millis(500)) else { continue };
            let m = m.unwrap();
            out.insert(format!("{topic}/{}/{}", m.partition(), m.offset()), m.payload().unwrap_or_default().to_vec());
            if remaining.get(&m.partition()).is_some_and(|&h| m.offset() + 1 >= h) {
                remaining.remove(&m.partition());
            }
        }
        out
    }

    /// The committed offsets of a group on a topic, by partition.
    pub fn committed(&self, topic: &str, group: &str, partitions: i32) -> BTreeMap<i32, i64> {
        let consumer: BaseConsumer = kafka_config(&self.kafka).set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        got.elements().iter().map(|e| (e.partition(), e.offset().to_raw().unwrap_or(-1))).collect()
    }

    /// Whether the group committed every partition up to its end (a
    /// partition that never held a message has nothing to commit).
    pub fn all_committed(&self, topic: &str, group: &str, partitions: i32) -> bool {
        let committed = self.committed(topic, group, partitions);
        self.high_watermarks(topic, partitions).iter().all(|(p, &high)| high == 0 || committed.get(p) == Some(&high))
    }

    pub fn high_watermarks(&self, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
        let consumer: BaseConsumer = kafka_config(&self.kafka).create().unwrap();
        (0..partitions).map(|p| (p, consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1)).collect()
    }

    pub fn count(&self, target: &str) -> u64 {
        let (status, v) = self.call(reqwest::Method::GET, &format!("{target}/_count"), None);
        if status != 200 {
            return 0;
        }
        v["count"].as_u64().unwrap_or(0)
    }

    /// Every document reachable through `target` (scroll API): id → (source, version).
    pub fn documents(&self, target: &str) -> BTreeMap<String, (Value, u64)> {
        self.call(reqwest::Method::POST, &format!("{target}/_refresh"), None);
        let (status, mut page) = self.call(
            reqwest::Method::POST,
            &format!("{target}/_search?scroll=1m"),
            Some(json!({ "size": 5000, "version": true, "query": { "match_all": {} } })),
        );
        assert_eq!(status, 200, "{page}");
        let mut out = BTreeMap::new();
        loop {
            let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
            if hits.is_empty() {
                break;
            }
            for h in hits {
                let id = h["_id"].as_str().unwrap().to_string();
                let dup = out.insert(id.clone(), (h["_source"].clone(), h["_version"].as_u64().unwrap_or(0)));
                assert!(dup.is_none(), "document {id} returned twice");
            }
            let scroll_id = page["_scroll_id"].as_str().unwrap().to_string();
            let (status, next) = self.call(
                reqwest::Method::POST,
                "_search/scroll",
                Some(json!({ "scroll": "1m", "scroll_id": scroll_id })),
            );
            assert_eq!(status, 200, "{next}");
            page = next;
        }
        out
    }

    /// Asserts that `target` holds exactly one document per message of the
    /// topic, with the message as its source (the messages listed in
    /// `skipped` excepted), and returns how many were overwritten by a replay.
    pub fn assert_exactly_the_topic(&self, topic: &str, target: &str, skipped: &BTreeSet<String>) -> usize {
        let expected = self.read_topic(topic);
        let docs = self.documents(target);
        let want: BTreeSet<&String> = expected.keys().filter(|k| !skipped.contains(*k)).collect();
        let have: BTreeSet<&String> = docs.keys().collect();
        let missing: Vec<_> = want.difference(&have).take(5).collect();
        let extra: Vec<_> = have.difference(&want).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{} documents for {} messages; missing e.g. {missing:?}, unexpected e.g. {extra:?}",
            docs.len(),
            want.len()
        );
        for (id, (source, _)) in &docs {
            let message: Value = serde_json::from_slice(&expected[id]).unwrap();
            assert_eq!(source, &message, "document {id}");
        }
        docs.values().filter(|(_, v)| *v > 1).count()
    }

    pub fn delete_index(&self, index: &str) {
        self.call(reqwest::Method::DELETE, index, None);
    }
}
