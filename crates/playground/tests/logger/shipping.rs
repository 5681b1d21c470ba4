//! What the logger's suite feeds and runs: log events in the servers'
//! shape, a producer standing for one instance's log shipping, two real
//! `playground tcp` instances shipping their own logs, and the logger
//! itself on a test's own topic, group, index and alias.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;

use super::common::{Process, Server, kafka_config, logger};
use super::services::Services;

/// RFC 3339 UTC with milliseconds, as the servers' log shipping writes it.
pub fn rfc3339_ms(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// One log event in the shape the servers ship: `{"pod","level","text","timestamp"}`.
pub fn event(pod: &str, i: usize) -> String {
    let level = ["INFO", "WARN", "ERROR", "DEBUG"][i % 4];
    json!({ "pod": pod, "level": level, "text": format!("event {i} from {pod}: request handled"), "timestamp": rfc3339_ms(now_ms()) })
        .to_string()
}

/// A producer standing for one server instance's log shipping (key = pod name).
pub struct Shipper {
    pub producer: BaseProducer,
    pub topic: String,
    pub pod: String,
}

impl Shipper {
    pub fn new(s: &Services, topic: &str, pod: &str) -> Shipper {
        let producer = kafka_config(&s.kafka).set("linger.ms", "5").create().unwrap();
        Shipper { producer, topic: topic.into(), pod: pod.into() }
    }

    pub fn send_raw(&self, partition: Option<i32>, payload: &[u8]) {
        loop {
            let mut record = BaseRecord::to(&self.topic).key(&self.pod).payload(payload);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match self.producer.send(record) {
                Ok(()) => return,
                Err((e, _)) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("producing: {e}"),
            }
        }
    }

    /// Ships events `range` of this pod, `pace` apart in groups of `group`.
    pub fn ship(&self, range: std::ops::Range<usize>, group: usize, pace: Duration) {
        for i in range {
            self.send_raw(None, event(&self.pod, i).as_bytes());
            self.producer.poll(Duration::ZERO);
            if group > 0 && i % group == group - 1 && !pace.is_zero() {
                std::thread::sleep(pace);
            }
        }
        self.flush();
    }

    pub fn flush(&self) {
        self.producer.flush(Duration::from_secs(30)).expect("flushing the producer");
    }
}

/// Two running `playground tcp` instances shipping their own logs to the
/// topic (the real log-shipping layer), driven until together they have
/// shipped at least `at_least` events, then stopped with SIGTERM (which
/// flushes what they still hold). Returns their pod names.
///
/// Each client connection that closes is one `connection closed` debug
/// event, so the servers run with `LOG_LEVEL=playground=debug,info` and
/// the clients connect and leave.
pub fn ship_from_two_instances(s: &Services, topic: &str, at_least: i64) -> [String; 2] {
    let pods = [format!("{topic}-tcp-a"), format!("{topic}-tcp-b")];
    let bcast = format!("{topic}-bcast");
    let mut servers: Vec<Server> = pods
        .iter()
        .map(|pod| {
            Server::start(
                "tcp",
                &[
                    ("KAFKA_BROKERS", s.kafka.as_str()),
                    ("KAFKA_SASL_USER", "user"),
                    ("KAFKA_SASL_PASSWORD", "password"),
                    ("KAFKA_LOGGING_TOPIC", topic),
                    ("KAFKA_BCAST_TOPIC", bcast.as_str()),
                    ("POD_NAME", pod.as_str()),
                    ("LOG_LEVEL", "playground=debug,info"),
                    ("SIGTERM_TIMEOUT", "0"),
                    ("RECONNECT_GRACE", "0s"),
                ],
            )
        })
        .collect();
    let shipped = || s.high_watermarks(topic, 3).values().sum::<i64>();
    let until = Instant::now() + Duration::from_secs(120);
    while shipped() < at_least {
        assert!(Instant::now() < until, "the servers shipped only {} events", shipped());
        std::thread::scope(|scope| {
            for server in &servers {
                scope.spawn(|| {
                    for _ in 0..500 {
                        // Connect and leave: the server logs the closed connection.
                        drop(std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap());
                    }
                });
            }
        });
        std::thread::sleep(Duration::from_millis(300));
    }
    for server in &mut servers {
        server.signal("TERM");
        assert!(server.wait_exit(Duration::from_secs(30)).success(), "server log:\n{}", server.log());
    }
    pods
}

/// Starts `playground logger` reading `topic` as `group` and indexing into
/// `index` behind `alias` of the test's search engine, with `extra`
/// settings on top (an `ELASTICSEARCH_ENDPOINT` there points it at another
/// node). It is killed when dropped.
pub fn start_logger(
    s: &Services,
    topic: &str,
    group: &str,
    index: &str,
    alias: &str,
    extra: &[(&str, &str)],
) -> Process {
    let env = [
        ("KAFKA_BROKERS", s.kafka.as_str()),
        ("KAFKA_SASL_USER", "user"),
        ("KAFKA_SASL_PASSWORD", "password"),
        ("KAFKA_LOGGING_TOPIC", topic),
        ("KAFKA_CONSUMER_GROUP", group),
        ("ELASTICSEARCH_ENDPOINT", s.search.as_str()),
        ("ELASTICSEARCH_LOGGING_INDEX", index),
        ("ELASTICSEARCH_ALIAS", alias),
        ("KAFKA_LAG_INTERVAL", "1s"),
    ];
    logger::start(index, &[&env[..], extra].concat())
}

/// Polls `cond` every 200 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
