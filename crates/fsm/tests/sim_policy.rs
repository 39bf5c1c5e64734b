//! `fsm sim -p NAME` on real heaps, and `-p NAME --offsets-only` on offset managers: the generic
//! view after every op is consistent with the ops.
//!
//! For each dump: the `Heap` line's blocks tile the heap from its start with no gap or overlap;
//! the free list's entries are exactly the free blocks; every live block is one the ops allocated
//! and not yet freed, with the size asked for; next fit's rover is a free chunk.

use std::collections::BTreeMap;
use std::process::Command;

use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

fn fsm_sim(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fsm"))
        .arg("sim")
        .args(args)
        .output()
        .expect("fsm runs")
}

fn strs(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// `[ addr:A sz:S KIND ]` entries of a line; a run `[ addr:A N x sz:S KIND ]` is N entries.
fn entries(line: &str) -> Vec<(i64, i64, String)> {
    line.split("[ addr:")
        .skip(1)
        .flat_map(|e| {
            let e = &e[..e.find(" ]").expect("entry closes")];
            let mut parts = e.split(' ').peekable();
            let addr: i64 = parts.next().unwrap().parse().unwrap();
            let mut n = 1;
            if parts.peek().is_some_and(|p| !p.starts_with("sz:")) {
                n = parts.next().unwrap().parse().unwrap();
                assert_eq!(parts.next(), Some("x"), "a run reads `N x`: {e}");
            }
            let size: i64 = parts
                .next()
                .unwrap()
                .trim_start_matches("sz:")
                .parse()
                .unwrap();
            let kind = parts.next().unwrap_or("").to_string();
            (0..n).map(move |k| (addr + k * size, size, kind.clone()))
        })
        .collect()
}

/// Checks one run's output; `Err` says what is wrong.
fn check_output(stdout: &str, base: i64, want_rover: bool) -> Result<usize, String> {
    let mut ptr_addr: BTreeMap<u64, i64> = BTreeMap::new();
    let mut live: BTreeMap<i64, i64> = BTreeMap::new();
    let mut freeing = None;
    let mut blocks: Vec<(i64, i64, String)> = Vec::new();
    let mut dumps = 0;
    let mut heap_seen = false;
    for line in stdout.lines() {
        if line.starts_with("ptr[") || line.starts_with("Free(") {
            // A heap that has taken no memory yet prints no Heap line.
            blocks.clear();
            heap_seen = false;
        }
        if let Some(rest) = line.strip_prefix("ptr[") {
            let c: u64 = rest[..rest.find(']').unwrap()].parse().unwrap();
            let req: i64 = rest[rest.find("Alloc(").unwrap() + 6..rest.find(')').unwrap()]
                .parse()
                .unwrap();
            let addr: i64 = rest[rest.find("returned ").unwrap() + 9..].parse().unwrap();
            if addr != -1 {
                ptr_addr.insert(c, addr);
                live.insert(addr, req);
            }
        } else if let Some(rest) = line.strip_prefix("Free(ptr[") {
            let i: u64 = rest[..rest.find(']').unwrap()].parse().unwrap();
            freeing = ptr_addr.get(&i).copied();
        } else if line == "returned 0" {
            live.remove(&freeing.take().ok_or("returned 0 with no free")?);
        } else if line.starts_with("Heap [ addr:") {
            dumps += 1;
            heap_seen = true;
            let (head, body) = line.split_once("]:").unwrap();
            let (start, len, _) = entries(&format!("{head} ]"))[0].clone();
            if start != base {
                return Err(format!("heap starts at {start}, not {base}"));
            }
            blocks = entries(body);
            let mut at = start;
            for (a, s, _) in &blocks {
                if *a != at {
                    return Err(format!("block at {a}, expected {at}: {line}"));
                }
                at += s;
            }
            if at != start + len {
                return Err(format!("blocks end at {at}, the heap at {}", start + len));
            }
            let shown: BTreeMap<i64, i64> = blocks
                .iter()
                .filter(|(_, _, k)| k.starts_with("live("))
                .map(|(a, _, k)| (*a, k[5..k.len() - 1].parse().unwrap()))
                .collect();
            if shown != live {
                return Err(format!("live blocks {shown:?}, the ops say {live:?}"));
            }
        } else if line.starts_with("free list [ Size") || line.starts_with("free ranges [ Size") {
            if !heap_seen && !live.is_empty() {
                return Err(format!("no Heap line, but {live:?} are live"));
            }
            let mut listed: Vec<(i64, i64)> =
                entries(line).into_iter().map(|(a, s, _)| (a, s)).collect();
            listed.sort();
            let free: Vec<(i64, i64)> = blocks
                .iter()
                .filter(|(_, _, k)| k == "free")
                .map(|(a, s, _)| (*a, *s))
                .collect();
            if listed != free {
                return Err(format!("free list {listed:?}, free blocks {free:?}"));
            }
        } else if let Some(r) = line.strip_prefix("rover: ") {
            let r: i64 = r.parse().unwrap();
            if !blocks.iter().any(|(a, _, k)| *a == r && k == "free") {
                return Err(format!("rover {r} is not a free chunk"));
            }
        }
    }
    if want_rover && !stdout.contains("rover: ") {
        return Err("next fit never showed its rover".into());
    }
    Ok(dumps)
}

#[test]
fn list_names_the_fit_policies() {
    let r = fsm_sim(&strs(&["-p", "list"]));
    assert!(r.status.success());
    let text = String::from_utf8_lossy(&r.stdout);
    for name in ["first-fit", "next-fit", "best-fit", "worst-fit", "NEXT"] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    // Each policy with an offset manager says so.
    assert_eq!(
        text.matches("--offsets-only").count(),
        registry::offset_names().len(),
        "{text}"
    );
}

#[test]
fn next_fit_shows_its_rover() {
    let r = fsm_sim(&strs(&[
        "-p",
        "next-fit",
        "-S",
        "400",
        "-c",
        "-A",
        "+10,+20,+30,-1,+5,+8,-0,+100,-3,+12,-9,-0",
    ]));
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(check_output(&out, 1000, true), Ok(11), "{out}");
    assert!(out.contains("Invalid Free: Skipping"));
}

#[test]
fn double_free_returns_minus_one_and_changes_nothing() {
    let r = fsm_sim(&strs(&[
        "-p",
        "best-fit",
        "-S",
        "256",
        "-c",
        "-A",
        "+10,-0,-0",
    ]));
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success());
    let dumps: Vec<&str> = out.split("\n\n").collect();
    assert!(dumps[3].starts_with("Free(ptr[0])\nreturned -1\n"), "{out}");
    // The dump after the double free equals the one after the first free.
    let tail = |d: &str| d.lines().skip(2).collect::<Vec<_>>().join("\n");
    assert_eq!(tail(dumps[2]), tail(dumps[3]));
}

