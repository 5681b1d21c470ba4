//! The final report: totals, throughput, latency percentiles (corrected for
//! coordinated omission, and uncorrected), the broadcast delivery check, the
//! per-second timeline and the thresholds' verdicts. The text form keeps the
//! original client's figures first under their original names ("packets
//! sent", "packets received", timeouts, resets); `--json` writes the same
//! content, with the per-client delivery figures and the full HDR
//! histograms, so that reports of several generators can be merged
//! ([`super::merge`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::args::ScenarioKind;
use super::delivery::DeliveryCheck;
use super::plan::Plan;
use super::runner::Context;
use super::script::Role;
use super::stats::{Counts, Latencies, Percentiles};
use super::threshold::{Outcome, Results, Threshold};
use super::timeline::{Second, Timeline};

/// Rows of the text timeline; longer runs are shown in coarser steps
/// (the JSON keeps every second).
const TEXT_TIMELINE_ROWS: usize = 60;
/// Clients with missing broadcasts listed in the text form.
const TEXT_WORST_CLIENTS: usize = 5;

/// What a run did (or, merged, what several generators did together).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Load generators whose runs this report covers (more than 1: merged).
    #[serde(default = "one")]
    pub generators: u32,
    pub protocol: String,
    /// TCP framing: `line`, or the original's `packet`.
    pub framing: String,
    pub scenario: String,
    pub targets: Vec<String>,
    pub source_ips: usize,
    pub connections: u32,
    pub pacing: String,
    /// Stopped early (Ctrl-C): the figures are those of what ran so far.
    pub interrupted: bool,
    pub elapsed_secs: f64,
    /// The warm-up left out of the results (`--warmup`).
    #[serde(default)]
    pub warmup_secs: f64,
    /// What the results cover: the run less its warm-up.
    #[serde(default)]
    pub measured_secs: f64,
    pub peak_connections: i64,
    pub totals: Counts,
    pub errors: u64,
    pub timeout_percent: f64,
    pub sent_per_sec: f64,
    pub received_per_sec: f64,
    pub peak_received_per_sec: f64,
    /// Request to reply, right replies (late ones included), from the time
    /// each request was due by the schedule, send slots skipped while
    /// waiting included (corrected for coordinated omission, as wrk2 does).
    pub latency_ms: Percentiles,
    /// The same from the actual send, skipped slots left out (uncorrected).
    #[serde(default)]
    pub latency_uncorrected_ms: Percentiles,
    pub broadcast: Option<BroadcastReport>,
    pub last_connect_error: Option<String>,
    /// The servers' error replies among the wrong replies, by error text.
    #[serde(default)]
    pub error_replies: BTreeMap<String, u64>,
    pub timeline: Vec<Second>,
    /// The thresholds and what they found.
    #[serde(default)]
    pub thresholds: Vec<Outcome>,
    /// Why the run failed, if it did: crossed thresholds, or no request
    /// succeeded. Not empty means exit code 99.
    #[serde(default)]
    pub failures: Vec<String>,
    /// The full latency histograms after the warm-up (HdrHistogram V2
    /// compressed, base64).
    pub histograms: Latencies,
}

fn one() -> u32 {
    1
}

/// Broadcasts of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BroadcastReport {
    /// From sending `brd` to receiving the broadcast, over every receipt.
    pub delivery_latency_ms: Percentiles,
    pub check: DeliveryCheck,
}

