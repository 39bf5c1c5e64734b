//! The report: JSON, CSV, a Markdown summary, SVG charts, and the table printed at the end.
//!
//! ```text
//!   REPORT/results.json          machine, date, settings, every cell (with footprint series)
//!   REPORT/results.csv           one row per cell
//!   REPORT/summary.md            fragmentation #4 and throughput tables, ratios to `system`;
//!                                threaded throughput on the multi-thread workloads
//!   REPORT/footprint-W.svg       footprint over time per allocator on workload W, live bytes dashed
//!   REPORT/throughput-W.svg      million events per second per allocator on workload W
//! ```

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cell::{CellResult, Threaded};

/// Everything a run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Where it ran.
    pub machine: String,
    /// When (UTC).
    pub date: String,
    /// The settings (`--quick`, repeats, sizes).
    pub settings: String,
    /// Allocators in order.
    pub allocs: Vec<String>,
    /// Workloads in order.
    pub workloads: Vec<String>,
    /// Every cell.
    pub cells: Vec<CellResult>,
}

impl Report {
    fn cell(&self, alloc: &str, workload: &str) -> Option<&CellResult> {
        self.cells
            .iter()
            .find(|c| c.alloc == alloc && c.workload == workload)
    }

    fn frag4(&self, alloc: &str, workload: &str) -> String {
        match self.cell(alloc, workload) {
            Some(c) if c.frag.is_some() => c
                .frag
                .as_ref()
                .and_then(|f| f.frag4)
                .map_or_else(|| "n/a".into(), |v| format!("{:.1}%", v * 100.0)),
            Some(c) => c.status.clone(),
            None => "-".into(),
        }
    }

    fn speed(&self, alloc: &str, workload: &str, ratio: bool) -> String {
        let base = self.cell("system", workload).and_then(CellResult::mops);
        match self.cell(alloc, workload) {
            Some(c) if c.status == "ok" => match (c.mops(), base) {
                (Some(m), Some(b)) if ratio => format!("{m:.1} ({:.2}x)", m / b),
                (Some(m), _) => format!("{m:.1}"),
                _ => "n/a".into(),
            },
            Some(c) => c.status.clone(),
            None => "-".into(),
        }
    }

    /// A table with allocators as rows and workloads as columns.
    fn table(&self, markdown: bool, cell: impl Fn(&str, &str) -> String) -> String {
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut head = vec!["allocator".to_string()];
        head.extend(self.workloads.iter().cloned());
        rows.push(head);
        for a in &self.allocs {
            let mut row = vec![a.clone()];
            row.extend(self.workloads.iter().map(|w| cell(a, w)));
            rows.push(row);
        }
        render(markdown, &rows, 1)
    }

    /// The threaded measurement of a cell.
    fn threaded(&self, alloc: &str, workload: &str) -> Option<&Threaded> {
        self.cell(alloc, workload)?.threaded.as_ref()
    }

    /// Workloads with a threaded measurement, and allocators with one on any of them.
    fn threaded_axes(&self) -> (Vec<String>, Vec<String>) {
        let has = |a: &str, w: &str| self.threaded(a, w).is_some();
        let ws: Vec<String> = self
            .workloads
            .iter()
            .filter(|w| self.allocs.iter().any(|a| has(a, w)))
            .cloned()
            .collect();
        let allocs = self
            .allocs
            .iter()
            .filter(|a| ws.iter().any(|w| has(a, w)))
            .cloned()
            .collect();
        (ws, allocs)
    }

    /// A table of the threaded measurements: allocators (with what ran) by multi-thread workloads;
    /// empty when there are none.
    fn threaded_table(&self, markdown: bool, cell: impl Fn(&str, &str) -> String) -> String {
        let (ws, allocs) = self.threaded_axes();
        if ws.is_empty() {
            return String::new();
        }
        let mut head = vec!["allocator".to_string(), "runs as".to_string()];
        for w in &ws {
            let n = self
                .allocs
                .iter()
                .find_map(|a| self.threaded(a, w).map(|t| t.threads))
                .unwrap_or(0);
            head.push(format!("{w} ({n} threads)"));
        }
        let mut rows = vec![head];
        for a in &allocs {
            let runs_as = ws
                .iter()
                .find_map(|w| self.threaded(a, w).map(|t| t.runs_as.clone()))
                .unwrap_or_default();
            let mut row = vec![a.clone(), runs_as];
            row.extend(ws.iter().map(|w| cell(a, w)));
            rows.push(row);
        }
        render(markdown, &rows, 2)
    }

