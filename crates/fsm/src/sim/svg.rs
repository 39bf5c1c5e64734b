//! `--svg FILE`: the heap after every op, drawn as one horizontal strip per op.
//!
//! ```text
//!              1000      1020      1040      1060      1080      1100   <- address axis
//!   ptr[0] = Alloc(3)  |hh|live|pad|free ..................................|
//!   Free(ptr[0])       |free    |free .....................................|
//!   ...                 one row per op, top to bottom in op order
//! ```
//!
//! Engines describe their heap as a [`Snapshot`]: segments of a [`Kind`] laid along the address
//! axis. Colours: live blocks blue, free chunks green, headers orange, padding grey, cached
//! (non-coalescing caches) purple, the top chunk yellow, the manager's metadata dark grey.

use plotters::coord::Shift;
use plotters::prelude::*;

/// What a stretch of the heap is, as drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A caller's bytes.
    Live,
    /// A free chunk.
    Free,
    /// A block header (or any boundary tag).
    Header,
    /// Rounding or alignment bytes no caller asked for.
    Padding,
    /// Free, but held by a cache that does not coalesce.
    Cached,
    /// The top chunk (wilderness).
    Top,
    /// The manager's own metadata.
    Metadata,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Live,
        Kind::Free,
        Kind::Header,
        Kind::Padding,
        Kind::Cached,
        Kind::Top,
        Kind::Metadata,
    ];

    fn colour(self) -> RGBColor {
        match self {
            Kind::Live => RGBColor(66, 133, 244),
            Kind::Free => RGBColor(140, 210, 140),
            Kind::Header => RGBColor(245, 150, 40),
            Kind::Padding => RGBColor(185, 185, 185),
            Kind::Cached => RGBColor(170, 120, 210),
            Kind::Top => RGBColor(250, 225, 110),
            Kind::Metadata => RGBColor(90, 90, 90),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Live => "live",
            Kind::Free => "free",
            Kind::Header => "header",
            Kind::Padding => "padding",
            Kind::Cached => "cached",
            Kind::Top => "top",
            Kind::Metadata => "metadata",
        }
    }
}

/// One stretch of the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    /// First address.
    pub addr: i128,
    /// Length in bytes.
    pub len: i128,
    /// What it is.
    pub kind: Kind,
}

/// The heap at one moment: its extent and its segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// First address of the heap.
    pub start: i128,
    /// Length of the heap.
    pub len: i128,
    /// The segments, in any order.
    pub segs: Vec<Seg>,
    /// Named positions inside the heap (a next-fit rover), drawn as red marks.
    pub marks: Vec<(String, i128)>,
}

const ROW_H: u32 = 26;
const UNUSED: RGBColor = RGBColor(236, 236, 236);
const MARK: RGBColor = RGBColor(220, 30, 30);
const LABEL_W: u32 = 230;
const TOP: u32 = 70;
const BOTTOM: u32 = 50;
const WIDTH: u32 = 1100;
const RIGHT: u32 = 20;
/// Narrowest a block may be drawn, in pixels, before the axis is compressed.
const MIN_PX: f64 = 3.0;
/// Narrowest a block gets a border, in pixels: below, borders would cover it (a span of 512
/// tiny slots drawn as a black bar).
const BORDER_PX: i32 = 5;

/// Draws `rows` (a label and a snapshot per op) into the SVG file `path`.
pub fn render(path: &str, title: &str, rows: &[(String, Snapshot)]) -> Result<(), String> {
    let n = rows.len().max(1) as u32;
    let height = TOP + BOTTOM + 14 + ROW_H * n;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    draw(&root, title, rows).map_err(|e| format!("cannot draw {path}: {e}"))?;
    root.present()
        .map_err(|e| format!("cannot write {path}: {e}"))?;
    Ok(())
}

/// Adjacent segments of one kind merged (free runs, runs of cached slots), live blocks kept
/// apart; sorted by address, empty ones dropped.
fn merged(segs: &[Seg]) -> Vec<Seg> {
    let mut v: Vec<Seg> = segs.iter().copied().filter(|s| s.len > 0).collect();
    v.sort_by_key(|s| s.addr);
    let mut out: Vec<Seg> = Vec::with_capacity(v.len());
    for s in v {
        match out.last_mut() {
            Some(l) if l.kind == s.kind && l.kind != Kind::Live && l.addr + l.len == s.addr => {
                l.len += s.len;
            }
            _ => out.push(s),
        }
    }
    out
}

