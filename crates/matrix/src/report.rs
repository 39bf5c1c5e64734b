//! The report: JSON, CSV, a Markdown summary, SVG charts, one HTML page, and the tables printed
//! at the end.
//!
//! ```text
//!   REPORT/index.html            every table and chart on one page (opens from the file system:
//!                                no server, no network, nothing external; module `html`)
//!   REPORT/results.json          machine, date, settings, every cell (with footprint series)
//!   REPORT/results.csv           one row per cell
//!   REPORT/summary.md            fragmentation #4 and throughput tables, ratios to `system`;
//!                                threaded throughput on the multi-thread workloads
//!   REPORT/footprint-W.svg       footprint over time on workload W, a panel per family
//!   REPORT/throughput-W.svg      million events per second per allocator on workload W
//!   REPORT/threaded-W.svg        threaded throughput on a multi-thread workload W
//! ```
//!
//! Tables are split by columns so that none is wider than [`MAX_WIDTH`] characters.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cell::{CellResult, Threaded};
use crate::{charts, html};

/// The widest a printed table may be (characters): wider ones are split by columns.
pub const MAX_WIDTH: usize = 100;

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
    /// The programs table (`crate::programs`), when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programs: Option<crate::programs::Programs>,
}

impl Report {
    /// The cell of `alloc` on `workload`.
    pub fn cell(&self, alloc: &str, workload: &str) -> Option<&CellResult> {
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
    fn table(&self, cell: impl Fn(&str, &str) -> String) -> Table {
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut head = vec!["allocator".to_string()];
        head.extend(self.workloads.iter().cloned());
        rows.push(head);
        for a in &self.allocs {
            let mut row = vec![a.clone()];
            row.extend(self.workloads.iter().map(|w| cell(a, w)));
            rows.push(row);
        }
        Table { rows, left: 1 }
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
    fn threaded_table(&self, cell: impl Fn(&str, &str) -> String) -> Option<Table> {
        let (ws, allocs) = self.threaded_axes();
        if ws.is_empty() {
            return None;
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
        Some(Table { rows, left: 2 })
    }

    /// Threaded throughput: million events per second (ratio to threaded `system`).
    pub fn threaded_speed_grid(&self) -> Option<Table> {
        self.threaded_table(|a, w| {
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
    pub fn threaded_floor_grid(&self) -> Option<Table> {
        self.threaded_table(|a, w| match self.threaded(a, w) {
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
    pub fn threaded_scaling_grid(&self) -> Option<Table> {
        self.threaded_table(|a, w| {
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
    pub fn frag_grid(&self) -> Table {
        self.table(|a, w| self.frag4(a, w))
    }

    /// The throughput table (million events per second, ratio to `system`).
    pub fn speed_grid(&self) -> Table {
        self.table(|a, w| self.speed(a, w, true))
    }

    /// The fragmentation #4 table as text or Markdown, split to [`MAX_WIDTH`].
    pub fn frag_table(&self, markdown: bool) -> String {
        self.frag_grid().text(markdown)
    }

    /// The throughput table as text or Markdown, split to [`MAX_WIDTH`].
    pub fn speed_table(&self, markdown: bool) -> String {
        self.speed_grid().text(markdown)
    }

    /// Threaded throughput as text or Markdown (empty when nothing ran threaded).
    pub fn threaded_speed_table(&self, markdown: bool) -> String {
        self.threaded_speed_grid()
            .map_or_else(String::new, |t| t.text(markdown))
    }

    /// Threaded over single-threaded throughput as text or Markdown.
    pub fn threaded_scaling_table(&self, markdown: bool) -> String {
        self.threaded_scaling_grid()
            .map_or_else(String::new, |t| t.text(markdown))
    }

    /// Threaded nanoseconds per event (and the floor) as text or Markdown.
    pub fn threaded_floor_table(&self, markdown: bool) -> String {
        self.threaded_floor_grid()
            .map_or_else(String::new, |t| t.text(markdown))
    }

    /// Fragmentation #3 and its split, one row per cell with a measurement.
    pub fn split_grid(&self) -> Table {
        let mut rows = vec![
            [
                "allocator",
                "workload",
                "#3",
                "internal",
                "external",
                "peak footprint",
                "peak live",
            ]
            .map(String::from)
            .to_vec(),
        ];
        let pct = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |x| format!("{:.1}%", x * 100.0));
        for c in &self.cells {
            if let Some(f) = &c.frag {
                rows.push(vec![
                    c.alloc.clone(),
                    c.workload.clone(),
                    pct(f.frag3),
                    pct(f.internal),
                    pct(f.external),
                    f.peak_footprint.to_string(),
                    f.peak_live.to_string(),
                ]);
            }
        }
        Table { rows, left: 2 }
    }

    /// Failed and skipped cells (of the programs table too), one line each.
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
            .chain(
                self.programs
                    .iter()
                    .flat_map(crate::programs::Programs::problems),
            )
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
        s.push_str(&self.split_grid().text(true));
        if let Some(p) = &self.programs {
            s.push_str(&p.markdown());
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
            if let Some(svg) = charts::footprint(self, w)? {
                put(&format!("footprint-{w}.svg"), &svg)?;
            }
            put(
                &format!("throughput-{w}.svg"),
                &charts::throughput(self, w)?,
            )?;
            if let Some(svg) = charts::threaded(self, w)? {
                put(&format!("threaded-{w}.svg"), &svg)?;
            }
        }
        put(
            "index.html",
            &html::page(self, &html::extra_sections(self))?,
        )?;
        Ok(())
    }
}

/// A table: a header row, then rows; the first `left` columns name the row (left-aligned, and
/// repeated in each part when the table is split), the others are values (right-aligned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The header, then the rows.
    pub rows: Vec<Vec<String>>,
    /// How many leading columns name the row.
    pub left: usize,
}

impl Table {
    /// The table split by columns into parts no wider than `max` characters as text (each part
    /// keeps the naming columns; a value column wider than `max` on its own still gets a part).
    pub fn parts(&self, max: usize) -> Vec<Table> {
        let Some(head) = self.rows.first() else {
            return Vec::new();
        };
        let width = |i: usize| self.rows.iter().map(|r| r[i].len()).max().unwrap_or(0) + 3;
        let fixed: usize = (0..self.left.min(head.len())).map(width).sum();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut used = fixed;
        for i in self.left..head.len() {
            let w = width(i);
            match groups.last_mut() {
                Some(g) if used + w <= max => g.push(i),
                _ => {
                    groups.push(vec![i]);
                    used = fixed;
                }
            }
            used += w;
        }
        if groups.is_empty() {
            return vec![self.clone()];
        }
        groups
            .into_iter()
            .map(|g| Table {
                rows: self
                    .rows
                    .iter()
                    .map(|r| {
                        (0..self.left)
                            .chain(g.iter().copied())
                            .map(|i| r[i].clone())
                            .collect()
                    })
                    .collect(),
                left: self.left,
            })
            .collect()
    }

    /// The table as aligned text or Markdown, split to [`MAX_WIDTH`] (parts separated by a
    /// blank line).
    pub fn text(&self, markdown: bool) -> String {
        self.parts(MAX_WIDTH)
            .iter()
            .map(|p| render(markdown, &p.rows, p.left))
            .collect::<Vec<_>>()
            .join("\n")
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
