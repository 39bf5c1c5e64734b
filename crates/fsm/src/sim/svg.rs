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

/// Draws `rows` (a label and a snapshot per op) into the SVG file `path`.
pub fn render(path: &str, title: &str, rows: &[(String, Snapshot)]) -> Result<(), String> {
    let n = rows.len().max(1) as u32;
    let height = TOP + BOTTOM + ROW_H * n;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    draw(&root, title, rows).map_err(|e| format!("cannot draw {path}: {e}"))?;
    root.present()
        .map_err(|e| format!("cannot write {path}: {e}"))?;
    Ok(())
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
    let n = rows.len().max(1);
    let (x0, x1) = (lo as f64, hi as f64);

    let (band, body) = root.split_vertically(TOP - 10);
    band.draw(&Text::new(
        title.to_string(),
        (LABEL_W as i32, 6),
        ("sans-serif", 17).into_font(),
    ))?;
    let mut chart = ChartBuilder::on(&body)
        .margin_top(4)
        .margin_right(20)
        .x_label_area_size(BOTTOM - 10)
        .y_label_area_size(LABEL_W)
        .build_cartesian_2d(x0..x1, 0f64..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_labels(11)
        .x_label_formatter(&|x| format!("{}", x.round() as i128))
        .x_desc("address")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    let label_font = ("monospace", 13).into_font();
    let small = ("sans-serif", 11).into_font();
    for (i, (label, snap)) in rows.iter().enumerate() {
        // Row 0 at the top.
        let y_top = (n - i) as f64 - 0.12;
        let y_bot = (n - i - 1) as f64 + 0.12;
        // The heap's whole extent, faint: bytes not yet taken from the memory source.
        chart.draw_series(std::iter::once(Rectangle::new(
            [
                (snap.start as f64, y_top),
                ((snap.start + snap.len) as f64, y_bot),
            ],
            UNUSED.filled(),
        )))?;
        let mut segs = snap.segs.clone();
        segs.sort_by_key(|s| s.addr);
        for s in segs.iter().filter(|s| s.len > 0) {
            let (a, b) = (s.addr as f64, (s.addr + s.len) as f64);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(a, y_top), (b, y_bot)],
                s.kind.colour().filled(),
            )))?;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(a, y_top), (b, y_bot)],
                BLACK.stroke_width(1),
            )))?;
            let (px_a, py) = chart.backend_coord(&(a, (y_top + y_bot) / 2.0));
            let (px_b, _) = chart.backend_coord(&(b, y_top));
            let text = format!("{}", s.len);
            if matches!(s.kind, Kind::Live | Kind::Free) && px_b - px_a >= 8 * text.len() as i32 + 6
            {
                let colour = if s.kind == Kind::Live { WHITE } else { BLACK };
                let x = (px_a + px_b) / 2 - 4 * text.len() as i32;
                root.draw(&Text::new(text, (x, py - 6), small.clone().color(&colour)))?;
            }
        }
        for (_, at) in &snap.marks {
            let (px, py_top) = chart.backend_coord(&(*at as f64, y_top + 0.1));
            let (_, py_bot) = chart.backend_coord(&(*at as f64, y_bot - 0.1));
            root.draw(&PathElement::new(
                vec![(px, py_top), (px, py_bot)],
                MARK.stroke_width(3),
            ))?;
            root.draw(&Polygon::new(
                vec![(px - 5, py_top - 2), (px + 5, py_top - 2), (px, py_top + 5)],
                MARK.filled(),
            ))?;
        }
        let (_, py) = chart.backend_coord(&(x0, (y_top + y_bot) / 2.0));
        root.draw(&Text::new(
            label.clone(),
            (8, py - 7),
            label_font.clone().color(&BLACK),
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
