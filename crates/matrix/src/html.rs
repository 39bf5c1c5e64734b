//! `index.html`: every table and chart of a run on one page that opens from the file system.
//!
//! ```text
//!   header (machine, date, settings) + contents
//!   #fragmentation   #4 tables (split by columns to fit a screen)
//!   #footprint       a figure per workload: a panel per family, log axis, live bytes dashed
//!   #throughput      tables, then a bar chart per workload
//!   #threaded        tables and charts of the multi-thread workloads (when any ran)
//!   #split           #3 with its internal / external split (folded)
//!   extra sections   [`Section`]s other modules add (see [`extra_sections`])
//!   #problems        failed or skipped cells
//! ```
//!
//! Everything is inline: the charts are SVG elements, the style is one `<style>` block, no
//! font, script or image is loaded from anywhere. One short inline script at the end records on
//! `<body>` how many charts and tables the browser laid out with a size and how wide the page
//! is: the test that renders the page in headless Chromium reads these (`tests/html.rs`); the
//! page reads the same without it.

use std::fmt::Write as _;

use crate::charts;
use crate::report::{Report, Table};

/// A section of the page another module provides: an anchor, a heading, and its HTML (build
/// tables with [`table`] so they look like the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The anchor (`programs`), also its entry in the contents.
    pub id: String,
    /// The heading.
    pub title: String,
    /// The body: HTML, already escaped (see [`escape`]).
    pub html: String,
}

/// The sections other modules add to the page, in order. A module with its own results (the
/// programs table) adds one line here: `out.push(programs::section(r))`, its function building
/// a [`Section`] from the report.
pub fn extra_sections(r: &Report) -> Vec<Section> {
    let mut out = Vec::new();
    out.extend(crate::programs::section(r));
    out
}

/// `text` with `&`, `<`, `>` and `"` escaped.
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            c => s.push(c),
        }
    }
    s
}

/// Columns per part of an HTML table (beside the naming columns): a part fits a laptop screen.
const HTML_COLUMNS: usize = 7;

