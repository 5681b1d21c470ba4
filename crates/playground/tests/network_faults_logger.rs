//! Network faults between the logger and the search engine, made by
//! Toxiproxy in front of the real OpenSearch: added latency beyond
//! ELASTICSEARCH_TIMEOUT, a bandwidth limit, connection resets and a black
//! hole. For each: the logger feels it (bulk requests retried), carries on
//! without a restart once it is gone, and loses nothing: every event shipped
//! to Kafka is in the index exactly once (document ids are
//! topic/partition/offset, so a retried bulk request overwrites).
//!
//! Needs PLAYGROUND_TOXIPROXY, PLAYGROUND_KAFKA and PLAYGROUND_OPENSEARCH
//! (`scripts/test` sets them).

mod common;

use std::time::{Duration, Instant};

use common::logger::Logger;
use common::toxi::{self, Proxy};
use common::{http, http_get};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// The logger's ELASTICSEARCH_TIMEOUT here.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(2);

struct Rig {
    proxy: Proxy,
    logger: Logger,
    producer: BaseProducer,
    topic: String,
    index: String,
    search_port: u16,
}

fn rig(name: &str) -> Option<Rig> {
    let api = toxi::api()?;
    let (Ok(kafka), Ok(search)) = (std::env::var("PLAYGROUND_KAFKA"), std::env::var("PLAYGROUND_OPENSEARCH")) else {
        assert!(std::env::var("PLAYGROUND_REQUIRE_SERVICES").is_err(), "PLAYGROUND_KAFKA/OPENSEARCH unset");
        eprintln!("skipped: PLAYGROUND_KAFKA / PLAYGROUND_OPENSEARCH not set; run scripts/test");
        return None;
    };
    let search_port: u16 = search.trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap();
    let proxy = Proxy::new(api, name, "127.0.0.1:0", &format!("127.0.0.1:{search_port}"));
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let (topic, index) = (format!("faults-{name}-{nonce}"), format!("faults-{name}-{nonce}"));
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let timeout = format!("{}s", SEARCH_TIMEOUT.as_secs());
    let alias = format!("{index}-alias");
    let logger = Logger::start(
        &index,
        &[
            ("KAFKA_BROKERS", &kafka),
            ("KAFKA_SASL_USER", "user"),
            ("KAFKA_SASL_PASSWORD", "password"),
            ("KAFKA_LOGGING_TOPIC", &topic),
            ("KAFKA_CONSUMER_GROUP", &index),
            ("ELASTICSEARCH_ENDPOINT", &endpoint),
            ("ELASTICSEARCH_LOGGING_INDEX", &index),
            ("ELASTICSEARCH_ALIAS", &alias),
            ("ELASTICSEARCH_TIMEOUT", &timeout),
            ("BULK_RETRY_MAX", "1s"),
            ("BATCH_TIMEOUT", "200ms"),
        ],
    );
    let producer = ClientConfig::new()
        .set("bootstrap.servers", &kafka)
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "PLAIN")
        .set("sasl.username", "user")
        .set("sasl.password", "password")
        .create()
        .unwrap();
    let rig = Rig { proxy, logger, producer, topic, index, search_port };
    rig.ship(0..50);
    rig.wait_indexed(50);
    Some(rig)
}

impl Rig {
    /// Ships events `range` as a server would (key = pod).
    fn ship(&self, range: std::ops::Range<usize>) {
        for i in range {
            let event = serde_json::json!({
                "pod": "fault-pod", "level": "INFO", "text": format!("event {i}"),
                "timestamp": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            });
            self.producer.send(BaseRecord::to(&self.topic).key("fault-pod").payload(&event.to_string())).unwrap();
        }
        self.producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Documents in the index (read past the proxy).
    fn count(&self) -> u64 {
        let _ = http(self.search_port, "POST", &format!("/{}/_refresh", self.index), "");
        http_get(self.search_port, &format!("/{}/_count", self.index))
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok()?["count"].as_u64())
            .unwrap_or(0)
    }

    /// Waits (60 s at most) for `n` documents, then checks there are exactly `n`.
    fn wait_indexed(&self, n: u64) {
        let until = Instant::now() + Duration::from_secs(60);
        while self.count() < n {
            assert!(Instant::now() < until, "{} of {n} indexed; log:\n{}", self.count(), self.logger.log());
            std::thread::sleep(Duration::from_millis(250));
        }
        assert_eq!(self.count(), n, "every event exactly once");
    }

    /// Waits (30 s at most) until a bulk request has been retried.
    fn wait_retried(&self) {
        let retries = || self.logger.metric("playground_logger_bulk_retries_total").unwrap_or(0.0);
        let until = Instant::now() + Duration::from_secs(30);
        while retries() == 0.0 {
            assert!(Instant::now() < until, "the fault was not felt; log:\n{}", self.logger.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ships 50 more events during the fault `kind`, then lifts it: all 100
    /// are indexed exactly once, without a restart.
    fn nothing_lost_through(&self, kind: &str, attributes: &str) {
        let toxic = self.proxy.add(kind, "upstream", attributes);
        self.ship(50..100);
        self.wait_retried();
        assert!(self.count() < 100, "indexed through the fault?");
        self.proxy.remove(&toxic);
        self.wait_indexed(100);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = http(self.search_port, "DELETE", &format!("/{}", self.index), "");
    }
}

#[test]
fn search_engine_latency() {
    let Some(r) = rig("os-latency") else { return };
    let delay = SEARCH_TIMEOUT.as_millis() * 3;
    r.nothing_lost_through("latency", &format!(r#"{{"latency":{delay}}}"#));
}

#[test]
fn search_engine_connection_reset() {
    let Some(r) = rig("os-reset") else { return };
    r.nothing_lost_through("reset_peer", r#"{"timeout":0}"#);
}

#[test]
fn search_engine_black_hole() {
    let Some(r) = rig("os-blackhole") else { return };
    r.nothing_lost_through("timeout", r#"{"timeout":0}"#);
}

#[test]
fn search_engine_bandwidth() {
    let Some(r) = rig("os-bandwidth") else { return };
    // 2 KB/s each way: slow, and everything still arrives while it lasts.
    let up = r.proxy.add("bandwidth", "upstream", r#"{"rate":2}"#);
    let down = r.proxy.add("bandwidth", "downstream", r#"{"rate":2}"#);
    r.ship(50..100);
    r.wait_indexed(100);
    r.proxy.remove(&up);
    r.proxy.remove(&down);
    r.ship(100..150);
    r.wait_indexed(150);
}
