//! `playground scale plot`: the pictures of a run, drawn from Prometheus
//! (range queries over the run, one point per second): connections per
//! instance, replicas with the HPA's desired replicas, message rate and p99
//! latency, and each instance's memory with the kernel's TCP memory.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use crate::args::PlotArgs;
use crate::prom::{Prometheus, Series};

const SIZE: (u32, u32) = (1100, 420);
const FONT: &str = "sans-serif";

/// One line of a chart: its legend and points (seconds since the start, value).
type Line = (String, Vec<(f64, f64)>);

/// One picture: its file, title, y axis and queries (legend label, PromQL, scale).
struct Chart {
    file: &'static str,
    title: &'static str,
    y: &'static str,
    queries: Vec<(&'static str, String, f64)>,
}

fn charts(ns: &str) -> Vec<Chart> {
    let sel = format!(r#"namespace="{ns}""#);
    vec![
        Chart {
            file: "connections.png",
            title: "Connections per instance (playground_tcp_connections)",
            y: "connections",
            queries: vec![
                ("pod", format!(r#"playground_tcp_connections{{{sel},container="tcp"}}"#), 1.0),
                ("", format!(r#"sum(playground_tcp_connections{{{sel},container="tcp"}})"#), 1.0),
            ],
        },
        Chart {
            file: "replicas.png",
            title: "Replicas, the HPA's desired replicas (and what the metric alone wants), ready endpoints",
            y: "replicas",
            queries: vec![
                ("", format!(r#"label_replace(playground_scale_replicas{{{sel}}}, "pod", "replicas", "", "")"#), 1.0),
                (
                    "",
                    format!(r#"label_replace(playground_scale_desired_replicas{{{sel}}}, "pod", "desired", "", "")"#),
                    1.0,
                ),
                (
                    "",
                    format!(r#"label_replace(playground_scale_endpoints{{{sel}}}, "pod", "ready endpoints", "", "")"#),
                    1.0,
                ),
                (
                    "",
                    format!(
                        r#"label_replace(playground_scale_metric_desired_replicas{{{sel}}}, "pod", "metric alone wants", "", "")"#
                    ),
                    1.0,
                ),
            ],
        },
        Chart {
            file: "messages.png",
            title: "Commands per second over all instances",
            y: "commands/s",
            queries: vec![(
                "",
                format!(
                    r#"label_replace(sum(rate(playground_commands_total{{{sel}}}[10s])), "pod", "commands/s", "", "")"#
                ),
                1.0,
            )],
        },
        Chart {
            file: "latency.png",
            title: "p99 command latency in the servers (ms)",
            y: "ms",
            queries: vec![(
                "",
                format!(
                    r#"label_replace(histogram_quantile(0.99, sum by (le) (rate(playground_command_duration_seconds_bucket{{{sel}}}[10s]))), "pod", "p99", "", "")"#
                ),
                1000.0,
            )],
        },
        Chart {
            file: "memory.png",
            title: "Resident memory per instance and kernel TCP memory (MiB)",
            y: "MiB",
            queries: vec![
                ("replica", format!(r#"playground_scale_rss_bytes{{{sel}}}"#), 1.0 / 1048576.0),
                (
                    "",
                    format!(
                        r#"label_replace(playground_scale_kernel_tcp_bytes{{{sel}}}, "pod", "kernel TCP", "", "")"#
                    ),
                    1.0 / 1048576.0,
                ),
            ],
        },
    ]
}

fn lines(found: Vec<Series>, label: &str, start: f64, scale: f64) -> Vec<Line> {
    found
        .into_iter()
        .map(|s| {
            let name =
                s.metric.get(if label.is_empty() { "pod" } else { label }).cloned().unwrap_or_else(|| "total".into());
            (name, s.points().into_iter().filter(|(_, v)| v.is_finite()).map(|(t, v)| (t - start, v * scale)).collect())
        })
        .collect()
}

pub async fn run(args: PlotArgs) -> anyhow::Result<()> {
    playground_load::load_font()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let prom = Prometheus::new(&args.prometheus);
    for chart in charts(&args.namespace) {
        let mut all = Vec::new();
        for (label, q, scale) in &chart.queries {
            let found = prom.range(q, args.start, args.end, 1.0).await?;
            all.extend(lines(found, label, args.start, *scale));
        }
        all.sort_by_key(|l| natural(&l.0));
        let path = args.out.join(chart.file);
        draw(&path, &chart, &all, args.end - args.start).with_context(|| format!("drawing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// Sorts `scale-tcp-10` after `scale-tcp-9`.
fn natural(s: &str) -> (String, u64) {
    let digits = s.trim_start_matches(|c: char| !c.is_ascii_digit());
    (s.trim_end_matches(|c: char| c.is_ascii_digit()).to_string(), digits.parse().unwrap_or(0))
}

fn draw(path: &Path, chart: &Chart, lines: &[Line], span: f64) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let top = lines.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| *v)).fold(0.0_f64, f64::max);
    let mut c = ChartBuilder::on(&root)
        .caption(chart.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..span.max(1.0), 0.0..(top * 1.1).max(1.0))?;
    c.configure_mesh().x_desc("seconds since the start").y_desc(chart.y).label_style((FONT, 14)).draw()?;
    for (n, (name, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(n).to_rgba();
        c.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).label_font((FONT, 13)).draw()?;
    root.present()?;
    Ok(())
}
