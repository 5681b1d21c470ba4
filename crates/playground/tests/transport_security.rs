//! Transport security to the backends, for real: the servers' broadcasts and
//! log shipping and the logger's reading over Kafka's SASL_SSL listener
//! (certificate made with openssl), the logger writing to the search engine
//! through HTTPS (nginx in front of OpenSearch), both verifying with a CA
//! option; and every client refusing a server whose certificate another CA
//! signed, with the reason in its log.
//!
//! Needs PLAYGROUND_KAFKA_SSL (host:port of the SASL_SSL listener, user
//! `user`/`password`) with PLAYGROUND_KAFKA_SSL_CA (its CA, PEM), and
//! PLAYGROUND_OPENSEARCH_TLS (https URL) with PLAYGROUND_OPENSEARCH_TLS_CA,
//! plus PLAYGROUND_OPENSEARCH (plain, to read what was indexed): scripts/test
//! starts `scripts/services/kafka` and `scripts/services/opensearch-tls` and
//! sets them. Without them the tests say so and pass, unless
//! PLAYGROUND_REQUIRE_SERVICES=1 (as in CI).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{Client, Server, http_get};
use common::{Process, logger};

/// The secured endpoints and their CAs.
struct Secured {
    kafka: String,
    kafka_ca: PathBuf,
    search: String,
    search_ca: PathBuf,
    /// The plain OpenSearch port, to read the index.
    plain_search_port: u16,
}

fn secured() -> Option<Secured> {
    let var = |k: &str| std::env::var(k).ok();
    let (Some(kafka), Some(kafka_ca), Some(search), Some(search_ca), Some(plain)) = (
        var("PLAYGROUND_KAFKA_SSL"),
        var("PLAYGROUND_KAFKA_SSL_CA"),
        var("PLAYGROUND_OPENSEARCH_TLS"),
        var("PLAYGROUND_OPENSEARCH_TLS_CA"),
        var("PLAYGROUND_OPENSEARCH"),
    ) else {
        assert!(
            var("PLAYGROUND_REQUIRE_SERVICES").is_none(),
            "PLAYGROUND_KAFKA_SSL(_CA), PLAYGROUND_OPENSEARCH_TLS(_CA) and PLAYGROUND_OPENSEARCH must be set (scripts/test does it)"
        );
        eprintln!("skipped: the SASL_SSL Kafka and HTTPS OpenSearch are not configured; run scripts/test");
        return None;
    };
    let plain_search_port = plain.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
    Some(Secured { kafka, kafka_ca: kafka_ca.into(), search, search_ca: search_ca.into(), plain_search_port })
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The Kafka settings of every role for the SASL_SSL listener, with `ca`.
fn kafka_env<'a>(s: &'a Secured, ca: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("KAFKA_BROKERS", s.kafka.as_str()),
        ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
        ("KAFKA_SASL_USER", "user"),
        ("KAFKA_SASL_PASSWORD", "password"),
        ("KAFKA_SSL_CA_FILE", ca),
    ]
}

fn server(s: &Secured, ca: &str, pod: &str, bcast: &str, logs: &str) -> Server {
    let mut env = kafka_env(s, ca);
    env.extend([("KAFKA_BCAST_TOPIC", bcast), ("KAFKA_LOGGING_TOPIC", logs), ("POD_NAME", pod)]);
    env.extend([("SIGTERM_TIMEOUT", "0"), ("RECONNECT_GRACE", "1s")]);
    Server::start("tcp", &env)
}

/// A logger reading `topic` over SASL_SSL and writing to `index` over HTTPS.
fn start_logger(s: &Secured, kafka_ca: &str, search_ca: &str, topic: &str, index: &str) -> Process {
    let alias = format!("{index}-alias");
    let mut env = kafka_env(s, kafka_ca);
    env.extend([("KAFKA_LOGGING_TOPIC", topic), ("KAFKA_CONSUMER_GROUP", index)]);
    env.extend([("ELASTICSEARCH_ENDPOINT", s.search.as_str()), ("ELASTICSEARCH_CA_FILE", search_ca)]);
    env.extend([("ELASTICSEARCH_LOGGING_INDEX", index), ("ELASTICSEARCH_ALIAS", &alias)]);
    logger::start(index, &env)
}

