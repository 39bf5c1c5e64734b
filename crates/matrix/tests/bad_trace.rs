//! `cargo xtask bench --traces DIR` with one malformed file among good ones (issue 16, item 5):
//! the bad file's cells fail, naming the file and the line; the other workloads still run.

use std::process::Command;

#[test]
fn a_malformed_trace_fails_its_own_cells_only() {
    let dir = std::env::temp_dir().join(format!("matrix-bad-trace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let traces = dir.join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    let good: String = (1..=200)
        .map(|i| format!("a {i} {}\n", 16 + i % 100))
        .chain((1..=200).map(|i| format!("f {i}\n")))
        .collect();
    std::fs::write(traces.join("good.trace"), good).unwrap();
    std::fs::write(traces.join("bad.trace"), "a 1 10\na 2 x\nf 1\n").unwrap();
    let report = dir.join("report");
    let out = Command::new(env!("CARGO_BIN_EXE_matrix"))
        .args([
            "run",
            "--quick",
            "--repeats",
            "1",
            "--only",
            "first-fit,best-fit",
            "--programs",
            "none",
        ])
        .args(["--workloads", "bad,good", "--traces"])
        .arg(&traces)
        .arg("--out")
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the matrix stopped: {stderr}");
    assert!(stderr.contains("workload bad does not load"), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("results.json")).unwrap())
            .unwrap();
    let cells = json["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4, "{cells:?}");
    for c in cells {
        let (workload, status) = (
            c["workload"].as_str().unwrap(),
            c["status"].as_str().unwrap(),
        );
        match workload {
            "good" => assert_eq!(status, "ok", "{c}"),
            "bad" => {
                assert_eq!(status, "failed", "{c}");
                let reason = c["reason"].as_str().unwrap();
                assert!(
                    reason.contains("bad.trace") && reason.contains("line 2"),
                    "{reason}"
                );
            }
            w => panic!("unexpected workload {w}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