/// The address axis: linear where every block is at least [`MIN_PX`] wide; otherwise each
/// stretch between two block boundaries (of any row) is drawn as wide as the square root of its
/// length, so that a 32-byte chunk beside a 100 KiB top chunk, or one 16-byte object in an
/// 8 KiB span, stays visible. Either way the map is monotonic, the same for every row.
struct Axis {
    /// Addresses where the stretches meet, ascending, and the pixel offset of each.
    stops: Vec<(i128, f64)>,
    compressed: bool,
}

impl Axis {
    fn new(rows: &[Vec<Seg>], starts: &[(i128, i128)], lo: i128, hi: i128, px: f64) -> Self {
        let mut at: Vec<i128> = vec![lo, hi];
        for segs in rows {
            for s in segs {
                at.push(s.addr);
                at.push(s.addr + s.len);
            }
        }
        for &(start, len) in starts {
            at.push(start);
            at.push(start + len);
        }
        at.retain(|&a| a >= lo && a <= hi);
        at.sort_unstable();
        at.dedup();
        let span = (hi - lo).max(1) as f64;
        let narrowest = rows
            .iter()
            .flatten()
            .map(|s| s.len.min(hi - s.addr.max(lo)))
            .filter(|&l| l > 0)
            .min()
            .unwrap_or(1) as f64;
        let compressed = narrowest / span * px < MIN_PX;
        let weight = |len: i128| {
            if compressed {
                (len as f64).sqrt()
            } else {
                len as f64
            }
        };
        let total: f64 = at
            .windows(2)
            .map(|w| weight(w[1] - w[0]))
            .sum::<f64>()
            .max(1e-9);
        let mut x = 0.0;
        let mut stops = vec![(at[0], 0.0)];
        for w in at.windows(2) {
            x += weight(w[1] - w[0]) / total * px;
            stops.push((w[1], x));
        }
        Axis { stops, compressed }
    }

