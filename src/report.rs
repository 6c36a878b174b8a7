//! Reports: line plots (PNG) of accuracy curves and optimisation histories.

use crate::error::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn ensure_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One line of a plot.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A point marked on one series of a plot (a budget target on a curve).
pub struct PlotMark {
    /// Index of the series it belongs to (its colour).
    pub series: usize,
    pub x: f64,
    pub y: f64,
    pub label: String,
}

/// A line plot with a legend.
pub struct LinePlot<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub series: &'a [Series],
    /// Optional horizontal reference line (label, y).
    pub reference: Option<(&'a str, f64)>,
    /// Marked points: a dashed drop line to the x axis, a triangle and a label.
    pub marks: &'a [PlotMark],
    /// The y values are log10 of what is shown: a log axis, its ticks labelled 10^y.
    pub y_log10: bool,
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("cannot draw plot: {e}"))
}

/// Draws `plot` into a PNG file (written atomically).
pub fn line_plot(path: &Path, plot: &LinePlot) -> Result<()> {
    ensure_font();
    crate::util::with_atomic_path(path, |tmp| {
        // plotters picks the encoder from the extension, so give the temporary file one.
        let tmp_png = tmp.with_extension("png");
        {
            let root = BitMapBackend::new(&tmp_png, (960, 640)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(plot.title, ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(44)
                .y_label_area_size(56)
                .build_cartesian_2d(plot.x_range.0..plot.x_range.1, plot.y_range.0..plot.y_range.1)
                .map_err(plot_err)?;
            let pow10 = |v: &f64| {
                let x = 10f64.powf(*v);
                match x {
                    x if x >= 100.0 => format!("{x:.0}"),
                    x if x >= 10.0 => format!("{x:.1}"),
                    x => format!("{x:.2}"),
                }
            };
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(plot.x_label).y_desc(plot.y_label).label_style(("sans-serif", 14));
            if plot.y_log10 {
                mesh.y_label_formatter(&pow10);
            }
            mesh.draw().map_err(plot_err)?;
            if let Some((label, y)) = plot.reference {
                chart
                    .draw_series(LineSeries::new(
                        [(plot.x_range.0, y), (plot.x_range.1, y)],
                        ShapeStyle::from(&BLACK.mix(0.4)).stroke_width(1),
                    ))
                    .map_err(plot_err)?
                    .label(label)
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.4)));
            }
            for (i, s) in plot.series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), ShapeStyle::from(&color).stroke_width(2)))
                    .map_err(plot_err)?
                    .label(s.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], ShapeStyle::from(&color).stroke_width(2))
                    });
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, ShapeStyle::from(&color).filled())))
                    .map_err(plot_err)?;
            }
            if !plot.marks.is_empty() {
                chart
                    .draw_series(std::iter::empty::<TriangleMarker<(f64, f64), i32>>())
                    .map_err(plot_err)?
                    .label("budget target (the physically pruned model)")
                    .legend(|(x, y)| TriangleMarker::new((x + 9, y), 6, BLACK.mix(0.6).filled()));
            }
            for m in plot.marks {
                let color = Palette99::pick(m.series).to_rgba();
                let style = ShapeStyle::from(&color).stroke_width(1);
                chart
                    .draw_series(DashedLineSeries::new([(m.x, plot.y_range.0), (m.x, m.y)], 6, 4, style))
                    .map_err(plot_err)?;
                chart
                    .draw_series(std::iter::once(TriangleMarker::new((m.x, m.y), 7, ShapeStyle::from(&color).filled())))
                    .map_err(plot_err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        m.label.clone(),
                        (m.x, m.y),
                        ("sans-serif", 13).into_font().color(&color).pos(plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Left,
                            plotters::style::text_anchor::VPos::Bottom,
                        )),
                    )))
                    .map_err(plot_err)?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 14))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(plot_err)?;
            root.present().map_err(plot_err)?;
        }
        std::fs::rename(&tmp_png, tmp).map_err(Error::io("move", tmp))
    })
}

/// Context recorded with every result file.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunHeader {
    pub model: String,
    pub model_origin: String,
    pub data: String,
    pub task: crate::experiment::TaskSpec,
    /// Classes of the task when restricted.
    pub classes: Option<Vec<i64>>,
    pub references: usize,
    pub eval_samples: usize,
    pub hardware: String,
    /// The device the model ran on (`cpu`, `cuda:0`, …).
    #[serde(default)]
    pub device: String,
    pub versions: serde_json::Value,
    /// Seconds since the Unix epoch when the run finished.
    pub finished_unix: u64,
}

