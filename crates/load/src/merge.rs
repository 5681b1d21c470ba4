//! `playground load merge a.json b.json ...`: one report of several load
//! generators run at the same time (one machine's ephemeral ports or cores
//! are not enough for 100,000 connections). Counts are summed and the HDR
//! histograms merged, so percentiles are those of every request together,
//! not an average of percentiles; rates are summed; the timeline adds up the
//! generators' rows second by second (their per-second latency columns show
//! the worst generator's). Thresholds may be judged again on the merged
//! figures.

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::delivery::DeliveryCheck;
use super::report::{BroadcastReport, Report, peak_received_per_sec};
use super::stats::Percentiles;
use super::threshold::{Threshold, parse_threshold};
use super::timeline::Second;

/// `playground load merge`.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// Reports written with --json by `playground load` (or by an earlier merge).
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
    /// Also write the merged report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Thresholds judged on the merged figures (as `playground load --threshold`).
    #[arg(long = "threshold", value_name = "EXPR", value_parser = parse_threshold)]
    pub thresholds: Vec<Threshold>,
}

/// Reads and merges the reports named in `args`, judging its thresholds.
pub fn merge_files(args: &MergeArgs) -> anyhow::Result<Report> {
    let mut reports = Vec::new();
    for path in &args.reports {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let report: Report = serde_json::from_str(&text).with_context(|| {
            format!("{} is not a report of `playground load --json` with histograms", path.display())
        })?;
        reports.push(report);
    }
    let mut merged = merge(reports)?;
    // The generators' own thresholds stay in their reports: the merged
    // report judges its own, and whether any request succeeded.
    merged.judge(&args.thresholds);
    Ok(merged)
}

/// The report of `reports` together.
pub fn merge(reports: Vec<Report>) -> anyhow::Result<Report> {
    let mut reports = reports.into_iter();
    let Some(mut m) = reports.next() else { bail!("no report to merge") };
    for r in reports {
        m.generators += r.generators;
        join(&mut m.protocol, &r.protocol);
        join(&mut m.framing, &r.framing);
        join(&mut m.scenario, &r.scenario);
        join(&mut m.pacing, &r.pacing);
        for t in r.targets {
            if !m.targets.contains(&t) {
                m.targets.push(t);
            }
        }
        m.source_ips += r.source_ips;
        m.connections += r.connections;
        m.interrupted |= r.interrupted;
        keep_larger([
            (&mut m.elapsed_secs, r.elapsed_secs),
            (&mut m.warmup_secs, r.warmup_secs),
            (&mut m.measured_secs, r.measured_secs),
        ]);
        m.peak_connections += r.peak_connections;
        m.totals = m.totals.plus(&r.totals);
        m.sent_per_sec += r.sent_per_sec;
        m.received_per_sec += r.received_per_sec;
        m.histograms.add(&r.histograms);
        m.broadcast = match (m.broadcast.take(), r.broadcast) {
            (Some(a), Some(b)) => Some(BroadcastReport { check: add_checks(a.check, b.check), ..a }),
            (a, b) => a.or(b),
        };
        m.last_connect_error = m.last_connect_error.or(r.last_connect_error);
        for (error, n) in r.error_replies {
            *m.error_replies.entry(error).or_default() += n;
        }
        add_timelines(&mut m.timeline, &r.timeline);
    }
    let t = &m.totals;
    m.errors = t.errors();
    m.timeout_percent = if t.sent == 0 { 0.0 } else { t.timeouts as f64 * 100.0 / t.sent as f64 };
    m.peak_received_per_sec = peak_received_per_sec(&m.timeline);
    m.latency_ms = Percentiles::of(&m.histograms.latency);
    m.latency_uncorrected_ms = Percentiles::of(&m.histograms.latency_uncorrected);
    if let Some(b) = &mut m.broadcast {
        b.delivery_latency_ms = Percentiles::of(&m.histograms.delivery);
    }
    Ok(m)
}

/// `a`, or `a + b` when the generators differ.
fn join(a: &mut String, b: &str) {
    if !a.split(" + ").any(|x| x == b) {
        *a = format!("{a} + {b}");
    }
}

/// Each generator checks its own broadcasts (another run's are foreign to
/// it), so the checks add up.
fn add_checks(a: DeliveryCheck, b: DeliveryCheck) -> DeliveryCheck {
    let mut per_client = a.per_client;
    per_client.extend(b.per_client);
    DeliveryCheck {
        published: a.published + b.published,
        clients: a.clients + b.clients,
        expected: a.expected + b.expected,
        received: a.received + b.received,
        missing: a.missing + b.missing,
        extra: a.extra + b.extra,
        clients_missing: a.clients_missing + b.clients_missing,
        per_client,
    }
}

/// Sets each first of a pair to the larger of the two.
fn keep_larger<const N: usize>(pairs: [(&mut f64, f64); N]) {
    for (mine, theirs) in pairs {
        *mine = mine.max(theirs);
    }
}

/// Adds `b`'s rows to `a`'s, row by row.
fn add_timelines(a: &mut Vec<Second>, b: &[Second]) {
    for (i, row) in b.iter().enumerate() {
        let Some(mine) = a.get_mut(i) else {
            a.push(row.clone());
            continue;
        };
        mine.connections += row.connections;
        mine.counts = mine.counts.plus(&row.counts);
        mine.errors += row.errors;
        mine.sent_per_sec += row.sent_per_sec;
        mine.received_per_sec += row.received_per_sec;
        mine.warmup |= row.warmup;
        // Times and percentiles do not add up: the row keeps the larger.
        keep_larger([
            (&mut mine.t, row.t),
            (&mut mine.secs, row.secs),
            (&mut mine.latency_ms_p50, row.latency_ms_p50),
            (&mut mine.latency_ms_p99, row.latency_ms_p99),
            (&mut mine.latency_ms_max, row.latency_ms_max),
            (&mut mine.delivery_ms_p99, row.delivery_ms_p99),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::report;
    use crate::threshold::parse_threshold;

    #[test]
    fn counts_add_up_and_percentiles_come_from_the_merged_histograms() {
        let (mut a, mut b) = (report(3), report(2));
        for ms in 1..=90 {
            a.histograms.latency.record(ms * 1000).unwrap();
        }
        for ms in 91..=100 {
            b.histograms.latency.record(ms * 1000).unwrap();
        }
        b.protocol = "udp".into();
        b.totals.timeouts = 5;
        // Through JSON, as the files carry them.
        let b: Report = serde_json::from_str(&b.to_json()).unwrap();
        let mut m = merge(vec![a, b]).unwrap();
        assert_eq!((m.generators, m.connections, m.protocol.as_str()), (2, 20, "tcp + udp"));
        assert_eq!((m.totals.sent, m.totals.timeouts, m.errors), (200, 5, 5));
        assert_eq!(m.timeout_percent, 2.5);
        // HDR histograms answer with the top of a value's bucket (3 digits).
        assert_eq!(m.latency_ms.count, 100);
        assert!((m.latency_ms.max - 100.0).abs() < 0.1, "{:?}", m.latency_ms);
        assert!((m.latency_ms.p50 - 50.0).abs() < 0.1, "{:?}", m.latency_ms);
        let rows: Vec<u64> = m.timeline.iter().map(|r| r.counts.sent).collect();
        assert_eq!(rows, [80, 80, 40], "second by second");
        m.judge(&[parse_threshold("p99<95ms").unwrap()]);
        assert_eq!(m.failures, ["threshold p99<95ms"]);
        assert!(merge(Vec::new()).is_err());
    }
}