/// `t` as HTML tables: split into parts of at most [`HTML_COLUMNS`] value columns, naming
/// columns repeated, values right-aligned.
pub fn table(t: &Table) -> String {
    let mut out = String::new();
    let Some(head) = t.rows.first() else {
        return out;
    };
    let values: Vec<usize> = (t.left..head.len()).collect();
    let chunks: Vec<&[usize]> = if values.is_empty() {
        vec![&[]]
    } else {
        values.chunks(HTML_COLUMNS).collect()
    };
    for chunk in chunks {
        out.push_str("<div class=\"wide\"><table>\n");
        for (k, row) in t.rows.iter().enumerate() {
            let tag = if k == 0 { "th" } else { "td" };
            out.push_str("<tr>");
            for i in (0..t.left).chain(chunk.iter().copied()) {
                let class = if i < t.left { "name" } else { "num" };
                let _ = write!(out, "<{tag} class=\"{class}\">{}</{tag}>", escape(&row[i]));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table></div>\n");
    }
    out
}

const STYLE: &str = "
body { font-family: sans-serif; margin: 0 auto; max-width: 1160px; padding: 0 16px 40px;
       color: #222; line-height: 1.4; }
h1 { margin-top: 24px; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 36px; }
nav a { margin-right: 14px; }
.meta { color: #555; font-size: 14px; }
.wide { overflow-x: auto; margin: 10px 0 18px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; white-space: nowrap; }
th { background: #f0f0f0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.name { text-align: left; font-family: monospace; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 18px 0; }
figure svg { max-width: 100%; height: auto; display: block; }
.bars { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 8px; }
details summary { cursor: pointer; font-weight: bold; margin: 8px 0; }
p.note { color: #444; font-size: 14px; max-width: 900px; }
";

/// An SVG chart as a figure; the SVG's size attributes give way to the page's width.
fn figure(svg: &str, caption: &str) -> String {
    // Drop the XML declaration if any: the SVG is an element of the page.
    let body = svg.trim_start_matches(|c| c != '<');
    let body = if body.starts_with("<?xml") {
        body.split_once("?>")
            .map_or(body, |(_, rest)| rest.trim_start())
    } else {
        body
    };
    format!(
        "<figure>{body}<figcaption class=\"meta\">{}</figcaption></figure>\n",
        escape(caption)
    )
}

/// The whole page.
pub fn page(r: &Report, extra: &[Section]) -> Result<String, String> {
    let mut body = String::new();
    let mut contents: Vec<(String, String)> = Vec::new();
    let mut section = |id: &str, title: &str, html: String, body: &mut String| {
        contents.push((id.to_string(), title.to_string()));
        let _ = write!(
            body,
            "<section id=\"{}\"><h2>{}</h2>\n{html}</section>\n",
            escape(id),
            escape(title)
        );
    };

    let mut s = String::from(
        "<p class=\"note\">Johnstone &amp; Wilson's #4: peak footprint / peak live bytes - 1. \
         Lower is better. Policies: bytes taken from their memory source; peers: growth of \
         resident memory with every page of every block touched (docs/matrix.md).</p>\n",
    );
    s.push_str(&table(&r.frag_grid()));
    section("fragmentation", "Fragmentation #4", s, &mut body);

    let mut s = String::from(
        "<p class=\"note\">Footprint after each event, on a log axis so that small heaps and \
         large ones read alike: one panel per family of policies (the glibc model beside glibc \
         itself), the peers in the last. The dashed black line in each panel is the live bytes \
         the program asked for: the gap above it is the fragmentation.</p>\n",
    );
    for w in &r.workloads {
        if let Some(svg) = charts::footprint(r, w)? {
            s.push_str(&figure(&svg, &format!("Footprint over time on {w}")));
        }
    }
    section("footprint", "Footprint over time", s, &mut body);

    let mut s = String::from(
        "<p class=\"note\">Million trace events per second, median of the timed runs, ratio to \
         <code>system</code> in brackets. Higher is better. Single-threaded replay; timings on \
         a shared machine are noisy: compare within a column.</p>\n",
    );
    s.push_str(&table(&r.speed_grid()));
    s.push_str("<div class=\"bars\">\n");
    for w in &r.workloads {
        s.push_str(&figure(
            &charts::throughput(r, w)?,
            &format!("Throughput on {w}"),
        ));
    }
    s.push_str("</div>\n");
    section("throughput", "Throughput", s, &mut body);

    if let Some(t) = r.threaded_speed_grid() {
        let mut s = String::from(
            "<p class=\"note\">Workloads with more than one thread, one OS thread per trace \
             thread, through the allocators that can be shared between threads. Million events \
             per second (ratio to threaded <code>system</code>). The floor is the same replay \
             through a bump allocator: what the replay itself costs on this machine.</p>\n",
        );
        s.push_str(&table(&t));
        for w in &r.workloads {
            if let Some(svg) = charts::threaded(r, w)? {
                s.push_str(&figure(&svg, &format!("Threaded throughput on {w}")));
            }
        }
        if let Some(t) = r.threaded_scaling_grid() {
            s.push_str("<h3>Threaded / single-threaded throughput of the same row</h3>\n");
            s.push_str(&table(&t));
        }
        if let Some(t) = r.threaded_floor_grid() {
            s.push_str("<h3>Nanoseconds per event, and (in brackets) the replay's floor</h3>\n");
            s.push_str(&table(&t));
        }
        section("threaded", "Threaded throughput", s, &mut body);
    }

    let s = format!(
        "<details><summary>#3 (footprint / live at the footprint's peak - 1), split into \
         internal and external, every cell</summary>\n{}</details>\n",
        table(&r.split_grid())
    );
    section("split", "Fragmentation #3 and its split", s, &mut body);

    for x in extra {
        section(&x.id, &x.title, x.html.clone(), &mut body);
    }

    let problems = r.problems();
    if !problems.is_empty() {
        let mut s = String::from("<ul>\n");
        for p in &problems {
            let _ = writeln!(s, "<li>{}</li>", escape(p));
        }
        s.push_str("</ul>\n");
        section("problems", "Failed or skipped", s, &mut body);
    }

    let nav: String = contents
        .iter()
        .map(|(id, title)| format!("<a href=\"#{}\">{}</a>", escape(id), escape(title)))
        .collect();
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Matrix results</title>\n<style>{STYLE}</style></head>\n<body>\n\
         <h1>Matrix results</h1>\n<p class=\"meta\">{}<br>{}<br>{}</p>\n<nav>{nav}</nav>\n\
         {body}{PROBE}</body></html>\n",
        escape(&r.machine),
        escape(&r.date),
        escape(&r.settings),
    ))
}

/// Records what the browser laid out (see the module docs): charts and tables with a size,
/// and the page's width.
const PROBE: &str = "<script>
(function () {
  var shown = function (sel, w, h) {
    var n = 0;
    document.querySelectorAll(sel).forEach(function (e) {
      var r = e.getBoundingClientRect();
      if (r.width > w && r.height > h) n++;
    });
    return n;
  };
  var b = document.body;
  b.setAttribute('data-charts', document.querySelectorAll('figure svg').length);
  b.setAttribute('data-charts-shown', shown('figure svg', 200, 100));
  b.setAttribute('data-tables-shown', shown('table', 100, 40));
  b.setAttribute('data-page-width', document.documentElement.scrollWidth);
})();
</script>
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_split_into_parts_a_screen_wide() {
        let mut rows = vec![vec!["allocator".to_string()]];
        rows[0].extend((0..16).map(|i| format!("w{i}")));
        rows.push(vec!["a<b".to_string()]);
        rows[1].extend((0..16).map(|i| format!("{i}%")));
        let html = table(&Table { rows, left: 1 });
        assert_eq!(html.matches("<table>").count(), 3, "16 columns: 7 + 7 + 2");
        assert_eq!(
            html.matches("a&lt;b").count(),
            3,
            "the name repeats, escaped"
        );
    }
}
