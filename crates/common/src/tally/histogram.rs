//! Latency histograms kept per thread ([`TallyHistogram`]), rendered into
//! `/metrics` in the Prometheus exporter's own text format ([`render`]).
//!
//! The exporter cannot be handed bucket counts (its histograms take one
//! sample at a time, into storage every core shares), so these histograms
//! are written out here, line for line as the exporter writes its own; a
//! test holds the two side by side.

use std::fmt::Write;
use std::time::Duration;

use metrics_exporter_prometheus::formatting::{
    sanitize_label_key, sanitize_label_value, write_help_line, write_type_line,
};

use super::{add, registry};

/// A latency histogram kept per thread; clone it freely (it is an index
/// and the bounds).
#[derive(Debug, Clone, Copy)]
pub struct TallyHistogram {
    /// The slot of the first bucket; the overflow bucket and the sum (in
    /// nanoseconds) follow the last.
    first: usize,
    bounds: &'static [f64],
}

impl TallyHistogram {
    /// The histogram `name` with `labels` and buckets ending at `bounds`
    /// (seconds, ascending); the same name and labels give the same
    /// histogram.
    ///
    /// # Panics
    /// When the tallied metrics take more than [`super::SLOTS`] slots, or
    /// when the same histogram is asked for with other bounds: both are
    /// programming errors.
    pub fn new(name: &'static str, labels: &[(&'static str, &'static str)], bounds: &'static [f64]) -> TallyHistogram {
        let mut registry = registry();
        let key = (name, labels.to_vec());
        let first = match registry.histograms.iter().find(|(k, _, _)| *k == key) {
            Some(&(_, known, first)) => {
                assert_eq!(known, bounds, "{name} asked for with other bucket bounds");
                first
            }
            None => {
                let first = registry.take(bounds.len() + 2);
                registry.histograms.push((key, bounds, first));
                first
            }
        };
        TallyHistogram { first, bounds }
    }

    /// Records one sample.
    #[inline]
    pub fn record(self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        // As the exporter counts: in the first bucket whose bound the sample does not exceed.
        let bucket = self.bounds.iter().position(|&le| seconds <= le).unwrap_or(self.bounds.len());
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        add([(self.first + bucket, 1), (self.first + self.bounds.len() + 1, nanos)]);
    }
}

/// Appends every tallied histogram to `out` as the exporter renders a
/// histogram: HELP (when `help` has one for the name) and TYPE, then per
/// label set the cumulative buckets, `+Inf`, the sum and the count.
pub fn render(out: &mut String, help: impl Fn(&str) -> Option<&'static str>) {
    let registry = registry();
    let mut names: Vec<&str> = Vec::new();
    for ((name, _), _, _) in &registry.histograms {
        if !names.contains(name) {
            names.push(name);
        }
    }
    for name in names {
        if let Some(help) = help(name) {
            write_help_line(out, name, None, None, help);
        }
        write_type_line(out, name, None, None, "histogram");
        for ((_, labels), bounds, first) in registry.histograms.iter().filter(|((n, _), _, _)| *n == name) {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{}=\"{}\"", sanitize_label_key(k), sanitize_label_value(v)))
                .collect();
            let labels = labels.join(",");
            let before_le = if labels.is_empty() { String::new() } else { format!("{labels},") };
            let braced = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
            let mut count = 0u64;
            for (i, le) in bounds.iter().enumerate() {
                count = count.wrapping_add(registry.sum(first + i));
                let _ = writeln!(out, "{name}_bucket{{{before_le}le=\"{le}\"}} {count}");
            }
            count = count.wrapping_add(registry.sum(first + bounds.len()));
            let _ = writeln!(out, "{name}_bucket{{{before_le}le=\"+Inf\"}} {count}");
            let sum = registry.sum(first + bounds.len() + 1) as f64 / 1e9;
            let _ = writeln!(out, "{name}_sum{braced} {sum}");
            let _ = writeln!(out, "{name}_count{braced} {count}");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use metrics::histogram;
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    const BOUNDS: [f64; 3] = [0.001, 0.01, 0.1];

    /// The lines of `text` that belong to metric `name`.
    fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines().filter(|line| line.contains(name)).collect()
    }

    /// Samples recorded on several threads, some on threads that ended,
    /// render as the exporter renders the same samples: the same lines,
    /// bucket for bucket, with the sum equal to the nanosecond.
    #[test]
    fn renders_the_samples_of_every_thread_as_the_exporter_would() {
        const NAME: &str = "playground_test_tally_duration_seconds";
        let samples = [0, 500, 1_000, 1_001, 5_000, 50_000, 2_000_000].map(Duration::from_micros);
        let labels = [("transport", "tcp"), ("command", "msg")];
        let ours = TallyHistogram::new(NAME, &labels, &BOUNDS);
        std::thread::scope(|scope| {
            for chunk in samples.chunks(2) {
                scope.spawn(move || chunk.iter().for_each(|&s| TallyHistogram::new(NAME, &labels, &BOUNDS).record(s)));
            }
        });
        ours.record(samples[4]);

        let recorder = PrometheusBuilder::new().set_buckets(&BOUNDS).unwrap().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            let theirs = histogram!(NAME, "transport" => "tcp", "command" => "msg");
            samples.iter().chain([&samples[4]]).for_each(|s| theirs.record(s.as_secs_f64()));
        });
        let theirs = recorder.handle().render();
        let mut mine = String::new();
        render(&mut mine, |_| None);

        let (theirs, mine) = (lines_of(&theirs, NAME), lines_of(&mine, NAME));
        assert_eq!(theirs.len(), 2 + BOUNDS.len() + 2, "{theirs:#?}");
        assert_eq!(mine.len(), theirs.len(), "{mine:#?}");
        for (mine, theirs) in mine.iter().zip(&theirs) {
            if mine.starts_with(&format!("{NAME}_sum")) {
                let value = |line: &str| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
                assert!((value(mine) - value(theirs)).abs() < 1e-9, "{mine} against {theirs}");
            } else {
                assert_eq!(mine, theirs);
            }
        }
        assert!(mine.contains(&"playground_test_tally_duration_seconds_count{transport=\"tcp\",command=\"msg\"} 8"));
    }

    /// A histogram without labels renders without braces on its sum and count.
    #[test]
    fn a_histogram_without_labels() {
        const NAME: &str = "playground_test_tally_bare_duration_seconds";
        TallyHistogram::new(NAME, &[], &BOUNDS).record(Duration::from_millis(20));
        let mut text = String::new();
        render(&mut text, |name| (name == NAME).then_some("How long a test took"));
        let lines = lines_of(&text, NAME);
        assert_eq!(lines[0], format!("# HELP {NAME} How long a test took"));
        assert_eq!(lines[3], format!("{NAME}_bucket{{le=\"0.01\"}} 0"));
        assert_eq!(lines[4], format!("{NAME}_bucket{{le=\"0.1\"}} 1"));
        assert_eq!(lines[6], format!("{NAME}_sum 0.02"));
        assert_eq!(lines[7], format!("{NAME}_count 1"));
    }
}
