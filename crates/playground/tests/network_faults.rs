//! Network faults between the servers and their backends, made by a real
//! fault proxy (Toxiproxy) in front of the real memcached and Kafka: added
//! latency, a bandwidth limit, connection resets and a black hole (the peer
//! stops answering and sends no RST). For each: what a client sees (a clear
//! error within MEMCACHED_TIMEOUT / KAFKA_PUBLISH_TIMEOUT, never a hang), and
//! recovery without a restart once the fault is gone, with every reply
//! belonging to its own request.
//!
//! Needs PLAYGROUND_TOXIPROXY (the API, host:port), PLAYGROUND_MEMCACHED and,
//! for Kafka, PLAYGROUND_KAFKA_PROXIED and PLAYGROUND_KAFKA_PROXIED_UPSTREAM:
//! a broker listener that advertises the proxy's address (Kafka clients
//! connect to the address the broker advertises, so the proxy must sit at
//! it), as `scripts/services/kafka` runs it and `scripts/test` sets them.

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::toxi::{self, Proxy};
use common::{Client, Server};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

/// The servers' MEMCACHED_TIMEOUT here.
const CACHE_TIMEOUT: Duration = Duration::from_millis(500);
/// A delay well beyond it: a reply that took this long came from the fault.
const LONG: Duration = Duration::from_secs(3);

/// A server whose memcached is behind a new proxy, and a logged-in client.
fn behind_proxy(name: &str) -> Option<(Proxy, Server, Client, String)> {
    let api = toxi::api()?;
    let (host, port, _) = common::memcached_and_kafka()?;
    let proxy = Proxy::new(api, name, "127.0.0.1:0", &format!("{host}:{port}"));
    let port = proxy.port.to_string();
    let server = Server::start(
        "tcp",
        &[
            ("MEMCACHED_SERVICE", "127.0.0.1"),
            ("MEMCACHED_PORT", &port),
            ("MEMCACHED_TIMEOUT", "500ms"),
            ("MEMCACHED_POOL_SIZE", "4"),
        ],
    );
    let mut client = server.connect();
    let token = client.login();
    Some((proxy, server, client, token))
}

/// Sends `line`; the reply and how long it took.
fn timed(c: &mut Client, line: &str) -> (String, Duration) {
    let start = Instant::now();
    let reply = c.ask(line);
    (reply, start.elapsed())
}

/// Several keys written and read back, each read returning its own value: a
/// late reply to an abandoned request must never answer a later one.
fn assert_cache_correct(c: &mut Client, t: &str, tag: &str) {
    for i in 0..8 {
        assert_eq!(c.ask(&format!("mcset:{t}:{tag}-{i}:value-{tag}-{i}")), "success");
    }
    for i in (0..8).rev() {
        assert_eq!(c.ask(&format!("mcget:{t}:{tag}-{i}")), format!("value-{tag}-{i}"));
    }
}

/// Every command during the fault fails fast with `error: cache unavailable`.
fn assert_fails_fast(c: &mut Client, t: &str) {
    for line in [format!("mcset:{t}:k:v"), format!("mcget:{t}:k"), "login".to_string()] {
        let (reply, took) = timed(c, &line);
        assert_eq!(reply, "error: cache unavailable", "for {line}");
        assert!(took < LONG, "{line} took {took:?}: MEMCACHED_TIMEOUT is {CACHE_TIMEOUT:?}");
    }
}

