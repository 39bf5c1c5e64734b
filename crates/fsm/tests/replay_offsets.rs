//! `fsm replay --offsets-only`: a trace through a policy's offset manager, end to end.

use std::process::Command;

fn fsm_replay(args: &[&str], trace: &str) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("fsm-replay-offsets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.trace", args.join("_").replace([':', '-'], "")));
    std::fs::write(&path, trace).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fsm"))
        .arg("replay")
        .args(args)
        .arg(&path)
        .output()
        .expect("fsm runs");
    let _ = std::fs::remove_file(&path);
    out
}

const TRACE: &str = "a 1 100\nc 2 50\nm 3 64 10\nr 1 300\nr 2 0\nf 1\n";

#[test]
fn best_fit_places_the_trace_by_hand() {
    // 16-byte granules from offset 0: 100 -> 0..112, 50 -> 112..176, memalign(64, 10) -> 192
    // (a free front piece 176..192), realloc(1, 300) placed anew at 208 before 0..112 is freed.
    let r = fsm_replay(
        &["--policy", "best-fit", "--offsets-only", "--offsets"],
        TRACE,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "a 1 100 0\nc 2 50 112\nm 3 10 192\nr 1 300 208\nr 2 0 NULL\n"
    );
    // 1-byte granules: exactly the bytes asked, each malloc aligned to 16.
    let r = fsm_replay(
        &[
            "--policy",
            "best-fit",
            "--offsets-only",
            "--granule",
            "1",
            "--offsets",
        ],
        TRACE,
    );
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "a 1 100 0\nc 2 50 112\nm 3 10 192\nr 1 300 208\nr 2 0 NULL\n"
    );
}

#[test]
fn stats_are_the_offset_managers() {
    let r = fsm_replay(
        &[
            "--policy",
            "first-fit",
            "--offsets-only",
            "--check",
            "--json",
        ],
        TRACE,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    // Peak: 0..112, 112..176, 192..208 and 208..512 live at once before the old range is freed.
    assert_eq!(v["stats"]["peak_footprint"], 512);
    assert_eq!(v["stats"]["resizes"], 0);
    assert_eq!(v["stats"]["allocs"], 4);
}

#[test]
fn refusals_name_the_policy_or_flag() {
    for (args, says) in [
        (
            &["--policy", "ptmalloc2", "--offsets-only"][..],
            "no offset manager",
        ),
        (
            &["--policy", "best-fit:lifo", "--offsets-only"][..],
            "address order",
        ),
        (
            &["--policy", "best-fit", "--offsets-only", "--granule", "3"][..],
            "power of two",
        ),
    ] {
        let r = fsm_replay(args, TRACE);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