impl Report {
    /// The report of a finished (or stopped) run.
    pub fn new(plan: &Plan, ctx: &Context, timeline: Timeline, elapsed: Duration, interrupted: bool) -> Report {
        let args = &plan.args;
        let totals = ctx.stats.count.snapshot().since(&timeline.base);
        // The warm-up ends when it was sampled, a little after --warmup.
        let warmup = timeline.warmup_end.min(elapsed);
        let measured = elapsed - warmup;
        let secs = measured.as_secs_f64().max(1e-9);
        let broadcasting = plan.roles.iter().any(|r| matches!(r, Role::Broadcaster | Role::Listener))
            || totals.deliveries + totals.published > 0;
        let mut pacing = match args.rate {
            _ if plan.rate_stages() => "--stage rates in total".to_string(),
            Some(r) => format!("{r} msg/s in total"),
            None if args.msg_interval.is_zero() => "next message on each reply".into(),
            None => format!("one message every {:?} per connection", args.msg_interval),
        };
        if args.pipeline > 1 {
            pacing += &format!(", up to {} in flight per connection", args.pipeline);
        }
        let mut report = Report {
            generators: 1,
            protocol: format!("{:?}", args.protocol).to_lowercase(),
            framing: args.framing.name().into(),
            scenario: match args.scenario() {
                ScenarioKind::Mix => format!("mix {}", mix_text(&args.mix.clone().unwrap_or_default())),
                other => format!("{other:?}").to_lowercase(),
            },
            targets: plan.targets.iter().map(|t| t.to_string()).collect(),
            source_ips: plan.sources.len(),
            connections: plan.clients,
            pacing,
            interrupted,
            elapsed_secs: elapsed.as_secs_f64(),
            warmup_secs: warmup.as_secs_f64(),
            measured_secs: measured.as_secs_f64(),
            peak_connections: ctx.stats.peak_open.load(std::sync::atomic::Ordering::Relaxed),
            totals,
            errors: totals.errors(),
            timeout_percent: if totals.sent == 0 { 0.0 } else { totals.timeouts as f64 * 100.0 / totals.sent as f64 },
            sent_per_sec: totals.sent as f64 / secs,
            received_per_sec: totals.received as f64 / secs,
            peak_received_per_sec: peak_received_per_sec(&timeline.seconds),
            latency_ms: Percentiles::of(&timeline.total.latency),
            latency_uncorrected_ms: Percentiles::of(&timeline.total.latency_uncorrected),
            broadcast: broadcasting.then(|| BroadcastReport {
                delivery_latency_ms: Percentiles::of(&timeline.total.delivery),
                check: ctx.ledger.check(),
            }),
            last_connect_error: ctx.stats.last_connect_error(),
            error_replies: ctx.stats.error_replies(),
            timeline: timeline.seconds,
            thresholds: Vec::new(),
            failures: Vec::new(),
            histograms: timeline.total,
        };
        report.judge(&args.thresholds);
        report
    }

