//! Pass/fail checks of a run's results (`--threshold`), as k6 has them:
//! `METRIC OP VALUE`, e.g. `p99<50ms`, `errors<0.1%`, `rate>40000`.
//!
//! Metrics: latency statistics `pNN` (any percentile: `p50`, `p99.9`),
//! `max`, `mean` (or `avg`) and `min`, of the corrected request latency, or,
//! prefixed `uncorrected.` or `delivery.`, of the uncorrected request latency
//! or the broadcast delivery latency; `rate` (right replies per second) and
//! `sent_rate`; `errors` and any counter of the report's `totals`
//! (`timeouts`, `wrong_replies`, ...), as a count or, with `%`, as a share of
//! the requests sent. Operators: `<`, `<=`, `>`, `>=`, `==`. Latencies take
//! `us`, `ms` (the default) or `s`.
//!
//! The grammar is four tokens, so a hand-written parser says more precisely
//! what is wrong than a parser library's generic messages would.

use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::stats::Counts;

/// One `--threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    pub op: Op,
    /// Milliseconds for latencies, a percentage for shares, else as is.
    pub value: f64,
}

/// What a threshold looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Latency(Latency, Stat),
    /// Right replies per second.
    Rate,
    /// Requests sent per second.
    SentRate,
    /// A counter of `totals`, or `errors`; `share`: as a percentage of `sent`.
    Count {
        name: String,
        share: bool,
    },
}

/// Which latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    Corrected,
    Uncorrected,
    Delivery,
}

/// A statistic of a latency histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    Percentile(f64),
    Max,
    Mean,
    Min,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Op {
    const ALL: [(&'static str, Op); 5] = [("<=", Op::Le), (">=", Op::Ge), ("==", Op::Eq), ("<", Op::Lt), (">", Op::Gt)];

    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
            Op::Eq => actual == limit,
        }
    }

    fn text(self) -> &'static str {
        Op::ALL.iter().find(|(_, op)| *op == self).map_or("?", |(t, _)| t)
    }
}

/// Parses `--threshold`.
pub fn parse_threshold(s: &str) -> Result<Threshold, String> {
    let text = s.trim();
    let (at, op_text, op) = Op::ALL
        .iter()
        .filter_map(|(t, op)| text.find(t).map(|i| (i, *t, *op)))
        .min_by_key(|(i, t, _)| (*i, std::cmp::Reverse(t.len())))
        .ok_or_else(|| {
            format!("`{text}` has no comparison: write METRIC OP VALUE, e.g. p99<50ms (OP: < <= > >= ==)")
        })?;
    let (name, value) = (text[..at].trim(), text[at + op_text.len()..].trim());
    if name.is_empty() {
        return Err(format!("`{text}` names no metric before `{op_text}` (e.g. p99, errors, rate)"));
    }
    if value.is_empty() {
        return Err(format!("`{text}` has no value after `{op_text}` (e.g. 50ms, 0.1%, 40000)"));
    }
    let (metric, value) = match parse_metric(name)? {
        latency @ Metric::Latency(..) => (latency, parse_latency(value)?),
        rate @ (Metric::Rate | Metric::SentRate) => {
            (rate, parse_number(value.strip_suffix("/s").unwrap_or(value), value)?)
        }
        Metric::Count { name, .. } => match value.strip_suffix('%') {
            Some(share) => (Metric::Count { name, share: true }, parse_number(share, value)?),
            None => (Metric::Count { name, share: false }, parse_number(value, value)?),
        },
    };
    Ok(Threshold { metric, op, value })
}

fn parse_metric(name: &str) -> Result<Metric, String> {
    let (latency, stat) = match name.split_once('.') {
        Some(("uncorrected", stat)) => (Latency::Uncorrected, stat),
        Some(("delivery", stat)) => (Latency::Delivery, stat),
        _ => (Latency::Corrected, name),
    };
    let stat = match stat {
        "max" => Some(Stat::Max),
        "mean" | "avg" => Some(Stat::Mean),
        "min" => Some(Stat::Min),
        p if p.starts_with('p') && p.len() > 1 => {
            let q: f64 =
                p[1..].parse().map_err(|_| format!("`{name}`: `{p}` is not a percentile like p99 or p99.9"))?;
            if !(0.0..=100.0).contains(&q) {
                return Err(format!("`{name}`: a percentile lies between p0 and p100"));
            }
            Some(Stat::Percentile(q))
        }
        _ => None,
    };
    if let Some(stat) = stat {
        return Ok(Metric::Latency(latency, stat));
    }
    if latency != Latency::Corrected {
        return Err(format!("`{name}`: after `uncorrected.` or `delivery.` comes pNN, max, mean or min"));
    }
    match name {
        "rate" => Ok(Metric::Rate),
        "sent_rate" => Ok(Metric::SentRate),
        "errors" => Ok(Metric::Count { name: name.into(), share: false }),
        counter if counter_names().iter().any(|c| c == counter) => {
            Ok(Metric::Count { name: name.into(), share: false })
        }
        _ => Err(format!(
            "unknown metric `{name}`: pNN, max, mean, min (with uncorrected. or delivery. before them for those \
             latencies), rate, sent_rate, errors or a counter ({})",
            counter_names().join(", ")
        )),
    }
}