impl RunHeader {
    pub fn new(model: &crate::models::LoadedModel, task: &crate::experiment::Task) -> Self {
        RunHeader {
            model: model.name.clone(),
            model_origin: model.origin.clone(),
            data: task.eval.data.describe(),
            task: task.spec.clone(),
            classes: task.classes.as_ref().map(|c| c.classes().to_vec()),
            references: task.refs.len(),
            eval_samples: task.eval.len(),
            hardware: crate::models::zoo::hardware_line(),
            device: crate::device::name(model.graph.device()),
            versions: serde_json::to_value(crate::runtime::version_info()).unwrap_or_default(),
            finished_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }
}

/// A set of curves with their context: the content of `curve.json` / `compare.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CurvesReport {
    pub header: RunHeader,
    pub results: Vec<crate::experiment::CurveResult>,
}

/// Writes `<dir>/<stem>.json` and `<dir>/<stem>.png` (accuracy vs. rate, one line per result),
/// and for language models `<dir>/<stem>-perplexity.png` (perplexity vs. rate, log axis).
pub fn write_curves(dir: &Path, stem: &str, report: &CurvesReport) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    let json = dir.join(format!("{stem}.json"));
    let png = dir.join(format!("{stem}.png"));
    let series: Vec<Series> = report
        .results
        .iter()
        .map(|r| Series {
            label: format!("{} (A_PR {:.3})", r.criterion, r.curve.summary.a_pr),
            points: r.curve.rates.iter().copied().zip(r.curve.accuracies.iter().copied()).collect(),
        })
        .collect();
    let marks: Vec<PlotMark> = report
        .results
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.marks.iter().map(move |m| PlotMark {
                series: i,
                x: m.x(r.curve.axis),
                y: m.accuracy,
                label: if m.reached { m.label() } else { format!("{} (not reached)", m.label()) },
            })
        })
        .collect();
    let max_rate = report
        .results
        .iter()
        .flat_map(|r| r.curve.rates.iter().copied())
        .chain(marks.iter().map(|m| m.x))
        .fold(0.0, f64::max)
        // Room for the marks' labels right of the last point.
        * if marks.is_empty() { 1.0 } else { 1.1 };
    let unpruned = report.results.first().map(|r| r.curve.unpruned_accuracy).unwrap_or(1.0);
    let kind = report.results.first().map(|r| r.component.to_string()).unwrap_or_default();
    let lm = report.results.iter().any(|r| !r.curve.perplexities.is_empty());
    let title = if lm {
        format!("{} — {} pruned ({} eval sequences)", report.header.model, kind, report.header.eval_samples)
    } else {
        format!(
            "{} — {} pruned ({}, {} eval samples)",
            report.header.model,
            kind,
            match &report.header.classes {
                Some(c) => format!("classes {c:?}"),
                None => "all classes".into(),
            },
            report.header.eval_samples
        )
    };
    line_plot(
        &png,
        &LinePlot {
            title: &title,
            x_label: report.results.first().map_or("pruning rate", |r| r.curve.axis.label()),
            y_label: if lm { "next-token top-1 accuracy" } else { "top-1 accuracy" },
            x_range: (0.0, max_rate.max(0.05)),
            y_range: (0.0, if lm { (unpruned * 1.15).clamp(0.05, 1.0) } else { 1.0 }),
            series: &series,
            reference: Some(("unpruned", unpruned)),
            marks: &marks,
            y_log10: false,
        },
    )?;
    if lm {
        perplexity_plot(&dir.join(format!("{stem}-perplexity.png")), &title, report)?;
    }
    crate::util::write_json_atomic(&json, report)?;
    Ok((json, png))
}

/// A language model's perplexity against the rate, on a log axis (from 1 to the largest
/// measured perplexity, capped at 10⁶).
fn perplexity_plot(path: &Path, title: &str, report: &CurvesReport) -> Result<()> {
    let log = |p: f64| if p.is_nan() { 6.0 } else { p.clamp(1.0, 1e6).log10() };
    let series: Vec<Series> = report
        .results
        .iter()
        .filter(|r| !r.curve.perplexities.is_empty())
        .map(|r| Series {
            label: format!(
                "{} (mean ln ppl {:.2})",
                r.criterion,
                r.curve.summary.mean_log_perplexity.unwrap_or(f64::NAN)
            ),
            points: r.curve.rates.iter().copied().zip(r.curve.perplexities.iter().map(|&p| log(p))).collect(),
        })
        .collect();
    let top = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|y| y.is_finite()).fold(1.0, f64::max);
    let max_rate = report.results.iter().flat_map(|r| r.curve.rates.iter().copied()).fold(0.0, f64::max);
    let unpruned = report.results.iter().find_map(|r| r.curve.unpruned_perplexity).map(log);
    line_plot(
        path,
        &LinePlot {
            title,
            x_label: report.results.first().map_or("pruning rate", |r| r.curve.axis.label()),
            y_label: "perplexity (log scale)",
            x_range: (0.0, max_rate.max(0.05)),
            y_range: (0.0, (top * 1.05).max(0.5)),
            series: &series,
            reference: unpruned.map(|u| ("unpruned", u)),
            marks: &[],
            y_log10: true,
        },
    )
}

