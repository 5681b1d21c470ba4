//! The process-wide Prometheus recorder every role installs, with the
//! histogram buckets each role asks for, and what every role exports:
//! `process_*` (CPU, memory, open and maximum file descriptors, threads:
//! refreshed on each scrape), `playground_build_info` and `playground_ready`.
//! `/metrics` renders it (see [`crate::admin`]). The HELP line of every
//! `playground_*` metric comes from `deploy/metrics.txt`, the catalogue the
//! chart's checks read too, so a name and its description live in one place.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_process::Collector;

/// Buckets for every histogram named `*duration_seconds`: 50 µs to 2.5 s.
pub const LATENCY_BUCKETS: [f64; 15] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The deployment's metric catalogue: `<kind> <name> <type> [help]` lines.
const CATALOGUE: &str = include_str!("../../../deploy/metrics.txt");

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static PROCESS: OnceLock<Collector> = OnceLock::new();

/// Installs the process-wide recorder (once) with latency buckets for
/// `*duration_seconds` histograms and `buckets` for the role's own
/// histograms (full name, bucket bounds), and returns the handle that renders
/// `/metrics`. A background thread drains histogram samples so memory stays
/// bounded even when nobody scrapes.
pub fn install(buckets: &[(&str, &[f64])]) -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &LATENCY_BUCKETS)
                .expect("static bucket lists are valid");
            for (name, bounds) in buckets {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full((*name).into()), bounds)
                    .expect("static bucket lists are valid");
            }
            let handle = builder.install_recorder().expect("the metrics recorder is installed once");
            describe_common();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawning the metrics upkeep thread");
            handle
        })
        .clone()
}

/// Describes every metric of the catalogue (a description of a metric a
/// role never records is not rendered) and sets the constant ones.
fn describe_common() {
    let process = PROCESS.get_or_init(Collector::default);
    process.describe();
    process.collect();
    for (name, kind, help) in described(CATALOGUE) {
        match kind {
            "counter" => describe_counter!(name, help),
            "gauge" => describe_gauge!(name, help),
            _ => describe_histogram!(name, help),
        }
    }
    gauge!("playground_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// `(name, type, help)` of the catalogue's exported metrics that have a help
/// text (the `process_*` ones are described by their collector).
fn described(catalogue: &'static str) -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    catalogue.lines().filter_map(|line| {
        let mut fields = line.splitn(4, ' ');
        if fields.next()? != "exported" {
            return None;
        }
        Some((fields.next()?, fields.next()?, fields.next()?.trim()))
    })
}

/// Renders `/metrics`, with the `process_*` figures read now and the
/// per-thread counters and histograms ([`crate::tally`]) added up.
pub fn render(handle: &PrometheusHandle) -> String {
    if let Some(process) = PROCESS.get() {
        process.collect();
    }
    crate::tally::collect();
    let mut text = handle.render();
    crate::tally::histogram::render(&mut text, |name| described(CATALOGUE).find(|d| d.0 == name).map(|d| d.2));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_playground_metric_of_the_catalogue_has_a_type_and_a_help() {
        let described: Vec<_> = described(CATALOGUE).collect();
        assert!(described.len() > 30, "{described:?}");
        for (name, kind, help) in &described {
            assert!(name.starts_with("playground_"), "{name}");
            assert!(["counter", "gauge", "histogram"].contains(kind), "{name}: {kind}");
            assert!(help.len() > 10, "{name}: {help:?}");
        }
        let exported = CATALOGUE.lines().filter(|l| l.starts_with("exported playground_")).count();
        assert_eq!(described.len(), exported, "an exported playground_ metric without a help text");
    }
}