    /// The pixel offset of address `a` (clamped to the axis).
    fn x(&self, a: i128) -> f64 {
        let i = self.stops.partition_point(|&(s, _)| s <= a);
        if i == 0 {
            return 0.0;
        }
        if i == self.stops.len() {
            return self.stops[i - 1].1;
        }
        let (a0, x0) = self.stops[i - 1];
        let (a1, x1) = self.stops[i];
        x0 + (x1 - x0) * (a - a0) as f64 / (a1 - a0).max(1) as f64
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    rows: &[(String, Snapshot)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let lo = rows.iter().map(|(_, s)| s.start).min().unwrap_or(0);
    // The axis ends where the last drawn block ends: a large region the policy has barely
    // touched would otherwise squeeze every block into a sliver at the left.
    let hi = rows
        .iter()
        .map(|(_, s)| {
            s.segs
                .iter()
                .map(|g| g.addr + g.len)
                .max()
                .unwrap_or(s.start + s.len)
        })
        .max()
        .unwrap_or(lo + 1)
        .max(lo + 1);
    let segs: Vec<Vec<Seg>> = rows.iter().map(|(_, s)| merged(&s.segs)).collect();
    let starts: Vec<(i128, i128)> = rows.iter().map(|(_, s)| (s.start, s.len)).collect();
    let left = LABEL_W as i32;
    let px = f64::from(WIDTH - LABEL_W - RIGHT);
    let axis = Axis::new(&segs, &starts, lo, hi, px);
    let xpix = |a: i128| left + axis.x(a.clamp(lo, hi)).round() as i32;

    root.draw(&Text::new(
        title.to_string(),
        (left, 6),
        ("sans-serif", 17).into_font(),
    ))?;
    let label_font = ("monospace", 13).into_font();
    let small = ("sans-serif", 11).into_font();
    for (i, ((label, snap), segs)) in rows.iter().zip(&segs).enumerate() {
        let y_top = TOP as i32 + i as i32 * ROW_H as i32 + 3;
        let y_bot = y_top + ROW_H as i32 - 6;
        // The heap's whole extent, faint: bytes not yet taken from the memory source.
        root.draw(&Rectangle::new(
            [
                (xpix(snap.start), y_top),
                (xpix(snap.start + snap.len), y_bot),
            ],
            UNUSED.filled(),
        ))?;
        for s in segs {
            let (a, b) = (xpix(s.addr), xpix(s.addr + s.len).max(xpix(s.addr) + 1));
            root.draw(&Rectangle::new(
                [(a, y_top), (b, y_bot)],
                s.kind.colour().filled(),
            ))?;
            if b - a >= BORDER_PX {
                root.draw(&Rectangle::new(
                    [(a, y_top), (b, y_bot)],
                    BLACK.stroke_width(1),
                ))?;
            }
            let text = format!("{}", s.len);
            if matches!(s.kind, Kind::Live | Kind::Free) && b - a >= 8 * text.len() as i32 + 6 {
                let colour = if s.kind == Kind::Live { WHITE } else { BLACK };
                let x = (a + b) / 2 - 4 * text.len() as i32;
                root.draw(&Text::new(
                    text,
                    (x, (y_top + y_bot) / 2 - 6),
                    small.clone().color(&colour),
                ))?;
            }
        }
        for (_, at) in &snap.marks {
            let x = xpix(*at);
            root.draw(&PathElement::new(
                vec![(x, y_top - 2), (x, y_bot + 2)],
                MARK.stroke_width(3),
            ))?;
            root.draw(&Polygon::new(
                vec![(x - 5, y_top - 4), (x + 5, y_top - 4), (x, y_top + 3)],
                MARK.filled(),
            ))?;
        }
        root.draw(&Text::new(
            label.clone(),
            (8, (y_top + y_bot) / 2 - 7),
            label_font.clone().color(&BLACK),
        ))?;
    }

    // The address axis under the rows: a tick at the block boundaries, at least 80 px apart.
    let y_axis = TOP as i32 + rows.len().max(1) as i32 * ROW_H as i32 + 2;
    root.draw(&PathElement::new(
        vec![(left, y_axis), (left + px as i32, y_axis)],
        BLACK.stroke_width(1),
    ))?;
    let mut last: Option<i32> = None;
    let ticks: Vec<i128> = if axis.compressed {
        axis.stops.iter().map(|&(a, _)| a).collect()
    } else {
        (0..=10).map(|k| lo + (hi - lo) * k / 10).collect()
    };
    for a in ticks {
        let x = xpix(a);
        if last.is_some_and(|l| x - l < 80) {
            continue;
        }
        last = Some(x);
        root.draw(&PathElement::new(
            vec![(x, y_axis), (x, y_axis + 5)],
            BLACK.stroke_width(1),
        ))?;
        let t = a.to_string();
        root.draw(&Text::new(
            t.clone(),
            (x - 3 * t.len() as i32, y_axis + 8),
            ("sans-serif", 11).into_font(),
        ))?;
    }
    root.draw(&Text::new(
        "address",
        (left + px as i32 / 2 - 24, y_axis + 26),
        ("sans-serif", 13).into_font(),
    ))?;
    if axis.compressed {
        root.draw(&Text::new(
            "(not to scale: each stretch between block boundaries is as wide as the square root of its length)",
            (left, y_axis + 40),
            ("sans-serif", 11).into_font(),
        ))?;
    }

    // The legend, under the title.
    let mut x = LABEL_W as i32;
    let y = 32;
    for k in Kind::ALL {
        if !rows
            .iter()
            .any(|(_, s)| s.segs.iter().any(|g| g.kind == k && g.len > 0))
        {
            continue;
        }
        root.draw(&Rectangle::new(
            [(x, y), (x + 16, y + 12)],
            k.colour().filled(),
        ))?;
        root.draw(&Rectangle::new(
            [(x, y), (x + 16, y + 12)],
            BLACK.stroke_width(1),
        ))?;
        root.draw(&Text::new(
            k.name(),
            (x + 22, y),
            ("sans-serif", 13).into_font(),
        ))?;
        x += 90;
    }
    let mut names: Vec<&str> = rows
        .iter()
        .flat_map(|(_, s)| s.marks.iter().map(|(n, _)| n.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        root.draw(&PathElement::new(
            vec![(x + 8, y - 2), (x + 8, y + 14)],
            MARK.stroke_width(3),
        ))?;
        root.draw(&Text::new(
            name.to_string(),
            (x + 22, y),
            ("sans-serif", 13).into_font(),
        ))?;
        x += 90;
    }
    if rows
        .iter()
        .any(|(_, s)| s.segs.iter().map(|g| g.len.max(0)).sum::<i128>() < s.len)
    {
        root.draw(&Rectangle::new([(x, y), (x + 16, y + 12)], UNUSED.filled()))?;
        root.draw(&Text::new(
            "not yet in use",
            (x + 22, y),
            ("sans-serif", 13).into_font(),
        ))?;
    }
    Ok(())
}
