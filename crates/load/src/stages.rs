//! Ramp stages (`--stage 30s:1000conn:5000rps`, repeatable), as k6's
//! ramping executors have them: each stage moves the number of open
//! connections and the total rate in a straight line from where the previous
//! stage left them to its own targets, over its duration. A stage that names
//! no connection count (or no rate) holds the previous one. Connections start
//! at 0; the rate starts at `--rate`, or 0.
//!
//! [`Curve`] is such a piecewise-linear value over time. The rate curve is
//! also integrated, so that send slot number `k` falls exactly where `k`
//! requests are due in total, however the rate moves.

use std::time::Duration;

use playground_common::parse_duration;

/// One `--stage`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub length: Duration,
    /// Connections open at the end of the stage.
    pub connections: Option<u32>,
    /// Requests per second in total at the end of the stage.
    pub rate: Option<f64>,
}

/// Most connections one stage may ask for (as the positional count).
const MAX_CONNECTIONS: u32 = 10_000_000;

/// Parses `--stage`: a duration, then `NNNconn` and/or `NNNrps`, separated by `:`.
pub fn parse_stage(s: &str) -> Result<Stage, String> {
    let mut parts = s.split(':').map(str::trim);
    let length = parts.next().unwrap_or_default();
    let length = parse_duration(length).map_err(|e| format!("stage `{s}`: `{length}` is not a duration: {e}"))?;
    if length.is_zero() {
        return Err(format!("stage `{s}`: the duration must be more than 0"));
    }
    let mut stage = Stage { length, connections: None, rate: None };
    for part in parts {
        if let Some(n) = part.strip_suffix("conn") {
            let n: u32 = n.parse().map_err(|_| format!("stage `{s}`: `{part}` is not a count like 1000conn"))?;
            if n > MAX_CONNECTIONS || stage.connections.replace(n).is_some() {
                return Err(format!("stage `{s}`: `{part}` is more than {MAX_CONNECTIONS} or given twice"));
            }
        } else if let Some(r) = part.strip_suffix("rps") {
            let r: f64 = r.parse().map_err(|_| format!("stage `{s}`: `{part}` is not a rate like 5000rps"))?;
            if !(r.is_finite() && (0.0..=1e9).contains(&r)) || stage.rate.replace(r).is_some() {
                return Err(format!("stage `{s}`: `{part}` is not between 0 and 1e9 or given twice"));
            }
        } else {
            return Err(format!("stage `{s}`: `{part}` is neither NNNconn nor NNNrps (e.g. 30s:1000conn:5000rps)"));
        }
    }
    if stage.connections.is_none() && stage.rate.is_none() {
        return Err(format!("stage `{s}` names no target: add NNNconn and/or NNNrps (e.g. 30s:1000conn:5000rps)"));
    }
    Ok(stage)
}

/// The total length of `stages`.
pub fn total(stages: &[Stage]) -> Duration {
    stages.iter().map(|s| s.length).fold(Duration::ZERO, Duration::saturating_add)
}

/// The connection curve of `stages`, if any stage names a connection count.
pub fn connections(stages: &[Stage]) -> Option<Curve> {
    stages.iter().any(|s| s.connections.is_some()).then(|| Curve::of(stages, 0.0, |s| s.connections.map(f64::from)))
}

/// The rate curve of `stages` starting at `start`, if any stage names a rate.
pub fn rate(stages: &[Stage], start: f64) -> Option<Curve> {
    stages.iter().any(|s| s.rate.is_some()).then(|| Curve::of(stages, start, |s| s.rate))
}

/// A value over time (seconds), linear between points, held after the last.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// `(t, value)`, `t` rising from 0.
    points: Vec<(f64, f64)>,
}

impl Curve {
    /// The same value all the time.
    pub fn constant(value: f64) -> Curve {
        Curve { points: vec![(0.0, value)] }
    }

    fn of(stages: &[Stage], start: f64, target: impl Fn(&Stage) -> Option<f64>) -> Curve {
        let mut points = vec![(0.0, start)];
        let (mut t, mut v) = (0.0, start);
        for s in stages {
            t += s.length.as_secs_f64();
            v = target(s).unwrap_or(v);
            points.push((t, v));
        }
        Curve { points }
    }

    /// The largest value the curve takes.
    pub fn max(&self) -> f64 {
        self.points.iter().map(|p| p.1).fold(0.0, f64::max)
    }