/// The counters of a report's `totals`, by name.
fn counter_names() -> Vec<String> {
    match serde_json::to_value(Counts::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn parse_number(number: &str, whole: &str) -> Result<f64, String> {
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{whole}` is not a number of 0 or more")),
    }
}

/// A latency in milliseconds: `250us`, `50ms`, `1.5s`, or a bare number of ms.
fn parse_latency(value: &str) -> Result<f64, String> {
    let units = [("us", 0.001), ("µs", 0.001), ("ms", 1.0), ("s", 1000.0)];
    let (number, scale) =
        units.iter().find_map(|(u, scale)| value.strip_suffix(u).map(|n| (n, *scale))).unwrap_or((value, 1.0));
    parse_number(number, value)
        .map(|v| v * scale)
        .map_err(|_| format!("`{value}` is not a latency like 50ms, 250us or 1.5s"))
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.op.text();
        match &self.metric {
            Metric::Latency(latency, stat) => {
                let prefix = match latency {
                    Latency::Corrected => "",
                    Latency::Uncorrected => "uncorrected.",
                    Latency::Delivery => "delivery.",
                };
                write!(f, "{prefix}{stat}{op}{}ms", self.value)
            }
            Metric::Rate => write!(f, "rate{op}{}", self.value),
            Metric::SentRate => write!(f, "sent_rate{op}{}", self.value),
            Metric::Count { name, share } => write!(f, "{name}{op}{}{}", self.value, if *share { "%" } else { "" }),
        }
    }
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stat::Percentile(q) => write!(f, "p{q}"),
            Stat::Max => f.write_str("max"),
            Stat::Mean => f.write_str("mean"),
            Stat::Min => f.write_str("min"),
        }
    }
}

/// What a threshold found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub threshold: String,
    /// The measured value in the threshold's unit; none when nothing was
    /// measured (no latency recorded), which fails the threshold.
    pub actual: Option<f64>,
    pub passed: bool,
}

/// What a threshold is judged on.
pub struct Results<'a> {
    pub totals: &'a Counts,
    pub received_per_sec: f64,
    pub sent_per_sec: f64,
    pub latency: &'a Histogram<u64>,
    pub uncorrected: &'a Histogram<u64>,
    pub delivery: &'a Histogram<u64>,
}

impl Threshold {
    /// Judges the threshold on `results`.
    pub fn judge(&self, results: &Results<'_>) -> Outcome {
        let actual = self.actual(results);
        Outcome { threshold: self.to_string(), actual, passed: actual.is_some_and(|a| self.op.holds(a, self.value)) }
    }

    fn actual(&self, r: &Results<'_>) -> Option<f64> {
        match &self.metric {
            Metric::Latency(which, stat) => {
                let h = match which {
                    Latency::Corrected => r.latency,
                    Latency::Uncorrected => r.uncorrected,
                    Latency::Delivery => r.delivery,
                };
                if h.is_empty() {
                    return None;
                }
                let us = match stat {
                    Stat::Percentile(q) => h.value_at_quantile(q / 100.0) as f64,
                    Stat::Max => h.max() as f64,
                    Stat::Mean => h.mean(),
                    Stat::Min => h.min() as f64,
                };
                Some(us / 1000.0)
            }
            Metric::Rate => Some(r.received_per_sec),
            Metric::SentRate => Some(r.sent_per_sec),
            Metric::Count { name, share } => {
                let count = if name == "errors" {
                    r.totals.errors()
                } else {
                    serde_json::to_value(r.totals).ok()?.get(name)?.as_u64()?
                };
                let count = count as f64;
                Some(match (share, r.totals.sent) {
                    (false, _) => count,
                    (true, 0) if count > 0.0 => 100.0,
                    (true, 0) => 0.0,
                    (true, sent) => count * 100.0 / sent as f64,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::stats::new_histogram;

    fn parse(s: &str) -> Threshold {
        parse_threshold(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn forms() {
        assert_eq!(
            parse("p99<50ms"),
            Threshold { metric: Metric::Latency(Latency::Corrected, Stat::Percentile(99.0)), op: Op::Lt, value: 50.0 }
        );
        assert_eq!(parse(" p50 <= 2ms ").op, Op::Le);
        assert_eq!(parse("p99.9<1s").value, 1000.0);
        assert_eq!(parse("max<250us").value, 0.25);
        assert_eq!(parse("mean<3").value, 3.0);
        assert_eq!(parse("uncorrected.p99<10ms").metric, Metric::Latency(Latency::Uncorrected, Stat::Percentile(99.0)));
        assert_eq!(parse("delivery.max<1s").metric, Metric::Latency(Latency::Delivery, Stat::Max));
        assert_eq!(parse("errors<0.1%").metric, Metric::Count { name: "errors".into(), share: true });
        assert_eq!(parse("errors<0.1%").value, 0.1);
        assert_eq!(parse("timeouts==0").metric, Metric::Count { name: "timeouts".into(), share: false });
        assert_eq!(parse("rate>40000"), Threshold { metric: Metric::Rate, op: Op::Gt, value: 40000.0 });
        assert_eq!(parse("sent_rate>=10/s").op, Op::Ge);
        assert_eq!(parse("p99<50ms").to_string(), "p99<50ms");
        assert_eq!(parse("errors<0.1%").to_string(), "errors<0.1%");
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (bad, needle) in [
            ("p99", "has no comparison"),
            ("<5ms", "names no metric"),
            ("p99<", "has no value"),
            ("p99<fast", "not a latency"),
            ("p99<-1ms", "not a latency"),
            ("p101<1ms", "between p0 and p100"),
            ("pxx<1ms", "not a percentile"),
            ("latency<1ms", "unknown metric `latency`"),
            ("uncorrected.rate>1", "after `uncorrected.`"),
            ("errors<lots", "not a number"),
            ("rate>NaN", "not a number"),
            ("timeouts=1", "has no comparison"),
        ] {
            let err = parse_threshold(bad).expect_err(bad);
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn judging() {
        let mut latency = new_histogram();
        for us in 1..=1000 {
            latency.record(us * 1000).unwrap();
        }
        let totals = Counts { sent: 1000, received: 990, timeouts: 10, ..Default::default() };
        let empty = new_histogram();
        let r = Results {
            totals: &totals,
            received_per_sec: 500.0,
            sent_per_sec: 505.0,
            latency: &latency,
            uncorrected: &latency,
            delivery: &empty,
        };
        let judge = |s: &str| parse(s).judge(&r);
        assert!(judge("p99<1s").passed && !judge("p99<1ms").passed);
        assert!((judge("p50<=1s").actual.unwrap() - 500.0).abs() < 1.0);
        assert!(judge("errors<=1%").passed && !judge("errors<1%").passed);
        assert_eq!(judge("timeouts==10").actual, Some(10.0));
        assert!(judge("rate>400").passed && !judge("sent_rate>600").passed);
        let none = judge("delivery.p99<1s");
        assert_eq!((none.actual, none.passed), (None, false), "nothing measured fails");
    }

    proptest! {
        #[test]
        fn any_text_is_parsed_or_refused_without_a_panic(s in "\\PC{0,24}") {
            let _ = parse_threshold(&s);
        }

        #[test]
        fn what_is_printed_parses_back(
            metric in prop::sample::select(vec!["p99", "p99.9", "max", "mean", "uncorrected.p50", "delivery.min",
                                                "rate", "sent_rate", "errors", "timeouts"]),
            op in prop::sample::select(vec!["<", "<=", ">", ">=", "=="]),
            value in 0.0f64..1e6,
            share in any::<bool>(),
        ) {
            let counter = metric == "errors" || metric == "timeouts";
            let unit = if counter && share { "%" } else if counter || metric.contains("rate") { "" } else { "ms" };
            let t = parse_threshold(&format!("{metric}{op}{value}{unit}")).unwrap();
            prop_assert_eq!(parse_threshold(&t.to_string()).unwrap(), t);
        }
    }
}
