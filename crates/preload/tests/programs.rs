//! Real programs on every policy: python3 (json and threads), perl, sqlite3, sort, `xz -T2`,
//! gcc compiling and running a C program, and git on a temporary repository give the same
//! stdout and exit status as under the system allocator.

mod common;

use common::{policies, run, scratch};

/// What a program printed and how it exited.
type Ran = (Vec<u8>, Option<i32>);

/// One program of the set: a name, how to run it in a scratch folder, and its stdin.
struct Program {
    name: &'static str,
    /// Prepares the folder and runs the program there on `policy`, giving (stdout, status).
    go: fn(Option<&str>, &std::path::Path) -> Ran,
}

fn simple(
    policy: Option<&str>,
    dir: &std::path::Path,
    cmd: &str,
    args: &[&str],
    stdin: &[u8],
) -> Ran {
    let o = run(policy, dir, cmd, args, stdin);
    if !o.status.success() {
        eprintln!(
            "{cmd} on {policy:?}: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    (o.stdout, o.status.code())
}

/// 200,000 lines of pseudo-random text.
fn lines() -> Vec<u8> {
    let mut s = String::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..200_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!(
            "{:x} line {i} {}\n",
            x % 100_000,
            "z".repeat((x % 40) as usize)
        ));
    }
    s.into_bytes()
}

const PROGRAMS: &[Program] = &[
    Program {
        name: "python3",
        go: |p, d| {
            let script = "import json, threading\n\
                d = {str(i): [i, str(i) * 3, {'k': i}] for i in range(30000)}\n\
                s = json.dumps(d)\n\
                out = []\n\
                lock = threading.Lock()\n\
                def work(n):\n    r = len(json.loads(s)) + n\n    with lock: out.append(r)\n\
                ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]\n\
                [t.start() for t in ts]; [t.join() for t in ts]\n\
                print(sorted(out), len(s))\n";
            simple(p, d, "python3", &["-c", script], b"")
        },
    },
    Program {
        name: "perl",
        go: |p, d| {
            let script = "my %h; $h{$_} = 'x' x ($_ % 100) for 1..100000; \
                my @s = sort { $a <=> $b } map { length $h{$_} } keys %h; \
                print scalar(keys %h), ' ', $s[-1], ' ', join(',', @s[0..9]), \"\\n\";";
            simple(p, d, "perl", &["-e", script], b"")
        },
    },
    Program {
        name: "sqlite3",
        go: |p, d| {
            let sql = b"create table t(a integer, b text);\n\
                with recursive c(x) as (select 1 union all select x + 1 from c where x < 50000)\n\
                insert into t select x, printf('%08d', x * 7919 % 50000) from c;\n\
                create index i on t(b);\n\
                select count(*), sum(a), min(b), max(b) from t;\n\
                select a % 10, count(*) from t group by a % 10 order by 1;\n";
            simple(p, d, "sqlite3", &[":memory:"], sql)
        },
    },
    Program {
        name: "sort",
        go: |p, d| simple(p, d, "sort", &["-S", "8M"], &lines()),
    },
    Program {
        name: "xz",
        go: |p, d| simple(p, d, "xz", &["-T2", "-6", "-c"], &lines()),
    },
    Program {
        name: "gcc",
        go: |p, d| {
            let src = d.join("prog.c");
            std::fs::write(
                &src,
                "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\
                 int main(void) { char *s = malloc(100); strcpy(s, \"hello\");\n\
                 for (int i = 0; i < 10; i++) s = realloc(s, 100 + i * 1000);\n\
                 printf(\"%s %zu\\n\", s, strlen(s)); free(s); return 0; }\n",
            )
            .unwrap();
            let (_, code) = simple(p, d, "gcc", &["-O2", "-o", "prog", "prog.c"], b"");
            if code != Some(0) {
                return (Vec::new(), code);
            }
            let exe = d.join("prog");
            simple(p, d, exe.to_str().unwrap(), &[], b"")
        },
    },
    Program {
        name: "git",
        go: |p, d| {
            let mut out = Vec::new();
            for (i, args) in [
                vec!["init", "-q", "-b", "main", "repo"],
                vec!["-C", "repo", "add", "."],
                vec!["-C", "repo", "commit", "-q", "-m", "one"],
                vec!["-C", "repo", "log", "--format=%H %s"],
                vec!["-C", "repo", "gc", "-q"],
                vec!["-C", "repo", "rev-list", "--all", "--objects"],
            ]
            .iter()
            .enumerate()
            {
                if i == 1 {
                    for f in 0..50 {
                        std::fs::write(d.join(format!("repo/f{f}.txt")), "data\n".repeat(f + 1))
                            .unwrap();
                    }
                }
                let (o, code) = simple(p, d, "git", args, b"");
                if code != Some(0) {
                    return (o, code);
                }
                out.extend(o);
            }
            (out, Some(0))
        },
    },
];

#[test]
fn every_program_gives_the_same_output_on_every_policy() {
    let mut failures = Vec::new();
    for prog in PROGRAMS {
        let dir = scratch(&format!("{}-system", prog.name));
        let want = (prog.go)(None, &dir);
        assert_eq!(
            want.1,
            Some(0),
            "{} fails under the system allocator",
            prog.name
        );
        let _ = std::fs::remove_dir_all(&dir);
        for policy in policies() {
            let dir = scratch(&format!("{}-{}", prog.name, policy.replace(':', "-")));
            let got = (prog.go)(Some(policy), &dir);
            let _ = std::fs::remove_dir_all(&dir);
            if got != want {
                failures.push(format!(
                    "{} on {policy}: exit {:?} (want {:?}), stdout {} bytes (want {}){}",
                    prog.name,
                    got.1,
                    want.1,
                    got.0.len(),
                    want.0.len(),
                    if got.0 == want.0 { "" } else { ", different" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