/// Polls `check` every 200 ms for up to `limit`.
fn within(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn broadcasts_log_shipping_and_indexing_over_sasl_ssl_and_https() {
    let Some(s) = secured() else { return };
    let (bcast, logs, index) = (unique("tls-bcast"), unique("tls-logs"), unique("tls-index"));
    let (pod_a, pod_b) = (unique("tls-pod-a"), unique("tls-pod-b"));
    let ca = s.kafka_ca.to_str().unwrap();
    let a = server(&s, ca, &pod_a, &bcast, &logs);
    let b = server(&s, ca, &pod_b, &bcast, &logs);

    // A broadcast sent on one instance reaches a client of the other through
    // Kafka (the first may come before the new topic has its partitions).
    let (mut sender, mut receiver): (Client, Client) = (a.connect(), b.connect());
    let token = sender.login();
    assert_eq!(receiver.ask("msg:ready"), "ready");
    let delivered = within(Duration::from_secs(30), || {
        sender.send(&format!("brd:{token}:over sasl_ssl"));
        match sender.read_line().as_deref() {
            Some("over sasl_ssl") => true,
            Some("error: broadcast unavailable") => false,
            other => panic!("unexpected reply {other:?}"),
        }
    });
    assert!(delivered, "no broadcast over SASL_SSL; log:\n{}", a.log());
    assert_eq!(receiver.read_line().as_deref(), Some("over sasl_ssl"));

    // Both instances' log events, shipped over SASL_SSL, are read by the
    // logger over SASL_SSL and indexed through HTTPS.
    let logger = start_logger(&s, ca, s.search_ca.to_str().unwrap(), &logs, &index);
    let indexed = |pod: &str| {
        http_get(s.plain_search_port, &format!("/{index}/_count?q=pod:%22{pod}%22"))
            .and_then(|(status, body)| (status == 200).then_some(body))
            .is_some_and(|body| !body.contains("\"count\":0"))
    };
    let both = within(Duration::from_secs(60), || indexed(&pod_a) && indexed(&pod_b));
    assert!(both, "log events not indexed; logger log:\n{}", logger.log());
    assert_eq!(logger.readyz(), Some(200));
    delete_index(s.plain_search_port, &index);
}

/// Deletes an index over plain HTTP (a minimal DELETE).
fn delete_index(port: u16, index: &str) {
    use std::io::{Read, Write};
    if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
        let _ = write!(c, "DELETE /{index} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let _ = c.read_to_end(&mut Vec::new());
    }
}

#[test]
fn a_server_or_logger_that_trusts_another_ca_refuses_and_says_why() {
    let Some(s) = secured() else { return };
    let other = Pki::new("not-the-ca");
    let wrong = other.ca();
    let wrong = wrong.to_str().unwrap();
    let (bcast, logs, index) = (unique("tls-bcast"), unique("tls-logs"), unique("tls-index"));

    // The server: no broadcast through a broker it cannot verify.
    let server = server(&s, wrong, &unique("tls-pod"), &bcast, &logs);
    let mut c = server.connect();
    let token = c.login();
    assert_eq!(c.ask(&format!("brd:{token}:x")), "error: broadcast unavailable");
    let said = within(Duration::from_secs(20), || server.log().contains("certificate verify failed"));
    assert!(said, "the server's log must say why:\n{}", server.log());

    // The logger with the wrong Kafka CA: not ready, and says why.
    let good_search_ca = s.search_ca.to_str().unwrap();
    let logger = start_logger(&s, wrong, good_search_ca, &logs, &index);
    let said = within(Duration::from_secs(20), || logger.log().contains("certificate verify failed"));
    assert!(said, "the logger's log must say why:\n{}", logger.log());
    assert_eq!(logger.readyz(), Some(503));

    // The logger with the wrong search-engine CA: not ready, and says why.
    let good_kafka_ca = s.kafka_ca.to_str().unwrap();
    let unseen = unique("tls-index");
    let logger = start_logger(&s, good_kafka_ca, wrong, &logs, &unseen);
    let said = within(Duration::from_secs(20), || logger.log().contains("certificate verify failed"));
    assert!(said, "the logger's log must say why:\n{}", logger.log());
    assert_eq!(logger.readyz(), Some(503));
    let (status, _) = http_get(s.plain_search_port, &format!("/{unseen}")).unwrap();
    assert_eq!(status, 404, "nothing may reach the engine through an unverified connection");
    // (The logger with the good search-engine CA set its index up.)
    delete_index(s.plain_search_port, &index);
}