    /// Threaded throughput: million events per second (ratio to threaded `system`).
    pub fn threaded_speed_table(&self, markdown: bool) -> String {
        self.threaded_table(markdown, |a, w| {
            let base = self.threaded("system", w).and_then(Threaded::mops);
            match self.threaded(a, w) {
                Some(t) if t.status == "ok" => match (t.mops(), base) {
                    (Some(m), Some(b)) => format!("{m:.1} ({:.2}x)", m / b),
                    (Some(m), None) => format!("{m:.1}"),
                    _ => "n/a".into(),
                },
                Some(t) => t.status.clone(),
                None => "-".into(),
            }
        })
    }

    /// Threaded nanoseconds per event and the replay's floor measured alongside.
    pub fn threaded_floor_table(&self, markdown: bool) -> String {
        self.threaded_table(markdown, |a, w| match self.threaded(a, w) {
            Some(t) if t.status == "ok" => match (t.ns_per_op, t.floor_ns_per_op) {
                (Some(n), Some(f)) => format!("{n:.0} ({f:.0})"),
                (Some(n), None) => format!("{n:.0}"),
                _ => "n/a".into(),
            },
            Some(t) => t.status.clone(),
            None => "-".into(),
        })
    }

    /// Threaded over single-threaded throughput of the same row (above 1: the threads gained).
    pub fn threaded_scaling_table(&self, markdown: bool) -> String {
        self.threaded_table(markdown, |a, w| {
            let st = self
                .cell(a, w)
                .filter(|c| c.status == "ok")
                .and_then(CellResult::mops);
            let mt = self
                .threaded(a, w)
                .filter(|t| t.status == "ok")
                .and_then(Threaded::mops);
            match (mt, st) {
                (Some(m), Some(s)) => format!("{:.2}x", m / s),
                _ => "-".into(),
            }
        })
    }
    /// The fragmentation #4 table.
    pub fn frag_table(&self, markdown: bool) -> String {
        self.table(markdown, |a, w| self.frag4(a, w))
    }

    /// The throughput table (million events per second, ratio to `system`).
    pub fn speed_table(&self, markdown: bool) -> String {
        self.table(markdown, |a, w| self.speed(a, w, true))
    }

    /// Failed and skipped cells, one line each.
    pub fn problems(&self) -> Vec<String> {
        self.cells
            .iter()
            .filter(|c| c.status != "ok")
            .map(|c| {
                format!(
                    "{} on {}: {} ({})",
                    c.alloc,
                    c.workload,
                    c.status,
                    c.reason.as_deref().unwrap_or("no reason given")
                )
            })
            .collect()
    }

