//! The report's charts, as SVG text (written to files and inlined in `index.html`).
//!
//! ```text
//!   footprint(W)   one figure per workload: a panel per family (fits, classes, glibc-like,
//!                  peers), footprint on a log axis with the live bytes dashed in each panel,
//!                  the legend under each panel (never over the lines)
//!   throughput(W)  million events per second per allocator (bars; policies blue, peers orange)
//!   threaded(W)    threaded and single-threaded throughput side by side, the replay's floor
//!                  as a tick
//! ```
//!
//! Colours come from [`PALETTE`]: dark, saturated hues that stay apart on white (no yellow, no
//! pastel); a panel holds at most as many lines as the palette has colours.

use plotters::coord::Shift;
use plotters::prelude::*;

use workloads::replay::Sample;

use crate::cell::{CellResult, Threaded};
use crate::report::Report;

/// Line colours, in the order a panel uses them: distinct on white and to most colour-blind
/// readers (blue/orange first), none pale.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180), // blue
    RGBColor(230, 97, 0),   // orange
    RGBColor(0, 140, 70),   // green
    RGBColor(200, 30, 45),  // red
    RGBColor(120, 70, 175), // purple
    RGBColor(120, 80, 40),  // brown
    RGBColor(210, 60, 160), // magenta
    RGBColor(0, 150, 170),  // teal
    RGBColor(90, 90, 90),   // grey
    RGBColor(130, 130, 0),  // olive
];

const POLICY: RGBColor = RGBColor(31, 90, 180);
const PEER: RGBColor = RGBColor(220, 100, 20);
const SINGLE: RGBColor = RGBColor(150, 150, 150);

/// A panel of the footprint figure: a title and the cells drawn in it.
struct Panel<'a> {
    title: String,
    cells: Vec<&'a CellResult>,
}

/// The footprint panels of `workload`: one per family of policies (glibc-like with glibc
/// itself beside the model), then the peers; empty panels are left out.
fn panels<'a>(r: &'a Report, workload: &str) -> Vec<Panel<'a>> {
    let with_series = |a: &str| {
        r.cell(a, workload)
            .filter(|c| c.frag.as_ref().is_some_and(|f| !f.series.is_empty()))
    };
    let mut out = Vec::new();
    for fam in registry::Family::ALL {
        let mut cells: Vec<&CellResult> = r
            .allocs
            .iter()
            .filter(|a| registry::family(a) == Some(fam))
            .filter_map(|a| with_series(a))
            .collect();
        if cells.is_empty() {
            continue;
        }
        let mut title = fam.label().to_string();
        if fam == registry::Family::GlibcLike
            && let Some(c) = with_series(peers::GLIBC)
        {
            cells.push(c);
            title.push_str(" (the model and glibc)");
        }
        out.push(Panel { title, cells });
    }
    let peer_cells: Vec<&CellResult> = r
        .allocs
        .iter()
        .filter(|a| registry::lookup(a).is_err())
        .filter_map(|a| with_series(a))
        .collect();
    if !peer_cells.is_empty() {
        out.push(Panel {
            title: "peers (resident memory)".into(),
            cells: peer_cells,
        });
    }
    out
}

