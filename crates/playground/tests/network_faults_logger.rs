//! Network faults around the logger, made by Toxiproxy in front of the real
//! OpenSearch (added latency beyond ELASTICSEARCH_TIMEOUT, a bandwidth limit,
//! connection resets, a black hole) and in front of the real Kafka (latency,
//! resets, a black hole). For each: the logger feels it (bulk requests
//! retried, or not ready while Kafka does not answer), carries on without a
//! restart once it is gone, and loses nothing: every event shipped to Kafka
//! is in the index exactly once (document ids are topic/partition/offset, so
//! a retried bulk request overwrites).
//!
//! Needs PLAYGROUND_TOXIPROXY, PLAYGROUND_KAFKA, PLAYGROUND_OPENSEARCH and,
//! for Kafka, PLAYGROUND_KAFKA_PROXIED(_UPSTREAM): a listener of the same
//! broker as PLAYGROUND_KAFKA that advertises the proxy's address
//! (`scripts/test` sets them all).

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::toxi::{self, Proxy};
use common::{Process, logger};
use common::{http, http_get};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// The logger's ELASTICSEARCH_TIMEOUT here.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(2);

/// The Kafka proxy sits at the one address the broker advertises: one test at a time.
static KAFKA_PROXY: Mutex<()> = Mutex::new(());

/// Which of the logger's connections goes through the proxy.
#[derive(PartialEq)]
enum Side {
    Search,
    Kafka,
}

struct Rig {
    proxy: Proxy,
    logger: Process,
    producer: BaseProducer,
    topic: String,
    index: String,
    search_port: u16,
    _turn: Option<MutexGuard<'static, ()>>,
}

fn var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    if value.is_none() {
        assert!(std::env::var("PLAYGROUND_REQUIRE_SERVICES").is_err(), "{name} must be set (scripts/test does it)");
        eprintln!("skipped: {name} not set; run scripts/test");
    }
    value
}

fn rig(name: &str, side: Side) -> Option<Rig> {
    let api = toxi::api()?;
    let (kafka, search) = (var("PLAYGROUND_KAFKA")?, var("PLAYGROUND_OPENSEARCH")?);
    let search_port: u16 = search.trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap();
    let (proxy, turn, brokers, endpoint) = match side {
        Side::Search => {
            let proxy = Proxy::new(api, name, "127.0.0.1:0", &format!("127.0.0.1:{search_port}"));
            let endpoint = format!("http://127.0.0.1:{}", proxy.port);
            (proxy, None, kafka.clone(), endpoint)
        }
        Side::Kafka => {
            let (advertised, upstream) = (var("PLAYGROUND_KAFKA_PROXIED")?, var("PLAYGROUND_KAFKA_PROXIED_UPSTREAM")?);
            let turn = KAFKA_PROXY.lock().unwrap_or_else(|e| e.into_inner());
            (Proxy::new(api, name, &advertised, &upstream), Some(turn), advertised, search)
        }
    };
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let (topic, index) = (format!("faults-{name}-{nonce}"), format!("faults-{name}-{nonce}"));
    let timeout = format!("{}s", SEARCH_TIMEOUT.as_secs());
    let alias = format!("{index}-alias");
    let logger = logger::start(
        &index,
        &[
            ("KAFKA_BROKERS", &brokers),
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
    let rig = Rig { proxy, logger, producer, topic, index, search_port, _turn: turn };
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

    /// Waits (30 s at most) until the logger reports not ready.
    fn wait_unready(&self) {
        let until = Instant::now() + Duration::from_secs(30);
        while self.logger.readyz() != Some(503) {
            assert!(Instant::now() < until, "the fault was not felt; log:\n{}", self.logger.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ships 50 more events during the fault `kind`, then lifts it: all 100
    /// are indexed exactly once, without a restart.
    /// (Both ways: a Kafka fetch sent before the fault would otherwise
    /// still bring its answer.)
    fn nothing_lost_through(&self, side: Side, kind: &str, attributes: &str) {
        let toxics = ["upstream", "downstream"].map(|stream| self.proxy.add(kind, stream, attributes));
        self.ship(50..100);
        match side {
            Side::Search => self.wait_retried(),
            Side::Kafka => self.wait_unready(),
        }
        assert!(self.count() < 100, "indexed through the fault?");
        toxics.iter().for_each(|toxic| self.proxy.remove(toxic));
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
    let Some(r) = rig("os-latency", Side::Search) else { return };
    let delay = SEARCH_TIMEOUT.as_millis() * 3;
    r.nothing_lost_through(Side::Search, "latency", &format!(r#"{{"latency":{delay}}}"#));
}

#[test]
fn search_engine_connection_reset() {
    let Some(r) = rig("os-reset", Side::Search) else { return };
    r.nothing_lost_through(Side::Search, "reset_peer", r#"{"timeout":0}"#);
}

#[test]
fn search_engine_black_hole() {
    let Some(r) = rig("os-blackhole", Side::Search) else { return };
    r.nothing_lost_through(Side::Search, "timeout", r#"{"timeout":0}"#);
}

#[test]
fn search_engine_bandwidth() {
    let Some(r) = rig("os-bandwidth", Side::Search) else { return };
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

#[test]
fn kafka_latency_for_the_logger() {
    let Some(r) = rig("kafka-latency", Side::Kafka) else { return };
    // Slower reads, nothing else.
    let toxic = r.proxy.add("latency", "downstream", r#"{"latency":500}"#);
    r.ship(50..100);
    r.wait_indexed(100);
    r.proxy.remove(&toxic);
}

#[test]
fn kafka_connection_reset_for_the_logger() {
    let Some(r) = rig("kafka-reset", Side::Kafka) else { return };
    r.nothing_lost_through(Side::Kafka, "reset_peer", r#"{"timeout":0}"#);
}

#[test]
fn kafka_black_hole_for_the_logger() {
    let Some(r) = rig("kafka-blackhole", Side::Kafka) else { return };
    r.nothing_lost_through(Side::Kafka, "timeout", r#"{"timeout":0}"#);
}