    /// The Markdown summary.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Matrix results\n");
        let _ = writeln!(
            s,
            "- machine: {}\n- date: {}\n- settings: {}\n",
            self.machine, self.date, self.settings
        );
        let _ = writeln!(
            s,
            "## Fragmentation: Johnstone & Wilson's #4 (peak footprint / peak live bytes - 1)\n\nLower is better. Policies: bytes taken from their memory source; peers: growth of resident memory with every page of every block touched (see docs/matrix.md).\n"
        );
        s.push_str(&self.frag_table(true));
        let _ = writeln!(
            s,
            "\n## Throughput: million trace events per second (median of the timed runs), ratio to `system`\n\nHigher is better. Single-threaded replay; policies through `&mut dyn FreeSpaceManager`, peers through `GlobalAlloc`.\n"
        );
        s.push_str(&self.speed_table(true));
        let threaded = self.threaded_speed_table(true);
        if !threaded.is_empty() {
            let _ = writeln!(
                s,
                "\n## Threaded throughput: million trace events per second (median wall time of the timed runs), ratio to threaded `system`\n\nHigher is better. Workloads with more than one thread, one OS thread per trace thread; an event on a block another thread allocated waits until the block's previous event has happened (cross-thread frees in trace order). Concurrent allocators only: the peers with thread caches or arenas, `tcmalloc` and `ptmalloc2` as their concurrent versions, every other policy behind one spin lock (`Locked`). See docs/matrix.md.\n"
            );
            s.push_str(&threaded);
            let _ = writeln!(
                s,
                "\n### Threaded / single-threaded throughput of the same row\n\nAbove 1: the threaded replay ran more events per second than the single-threaded one (for `tcmalloc` and `ptmalloc2`, different code: the concurrent version vs the single-threaded manager).\n"
            );
            s.push_str(&self.threaded_scaling_table(true));
            let _ = writeln!(
                s,
                "\n### Threaded nanoseconds per event, and (in brackets) the replay's floor\n\nThe floor is the same threaded replay through a bump allocator that frees nothing (`workloads::threaded::BumpFloor`), run alternately with the allocator's runs: what the replay itself costs here (waiting for other threads' events, the window, thread scheduling on this machine). The allocator's own share is roughly the difference.\n"
            );
            s.push_str(&self.threaded_floor_table(true));
        }
        let _ = writeln!(
            s,
            "\n## Fragmentation #3 and its split (policies: internal + external at the footprint peak)\n"
        );
        let _ = writeln!(
            s,
            "| allocator | workload | #3 | internal | external | peak footprint | peak live |"
        );
        let _ = writeln!(s, "|---|---|--:|--:|--:|--:|--:|");
        let pct = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |x| format!("{:.1}%", x * 100.0));
        for c in &self.cells {
            if let Some(f) = &c.frag {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    c.alloc,
                    c.workload,
                    pct(f.frag3),
                    pct(f.internal),
                    pct(f.external),
                    f.peak_footprint,
                    f.peak_live
                );
            }
        }
        let problems = self.problems();
        if !problems.is_empty() {
            let _ = writeln!(s, "\n## Failed or skipped\n");
            for p in problems {
                let _ = writeln!(s, "- {p}");
            }
        }
        s
    }

    /// The CSV (no series).
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "allocator,kind,workload,status,events,frag3,frag4,internal,external,peak_footprint,peak_live,ns_per_op,mops,runs,reason,mt_threads,mt_runs_as,mt_status,mt_ns_per_op,mt_mops,mt_runs,mt_floor_ns_per_op\n",
        );
        let o = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{x:.6}"));
        for c in &self.cells {
            let f = c.frag.clone().unwrap_or_default();
            let t = c.threaded.as_ref();
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},\"{}\",{},\"{}\",{},{},{},{},{}",
                c.alloc,
                c.kind,
                c.workload,
                c.status,
                c.events,
                o(f.frag3),
                o(f.frag4),
                o(f.internal),
                o(f.external),
                f.peak_footprint,
                f.peak_live,
                o(c.ns_per_op),
                o(c.mops()),
                c.runs.len(),
                c.reason.clone().unwrap_or_default().replace('"', "'"),
                t.map_or_else(String::new, |t| t.threads.to_string()),
                t.map_or_else(String::new, |t| t.runs_as.replace('"', "'")),
                t.map_or_else(String::new, |t| t.status.clone()),
                o(t.and_then(|t| t.ns_per_op)),
                o(t.and_then(Threaded::mops)),
                t.map_or_else(String::new, |t| t.runs.len().to_string()),
                o(t.and_then(|t| t.floor_ns_per_op)),
            );
        }
        s
    }

    /// Writes every file of the report into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let put = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text)
                .map_err(|e| format!("cannot write {}: {e}", dir.join(name).display()))
        };
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        put("results.json", &json)?;
        put("results.csv", &self.csv())?;
        put("summary.md", &self.markdown())?;
        for w in &self.workloads {
            self.footprint_chart(w, &dir.join(format!("footprint-{w}.svg")))?;
            self.throughput_chart(w, &dir.join(format!("throughput-{w}.svg")))?;
        }
        Ok(())
    }

    fn footprint_chart(&self, workload: &str, path: &Path) -> Result<(), String> {
        let cells: Vec<&CellResult> = self
            .cells
            .iter()
            .filter(|c| c.workload == workload)
            .filter(|c| c.frag.as_ref().is_some_and(|f| !f.series.is_empty()))
            .collect();
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        let x_max = cells
            .iter()
            .flat_map(|c| {
                c.frag
                    .as_ref()
                    .map(|f| f.series.iter().map(|s| s.event).max().unwrap_or(0))
            })
            .max()
            .unwrap_or(1)
            .max(1);
        let y_max = cells
            .iter()
            .flat_map(|c| c.frag.as_ref().map(|f| f.peak_footprint))
            .max()
            .map_or(1.0, mib)
            .max(0.001)
            * 1.05;
        let root = SVGBackend::new(path, (1100, 650)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Footprint over time: {workload}"),
                ("sans-serif", 24),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0usize..x_max, 0f64..y_max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("events replayed")
            .y_desc("footprint (MiB)")
            .draw()
            .map_err(|e| err(&e))?;
        for (i, c) in cells.iter().enumerate() {
            let Some(f) = &c.frag else { continue };
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    f.series.iter().map(|s| (s.event, mib(s.footprint))),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(&e))?
                .label(c.alloc.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                });
        }
        // Live bytes, from the first policy's tracked series (exact at each sample).
        if let Some(f) = cells
            .iter()
            .find(|c| c.kind == "policy")
            .and_then(|c| c.frag.as_ref())
        {
            chart
                .draw_series(DashedLineSeries::new(
                    f.series.iter().map(|s| (s.event, mib(s.live))),
                    6,
                    4,
                    BLACK.stroke_width(2),
                ))
                .map_err(|e| err(&e))?
                .label("live bytes requested")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }

    fn throughput_chart(&self, workload: &str, path: &Path) -> Result<(), String> {
        let bars: Vec<(String, f64, bool)> = self
            .allocs
            .iter()
            .filter_map(|a| {
                let c = self.cell(a, workload)?;
                Some((a.clone(), c.mops().unwrap_or(0.0), c.kind == "policy"))
            })
            .collect();
        let n = bars.len().max(1);
        let x_max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(0.001) * 1.15;
        let root = SVGBackend::new(path, (1000, 120 + 34 * n as u32)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Throughput on {workload}: million events/s (blue: policies, orange: peers)"
                ),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(190)
            .build_cartesian_2d(0f64..x_max, 0f64..n as f64)
            .map_err(|e| err(&e))?;
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|y| {
                // Bar i spans [n-1-i, n-i]; its name sits at the middle.
                let k = y.floor() as usize;
                if (y - k as f64 - 0.5).abs() < 1e-6 && k < n {
                    names.get(n - 1 - k).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_style(("sans-serif", 16))
            .x_desc("million events per second (median of the timed runs; higher is better)")
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let y = (n - 1 - i) as f64;
                let color = if b.2 {
                    RGBColor(40, 90, 200).mix(0.85)
                } else {
                    RGBColor(230, 120, 30).mix(0.85)
                };
                Rectangle::new([(0.0, y + 0.15), (b.1, y + 0.85)], color.filled())
            }))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let y = (n - 1 - i) as f64;
                Text::new(format!(" {:.1}", b.1), (b.1, y + 0.7), ("sans-serif", 14))
            }))
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}

/// Renders rows (the first is the header) as aligned text or a Markdown table (the first `left`
/// columns left-aligned, the rest right-aligned).
fn render(markdown: bool, rows: &[Vec<String>], left: usize) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (k, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i < left {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        if markdown {
            let _ = writeln!(out, "| {} |", cells.join(" | "));
            if k == 0 {
                let rule: Vec<String> = widths
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        if i < left {
                            "-".repeat(*w)
                        } else {
                            format!("{}:", "-".repeat(w.saturating_sub(1)))
                        }
                    })
                    .collect();
                let _ = writeln!(out, "| {} |", rule.join(" | "));
            }
        } else {
            let _ = writeln!(out, "{}", cells.join("  "));
        }
    }
    out
}

/// Where this runs: CPU model, cores, memory, kernel.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map_or_else(
            || "? GiB".into(),
            |kb| format!("{:.0} GiB", kb as f64 / 1048576.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".into(), |s| s.trim().to_string());
    format!("{cpu}, {cores} cores, {mem}, Linux {kernel}")
}

/// The current UTC date and time, `YYYY-MM-DD HH:MM UTC`.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86400) as i64;
    let (h, m) = ((secs % 86400) / 3600, (secs % 3600) / 60);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02} UTC")
}
