//! `--svg FILE`: one row per printed op, the kinds in their colours, the stdout unchanged.

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fsm"))
        .arg("sim")
        .args(args)
        .output()
        .expect("fsm runs")
}

fn temp_svg(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fsm-sim-svg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn svg_has_a_row_per_op_and_every_kind() {
    let path = temp_svg("rows.svg");
    let ops = "+10,+20,+5,-1,+12,-0,-9,-2";
    let args = ["-c", "-H", "4", "-a", "4", "-C", "-A", ops];
    let with = run(&[&args[..], &["--svg", path.to_str().unwrap()]].concat());
    let without = run(&args);
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert_eq!(
        with.stdout, without.stdout,
        "--svg must not change the text"
    );
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    // Seven ops print a list; the invalid free (-9) prints none and gets no row.
    for label in [
        "ptr[0] = Alloc(10)",
        "ptr[1] = Alloc(20)",
        "ptr[2] = Alloc(5)",
        "Free(ptr[1])",
        "ptr[3] = Alloc(12)",
        "Free(ptr[0])",
        "Free(ptr[2])",
    ] {
        assert_eq!(svg.matches(label).count(), 1, "{label}");
    }
    assert!(!svg.contains("ptr[9]"));
    // live, free, header, padding colours (see svg.rs), and the address axis.
    for colour in ["#4285F4", "#8CD28C", "#F59628", "#B9B9B9"] {
        assert!(svg.contains(colour), "{colour} missing");
    }
    assert!(svg.contains(">\naddress\n<") || svg.contains(">address<"));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn svg_marks_the_next_fit_rover() {
    let path = temp_svg("rover.svg");
    let r = run(&[
        "-p",
        "NEXT",
        "-c",
        "-A",
        "+10,+20",
        "--svg",
        path.to_str().unwrap(),
    ]);
    assert!(r.status.success());
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.contains("rover"));
    assert!(svg.contains("#DC1E1E"), "the rover's red mark");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn unwritable_svg_is_a_clean_error() {
    let r = run(&["-A", "+1", "--svg", "/nonexistent-dir/x.svg"]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.starts_with("fsm sim: error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"));
}