    /// Judges `thresholds` and whether any request succeeded, filling
    /// [`Report::thresholds`] and [`Report::failures`].
    pub fn judge(&mut self, thresholds: &[Threshold]) {
        let h = &self.histograms;
        let results = Results {
            totals: &self.totals,
            received_per_sec: self.received_per_sec,
            sent_per_sec: self.sent_per_sec,
            latency: &h.latency,
            uncorrected: &h.latency_uncorrected,
            delivery: &h.delivery,
        };
        self.thresholds = thresholds.iter().map(|t| t.judge(&results)).collect();
        self.failures =
            self.thresholds.iter().filter(|o| !o.passed).map(|o| format!("threshold {}", o.threshold)).collect();
        let t = &self.totals;
        if t.sent > 0 && t.received + t.late_replies == 0 {
            self.failures.push(format!("no request succeeded: all {} failed", t.sent));
        } else if t.connections_opened == 0 && t.connect_errors > 0 {
            self.failures.push(format!("no connection succeeded: all {} attempts failed", t.connect_errors));
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// The busiest second after the warm-up.
pub fn peak_received_per_sec(seconds: &[Second]) -> f64 {
    seconds.iter().filter(|s| !s.warmup).map(|s| s.received_per_sec).fold(0.0, f64::max)
}

fn mix_text(mix: &super::args::Mix) -> String {
    let parts: Vec<String> = mix.0.iter().map(|(p, w)| format!("{}={w}", format!("{p:?}").to_lowercase())).collect();
    parts.join(",")
}

fn percentiles(f: &mut fmt::Formatter<'_>, label: &str, p: &Percentiles) -> fmt::Result {
    writeln!(
        f,
        "{label:<19}p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        p.p50, p.p90, p.p99, p.p999, p.max
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        writeln!(
            f,
            "playground load: {} {}, {} connections to {} ({}){}{}",
            self.protocol,
            self.scenario,
            self.connections,
            self.targets.join(", "),
            self.pacing,
            if self.framing == "line" { String::new() } else { format!(", {} framing", self.framing) },
            if self.interrupted { " - interrupted, figures so far" } else { "" }
        )?;
        writeln!(f, "elapsed            {:.2} s", self.elapsed_secs)?;
        if self.generators > 1 {
            writeln!(f, "generators         {} reports merged", self.generators)?;
        }
        if self.warmup_secs > 0.0 {
            writeln!(f, "warm-up            {:.2} s, left out of the figures below", self.warmup_secs)?;
        }
        writeln!(
            f,
            "connections        {} opened{}, {} failed, peak {} open",
            t.connections_opened,
            if self.warmup_secs > 0.0 { " after the warm-up" } else { "" },
            t.connect_errors,
            self.peak_connections
        )?;
        writeln!(f, "packets sent       {}", t.sent)?;
        writeln!(f, "packets received   {}", t.received)?;
        writeln!(f, "timeouts           {} ({:.2} %)", t.timeouts, self.timeout_percent)?;
        writeln!(f, "late replies       {}", t.late_replies)?;
        writeln!(f, "wrong replies      {}", t.wrong_replies)?;
        for (error, n) in &self.error_replies {
            writeln!(f, "  {error:<16} {n}")?;
        }
        if self.framing != "line" {
            writeln!(f, "  merged reads     {} (several messages read as one)", t.merged_reads)?;
        }
        writeln!(f, "unanswered         {}", t.unanswered)?;
        writeln!(f, "reconnects         {}", t.reconnects)?;
        if t.refused > 0 {
            writeln!(f, "refused            {} (`error: server full`; connected again)", t.refused)?;
        }
        if t.missed_slots > 0 {
            writeln!(f, "missed send slots  {} (the client still waited; counted in the latency)", t.missed_slots)?;
        }
        writeln!(f, "resets             {}", t.resets)?;
        writeln!(f, "errors             {}", self.errors)?;
        writeln!(
            f,
            "throughput         {:.0} sent/s, {:.0} received/s (peak second {:.0}/s)",
            self.sent_per_sec, self.received_per_sec, self.peak_received_per_sec
        )?;
        percentiles(f, "latency ms", &self.latency_ms)?;
        percentiles(f, "  uncorrected ms", &self.latency_uncorrected_ms)?;
        if let Some(b) = &self.broadcast {
            writeln!(
                f,
                "broadcasts         {} published, {} refused; {} received, {} duplicates, {} of other runs",
                t.published, t.publish_errors, t.deliveries, t.duplicate_deliveries, t.foreign_broadcasts
            )?;
            percentiles(f, "delivery ms", &b.delivery_latency_ms)?;
            let c = &b.check;
            writeln!(
                f,
                "delivery check     {} clients: {} expected, {} received, {} missing ({} clients missing some), {} extra",
                c.clients, c.expected, c.received, c.missing, c.clients_missing, c.extra
            )?;
            let mut worst: Vec<_> = c.per_client.iter().filter(|c| c.missing > 0).collect();
            worst.sort_by_key(|c| std::cmp::Reverse(c.missing));
            for w in worst.iter().take(TEXT_WORST_CLIENTS) {
                writeln!(
                    f,
                    "  client {:<10} {} expected, {} received, {} missing",
                    w.client, w.expected, w.received, w.missing
                )?;
            }
        }
        if let Some(e) = &self.last_connect_error {
            writeln!(f, "last connect error {e}")?;
        }
        write_timeline(f, &self.timeline)?;
        write_verdicts(f, &self.thresholds, &self.failures)
    }
}

/// The thresholds, k6-like, and what failed.
fn write_verdicts(f: &mut fmt::Formatter<'_>, thresholds: &[Outcome], failures: &[String]) -> fmt::Result {
    if !thresholds.is_empty() {
        writeln!(f, "\nthresholds")?;
        for o in thresholds {
            let actual = o.actual.map_or("nothing measured".to_string(), |a| format!("{a:.3}"));
            writeln!(f, "  {:<7} {:<24} {actual}", if o.passed { "ok" } else { "FAILED" }, o.threshold)?;
        }
    }
    for failure in failures {
        writeln!(f, "FAILED: {failure}")?;
    }
    Ok(())
}

/// The timeline as a table, in steps of one second or more.
fn write_timeline(f: &mut fmt::Formatter<'_>, seconds: &[Second]) -> fmt::Result {
    writeln!(f, "\ntimeline{}", if seconds.iter().any(|s| s.warmup) { " (w: warm-up)" } else { "" })?;
    writeln!(
        f,
        "{:>8} {:>7} {:>9} {:>9} {:>7} {:>7} {:>9} {:>9}",
        "s", "conns", "sent/s", "recv/s", "errors", "reconn", "p50 ms", "p99 ms"
    )?;
    let step = seconds.len().div_ceil(TEXT_TIMELINE_ROWS).max(1);
    for rows in seconds.chunks(step) {
        let last = &rows[rows.len() - 1];
        let secs: f64 = rows.iter().map(|r| r.secs).sum::<f64>().max(1e-3);
        let sum = |f: fn(&Second) -> u64| rows.iter().map(f).sum::<u64>();
        // Coarser steps show the worst second of the step.
        let worst = |f: fn(&Second) -> f64| rows.iter().map(f).fold(0.0, f64::max);
        writeln!(
            f,
            "{:>7.1}{} {:>7} {:>9.0} {:>9.0} {:>7} {:>7} {:>9.3} {:>9.3}",
            last.t,
            if rows.iter().any(|r| r.warmup) { "w" } else { " " },
            last.connections,
            sum(|r| r.counts.sent) as f64 / secs,
            sum(|r| r.counts.received) as f64 / secs,
            sum(|r| r.errors),
            sum(|r| r.counts.reconnects),
            worst(|r| r.latency_ms_p50),
            worst(|r| r.latency_ms_p99),
        )?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn second(t: f64, sent: u64) -> Second {
        Second {
            t,
            secs: 1.0,
            connections: 10,
            counts: Counts { sent, received: sent, ..Default::default() },
            errors: 0,
            sent_per_sec: sent as f64,
            received_per_sec: sent as f64,
            latency_ms_p50: 1.0,
            latency_ms_p99: t,
            latency_ms_max: t,
            delivery_ms_p99: 0.0,
            warmup: false,
        }
    }

    /// A run of `seconds` seconds, 40 requests a second, without latencies.
    pub(crate) fn report(seconds: usize) -> Report {
        Report {
            generators: 1,
            protocol: "tcp".into(),
            framing: "line".into(),
            scenario: "echo".into(),
            targets: vec!["127.0.0.1:40000".into()],
            source_ips: 0,
            connections: 10,
            pacing: "one message every 250ms per connection".into(),
            interrupted: false,
            elapsed_secs: seconds as f64,
            warmup_secs: 0.0,
            measured_secs: seconds as f64,
            peak_connections: 10,
            totals: Counts { sent: 40 * seconds as u64, received: 40 * seconds as u64, ..Default::default() },
            errors: 0,
            timeout_percent: 0.0,
            sent_per_sec: 40.0,
            received_per_sec: 40.0,
            peak_received_per_sec: 40.0,
            latency_ms: Percentiles::default(),
            latency_uncorrected_ms: Percentiles::default(),
            broadcast: None,
            last_connect_error: None,
            error_replies: BTreeMap::new(),
            timeline: (1..=seconds).map(|t| second(t as f64, 40)).collect(),
            thresholds: Vec::new(),
            failures: Vec::new(),
            histograms: Latencies::default(),
        }
    }

    #[test]
    fn long_timelines_are_shown_in_coarser_steps() {
        let text = report(150).to_string();
        let rows: Vec<&str> = text.lines().skip_while(|l| *l != "timeline").skip(2).collect();
        assert_eq!(rows.len(), 50, "3-second steps:\n{text}");
        // A step shows rates over the step and its worst p99.
        let last: Vec<&str> = rows[49].split_whitespace().collect();
        assert_eq!(&last[..5], &["150.0", "10", "40", "40", "0"], "{text}");
        assert_eq!(last[7], "150.000", "{text}");
        assert_eq!(report(30).to_string().lines().skip_while(|l| *l != "timeline").count(), 32);
    }

    #[test]
    fn the_original_figures_come_first() {
        let text = report(2).to_string();
        let labels: Vec<&str> = text.lines().skip(1).take(4).map(|l| l.split("  ").next().unwrap()).collect();
        assert_eq!(labels, ["elapsed", "connections", "packets sent", "packets received"]);
        assert!(!text.contains("broadcasts"), "no broadcast lines without broadcasts");
        assert!(!text.contains("framing") && !text.contains("merged"), "line framing, the default, goes unsaid");
        let packet = Report { framing: "packet".into(), ..report(2) }.to_string();
        assert!(packet.lines().next().unwrap().ends_with(", packet framing"), "{packet}");
        assert!(packet.contains("\n  merged reads     0 "), "{packet}");
    }
}