/// Once the fault is gone, commands work again within a few seconds (the
/// pool replaces the connections the fault broke), and correctly.
fn assert_recovers(c: &mut Client, t: &str, tag: &str) {
    let until = Instant::now() + Duration::from_secs(15);
    while c.ask(&format!("mcset:{t}:probe:x")) != "success" {
        assert!(Instant::now() < until, "memcached not used again within 15 s of the fault's end");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_cache_correct(c, t, tag);
}

#[test]
fn memcached_latency() {
    let Some((proxy, _server, mut c, t)) = behind_proxy("mc-latency") else { return };
    // Below MEMCACHED_TIMEOUT: slower, but every command works.
    let toxic = proxy.add("latency", "downstream", r#"{"latency":100}"#);
    assert_cache_correct(&mut c, &t, "slow");
    proxy.remove(&toxic);
    // Beyond it: a clear error at the timeout, not after the delay.
    let toxic = proxy.add("latency", "downstream", &format!(r#"{{"latency":{}}}"#, LONG.as_millis() * 2));
    assert_fails_fast(&mut c, &t);
    proxy.remove(&toxic);
    assert_recovers(&mut c, &t, "after-latency");
}

#[test]
fn memcached_bandwidth() {
    let Some((proxy, _server, mut c, t)) = behind_proxy("mc-bandwidth") else { return };
    // 1 KB/s each way: a 256-byte value still fits in MEMCACHED_TIMEOUT.
    let up = proxy.add("bandwidth", "upstream", r#"{"rate":1}"#);
    let down = proxy.add("bandwidth", "downstream", r#"{"rate":1}"#);
    let value = "v".repeat(256);
    assert_eq!(c.ask(&format!("mcset:{t}:big:{value}")), "success");
    assert_eq!(c.ask(&format!("mcget:{t}:big")), value);
    proxy.remove(&up);
    proxy.remove(&down);
    assert_cache_correct(&mut c, &t, "after-bandwidth");
}

#[test]
fn memcached_connection_reset() {
    let Some((proxy, _server, mut c, t)) = behind_proxy("mc-reset") else { return };
    let toxic = proxy.add("reset_peer", "upstream", r#"{"timeout":0}"#);
    assert_fails_fast(&mut c, &t);
    proxy.remove(&toxic);
    assert_recovers(&mut c, &t, "after-reset");
}

#[test]
fn memcached_black_hole() {
    let Some((proxy, _server, mut c, t)) = behind_proxy("mc-blackhole") else { return };
    // Data is swallowed and nothing is closed.
    let toxic = proxy.add("timeout", "upstream", r#"{"timeout":0}"#);
    assert_fails_fast(&mut c, &t);
    proxy.remove(&toxic);
    assert_recovers(&mut c, &t, "after-black-hole");
}

/// The servers' KAFKA_PUBLISH_TIMEOUT here.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// The Kafka proxy sits at the one address the broker advertises: one test at a time.
static KAFKA_PROXY: Mutex<()> = Mutex::new(());

/// A server whose Kafka is behind the proxy, with a sender and a receiver
/// that have seen a broadcast go through.
struct KafkaRig {
    sender: Client,
    receiver: Client,
    token: String,
    proxy: Proxy,
    logs_topic: String,
    server: Server,
    _turn: MutexGuard<'static, ()>,
}

fn kafka_behind_proxy(name: &str) -> Option<KafkaRig> {
    let api = toxi::api()?;
    let vars = (std::env::var("PLAYGROUND_KAFKA_PROXIED"), std::env::var("PLAYGROUND_KAFKA_PROXIED_UPSTREAM"));
    let (Ok(advertised), Ok(upstream)) = vars else {
        assert!(std::env::var("PLAYGROUND_REQUIRE_SERVICES").is_err(), "PLAYGROUND_KAFKA_PROXIED(_UPSTREAM) unset");
        eprintln!("skipped: PLAYGROUND_KAFKA_PROXIED not set; run scripts/test");
        return None;
    };
    let turn = KAFKA_PROXY.lock().unwrap_or_else(|e| e.into_inner());
    let proxy = Proxy::new(api, name, &advertised, &upstream);
    let topic = format!("faults-{}", uuid::Uuid::new_v4().simple());
    let logs_topic = format!("{topic}-logs");
    let server = Server::start(
        "tcp",
        &[
            ("KAFKA_BROKERS", &advertised),
            ("KAFKA_SASL_USER", "user"),
            ("KAFKA_SASL_PASSWORD", "password"),
            ("KAFKA_BCAST_TOPIC", &topic),
            ("KAFKA_LOGGING_TOPIC", &logs_topic),
            ("KAFKA_PUBLISH_TIMEOUT", "2s"),
            ("SIGTERM_TIMEOUT", "0"),
        ],
    );
    let (mut sender, mut receiver) = (server.connect(), server.connect());
    let token = sender.login();
    assert_eq!(receiver.ask("msg:ready"), "ready");
    let mut rig = KafkaRig { sender, receiver, token, proxy, logs_topic, server, _turn: turn };
    rig.assert_recovers("first");
    Some(rig)
}

impl KafkaRig {
    /// `brd`; the sender's reply and how long it took.
    fn brd(&mut self, text: &str) -> (String, Duration) {
        let line = format!("brd:{}:{text}", self.token);
        timed(&mut self.sender, &line)
    }

    /// A broadcast goes through to both clients.
    fn assert_delivered(&mut self, text: &str) {
        assert_eq!(self.brd(text).0, text);
        assert_eq!(self.receiver.read_line().as_deref(), Some(text));
    }

    /// During the fault `brd` fails with a clear error after
    /// KAFKA_PUBLISH_TIMEOUT, not after the fault's own delay (the second
    /// of slack is for a busy machine, not for the server).
    fn assert_fails_in_time(&mut self, text: &str) {
        let (reply, took) = self.brd(text);
        assert_eq!(reply, "error: broadcast unavailable", "after {took:?}; then {:?}", self.sender.read_line());
        let bound = PUBLISH_TIMEOUT + Duration::from_secs(1);
        assert!(took < bound, "brd took {took:?}; KAFKA_PUBLISH_TIMEOUT is {PUBLISH_TIMEOUT:?}");
    }

    /// Broadcasts go through again without a restart. A broadcast whose
    /// `brd` failed may still reach the receivers if the broker had it (the
    /// error says it was not confirmed, not that it was dropped): such lines
    /// are skipped, anything else is not.
    fn assert_recovers(&mut self, tag: &str) {
        let until = Instant::now() + Duration::from_secs(30);
        let text = loop {
            let text = format!("{tag}-{}", uuid::Uuid::new_v4().simple());
            let mut reply = self.brd(&text).0;
            // The sender is a receiver too.
            while reply.starts_with("unconfirmed-") {
                reply = self.sender.read_line().expect("the sender's connection closed");
            }
            match reply {
                reply if reply == text => break text,
                reply => assert_eq!(reply, "error: broadcast unavailable"),
            }
            assert!(Instant::now() < until, "broadcasts did not come back within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        };
        loop {
            let got = self.receiver.read_line().expect("the receiver's connection closed");
            if got == text {
                break;
            }
            assert!(got.starts_with("unconfirmed-") || got.starts_with(tag), "unexpected line {got:?}");
        }
    }
}

impl KafkaRig {
    /// Whether a log event with one of `texts` reaches the logging topic
    /// within 30 s (read directly from the broker of PLAYGROUND_KAFKA, the
    /// same one).
    fn shipped(&self, texts: &[&str]) -> bool {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", std::env::var("PLAYGROUND_KAFKA").unwrap())
            .set("security.protocol", "sasl_plaintext")
            .set("sasl.mechanism", "PLAIN")
            .set("sasl.username", "user")
            .set("sasl.password", "password")
            .set("group.id", format!("{}-check", self.logs_topic))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[&self.logs_topic]).unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
                let event = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                if texts.iter().any(|t| event.contains(t)) {
                    return true;
                }
            }
        }
        false
    }
}

#[test]
fn kafka_latency() {
    let Some(mut k) = kafka_behind_proxy("kafka-latency") else { return };
    let toxic = k.proxy.add("latency", "downstream", r#"{"latency":300}"#);
    k.assert_delivered("slow but delivered");
    k.proxy.remove(&toxic);
    let delay = PUBLISH_TIMEOUT * 4;
    let toxic = k.proxy.add("latency", "downstream", &format!(r#"{{"latency":{}}}"#, delay.as_millis()));
    k.assert_fails_in_time("unconfirmed-latency");
    k.proxy.remove(&toxic);
    k.assert_recovers("after-latency");
}

#[test]
fn kafka_bandwidth() {
    let Some(mut k) = kafka_behind_proxy("kafka-bandwidth") else { return };
    let up = k.proxy.add("bandwidth", "upstream", r#"{"rate":4}"#);
    let down = k.proxy.add("bandwidth", "downstream", r#"{"rate":4}"#);
    k.assert_delivered("through a narrow pipe");
    k.proxy.remove(&up);
    k.proxy.remove(&down);
    k.assert_delivered("wide again");
}

#[test]
fn kafka_connection_reset() {
    let Some(mut k) = kafka_behind_proxy("kafka-reset") else { return };
    let toxic = k.proxy.add("reset_peer", "upstream", r#"{"timeout":0}"#);
    k.assert_fails_in_time("unconfirmed-reset");
    k.proxy.remove(&toxic);
    k.assert_recovers("after-reset");
}

#[test]
fn kafka_black_hole() {
    let Some(mut k) = kafka_behind_proxy("kafka-blackhole") else { return };
    let toxic = k.proxy.add("timeout", "upstream", r#"{"timeout":0}"#);
    k.assert_fails_in_time("unconfirmed-black-hole");
    k.proxy.remove(&toxic);
    k.assert_recovers("after-black-hole");
    // What the server logged during the fault (the failed publish, or the
    // probe's finding, whichever came first) was kept and shipped after it.
    let during = ["broadcast not published", "Kafka unreachable"];
    assert!(k.shipped(&during), "log events from the fault not shipped:\n{}", k.server.log());
    assert_eq!(k.server.metric("playground_log_events_dropped_total{reason=\"delivery_failed\"}"), Some(0.0));
}