/// A log axis's tick (a power of ten, in bytes) as a short label: `100 B`, `10 kB`, `1 MB`.
pub fn decimal_bytes(b: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b;
    let mut u = 0;
    while v >= 999.5 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if v >= 10.0 || (v - v.round()).abs() < 0.05 {
        format!("{:.0} {}", v.round(), units[u])
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn chart_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("chart {what}: {e}")
}

const PANEL_W: u32 = 560;
const PLOT_H: u32 = 300;
const LEGEND_ROW: u32 = 18;

/// The footprint figure of `workload` (SVG text), or `None` when no cell has a series.
pub fn footprint(r: &Report, workload: &str) -> Result<Option<String>, String> {
    let panels = panels(r, workload);
    if panels.is_empty() {
        return Ok(None);
    }
    let legend_rows = panels
        .iter()
        .map(|p| (p.cells.len() as u32 + 1).div_ceil(2))
        .max()
        .unwrap_or(1);
    let panel_h = PLOT_H + 16 + legend_rows * LEGEND_ROW;
    let cols = 2u32.min(panels.len() as u32);
    let rows = (panels.len() as u32).div_ceil(cols);
    let (w, h) = (cols * PANEL_W, 40 + rows * panel_h);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        let e = |x: DrawingAreaErrorKind<_>| chart_err(workload, x);
        root.fill(&WHITE).map_err(e)?;
        let (band, body) = root.split_vertically(40);
        band.draw(&Text::new(
            format!("Footprint over time on {workload} (log scale; dashed: live bytes requested)"),
            (12, 10),
            ("sans-serif", 20).into_font(),
        ))
        .map_err(e)?;
        let areas = body.split_evenly((rows as usize, cols as usize));
        for (p, area) in panels.iter().zip(areas) {
            draw_panel(&area, p).map_err(e)?;
        }
        root.present().map_err(e)?;
    }
    Ok(Some(svg))
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &Panel<'_>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (plot, legend) = area.split_vertically(PLOT_H);
    let series = |c: &CellResult| {
        c.frag
            .as_ref()
            .map(|f| f.series.clone())
            .unwrap_or_default()
    };
    // The positive values of one measure (a log axis has no zero), against events.
    let points = |c: &CellResult, pick: fn(&Sample) -> usize| -> Vec<(usize, f64)> {
        series(c)
            .iter()
            .map(|s| (s.event, pick(s)))
            .filter(|&(_, v)| v > 0)
            .map(|(e, v)| (e, v as f64))
            .collect()
    };
    let x_max = p
        .cells
        .iter()
        .flat_map(|c| series(c).iter().map(|s| s.event).max())
        .max()
        .unwrap_or(1)
        .max(1);
    let ys = p.cells.iter().flat_map(|c| {
        series(c)
            .iter()
            .flat_map(|s| [s.footprint, s.live])
            .collect::<Vec<_>>()
    });
    let positive: Vec<f64> = ys.filter(|&v| v > 0).map(|v| v as f64).collect();
    let lo = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = positive.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > 0.0 {
        (lo / 1.5, hi * 1.5)
    } else {
        (1024.0, 1024.0 * 1024.0)
    };
    let mut chart = ChartBuilder::on(&plot)
        .caption(&p.title, ("sans-serif", 16))
        .margin(8)
        .margin_right(16)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .build_cartesian_2d(0usize..x_max, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("events replayed")
        .x_labels(5)
        .y_labels(6)
        .y_label_formatter(&|v| decimal_bytes(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (i, c) in p.cells.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        chart.draw_series(LineSeries::new(
            points(c, |s| s.footprint),
            colour.stroke_width(2),
        ))?;
    }
    // Live bytes: every cell of a workload replays the same trace; a policy's series is exact.
    let live_from = p
        .cells
        .iter()
        .find(|c| c.kind == "policy")
        .or_else(|| p.cells.first());
    if let Some(c) = live_from {
        chart.draw_series(DashedLineSeries::new(
            points(c, |s| s.live),
            6,
            4,
            BLACK.stroke_width(2),
        ))?;
    }
    // The legend, under the plot: two columns of swatches.
    let col_w = PANEL_W as i32 / 2 - 20;
    let entries = p
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| (c.alloc.clone(), PALETTE[i % PALETTE.len()], false))
        .chain(std::iter::once(("live bytes".to_string(), BLACK, true)));
    for (k, (name, colour, dashed)) in entries.enumerate() {
        let x = 70 + (k as i32 % 2) * col_w;
        let y = 8 + (k as i32 / 2) * LEGEND_ROW as i32;
        if dashed {
            for s in [0, 10, 20] {
                legend.draw(&PathElement::new(
                    vec![(x + s, y + 6), (x + s + 6, y + 6)],
                    colour.stroke_width(2),
                ))?;
            }
        } else {
            legend.draw(&PathElement::new(
                vec![(x, y + 6), (x + 26, y + 6)],
                colour.stroke_width(3),
            ))?;
        }
        legend.draw(&Text::new(
            name,
            (x + 34, y),
            ("sans-serif", 13).into_font(),
        ))?;
    }
    Ok(())
}

/// The throughput bars of `workload` (SVG text).
pub fn throughput(r: &Report, workload: &str) -> Result<String, String> {
    let bars: Vec<(String, f64, bool)> = r
        .allocs
        .iter()
        .filter_map(|a| {
            let c = r.cell(a, workload)?;
            Some((a.clone(), c.mops().unwrap_or(0.0), c.kind == "policy"))
        })
        .collect();
    let title =
        format!("Throughput on {workload}: million events/s (blue: policies, orange: peers)");
    hbars(
        &title,
        "million events per second (median of the timed runs; higher is better)",
        &bars
            .iter()
            .map(|(n, v, policy)| Bar {
                name: n.clone(),
                values: vec![(*v, if *policy { POLICY } else { PEER })],
                tick: None,
            })
            .collect::<Vec<_>>(),
    )
}

/// The threaded chart of `workload` (SVG text), or `None` when nothing ran threaded on it.
pub fn threaded(r: &Report, workload: &str) -> Result<Option<String>, String> {
    let rows: Vec<Bar> = r
        .allocs
        .iter()
        .filter_map(|a| {
            let c = r.cell(a, workload)?;
            let t = c.threaded.as_ref()?;
            let mt = t.mops().filter(|_| t.status == "ok").unwrap_or(0.0);
            let st = c.mops().filter(|_| c.status == "ok").unwrap_or(0.0);
            Some(Bar {
                name: t.runs_as.clone(),
                values: vec![(mt, POLICY), (st, SINGLE)],
                tick: floor_mops(t),
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let threads = r
        .allocs
        .iter()
        .find_map(|a| r.cell(a, workload)?.threaded.as_ref().map(|t| t.threads))
        .unwrap_or(0);
    hbars(
        &format!(
            "Threaded throughput on {workload} ({threads} threads): blue threaded, grey single-threaded, black tick: the replay's floor"
        ),
        "million events per second (higher is better)",
        &rows,
    )
    .map(Some)
}

fn floor_mops(t: &Threaded) -> Option<f64> {
    t.floor_ns_per_op.filter(|&n| n > 0.0).map(|n| 1000.0 / n)
}

/// One row of a bar chart: bars drawn one under the other, and an optional tick.
struct Bar {
    name: String,
    values: Vec<(f64, RGBColor)>,
    tick: Option<f64>,
}

/// Horizontal bars, one row per entry, the value printed at each bar's end.
fn hbars(title: &str, x_desc: &str, rows: &[Bar]) -> Result<String, String> {
    let n = rows.len().max(1);
    let per = rows
        .iter()
        .map(|b| b.values.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let row_px = 14 + 14 * per as u32;
    let x_max = rows
        .iter()
        .flat_map(|b| b.values.iter().map(|v| v.0).chain(b.tick))
        .fold(0.0, f64::max)
        .max(0.001)
        * 1.18;
    let label_w = 30 + 8 * rows.iter().map(|b| b.name.len()).max().unwrap_or(8) as u32;
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (1000, 110 + row_px * n as u32)).into_drawing_area();
        let e = |x: DrawingAreaErrorKind<_>| chart_err(title, x);
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(label_w.min(420))
            .build_cartesian_2d(0f64..x_max, 0f64..n as f64)
            .map_err(e)?;
        let names: Vec<String> = rows.iter().map(|b| b.name.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|y| {
                // Row i spans [n-1-i, n-i]; its name sits at the middle.
                let k = y.floor() as usize;
                if (y - k as f64 - 0.5).abs() < 1e-6 && k < n {
                    names.get(n - 1 - k).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_style(("sans-serif", 14))
            .x_desc(x_desc)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        let h = 0.76 / per as f64;
        for (i, b) in rows.iter().enumerate() {
            let base = (n - 1 - i) as f64 + 0.88;
            for (j, &(v, colour)) in b.values.iter().enumerate() {
                let top = base - h * j as f64;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, top), (v, top - h * 0.9)],
                        colour.filled(),
                    )))
                    .map_err(e)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!(" {v:.1}"),
                        (v, top - h * 0.15),
                        ("sans-serif", 12),
                    )))
                    .map_err(e)?;
            }
            if let Some(t) = b.tick {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(t, base + 0.06), (t, base - 0.82)],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(e)?;
            }
        }
        root.present().map_err(e)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_labels() {
        assert_eq!(decimal_bytes(512.0), "512 B");
        assert_eq!(decimal_bytes(1000.0), "1 kB");
        assert_eq!(decimal_bytes(100_000.0), "100 kB");
        assert_eq!(decimal_bytes(1e6), "1 MB");
    }

    #[test]
    fn the_palette_has_no_pale_colour() {
        // Relative luminance (sRGB, linearised) under 0.45: every line stands out on white.
        for c in PALETTE {
            let lin = |v: u8| {
                let v = f64::from(v) / 255.0;
                if v <= 0.04045 {
                    v / 12.92
                } else {
                    ((v + 0.055) / 1.055).powf(2.4)
                }
            };
            let l = 0.2126 * lin(c.0) + 0.7152 * lin(c.1) + 0.0722 * lin(c.2);
            assert!(l < 0.45, "{c:?} is too pale: luminance {l:.2}");
        }
    }
}
