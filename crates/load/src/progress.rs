//! Progress while a run goes: a live line (indicatif) on a terminal, plain
//! periodic lines on stderr otherwise (logs, CI, pipes), or nothing. Every
//! form shows the same figures: connections open, messages per second in
//! the last second, errors so far, p99 latency so far, reconnects.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::ProgressMode;
use super::stats::{Counts, Percentiles};
use super::timeline::{Second, Timeline};

/// How progress is shown.
pub enum Progress {
    Bar(ProgressBar),
    Plain { every: Duration, next: Duration },
    Off,
}

/// Prints notes without tearing the live line.
#[derive(Clone)]
pub struct Notes(Option<ProgressBar>);

impl Notes {
    /// Prints a line on stderr.
    pub fn say(&self, text: &str) {
        match &self.0 {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
}

impl Progress {
    /// Progress for a run expected to last `planned`.
    pub fn new(mode: ProgressMode, every: Duration, planned: Duration) -> Progress {
        let live = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        match mode {
            ProgressMode::Off => Progress::Off,
            ProgressMode::Plain => Progress::plain(every),
            ProgressMode::Auto if !live => Progress::plain(every),
            ProgressMode::Auto | ProgressMode::Bar => {
                let bar = ProgressBar::with_draw_target(Some(planned.as_secs().max(1)), ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template("{elapsed_precise} [{bar:24.cyan/blue}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                bar.set_style(style);
                bar.set_message("connecting...");
                // Redraw the clock between the once-a-second updates.
                bar.enable_steady_tick(Duration::from_millis(200));
                Progress::Bar(bar)
            }
        }
    }

    fn plain(every: Duration) -> Progress {
        let every = every.max(Duration::from_secs(1));
        Progress::Plain { every, next: every }
    }

    /// A handle to print notes while the progress is shown.
    pub fn notes(&self) -> Notes {
        match self {
            Progress::Bar(bar) => Notes(Some(bar.clone())),
            _ => Notes(None),
        }
    }

    /// Shows the second that just ended.
    pub fn update(&mut self, second: &Second, timeline: &Timeline, totals: Counts, at: Duration) {
        match self {
            Progress::Off => {}
            Progress::Bar(bar) => {
                bar.set_position(at.as_secs());
                bar.set_message(status(second, timeline, totals));
            }
            Progress::Plain { every, next } => {
                if at + Duration::from_millis(100) >= *next {
                    eprintln!("[{:>5.0}s] {}", at.as_secs_f64(), status(second, timeline, totals));
                    *next += *every;
                }
            }
        }
    }

    /// Removes the live line before the report is printed.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The progress figures in one line.
pub fn status(second: &Second, timeline: &Timeline, totals: Counts) -> String {
    format!(
        "{} conns | {:.0} msg/s | {} errors | p99 {:.2} ms | {} reconnects",
        second.connections,
        second.received_per_sec,
        totals.errors(),
        Percentiles::of(&timeline.total.latency).p99,
        totals.reconnects,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latencies;

    #[test]
    fn status_line() {
        let mut t = Timeline::default();
        let mut h = Latencies::default();
        h.latency.record(1500).unwrap();
        let counts = Counts { received: 500, timeouts: 2, reconnects: 3, ..Default::default() };
        t.sample(Duration::from_secs(1), counts, 42, &h, false);
        let line = status(&t.seconds[0], &t, counts);
        assert_eq!(line, "42 conns | 500 msg/s | 2 errors | p99 1.50 ms | 3 reconnects");
    }
}
