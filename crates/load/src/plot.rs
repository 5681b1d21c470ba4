//! The picture of a run (`--plot FILE.png`): four panels over time, sharing
//! the time axis: connections open, messages per second, latency (p99, and
//! broadcast delivery p99 when there were broadcasts), errors and
//! reconnects per second.
//!
//! Text needs a font file, which is loaded at run time from the usual system
//! places (Debian's `fonts-dejavu-core` and its equivalents elsewhere) or from
//! `PLAYGROUND_FONT`, rather than shipped inside the binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context as _, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::Report;
use super::timeline::Second;

/// Where fonts usually are, most common first.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
];

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 1100);

/// Loads a font once per process (plotters keeps it for good).
pub fn load_font() -> anyhow::Result<()> {
    static LOADED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = LOADED.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("PLAYGROUND_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .collect();
        for path in candidates {
            let Ok(bytes) = std::fs::read(&path) else { continue };
            // plotters wants the font for the life of the process; it is loaded once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
                return Ok(path);
            }
        }
        Err("no font found to write the picture's text: install one (Debian/Ubuntu: `apt-get install \
             fonts-dejavu-core`) or point PLAYGROUND_FONT at a .ttf file"
            .to_string())
    });
    result.as_ref().map(|_| ()).map_err(|e| anyhow!("{e}"))
}

/// Draws the timeline of `report` into a PNG file at `path`.
pub fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    load_font()?;
    if path.extension().and_then(|e| e.to_str()).is_none_or(|e| !e.eq_ignore_ascii_case("png")) {
        anyhow::bail!("{}: the picture is a PNG file, name it *.png", path.display());
    }
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    render(&root, report).map_err(|e| anyhow!("{e}")).with_context(|| format!("cannot draw {}", path.display()))?;
    root.present().map_err(|e| anyhow!("{e}")).with_context(|| format!("cannot write {}", path.display()))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn render(root: &DrawingArea<BitMapBackend<'_>, Shift>, report: &Report) -> DrawResult {
    root.fill(&WHITE)?;
    let title = format!(
        "playground load: {} {}, {} connections to {}",
        report.protocol,
        report.scenario,
        report.connections,
        report.targets.join(", ")
    );
    let root = root.titled(&title, (FONT, 24))?;
    let panels = root.split_evenly((4, 1));
    let s = &report.timeline;
    let end = s.last().map_or(1.0, |l| l.t).max(1.0);
    // Connections are a level at each sample; the rest are per-interval
    // figures, drawn as steps over the interval they describe.
    let open = std::iter::once((0.0, 0.0)).chain(s.iter().map(|r| (r.t, r.connections as f64))).collect();
    let steps = |value: fn(&Second) -> f64, keep: fn(&Second) -> bool| -> Vec<(f64, f64)> {
        s.iter().filter(|r| keep(r)).flat_map(|r| [(r.t - r.secs, value(r)), (r.t, value(r))]).collect()
    };
    let all = |_: &Second| true;
    panel(&panels[0], "connections open", end, &[("open", BLUE.to_rgba(), open)])?;
    panel(
        &panels[1],
        "messages per second",
        end,
        &[
            ("sent", RGBColor(40, 160, 60).to_rgba(), steps(|r| r.sent_per_sec, all)),
            ("received", BLUE.to_rgba(), steps(|r| r.received_per_sec, all)),
        ],
    )?;
    // Seconds without replies have no latency: they are left out, not drawn as zero.
    let mut latency = vec![(
        "p99 reply",
        RED.to_rgba(),
        steps(|r| r.latency_ms_p99, |r| r.counts.received + r.counts.late_replies > 0),
    )];
    if report.broadcast.is_some() {
        latency.push((
            "p99 broadcast delivery",
            MAGENTA.to_rgba(),
            steps(|r| r.delivery_ms_p99, |r| r.counts.deliveries > 0),
        ));
    }
    panel(&panels[2], "latency, ms (p99 of each second)", end, &latency)?;
    panel(
        &panels[3],
        "errors and reconnects per second",
        end,
        &[
            ("errors", RED.to_rgba(), steps(|r| r.errors as f64 / r.secs.max(1e-3), all)),
            (
                "reconnects",
                RGBColor(230, 140, 0).to_rgba(),
                steps(|r| r.counts.reconnects as f64 / r.secs.max(1e-3), all),
            ),
        ],
    )?;
    Ok(())
}

type Series = (&'static str, RGBAColor, Vec<(f64, f64)>);

fn panel(area: &DrawingArea<BitMapBackend<'_>, Shift>, caption: &str, end: f64, series: &[Series]) -> DrawResult {
    let top = series.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y)).fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 18))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end, 0f64..top)?;
    // As many decimals as the scale needs, so ticks do not repeat.
    let decimals = |range: f64| {
        if range >= 20.0 {
            0
        } else if range >= 2.0 {
            1
        } else {
            2
        }
    };
    let (x_decimals, y_decimals) = (decimals(end), decimals(top));
    chart
        .configure_mesh()
        .x_labels(12)
        .y_labels(6)
        .x_label_formatter(&|v| format!("{v:.x_decimals$} s"))
        .y_label_formatter(&|v| format!("{v:.y_decimals$}"))
        .label_style((FONT, 13))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (name, color, points) in series {
        let style = ShapeStyle::from(*color).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}
