//! `fsm compare TRACE`: which policy for my program. The trace (yours, or a recording from
//! `fsm record`) through every policy and the peers that run in this process, ranked.
//!
//! ```text
//!   TRACE ──> Program ──┬─ each policy (registry::variants() or --policies):
//!                       │    tracked replay: exact #3, #4, internal / external at the peak
//!                       │    timed replays (warm-up, then --repeats): median ns per event
//!                       └─ each peer (peers::MEASURED or --peers): the same, its footprint read
//!                            in process (the resident pages of its own arena; glibc's count of
//!                            a fresh thread's arena), on a thread of its own
//!   ──> table ranked by #4 (then time), the first refusal of each explained, a chart (--svg)
//! ```
//!
//! Bad input (a missing file, an unknown name) is one line on stderr and exit 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use plotters::prelude::*;
use registry::Config;
use workloads::metrics::{median, ns_per_op};
use workloads::replay::{Options, Program, replay_global, replay_manager};
use workloads::{Fragmentation, Outcome};

/// Arguments of `fsm compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The policies to compare (comma-separated, suffixes allowed; default: every variant the
    /// matrix runs).
    #[arg(long, value_delimiter = ',')]
    pub policies: Vec<String>,
    /// The peers to compare beside them (comma-separated; default: the system allocator and the
    /// region allocators, whose footprint this process can read; `none` for no peers).
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Where to draw the chart (SVG).
    #[arg(long, default_value = "fsm-compare.svg")]
    pub svg: PathBuf,
    /// Timed replays per allocator (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Print the rows as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The trace file (text, .gz, binary, Valgrind or mtrace log, or `fsm record`'s output).
    pub trace: PathBuf,
}

/// One allocator's results.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    peer: bool,
    frag: Option<Fragmentation>,
    ns: Option<f64>,
    refused: usize,
    first_refusal: Option<String>,
    error: Option<String>,
}

impl Row {
    /// A row with nothing measured yet.
    fn new(name: &str, peer: bool) -> Self {
        Row {
            name: name.to_string(),
            peer,
            frag: None,
            ns: None,
            refused: 0,
            first_refusal: None,
            error: None,
        }
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("fsm compare: {msg}");
    ExitCode::FAILURE
}

/// The timed runs: a warm-up, then up to `repeats` runs while a few seconds last; the median.
fn timed(repeats: usize, mut once: impl FnMut() -> Result<Outcome, String>) -> Result<f64, String> {
    let budget = Duration::from_secs(3);
    let start = Instant::now();
    once()?;
    let mut runs = Vec::new();
    while runs.len() < repeats.max(1) && (runs.is_empty() || start.elapsed() < budget) {
        runs.push(ns_per_op(&once()?));
    }
    median(&mut runs).ok_or_else(|| "no timed run".to_string())
}

fn policy_row(name: &str, prog: &Program, cfg: &Config, repeats: usize) -> Row {
    let mut row = Row::new(name, false);
    let result = (|| -> Result<(), String> {
        let spec = registry::lookup(name).map_err(|e| e.to_string())?;
        let mut inst = spec.build(cfg).map_err(|e| e.to_string())?;
        let track = Options {
            track: true,
            series_points: 200,
            ..Options::default()
        };
        let out =
            replay_manager(&mut *inst.manager, prog, track, None).map_err(|e| e.to_string())?;
        row.frag = Some(Fragmentation::of_manager(&out));
        row.refused = out.refused;
        row.first_refusal = out.first_refusal;
        row.ns = Some(timed(repeats, || {
            replay_manager(&mut *inst.manager, prog, Options::default(), None)
                .map_err(|e| e.to_string())
        })?);
        Ok(())
    })();
    row.error = result.err();
    row
}

fn peer_row(name: &str, prog: &Program, arena: usize, repeats: usize) -> Row {
    let mut row = Row::new(name, true);
    let result = (|| -> Result<(), String> {
        // The tracked replay runs on a thread of its own: glibc gives a new thread a new arena,
        // so the system allocator's count (taken after the replay's own tables are made) grows
        // by what the replay takes, not by memory fsm freed before (the trace as read).
        let out = std::thread::scope(|s| {
            s.spawn(|| -> Result<Outcome, String> {
                let p = peers::build_measured(name, arena)?;
                let footprint = p.footprint;
                if footprint.read().is_none() {
                    return Err(format!("{name}'s footprint cannot be read in this process"));
                }
                let mut probe = || footprint.read().unwrap_or(0);
                let track = Options {
                    track: true,
                    series_points: 200,
                    touch: true,
                    ..Options::default()
                };
                replay_global(&*p.alloc, prog, track, Some(&mut probe)).map_err(|e| e.to_string())
            })
            .join()
            .map_err(|_| format!("{name}: the replay thread panicked"))?
        })?;
        row.frag = Some(Fragmentation::of_peer(&out, 0));
        row.refused = out.refused;
        row.first_refusal = out.first_refusal;
        let p = peers::build_measured(name, arena)?;
        row.ns = Some(timed(repeats, || {
            replay_global(&*p.alloc, prog, Options::default(), None).map_err(|e| e.to_string())
        })?);
        Ok(())
    })();
    row.error = result.err();
    row
}

/// Sorts rows by #4 (lowest first), then time per event; failed rows and rows without a #4
/// last.
fn rank(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        let key = |r: &Row| (r.error.is_some(), frag4(r).is_none());
        key(a)
            .cmp(&key(b))
            .then(frag4(a).unwrap_or(0.0).total_cmp(&frag4(b).unwrap_or(0.0)))
            .then(
                a.ns.unwrap_or(f64::MAX)
                    .total_cmp(&b.ns.unwrap_or(f64::MAX)),
            )
    });
}