    /// The segments `(t0, v0, t1, v1)`, the last one open-ended.
    fn segments(&self) -> impl Iterator<Item = (f64, f64, f64, f64)> + '_ {
        let last = self.points[self.points.len() - 1];
        self.points.windows(2).map(|w| (w[0].0, w[0].1, w[1].0, w[1].1)).chain([(
            last.0,
            last.1,
            f64::INFINITY,
            last.1,
        )])
    }

    /// The value at `t`.
    pub fn value(&self, t: f64) -> f64 {
        for (t0, v0, t1, v1) in self.segments() {
            if t < t1 {
                return if t1.is_finite() { v0 + (v1 - v0) * (t - t0).max(0.0) / (t1 - t0) } else { v0 };
            }
        }
        self.points[self.points.len() - 1].1
    }

    /// The area under the curve from 0 to `t`: requests due by then.
    pub fn integral(&self, t: f64) -> f64 {
        let mut sum = 0.0;
        for (t0, v0, t1, _) in self.segments() {
            let end = t.min(t1);
            if end <= t0 {
                break;
            }
            sum += (v0 + self.value(end)) / 2.0 * (end - t0);
        }
        sum
    }

    /// When the area under the curve reaches `n` (infinity if never).
    pub fn time_of(&self, n: f64) -> f64 {
        let mut before = 0.0;
        for (t0, v0, t1, v1) in self.segments() {
            let area = match (t1.is_finite(), v0 > 0.0) {
                (true, _) => (v0 + v1) / 2.0 * (t1 - t0),
                (false, true) => f64::INFINITY,
                (false, false) => 0.0,
            };
            if before + area >= n {
                // Solve v0·τ + a·τ² = n - before, with a the half slope.
                let need = n - before;
                let a = if t1.is_finite() { (v1 - v0) / (2.0 * (t1 - t0)) } else { 0.0 };
                let tau = if a.abs() < 1e-12 {
                    if v0 > 0.0 { need / v0 } else { 0.0 }
                } else {
                    (-v0 + (v0 * v0 + 4.0 * a * need).max(0.0).sqrt()) / (2.0 * a)
                };
                return t0 + tau;
            }
            before += area;
        }
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn stage_forms_and_errors() {
        let s = parse_stage("30s:1000conn:5000rps").unwrap();
        assert_eq!(s, Stage { length: Duration::from_secs(30), connections: Some(1000), rate: Some(5000.0) });
        assert_eq!(parse_stage("1m:0rps").unwrap().connections, None);
        assert_eq!(parse_stage("500ms:10conn").unwrap().rate, None);
        for (bad, needle) in [
            ("", "not a duration"),
            ("0s:1conn", "more than 0"),
            ("10s", "names no target"),
            ("10s:10", "neither NNNconn nor NNNrps"),
            ("10s:xconn", "not a count"),
            ("10s:1conn:2conn", "given twice"),
            ("10s:-1rps", "not between 0 and 1e9"),
            ("10s:fastrps", "not a rate"),
        ] {
            let err = parse_stage(bad).expect_err(bad);
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn curves_ramp_hold_and_integrate() {
        let stages: Vec<Stage> =
            ["10s:100conn:1000rps", "10s:1000rps", "5s:0conn:0rps"].iter().map(|s| parse_stage(s).unwrap()).collect();
        assert_eq!(total(&stages), Duration::from_secs(25));
        let conns = connections(&stages).unwrap();
        assert_eq!((conns.value(0.0), conns.value(5.0), conns.value(15.0), conns.value(30.0)), (0.0, 50.0, 100.0, 0.0));
        let rate = rate(&stages, 0.0).unwrap();
        // 5000 requests in the ramp, 10000 while held, 2500 on the way down.
        assert!((rate.integral(10.0) - 5000.0).abs() < 1e-6);
        assert!((rate.integral(25.0) - 17500.0).abs() < 1e-6);
        assert!((rate.time_of(5000.0) - 10.0).abs() < 1e-9);
        assert!((rate.time_of(1250.0) - 5.0).abs() < 1e-9, "half the ramp's time holds a quarter of its area");
        assert_eq!(rate.time_of(17501.0), f64::INFINITY, "no rate after the last stage");
        assert!(connections(&[parse_stage("1s:5rps").unwrap()]).is_none());
        assert_eq!(Curve::constant(1000.0).time_of(900.0), 0.9);
    }

    proptest! {
        #[test]
        fn time_of_inverts_the_integral(
            targets in proptest::collection::vec(0.0f64..10_000.0, 1..5),
            start in 0.0f64..1000.0,
            share in 0.0f64..1.0,
        ) {
            let stages: Vec<Stage> = targets
                .iter()
                .map(|r| Stage { length: Duration::from_secs(3), connections: None, rate: Some(*r) })
                .collect();
            let curve = rate(&stages, start).unwrap();
            let end = total(&stages).as_secs_f64();
            let n = curve.integral(end) * share;
            let t = curve.time_of(n);
            prop_assert!(t.is_finite() && t <= end + 1e-6, "{t}");
            prop_assert!((curve.integral(t) - n).abs() < 1e-6 * n.max(1.0), "{} vs {n}", curve.integral(t));
        }
    }
}