/// A horizontal bar chart (e.g. parameter importances), written atomically as PNG.
pub fn bar_plot(path: &Path, title: &str, bars: &[(String, f64)]) -> Result<()> {
    ensure_font();
    crate::util::with_atomic_path(path, |tmp| {
        let tmp_png = tmp.with_extension("png");
        {
            let h = 120 + 32 * bars.len().max(1) as u32;
            let root = BitMapBackend::new(&tmp_png, (960, h)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9);
            let n = bars.len().max(1) as i32;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(36)
                .y_label_area_size(220)
                .build_cartesian_2d(0.0..max * 1.1, (0..n).into_segmented())
                .map_err(plot_err)?;
            let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(bars.len())
                .y_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
                    _ => String::new(),
                })
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(plot_err)?;
            chart
                .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                    let i = i as i32;
                    Rectangle::new(
                        [(0.0, SegmentValue::Exact(i)), (*v, SegmentValue::Exact(i + 1))],
                        Palette99::pick(0).filled(),
                    )
                }))
                .map_err(plot_err)?;
            root.present().map_err(plot_err)?;
        }
        std::fs::rename(&tmp_png, tmp).map_err(Error::io("move", tmp))
    })
}

/// One line of a parallel-coordinates plot: its position on each axis in [0, 1] (None: the
/// parameter was inactive, drawn on the "inactive" band below the axis) and its value (colour).
pub struct Polyline {
    pub positions: Vec<Option<f64>>,
    pub value: f64,
}

/// One axis of a parallel-coordinates plot: its name and the labels at its bottom and top.
pub struct ParallelAxis {
    pub name: String,
    pub low: String,
    pub high: String,
}

/// Colour of `t` in [0, 1], from blue (low) to red (high).
fn heat(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    RGBColor((40.0 + 200.0 * t) as u8, (60.0 + 80.0 * (1.0 - (2.0 * t - 1.0).abs())) as u8, (230.0 - 190.0 * t) as u8)
}

/// A parallel-coordinates plot (one vertical axis per parameter, one line per trial coloured by
/// its value, best drawn last), written atomically as PNG.
pub fn parallel_plot(path: &Path, title: &str, axes: &[ParallelAxis], lines: &[Polyline]) -> Result<()> {
    ensure_font();
    crate::util::with_atomic_path(path, |tmp| {
        let tmp_png = tmp.with_extension("png");
        {
            let w = (160 * axes.len().max(2) as u32).max(640);
            let root = BitMapBackend::new(&tmp_png, (w, 560)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let n = axes.len().max(2) as f64 - 1.0;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(24)
                .margin_left(48)
                .margin_right(96)
                .x_label_area_size(48)
                .build_cartesian_2d(-0.05..n + 0.05, -0.2..1.08)
                .map_err(plot_err)?;
            let names: Vec<String> = axes.iter().map(|a| a.name.clone()).collect();
            chart
                .configure_mesh()
                .disable_mesh()
                .disable_y_axis()
                .x_labels(axes.len())
                .x_label_formatter(&|x| {
                    names.get(x.round() as usize).filter(|_| (x - x.round()).abs() < 1e-6).cloned().unwrap_or_default()
                })
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(plot_err)?;
            let (lo, hi) =
                lines.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| (l.min(p.value), h.max(p.value)));
            let span = (hi - lo).max(1e-12);
            let mut order: Vec<&Polyline> = lines.iter().collect();
            order.sort_by(|a, b| a.value.total_cmp(&b.value));
            for p in order {
                let color = heat((p.value - lo) / span);
                let pts: Vec<(f64, f64)> =
                    p.positions.iter().enumerate().map(|(i, y)| (i as f64, y.unwrap_or(-0.12))).collect();
                chart
                    .draw_series(LineSeries::new(pts, ShapeStyle::from(&color.mix(0.7)).stroke_width(1)))
                    .map_err(plot_err)?;
            }
            for (i, a) in axes.iter().enumerate() {
                let x = i as f64;
                chart
                    .draw_series(LineSeries::new([(x, 0.0), (x, 1.0)], ShapeStyle::from(&BLACK).stroke_width(2)))
                    .map_err(plot_err)?;
                let style = ("sans-serif", 11).into_font().color(&BLACK);
                for (text, y) in [(&a.low, -0.03), (&a.high, 1.06), (&"inactive".to_string(), -0.15)] {
                    chart
                        .draw_series(std::iter::once(Text::new(text.clone(), (x + 0.02, y), style.clone())))
                        .map_err(plot_err)?;
                }
            }
            // The colour key: the values at both ends.
            let key = ("sans-serif", 12).into_font();
            chart
                .draw_series([
                    Text::new(format!("worst {lo:.4}"), (n + 0.05, 0.1), key.clone().color(&heat(0.0))),
                    Text::new(format!("best {hi:.4}"), (n + 0.05, 0.9), key.color(&heat(1.0))),
                ])
                .map_err(plot_err)?;
            root.present().map_err(plot_err)?;
        }
        std::fs::rename(&tmp_png, tmp).map_err(Error::io("move", tmp))
    })
}