/// `frag4` of a row, for ranking (rows without one last).
fn frag4(r: &Row) -> Option<f64> {
    r.frag.as_ref().and_then(|f| f.frag4)
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{:.1}%", x * 100.0))
}

/// Bytes for a table: `512 B`, `64.0 KiB`, `1.5 MiB`.
fn bytes(b: usize) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The ranked table.
fn table(rows: &[Row]) -> String {
    let mut cells = vec![
        [
            "rank",
            "allocator",
            "#4",
            "#3",
            "internal",
            "external",
            "peak footprint",
            "ns/event",
            "refused",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (i, r) in rows.iter().enumerate() {
        let f = r.frag.as_ref();
        cells.push(vec![
            (i + 1).to_string(),
            format!("{}{}", r.name, if r.peer { " (peer)" } else { "" }),
            r.error
                .as_ref()
                .map_or_else(|| pct(f.and_then(|f| f.frag4)), |_| "failed".into()),
            pct(f.and_then(|f| f.frag3)),
            pct(f.and_then(|f| f.internal)),
            pct(f.and_then(|f| f.external)),
            f.map_or_else(|| "n/a".into(), |f| bytes(f.peak_footprint)),
            r.ns.map_or_else(|| "n/a".into(), |n| format!("{n:.0}")),
            r.refused.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..cells[0].len())
        .map(|i| cells.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &cells {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 1 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// What a chart panel shows of a row.
type Measure = dyn Fn(&Row) -> Option<f64>;

/// The chart: #4 and time per event side by side, one row per allocator in rank order.
fn chart(path: &std::path::Path, title: &str, rows: &[Row]) -> Result<(), String> {
    let n = rows.len().max(1);
    let height = 90 + 26 * n as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (band, body) = root.split_vertically(34);
    band.draw(&Text::new(
        title.to_string(),
        (12, 8),
        ("sans-serif", 18).into_font(),
    ))
    .map_err(|e| err(&e))?;
    let (left, right) = body.split_horizontally(640);
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    let pct4 = |r: &Row| frag4(r).map(|v| v * 100.0);
    let ns = |r: &Row| r.ns;
    let panels: [(_, _, &Measure, _); 2] = [
        (&left, "fragmentation #4, % (lower is better)", &pct4, true),
        (&right, "ns per event (lower is better)", &ns, false),
    ];
    for (area, desc, value, labels) in panels {
        let x_max = rows.iter().filter_map(value).fold(0.0, f64::max).max(0.001) * 1.2;
        let mut c = ChartBuilder::on(area)
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(if labels { 240 } else { 8 })
            .build_cartesian_2d(0f64..x_max, 0f64..n as f64)
            .map_err(|e| err(&e))?;
        c.configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(5)
            .x_desc(desc)
            .draw()
            .map_err(|e| err(&e))?;
        for (i, r) in rows.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            if labels {
                // The row's name, right-aligned against the axis.
                let (px, py) = c.backend_coord(&(0.0, y + 0.5));
                let style = TextStyle::from(("sans-serif", 14).into_font()).pos(
                    plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Right,
                        plotters::style::text_anchor::VPos::Center,
                    ),
                );
                area.draw(&Text::new(names[i].clone(), (px - 8, py), style))
                    .map_err(|e| err(&e))?;
            }
            let colour = if r.peer {
                RGBColor(220, 100, 20)
            } else {
                RGBColor(31, 90, 180)
            };
            let v = value(r).unwrap_or(0.0).max(0.0);
            c.draw_series(std::iter::once(Rectangle::new(
                [(0.0, y + 0.2), (v, y + 0.8)],
                colour.filled(),
            )))
            .map_err(|e| err(&e))?;
            let label = value(r).map_or_else(|| " n/a".to_string(), |v| format!(" {v:.1}"));
            c.draw_series(std::iter::once(Text::new(
                label,
                (v, y + 0.68),
                ("sans-serif", 12),
            )))
            .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// What the table's columns mean, under it.
const NOTES: &str = "
#4: peak footprint / peak live bytes - 1. #3: footprint / live bytes - 1 at the footprint's peak
    = internal (headers, rounding of live blocks) + external (free blocks, caches, metadata).
Peers: the footprint is read in process (the resident pages of the peer's own arena; system:
    glibc's count, mallinfo2, of an arena of its own: the replay runs on a thread of its own);
    no internal/external split.
";

/// Runs `fsm compare`.
pub fn run(args: CompareArgs) -> ExitCode {
    let prog = match crate::replay::load(&args.trace) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let policies: Vec<String> = if args.policies.is_empty() {
        registry::variants().iter().map(|s| s.to_string()).collect()
    } else {
        args.policies.clone()
    };
    for p in &policies {
        if let Err(e) = registry::lookup(p) {
            return fail(e);
        }
    }
    let peer_names: Vec<String> = match args.peers.as_slice() {
        [] => peers::MEASURED.iter().map(|s| s.to_string()).collect(),
        [none] if none == "none" => Vec::new(),
        given => given.to_vec(),
    };
    for p in &peer_names {
        if !peers::MEASURED.contains(&p.as_str()) {
            return fail(format_args!(
                "'{p}' is not a peer whose footprint fsm can read in process; these are: {} \
                 (the matrix, `cargo xtask bench`, measures the others)",
                peers::MEASURED.join(", ")
            ));
        }
    }
    let (_, peak) = prog.live_profile();
    let cfg = Config::for_peak(peak);
    eprintln!(
        "fsm compare: {} events, peak live {} B: {} policies and {} peers, {} timed runs each...",
        prog.steps.len(),
        peak,
        policies.len(),
        peer_names.len(),
        args.repeats
    );
    let mut rows: Vec<Row> = policies
        .iter()
        .map(|p| policy_row(p, &prog, &cfg, args.repeats))
        .collect();
    rows.extend(
        peer_names
            .iter()
            .map(|p| peer_row(p, &prog, cfg.capacity, args.repeats)),
    );
    rank(&mut rows);
    let title = format!(
        "fsm compare {}: {} events, ranked by fragmentation #4 (blue: policies, orange: peers)",
        args.trace.display(),
        prog.steps.len()
    );
    let drawn = chart(&args.svg, &title, &rows);
    let mut text = String::new();
    if args.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let f = r.frag.as_ref();
                serde_json::json!({
                    "rank": i + 1, "allocator": r.name, "peer": r.peer,
                    "frag4": f.and_then(|f| f.frag4), "frag3": f.and_then(|f| f.frag3),
                    "internal": f.and_then(|f| f.internal), "external": f.and_then(|f| f.external),
                    "peak_footprint": f.map(|f| f.peak_footprint), "peak_live": f.map(|f| f.peak_live),
                    "ns_per_event": r.ns, "refused": r.refused, "first_refusal": r.first_refusal,
                    "error": r.error,
                })
            })
            .collect();
        text.push_str(&serde_json::Value::Array(v).to_string());
        text.push('\n');
    } else {
        text.push_str(&format!(
            "fsm compare {}: {} events, peak live {peak} B; ranked by fragmentation #4 (lower is \
             better), then time per event\n\n",
            args.trace.display(),
            prog.steps.len()
        ));
        text.push_str(&table(&rows));
        text.push_str(NOTES);
        for r in &rows {
            if let Some(e) = &r.error {
                text.push_str(&format!("\n{}: failed: {e}", r.name));
            } else if let Some(why) = &r.first_refusal {
                text.push_str(&format!(
                    "\n{}: {} request(s) refused (NULL, the replay went on); the first at {why}",
                    r.name, r.refused
                ));
            }
        }
        if rows.iter().any(|r| r.error.is_some() || r.refused > 0) {
            text.push('\n');
        }
    }
    if !crate::replay::print(&text) {
        return ExitCode::FAILURE;
    }
    match drawn {
        Ok(()) => {
            eprintln!("fsm compare: chart in {}", args.svg.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use workloads::Trace;

    fn prog(text: &str) -> Program {
        Program::compile(&Trace::read_text(text.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn policies_and_peers_are_measured_and_ranked() {
        // Sizes from 16 B to 8 KiB, half freed: the fits keep the holes, the buddy system
        // rounds every block to a power of two.
        let mut t = String::new();
        for i in 0..400 {
            t.push_str(&format!("a {i} {}\n", 16 + (i * 37) % 8000));
        }
        for i in (0..400).step_by(2) {
            t.push_str(&format!("f {i}\n"));
        }
        let p = prog(&t);
        let cfg = Config::for_peak(p.live_profile().1);
        let mut rows = vec![
            policy_row("buddy", &p, &cfg, 1),
            policy_row("best-fit", &p, &cfg, 1),
            peer_row("talc", &p, cfg.capacity, 1),
            peer_row("system", &p, cfg.capacity, 1),
        ];
        for r in &rows {
            assert_eq!(r.error, None, "{}", r.name);
            assert!(r.ns.is_some_and(|n| n > 0.0), "{}", r.name);
            assert!(frag4(r).is_some(), "{}", r.name);
        }
        rank(&mut rows);
        let order: Vec<f64> = rows.iter().filter_map(frag4).collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
        let best_fit = rows.iter().find(|r| r.name == "best-fit").unwrap();
        let buddy = rows.iter().find(|r| r.name == "buddy").unwrap();
        assert!(
            frag4(best_fit) < frag4(buddy),
            "best fit loses less than buddy here"
        );
        let text = table(&rows);
        assert!(text.starts_with("rank  allocator"), "{text}");
        assert_eq!(text.lines().count(), 5);
        assert!(text.contains("talc (peer)"), "{text}");
    }

    #[test]
    fn a_refusal_is_explained_in_the_row() {
        // More than the 64 GiB a policy may reserve: refused, NULL, the replay goes on.
        let p = prog("a 1 100\na 2 1000000000000\nf 1\n");
        let r = policy_row("best-fit", &p, &Config::default(), 1);
        assert_eq!(r.refused, 1);
        let why = r.first_refusal.unwrap();
        assert!(
            why.starts_with("line 2: allocation of 1000000000000 bytes aligned to 16 refused: the largest free block is"),
            "{why}"
        );
    }
}
