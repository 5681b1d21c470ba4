//! Several instances as one service, against real memcached and Kafka:
//! shared tokens and data, broadcasts across instances exactly once, no
//! replay of history, log shipping, and recovery from backends that are down.
//!
//! Needs PLAYGROUND_MEMCACHED (host:port) and PLAYGROUND_KAFKA (host:port,
//! SASL/PLAIN user/password), which `scripts/test` sets after starting the
//! services. Without them the tests say so and pass, unless
//! PLAYGROUND_REQUIRE_SERVICES=1 (as in CI), which makes that a failure.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, Server, free_port};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// (memcached host, port, kafka brokers), or `None` when not configured.
fn services() -> Option<(String, String, String)> {
    common::memcached_and_kafka()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Environment for an instance of the shared service.
struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    fn new(mc_host: &str, mc_port: &str, kafka: &str, bcast: &str, logs: &str) -> Env {
        let vars = [
            ("MEMCACHED_SERVICE", mc_host),
            ("MEMCACHED_PORT", mc_port),
            ("KAFKA_BROKERS", kafka),
            ("KAFKA_SASL_USER", "user"),
            ("KAFKA_SASL_PASSWORD", "password"),
            ("KAFKA_BCAST_TOPIC", bcast),
            ("KAFKA_LOGGING_TOPIC", logs),
            ("SIGTERM_TIMEOUT", "0"),
            ("RECONNECT_GRACE", "1s"),
        ];
        Env { vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    fn with(mut self, k: &str, v: &str) -> Env {
        self.vars.retain(|(key, _)| key != k);
        self.vars.push((k.into(), v.into()));
        self
    }

    fn start(&self, pod: &str) -> Server {
        let mut vars: Vec<(&str, &str)> = self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        vars.push(("POD_NAME", pod));
        Server::start("tcp", &vars)
    }
}

/// Sends `brd` until it is accepted (the first one may wait for the topic to
/// be created and every instance to be assigned its partitions), and returns
/// the message that was published.
fn broadcast_when_ready(sender: &mut Client, token: &str, receivers: &mut [&mut Client], text: &str) {
    sender.send(&format!("brd:{token}:{text}"));
    assert_eq!(sender.read_line().as_deref(), Some(text));
    for r in receivers.iter_mut() {
        assert_eq!(r.read_line().as_deref(), Some(text));
    }
}

/// Sends `msg:probe` and expects `probe` as the very next line: proves no
/// extra (duplicate) broadcast line was pending.
fn assert_nothing_pending(c: &mut Client) {
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.ask("msg:probe"), "probe");
}

#[test]
fn instances_share_tokens_data_and_broadcasts() {
    let Some((mc_host, mc_port, kafka)) = services() else { return };
    let env = Env::new(&mc_host, &mc_port, &kafka, &unique("bcast"), &unique("logs"));
    let a = env.start("pod-a");
    let b = env.start("pod-b");
    let mut a1 = a.connect();
    let mut a2 = a.connect();
    let mut b1 = b.connect();
    let t = a1.login();
    assert_eq!(a1.ask(&format!("mcset:{t}:shared-key:value:with:colons")), "success");
    assert_eq!(a1.ask(&format!("mcget:{t}:shared-key")), "value:with:colons");
    // The token is bound to its connection, on every instance.
    assert_eq!(a2.ask(&format!("mcget:{t}:shared-key")), "error: invalid token");
    assert_eq!(b1.ask(&format!("mcget:{t}:shared-key")), "error: invalid token");
    // Data written through A is read through B with B's own token.
    let tb = b1.login();
    assert_eq!(b1.ask(&format!("mcget:{tb}:shared-key")), "value:with:colons");
    // A broadcast from A reaches every client of A and B, the sender too, once.
    // Make sure both instances consume the (new) topic before counting.
    for c in [&mut a1, &mut a2, &mut b1] {
        c.read_timeout(Duration::from_secs(30));
    }
    broadcast_when_ready(&mut a1, &t, &mut [&mut a2, &mut b1], "first: hello");
    for i in 0..5 {
        broadcast_when_ready(&mut a1, &t, &mut [&mut a2, &mut b1], &format!("again {i}"));
    }
    broadcast_when_ready(&mut b1, &tb, &mut [&mut a1, &mut a2], "from b");
    for c in [&mut a1, &mut a2, &mut b1] {
        assert_nothing_pending(c);
    }
    // The client metrics of both backends saw exactly this traffic.
    assert_eq!(a.metric("playground_kafka_publish_duration_seconds_count"), Some(6.0));
    assert_eq!(b.metric("playground_kafka_publish_duration_seconds_count"), Some(1.0));
    for s in [&a, &b] {
        assert_eq!(s.metric("playground_broadcast_delay_seconds_count"), Some(7.0));
        for (op, reason) in [("publish", "error"), ("publish", "unreachable"), ("consume", "error")] {
            assert_eq!(
                s.metric(&format!("playground_kafka_errors_total{{op=\"{op}\",reason=\"{reason}\"}}")),
                Some(0.0)
            );
        }
        for op in ["get", "set"] {
            assert!(s.metric(&format!("playground_memcached_duration_seconds_count{{op=\"{op}\"}}")).unwrap() >= 1.0);
            for reason in ["timeout", "error"] {
                let errors = format!("playground_memcached_errors_total{{op=\"{op}\",reason=\"{reason}\"}}");
                assert_eq!(s.metric(&errors), Some(0.0), "{errors}");
            }
        }
    }
}

#[test]
fn ready_means_broadcasts_flow_from_the_first_one() {
    let Some((mc_host, mc_port, kafka)) = services() else { return };
    // A topic nobody has used: it is created as the instance starts.
    let env = Env::new(&mc_host, &mc_port, &kafka, &unique("bcast"), &unique("logs"));
    let a = env.start("pod-ready");
    // By the time /readyz answered, the producer had the topic's partitions
    // and the consumer was assigned to all of them.
    let log = a.log();
    for step in ["Kafka reachable: broadcasts enabled", "consuming broadcasts"] {
        assert!(log.contains(step), "{step:?} missing at readiness:\n{log}");
    }
    let mut sender = a.connect();
    let mut receiver = a.connect();
    let t = sender.login();
    // The very first broadcast is published and received; nothing was lost
    // to a consumer still looking for the end of the topic.
    sender.send(&format!("brd:{t}:first"));
    assert_eq!(receiver.read_line().as_deref(), Some("first"));
    assert_eq!(sender.read_line().as_deref(), Some("first"));
    // The server timed its own share of it: written to both clients.
    let fanned_out = || a.metric("playground_broadcast_fanout_duration_seconds_count");
    let until = Instant::now() + Duration::from_secs(5);
    while fanned_out() != Some(1.0) {
        assert!(Instant::now() < until, "fan-out not recorded: {:?}", fanned_out());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_later_instance_does_not_replay_earlier_broadcasts() {
    let Some((mc_host, mc_port, kafka)) = services() else { return };
    let env = Env::new(&mc_host, &mc_port, &kafka, &unique("bcast"), &unique("logs"));
    let a = env.start("pod-a");
    let mut a1 = a.connect();
    a1.read_timeout(Duration::from_secs(30));
    let t = a1.login();
    broadcast_when_ready(&mut a1, &t, &mut [], "old news");
    let c = env.start("pod-c");
    let mut c1 = c.connect();
    c1.read_timeout(Duration::from_secs(30));
    // Keep broadcasting from A until C pushes something: everything C pushes
    // must be new, never the broadcast from before it started.
    let until = Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    let mut i = 0;
    while Instant::now() < until && seen.is_none() {
        i += 1;
        a1.send(&format!("brd:{t}:fresh {i}"));
        assert_eq!(a1.read_line().unwrap(), format!("fresh {i}"));
        std::thread::sleep(Duration::from_millis(100));
        c1.send("msg:tick");
        loop {
            let line = c1.read_line().unwrap();
            if line == "tick" {
                break;
            }
            assert!(line.starts_with("fresh "), "a later instance replayed history: {line}");
            seen = Some(line);
        }
    }
    assert!(seen.is_some(), "the later instance never received new broadcasts");
}

#[test]
fn both_instances_ship_their_logs_with_their_pod_name() {
    let Some((mc_host, mc_port, kafka)) = services() else { return };
    let logs = unique("logs");
    let env = Env::new(&mc_host, &mc_port, &kafka, &unique("bcast"), &logs);
    let mut a = env.start("ship-a");
    let mut b = env.start("ship-b");
    a.signal("TERM");
    b.signal("TERM");
    assert!(a.wait_exit(Duration::from_secs(30)).success());
    assert!(b.wait_exit(Duration::from_secs(30)).success());
    let events = read_topic(&kafka, &logs, Duration::from_secs(30), |evs| {
        ["ship-a", "ship-b"].iter().all(|p| evs.iter().any(|(k, v)| k == p && v["text"] == "Shutdown complete"))
    });
    for pod in ["ship-a", "ship-b"] {
        let mine: Vec<_> = events.iter().filter(|(k, _)| k == pod).collect();
        assert!(mine.iter().any(|(_, v)| v["text"].as_str().unwrap().starts_with("Listening")), "{pod}: {mine:?}");
        for (_, v) in &mine {
            assert_eq!(v["pod"], *pod);
            assert!(["INFO", "WARN", "ERROR", "DEBUG", "TRACE"].contains(&v["level"].as_str().unwrap()));
            let ts = v["timestamp"].as_str().unwrap();
            assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "timestamp {ts}");
        }
    }
}

/// Reads `topic` from the beginning until `done` holds (bounded by `limit`).
fn read_topic(
    kafka: &str,
    topic: &str,
    limit: Duration,
    done: impl Fn(&[(String, serde_json::Value)]) -> bool,
) -> Vec<(String, serde_json::Value)> {
    let consumer: BaseConsumer = common::kafka_config(kafka).set("group.id", unique("test")).create().unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let parts = md.topics()[0].partitions().len();
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut events = vec![];
    let until = Instant::now() + limit;
    while Instant::now() < until && !done(&events) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
            events.push((key, value));
        }
    }
    assert!(done(&events), "events never complete: {events:?}");
    events
}