#[test]
fn unknown_policy_is_one_error_line() {
    let r = fsm_sim(&strs(&["-p", "good-fit", "-c"]));
    assert_eq!(r.status.code(), Some(1));
    assert!(r.stdout.is_empty());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("good-fit"), "{err}");
}

#[derive(Debug, Clone)]
struct Run {
    policy: &'static str,
    size: u32,
    align: i64,
    ops: Vec<(bool, u32)>,
    /// `--offsets-only --granule G`.
    granule: Option<u32>,
}

/// The policies with an offset manager (what `--offsets-only` takes).
const OFFSET_POLICIES: &[&str] = &[
    "first-fit",
    "next-fit",
    "best-fit",
    "worst-fit",
    "best-fit:no-coalesce",
    "buddy",
    "segregated",
    "segregated:buddy",
];

impl Arbitrary for Run {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = usize::arbitrary(g) % 40 + 1;
        let mut ops = Vec::new();
        let mut allocs = 0;
        for _ in 0..n {
            if bool::arbitrary(g) || allocs == 0 {
                ops.push((true, u32::arbitrary(g) % 100));
                allocs += 1;
            } else {
                ops.push((false, u32::arbitrary(g) % (allocs + 1)));
            }
        }
        if bool::arbitrary(g) {
            return Run {
                policy: g.choose(OFFSET_POLICIES).unwrap(),
                size: u32::arbitrary(g) % 2000 + 64,
                align: *g.choose(&[-1, 8, 16, 64]).unwrap(),
                ops,
                granule: Some(*g.choose(&[1, 16, 64]).unwrap()),
            };
        }
        Run {
            granule: None,
            policy: g
                .choose(&[
                    "first-fit",
                    "next-fit",
                    "best-fit",
                    "worst-fit",
                    "best-fit:lifo",
                    "first-fit:fifo:no-coalesce",
                    "worst-fit:size-asc",
                ])
                .unwrap(),
            size: u32::arbitrary(g) % 2000 + 64,
            align: *g.choose(&[-1, 8, 16, 64]).unwrap(),
            ops,
        }
    }
}

