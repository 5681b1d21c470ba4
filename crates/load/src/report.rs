//! The final report: totals, throughput, latency percentiles, the broadcast
//! delivery check and the per-second timeline. The text form keeps the
//! original client's figures first under their original names ("packets
//! sent", "packets received", timeouts, resets); `--json` writes the same
//! content, with the per-client delivery figures in full.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::args::ScenarioKind;
use super::delivery::DeliveryCheck;
use super::plan::Plan;
use super::runner::Context;
use super::script::Role;
use super::stats::{Counts, Percentiles};
use super::timeline::{Second, Timeline};

/// Rows of the text timeline; longer runs are shown in coarser steps
/// (the JSON keeps every second).
const TEXT_TIMELINE_ROWS: usize = 60;
/// Clients with missing broadcasts listed in the text form.
const TEXT_WORST_CLIENTS: usize = 5;

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
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
    pub peak_connections: i64,
    pub totals: Counts,
    pub errors: u64,
    pub timeout_percent: f64,
    pub sent_per_sec: f64,
    pub received_per_sec: f64,
    pub peak_received_per_sec: f64,
    /// Request to reply, right replies (late ones included).
    pub latency_ms: Percentiles,
    pub broadcast: Option<BroadcastReport>,
    pub last_connect_error: Option<String>,
    pub timeline: Vec<Second>,
}

/// Broadcasts of a run.
#[derive(Debug, Clone, Serialize)]
pub struct BroadcastReport {
    /// From sending `brd` to receiving the broadcast, over every receipt.
    pub delivery_latency_ms: Percentiles,
    pub check: DeliveryCheck,
}

impl Report {
    /// The report of a finished (or stopped) run.
    pub fn new(plan: &Plan, ctx: &Context, timeline: Timeline, elapsed: Duration, interrupted: bool) -> Report {
        let args = &plan.args;
        let totals = ctx.stats.count.snapshot();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let broadcasting = plan.roles.iter().any(|r| matches!(r, Role::Broadcaster | Role::Listener))
            || totals.deliveries + totals.published > 0;
        let pacing = match args.rate {
            Some(r) => format!("{r} msg/s in total"),
            None if args.msg_interval.is_zero() => "next message on each reply".into(),
            None => format!("one message every {:?} per connection", args.msg_interval),
        };
        Report {
            protocol: format!("{:?}", args.protocol).to_lowercase(),
            framing: args.framing.name().into(),
            scenario: match args.scenario() {
                ScenarioKind::Mix => format!("mix {}", mix_text(&args.mix.clone().unwrap_or_default())),
                other => format!("{other:?}").to_lowercase(),
            },
            targets: plan.targets.iter().map(|t| t.to_string()).collect(),
            source_ips: plan.sources.len(),
            connections: args.connections,
            pacing,
            interrupted,
            elapsed_secs: elapsed.as_secs_f64(),
            peak_connections: ctx.stats.peak_open.load(std::sync::atomic::Ordering::Relaxed),
            totals,
            errors: totals.errors(),
            timeout_percent: if totals.sent == 0 { 0.0 } else { totals.timeouts as f64 * 100.0 / totals.sent as f64 },
            sent_per_sec: totals.sent as f64 / secs,
            received_per_sec: totals.received as f64 / secs,
            peak_received_per_sec: timeline.seconds.iter().map(|s| s.received_per_sec).fold(0.0, f64::max),
            latency_ms: Percentiles::of(&timeline.latency),
            broadcast: broadcasting.then(|| BroadcastReport {
                delivery_latency_ms: Percentiles::of(&timeline.delivery),
                check: ctx.ledger.check(),
            }),
            last_connect_error: ctx.stats.last_connect_error(),
            timeline: timeline.seconds,
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
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
        writeln!(
            f,
            "connections        {} opened, {} failed, peak {} open",
            t.connections_opened, t.connect_errors, self.peak_connections
        )?;
        writeln!(f, "packets sent       {}", t.sent)?;
        writeln!(f, "packets received   {}", t.received)?;
        writeln!(f, "timeouts           {} ({:.2} %)", t.timeouts, self.timeout_percent)?;
        writeln!(f, "late replies       {}", t.late_replies)?;
        writeln!(f, "wrong replies      {}", t.wrong_replies)?;
        if self.framing != "line" {
            writeln!(f, "  merged reads     {} (several messages read as one)", t.merged_reads)?;
        }
        writeln!(f, "unanswered         {}", t.unanswered)?;
        writeln!(f, "reconnects         {}", t.reconnects)?;
        writeln!(f, "resets             {}", t.resets)?;
        writeln!(f, "errors             {}", self.errors)?;
        writeln!(
            f,
            "throughput         {:.0} sent/s, {:.0} received/s (peak second {:.0}/s)",
            self.sent_per_sec, self.received_per_sec, self.peak_received_per_sec
        )?;
        percentiles(f, "latency ms", &self.latency_ms)?;
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
        write_timeline(f, &self.timeline)
    }
}

/// The timeline as a table, in steps of one second or more.
fn write_timeline(f: &mut fmt::Formatter<'_>, seconds: &[Second]) -> fmt::Result {
    writeln!(f, "\ntimeline")?;
    writeln!(
        f,
        "{:>7} {:>7} {:>9} {:>9} {:>7} {:>7} {:>9} {:>9}",
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
            "{:>7.1} {:>7} {:>9.0} {:>9.0} {:>7} {:>7} {:>9.3} {:>9.3}",
            last.t,
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
mod tests {
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
        }
    }

    fn report(seconds: usize) -> Report {
        Report {
            protocol: "tcp".into(),
            framing: "line".into(),
            scenario: "echo".into(),
            targets: vec!["127.0.0.1:40000".into()],
            source_ips: 0,
            connections: 10,
            pacing: "one message every 250ms per connection".into(),
            interrupted: false,
            elapsed_secs: seconds as f64,
            peak_connections: 10,
            totals: Counts { sent: 40 * seconds as u64, received: 40 * seconds as u64, ..Default::default() },
            errors: 0,
            timeout_percent: 0.0,
            sent_per_sec: 40.0,
            received_per_sec: 40.0,
            peak_received_per_sec: 40.0,
            latency_ms: Percentiles::default(),
            broadcast: None,
            last_connect_error: None,
            timeline: (1..=seconds).map(|t| second(t as f64, 40)).collect(),
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