fn memcached_script(action: &str, port: u16) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/services/memcached");
    let status = Command::new(script).arg(action).env("MEMCACHED_PORT", port.to_string()).status().unwrap();
    assert!(status.success(), "memcached {action} failed");
}

#[test]
fn memcached_down_gives_a_clear_error_then_recovers() {
    let Some((_, _, kafka)) = services() else { return };
    let port = free_port();
    memcached_script("start", port);
    let env = Env::new("127.0.0.1", &port.to_string(), &kafka, &unique("bcast"), &unique("logs"));
    let server = env.start("mc-restart");
    let mut c = server.connect();
    let t = c.login();
    assert_eq!(c.ask(&format!("mcset:{t}:k:v")), "success");
    memcached_script("stop", port);
    assert_eq!(c.ask(&format!("mcget:{t}:k")), "error: cache unavailable");
    assert_eq!(c.ask("login"), "error: cache unavailable");
    assert_eq!(c.ask("msg:still open"), "still open");
    memcached_script("start", port);
    // Recovers by itself, without a restart (bounded wait).
    let until = Instant::now() + Duration::from_secs(20);
    let mut token = String::new();
    while Instant::now() < until {
        token = c.ask("login");
        if token.len() == 36 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(token.len(), 36, "no recovery: {token}");
    assert_eq!(c.ask(&format!("mcset:{token}:k:again")), "success");
    assert_eq!(c.ask(&format!("mcget:{token}:k")), "again");
    memcached_script("stop", port);
}

/// Forwards connections from `listener` to `target` (a stand-in for a Kafka
/// that becomes reachable), until the test process ends.
fn forward(listener: TcpListener, target: String) {
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            let Ok(outbound) = TcpStream::connect(&target) else { continue };
            for (mut from, mut to) in
                [(inbound.try_clone().unwrap(), outbound.try_clone().unwrap()), (outbound, inbound)]
            {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
}

#[test]
fn kafka_unreachable_at_start_then_reachable() {
    let Some((mc_host, mc_port, kafka)) = services() else { return };
    let port = free_port();
    let env = Env::new(&mc_host, &mc_port, &format!("127.0.0.1:{port}"), &unique("bcast"), &unique("logs"))
        .with("KAFKA_READY_TIMEOUT", "1s");
    let server = env.start("late-kafka");
    assert!(server.log().contains("broadcasts not ready yet; serving anyway"), "{}", server.log());
    let mut c = server.connect();
    let t = c.login();
    assert_eq!(c.ask(&format!("mcset:{t}:k:v")), "success");
    assert_eq!(c.ask(&format!("mcget:{t}:k")), "v");
    assert_eq!(c.ask(&format!("brd:{t}:nobody hears")), "error: broadcast unavailable");
    // Kafka becomes reachable at the configured address.
    forward(TcpListener::bind(("127.0.0.1", port)).unwrap(), kafka);
    let until = Instant::now() + Duration::from_secs(60);
    let mut ok = false;
    while Instant::now() < until {
        let reply = c.ask(&format!("brd:{t}:hello"));
        if reply == "hello" {
            ok = true;
            break;
        }
        assert_eq!(reply, "error: broadcast unavailable");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(ok, "broadcasts never started working");
}

#[test]
fn scram_authentication_works() {
    let Some((mc_host, mc_port, kafka)) = services() else { return };
    let env = Env::new(&mc_host, &mc_port, &kafka, &unique("bcast"), &unique("logs"))
        .with("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512");
    let server = env.start("scram");
    let mut c = server.connect();
    c.read_timeout(Duration::from_secs(30));
    let t = c.login();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = c.ask(&format!("brd:{t}:scram ok"));
        if reply == "scram ok" {
            break;
        }
        assert!(Instant::now() < until, "SCRAM never worked: {reply}");
        std::thread::sleep(Duration::from_millis(300));
    }
}