#[test]
fn views_agree_with_the_ops() {
    fn prop(run: Run) -> TestResult {
        let ops: Vec<String> = run
            .ops
            .iter()
            .map(|&(a, n)| format!("{}{n}", if a { '+' } else { '-' }))
            .collect();
        let mut args = strs(&[
            "-p",
            run.policy,
            "-S",
            &run.size.to_string(),
            "-a",
            &run.align.to_string(),
            "-c",
            "-A",
            &ops.join(","),
        ]);
        if let Some(g) = run.granule {
            args.extend(strs(&["--offsets-only", "--granule", &g.to_string()]));
        }
        let r = fsm_sim(&args);
        let out = String::from_utf8_lossy(&r.stdout);
        let err = String::from_utf8_lossy(&r.stderr);
        if !r.status.success() && !err.contains("KeyError") {
            return TestResult::error(format!("{args:?}: {err}"));
        }
        match check_output(&out, 1000, false) {
            Ok(_) => TestResult::passed(),
            Err(e) => TestResult::error(format!("{args:?}: {e}\n{out}")),
        }
    }
    QuickCheck::new()
        .tests(150)
        .quickcheck(prop as fn(Run) -> TestResult);
}

#[test]
fn offset_managers_are_shown_and_refused_where_missing() {
    for policy in OFFSET_POLICIES {
        let r = fsm_sim(&strs(&[
            "-p",
            policy,
            "--offsets-only",
            "-S",
            "512",
            "-c",
            "-A",
            "+10,+20,+30,-1,+5,-0,+100",
        ]));
        let out = String::from_utf8_lossy(&r.stdout);
        assert!(
            r.status.success(),
            "{policy}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert_eq!(
            check_output(&out, 1000, policy.starts_with("next-fit")),
            Ok(7),
            "{policy}:\n{out}"
        );
    }
    // Best fit over offsets places 16-byte granules from the space's start: 10 -> 1000..1016,
    // 20 -> 1016..1048; with 1-byte granules, exactly the bytes asked.
    let r = fsm_sim(&strs(&[
        "-p",
        "best-fit",
        "--offsets-only",
        "-c",
        "-A",
        "+10,+20",
    ]));
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains("Alloc(20) returned 1016"), "{out}");
    let r = fsm_sim(&strs(&[
        "-p",
        "best-fit",
        "--offsets-only",
        "--granule",
        "1",
        "-c",
        "-A",
        "+10,+20",
    ]));
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains("Alloc(20) returned 1010"), "{out}");
    // Refusals: one line on stderr naming the flag or the policy, exit status 1.
    for (args, says) in [
        (
            &["-p", "ptmalloc2", "--offsets-only"][..],
            "no offset manager",
        ),
        (&["-p", "BEST", "--offsets-only"][..], "--offsets-only"),
        (
            &["-p", "best-fit:lifo", "--offsets-only"][..],
            "address order",
        ),
        (&["-p", "best-fit", "--granule", "16"][..], "--granule"),
        (
            &["-p", "best-fit", "--offsets-only", "--granule", "3"][..],
            "--granule 3",
        ),
        (
            &[
                "-p",
                "best-fit",
                "--offsets-only",
                "-S",
                "18446744073709551615",
            ][..],
            "too large",
        ),
        (
            &["-p", "buddy", "--offsets-only", "-S", "1000000000000"][..],
            "bitmaps",
        ),
    ] {
        let r = fsm_sim(&strs(args));
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn buddy_segregated_and_ptmalloc2_show_their_own_structures() {
    for (policy, wants) in [
        (
            "buddy",
            &["order 0 (16 B)", "order 1 (32 B)", "min block: 16"][..],
        ),
        ("segregated", &["class 3 (24 B)", "tiny (16 B blocks)"][..]),
        (
            "ptmalloc2",
            &["tcache[0] (32 B)", "top_size:", "mmap_threshold: 131072"][..],
        ),
    ] {
        let out = fsm_sim(&strs(&["-p", policy, "-A", "+10,+20,-0,+5", "-c"]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{policy}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for want in wants {
            assert!(text.contains(want), "{policy}: no `{want}` in\n{text}");
        }
        // Every op prints its view: four ops, four heap lines at least.
        assert!(text.matches("Heap [").count() >= 4, "{policy}:\n{text}");
    }
}

#[test]
fn suffixes_are_used_or_refused_never_dropped() {
    let run = |p: &str| fsm_sim(&strs(&["-p", p, "-A", "+10,+20,-0,+5", "-c"]));
    let plain = run("segregated");
    let buddy = run("segregated:buddy");
    assert!(plain.status.success() && buddy.status.success());
    assert_ne!(
        plain.stdout, buddy.stdout,
        "segregated:buddy shows the buddy system's orders as the page level"
    );
    let bad = run("segregated:bogus");
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains(":bogus") && err.contains(":buddy"), "{err}");
    // A heap raised to what the policy needs is said, on stderr.
    let small = fsm_sim(&strs(&["-p", "buddy", "-S", "100", "-A", "+10", "-c"]));
    assert!(small.status.success());
    let err = String::from_utf8_lossy(&small.stderr);
    assert!(err.contains("raised from 100 to 1024"), "{err}");
}
