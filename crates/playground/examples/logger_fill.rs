//! Fills a Kafka topic with log events shaped as the servers ship them, as
//! fast as the broker takes them: the input of `scripts/bench-logger`.
//!
//! ```text
//! logger_fill BROKERS TOPIC COUNT [PARTITIONS]   # create TOPIC if needed and produce COUNT events
//! logger_fill BROKERS TOPIC --delete             # delete TOPIC
//! ```
//!
//! SASL comes from KAFKA_SASL_USER / KAFKA_SASL_PASSWORD / KAFKA_SASL_MECHANISM
//! (PLAIN by default) when set. Event `i` is deterministic (see [`event`]),
//! so the benchmark can build the very same documents for its reference
//! loads without reading the topic.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Pods the events come from (the message key, as in log shipping).
const PODS: usize = 12;
const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];
/// 2026-01-01T00:00:00Z: event `i` is `i` milliseconds later.
const BASE_MS: i64 = 1_767_225_600_000;

/// Event `i`: the same bytes the benchmark script generates for its reference loads.
fn event(i: usize) -> (String, String) {
    let pod = format!("playground-tcp-{}", i % PODS);
    let ms = BASE_MS + i as i64;
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (day_s, days) = (secs.rem_euclid(86_400), secs.div_euclid(86_400));
    // 2026-01-01 plus at most a few days of milliseconds: only the day changes.
    let day = 1 + (days - BASE_MS / 86_400_000);
    let text = format!("event {i}: handled a request from 10.0.{}.{} in {} us", i % 256, i / 256 % 256, i % 997);
    let payload = format!(
        "{{\"pod\":\"{pod}\",\"level\":\"{}\",\"text\":\"{text}\",\"timestamp\":\"2026-01-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z\"}}",
        LEVELS[i % 4],
        day_s / 3600,
        day_s / 60 % 60,
        day_s % 60
    );
    (pod, payload)
}

fn config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    if let (Ok(user), Ok(password)) = (std::env::var("KAFKA_SASL_USER"), std::env::var("KAFKA_SASL_PASSWORD")) {
        c.set("security.protocol", "sasl_plaintext")
            .set("sasl.mechanism", std::env::var("KAFKA_SASL_MECHANISM").unwrap_or_else(|_| "PLAIN".into()))
            .set("sasl.username", user)
            .set("sasl.password", password);
    }
    c
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(brokers), Some(topic), Some(what)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: logger_fill BROKERS TOPIC COUNT [PARTITIONS] | logger_fill BROKERS TOPIC --delete");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let admin: AdminClient<DefaultClientContext> = config(brokers).create()?;
    if what == "--delete" {
        for r in rt.block_on(admin.delete_topics(&[topic], &AdminOptions::new()))? {
            r.map_err(|(t, e)| format!("deleting {t}: {e}"))?;
        }
        return Ok(());
    }
    let count: usize = what.parse()?;
    let partitions: i32 = args.get(3).map_or(Ok(3), |p| p.parse())?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for r in rt.block_on(admin.create_topics([&new], &AdminOptions::new()))? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("creating {t}: {e}").into()),
        }
    }

    let producer: BaseProducer = config(brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "lz4")
        .create()?;
    let started = Instant::now();
    for i in 0..count {
        let (key, payload) = event(i);
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
                Ok(()) => break,
                Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300))?;
    let secs = started.elapsed().as_secs_f64();
    println!("produced {count} events to {topic} in {secs:.2} s ({:.0} events/s)", count as f64 / secs);
    Ok(())
}
