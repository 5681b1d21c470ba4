//! Fills a Kafka topic with log events shaped as the servers ship them, as
//! fast as the broker takes them: the input of `scripts/bench-logger`.
//!
//! ```text
//! logger_fill BROKERS TOPIC COUNT [PARTITIONS]   # create TOPIC if needed and produce COUNT events
//! logger_fill BROKERS TOPIC --delete             # delete TOPIC
//! logger_fill --print COUNT                      # print the COUNT events, one JSON document a line
//! ```
//!
//! SASL comes from KAFKA_SASL_USER / KAFKA_SASL_PASSWORD / KAFKA_SASL_MECHANISM
//! (PLAIN by default) when set. Event `i` is deterministic (see [`event`]),
//! so the benchmark builds the very same documents for its reference loads
//! from `--print` without reading the topic.

use std::io::Write;
use std::time::{Duration, Instant, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Pods the events come from (the message key, as in log shipping).
const PODS: usize = 12;
const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];
/// 2026-01-01T00:00:00Z: event `i` is `i` milliseconds later.
const BASE_MS: u64 = 1_767_225_600_000;

/// Event `i` (its key and document): what `--print` prints for the benchmark's reference loads.
fn event(i: usize) -> (String, String) {
    let pod = format!("playground-tcp-{}", i % PODS);
    let at = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(BASE_MS + i as u64));
    let text = format!("event {i}: handled a request from 10.0.{}.{} in {} us", i % 256, i / 256 % 256, i % 997);
    let payload =
        format!("{{\"pod\":\"{pod}\",\"level\":\"{}\",\"text\":\"{text}\",\"timestamp\":\"{at}\"}}", LEVELS[i % 4]);
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
    if let (Some("--print"), Some(count)) = (args.first().map(String::as_str), args.get(1)) {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for i in 0..count.parse()? {
            writeln!(out, "{}", event(i).1)?;
        }
        return Ok(out.flush()?);
    }
    let (Some(brokers), Some(topic), Some(what)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: logger_fill BROKERS TOPIC COUNT [PARTITIONS] | BROKERS TOPIC --delete | --print COUNT");
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
