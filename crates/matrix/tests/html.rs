//! The HTML report as a reader sees it: a small matrix run, then `index.html` rendered by
//! headless Chromium from the file system. The page's own probe (module `html`) records on
//! `<body>` how many charts and tables the browser laid out with a size and how wide the page
//! is; the test reads them from `--dump-dom`, checks nothing is loaded from outside, and takes
//! a screenshot.
//!
//! Chromium is Debian's `chromium` package (`.ci/run` installs it). Without it the test says so
//! and passes, except under `CI=true`, where a missing browser fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser: `$CHROMIUM`, or the first of the usual names on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn headless(browser: &Path, profile: &Path) -> Command {
    let mut c = Command::new(browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,2000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// The value of `data-NAME` on `<body>` in the dumped DOM.
fn attr(dom: &str, name: &str) -> usize {
    let key = format!("data-{name}=\"");
    let at = dom
        .find(&key)
        .unwrap_or_else(|| panic!("no {key} in the rendered page: the probe did not run"));
    let rest = &dom[at + key.len()..];
    rest[..rest.find('"').unwrap()]
        .parse()
        .unwrap_or_else(|e| panic!("data-{name}: {e}"))
}

#[test]
fn the_report_renders_in_a_browser() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true and no chromium: install Debian's `chromium` package (.ci/run does)"
        );
        eprintln!("skipped: no chromium on PATH (apt-get install chromium); CI fails here");
        return;
    };
    let dir = std::env::temp_dir().join(format!("matrix-html-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("report");
    // Two workloads (one of them threaded), policies of three families and two peers.
    let st = Command::new(env!("CARGO_BIN_EXE_matrix"))
        .args([
            "run",
            "--only",
            "best-fit,buddy,ptmalloc2,system,talc",
            "--workloads",
            "uniform,larson",
            "--ops",
            "3000",
            "--repeats",
            "1",
            "--programs",
            "none",
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("the matrix runs");
    assert!(st.success(), "matrix run failed: {st}");
    let page = out.join("index.html");
    let html = std::fs::read_to_string(&page).expect("index.html is written");

    // Nothing from outside: no stylesheet, script, image or font is fetched.
    for needle in ["<link", "src=", "@import", "url(", "href=\"http"] {
        assert!(!html.contains(needle), "index.html contains {needle:?}");
    }
    let figures = html.matches("<figure>").count();
    // Footprint: uniform and larson; throughput: both; threaded: larson.
    assert_eq!(figures, 5, "five charts expected");

    let url = format!("file://{}", page.display());
    let dump = headless(&browser, &dir.join("profile-dom"))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(dump.status.success(), "chromium --dump-dom failed");
    let dom = String::from_utf8_lossy(&dump.stdout);
    assert_eq!(attr(&dom, "charts"), figures, "every chart is in the DOM");
    assert_eq!(
        attr(&dom, "charts-shown"),
        figures,
        "every chart is laid out with a size"
    );
    // #4 (split in parts), throughput, the three threaded tables; #3's is folded away.
    assert!(
        attr(&dom, "tables-shown") >= 5,
        "the tables are shown: {}",
        attr(&dom, "tables-shown")
    );
    assert!(
        attr(&dom, "page-width") <= 1280,
        "the page is no wider than the window: {}",
        attr(&dom, "page-width")
    );

    let png = dir.join("page.png");
    let shot = headless(&browser, &dir.join("profile-shot"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(shot.status.success(), "chromium --screenshot failed");
    let bytes = std::fs::read(&png).expect("the screenshot is written");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "a screenshot with content ({} bytes)",
        bytes.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
