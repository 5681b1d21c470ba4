//! Every `exported` name of `deploy/metrics.txt` is on the live `/metrics`
//! of each role that exports it, with its declared type (a histogram as
//! `_bucket`, `_sum` and `_count`): the HPAs, the adapter rules and the
//! dashboard rely on these names, so a rename or a lost registration fails
//! here. `scripts/check-metrics` then checks what Prometheus and the
//! adapter rules make of them.
//!
//! The roles run against the real memcached, Kafka and OpenSearch, so the
//! names a process registers only with a backend are checked too: the tcp
//! and udp servers use memcached and Kafka and ship their logs to the topic
//! the logger indexes. Needs PLAYGROUND_MEMCACHED, PLAYGROUND_KAFKA and
//! PLAYGROUND_OPENSEARCH (`scripts/test` sets them); without them the test
//! says so and passes, unless PLAYGROUND_REQUIRE_SERVICES is set, which makes
//! that a failure.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::logger;
use common::{Server, http, http_get};

const CATALOGUE: &str = include_str!("../../../deploy/metrics.txt");
const ROLES: [&str; 3] = ["tcp", "udp", "logger"];

/// Exported names no process registers in this test, and why.
const NOT_HERE: [(&str, &str); 1] =
    [("playground_tls_reloads_total", "only once TLS_CERT/TLS_KEY change under a running server (tests/tls.rs)")];

/// `(name, type, roles)` of the catalogue's `exported` lines; the roles come
/// from the comment that opens each group ("# tcp and udp servers", "# every
/// role"), which a blank line ends.
fn exported() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    let mut out = Vec::new();
    let mut roles: Vec<&str> = Vec::new();
    for line in CATALOGUE.lines() {
        if line.trim().is_empty() {
            roles.clear();
        } else if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split(|c: char| !c.is_ascii_alphabetic()).collect();
            let named: Vec<&str> = ROLES.into_iter().filter(|r| words.contains(r)).collect();
            if words.contains(&"every") && (words.contains(&"role") || words.contains(&"roles")) {
                roles = ROLES.to_vec();
            } else if !named.is_empty() {
                roles = named;
            }
        } else if let Some(rest) = line.strip_prefix("exported ") {
            let mut fields = rest.split_whitespace();
            let (name, kind) = (fields.next().unwrap(), fields.next().unwrap());
            assert!(!roles.is_empty(), "deploy/metrics.txt: no role comment above {name}");
            out.push((name, kind, roles.clone()));
        }
    }
    out
}

/// What `/metrics` on `admin` lacks of the names `role` exports: one line
/// per missing name or wrong type (empty when all are there).
fn missing(role: &str, admin: u16) -> Vec<String> {
    let body = http_get(admin, "/metrics").map(|(_, body)| body).unwrap_or_default();
    let series: BTreeSet<&str> =
        body.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
    let types: BTreeMap<&str, &str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .map(|(name, kind)| (name, kind.trim()))
        .collect();
    let mut problems = Vec::new();
    for (name, kind, roles) in exported() {
        if !roles.contains(&role) || NOT_HERE.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let wanted = match kind {
            "histogram" => ["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")).to_vec(),
            _ => vec![name.to_string()],
        };
        if !wanted.iter().all(|w| series.contains(w.as_str())) {
            problems.push(format!("{name} missing"));
        } else if types.get(name) != Some(&kind) {
            problems.push(format!("{name} is {:?}, deploy/metrics.txt says {kind}", types.get(name)));
        }
    }
    problems
}

/// Polls (bounded) until `/metrics` of `role` has every name it exports:
/// some appear only after the first traffic or Kafka statistics.
fn assert_exports(role: &str, admin: u16) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let problems = missing(role, admin);
        if problems.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "{role}: {problems:?}\n{}", http_get(admin, "/metrics").unwrap_or_default().1);
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn every_exported_name_is_on_the_live_metrics_of_its_roles() {
    let Some((mc_host, mc_port, kafka)) = common::memcached_and_kafka() else { return };
    let Ok(search) = std::env::var("PLAYGROUND_OPENSEARCH") else {
        assert!(std::env::var("PLAYGROUND_REQUIRE_SERVICES").is_err(), "PLAYGROUND_OPENSEARCH must be set");
        eprintln!("skipped: PLAYGROUND_OPENSEARCH not set; run scripts/test");
        return;
    };
    for (name, why) in NOT_HERE {
        eprintln!("not checked: {name}: {why}");
    }
    let base = format!("exported-metrics-{}", uuid::Uuid::new_v4().simple());
    let (logs, bcast) = (format!("{base}-logs"), format!("{base}-bcast"));
    let backends = [
        ("MEMCACHED_SERVICE", mc_host.as_str()),
        ("MEMCACHED_PORT", &mc_port),
        ("KAFKA_BROKERS", &kafka),
        ("KAFKA_SASL_USER", "user"),
        ("KAFKA_SASL_PASSWORD", "password"),
        ("KAFKA_BCAST_TOPIC", &bcast),
        ("KAFKA_LOGGING_TOPIC", &logs),
        ("SIGTERM_TIMEOUT", "0"),
    ];
    let tcp = Server::start("tcp", &backends);
    let udp = Server::start("udp", &backends);
    // Traffic through both backends: a token and a value in memcached, a
    // broadcast through Kafka, and the log lines the servers ship.
    let mut c = tcp.connect();
    let t = c.login();
    assert_eq!(c.ask(&format!("mcset:{t}:k:v")), "success");
    assert_eq!(c.ask(&format!("mcget:{t}:k")), "v");
    assert!(udp.udp().ask("msg:x").starts_with('x'));
    let index = format!("{base}-index");
    let logger = logger::start(
        &base,
        &[
            ("KAFKA_BROKERS", &kafka),
            ("KAFKA_SASL_USER", "user"),
            ("KAFKA_SASL_PASSWORD", "password"),
            ("KAFKA_LOGGING_TOPIC", &logs),
            ("KAFKA_CONSUMER_GROUP", &base),
            ("KAFKA_LAG_INTERVAL", "1s"),
            ("ELASTICSEARCH_ENDPOINT", &search),
            ("ELASTICSEARCH_LOGGING_INDEX", &index),
            ("ELASTICSEARCH_ALIAS", &format!("{base}-alias")),
        ],
    );
    c.read_timeout(Duration::from_secs(30));
    c.send(&format!("brd:{t}:hello"));
    assert_eq!(c.read_line().as_deref(), Some("hello"));

    assert_exports("tcp", tcp.admin);
    assert_exports("udp", udp.admin);
    assert_exports("logger", logger.admin);
    let search_port = search.trim_end_matches('/').rsplit_once(':').and_then(|(_, p)| p.parse().ok());
    if let Some(port) = search_port {
        http(port, "DELETE", &format!("/{index}*"), "");
    }
}
