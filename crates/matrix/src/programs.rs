//! The programs table: real programs on every policy and on the peers, as mimalloc-bench measures
//! allocators (elapsed time and peak resident memory, each program preloaded with the allocator).
//!
//! ```text
//!   matrix run ──(after the cells)──> for each program x allocator, RUNS times:
//!       fsm run --policy A --library libfsm_malloc.so --json RESULT -- PROGRAM ARGS
//!         (peers: system, gperftools, jemalloc, mimalloc: fsm preloads Debian's libraries)
//!       redis: fsm run ... -- redis-server (a unix socket), driven by redis-benchmark, then
//!         redis-cli shutdown; elapsed = the benchmark's, peak RSS = the server's
//!   ──> medians of the runs, ratios to `system`; a run that fails, times out or prints other
//!       output than `system`'s first run fails its cell
//!   REPORT/programs/work  the inputs (generated here: nothing is downloaded) and the builds of
//!                         the stress programs (crates/matrix/programs/*.c, our own)
//! ```
//!
//! `fsm` and the preload library are built (release) into the matrix's own target folder first.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::html::{self, Section};
use crate::report::{Report, Table};

/// The peers `fsm run` preloads (and `system`, which preloads nothing).
pub const PEERS: &[&str] = &["system", "gperftools", "jemalloc", "mimalloc"];

/// The longest a redis run may take (start, benchmark, shutdown), full and `--quick`: a healthy
/// one takes seconds, a server that broke would hold the table up for the whole program timeout.
const REDIS_TIMEOUT: (Duration, Duration) = (Duration::from_secs(45), Duration::from_secs(15));

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    Quick,
    Full,
}

/// What a program runs: a command (in the work folder), or redis driven by its benchmark.
enum Run {
    Command(Vec<OsString>),
    Redis {
        /// redis-benchmark's `-n`.
        requests: usize,
    },
}

/// One program of the table.
struct Program {
    name: &'static str,
    /// What it does, for the report.
    about: &'static str,
    /// In the `--quick` subset.
    quick: bool,
    /// Executables it needs on PATH, with the Debian package of each.
    needs: &'static [(&'static str, &'static str)],
    /// Writes its inputs into the work folder and says what to run.
    prepare: fn(&Path, Size) -> Result<Run, String>,
}

/// `n` lines of pseudo-random text (the same every run).
fn text_lines(n: usize) -> String {
    let mut s = String::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let _ = writeln!(
            s,
            "{:x} line {i} {}",
            x % 1_000_003,
            "z".repeat((x % 40) as usize)
        );
    }
    s
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, String> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    Ok(p)
}

fn args(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

/// Compiles one of our stress programs (crates/matrix/programs/NAME.c) into `dir`.
fn stress(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("programs")
        .join(format!("{name}.c"));
    let exe = dir.join(name);
    let out = Command::new("gcc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| format!("gcc: {e} (apt-get install gcc)"))?;
    if !out.status.success() {
        return Err(format!(
            "gcc {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(exe)
}

const PROGRAMS: &[Program] = &[
    Program {
        name: "larson",
        about: "4 threads, each owning 1000 blocks of 16-1024 B, replacing a random one per step; \
                every round a thread hands its blocks to a new thread and exits (ours, after \
                Larson and Krishnan)",
        quick: true,
        needs: &[("gcc", "gcc")],
        prepare: |d, size| {
            let exe = stress(d, "larson")?;
            let (rounds, steps) = match size {
                Size::Quick => ("4", "5000"),
                Size::Full => ("20", "20000"),
            };
            let mut a = vec![exe.into_os_string()];
            a.extend(args(&["4", rounds, steps, "1000", "16", "1024"]));
            Ok(Run::Command(a))
        },
    },
    Program {
        name: "xmalloc",
        about: "2 producer threads allocate 16-512 B blocks, 2 consumer threads free them \
                (ours, after xmalloc-test)",
        quick: false,
        needs: &[("gcc", "gcc")],
        prepare: |d, size| {
            let exe = stress(d, "xmalloc")?;
            let n = if size == Size::Quick {
                "50000"
            } else {
                "200000"
            };
            let mut a = vec![exe.into_os_string()];
            a.extend(args(&["2", "2", n, "16", "512"]));
            Ok(Run::Command(a))
        },
    },
    Program {
        name: "redis",
        about: "redis-server driven by redis-benchmark over a unix socket (SET, GET, LPUSH, LPOP, \
                SADD, HSET, INCR; 64 B values, 100 000 keys, pipelines of 16)",
        quick: true,
        needs: &[
            ("redis-server", "redis-server"),
            ("redis-benchmark", "redis-tools"),
            ("redis-cli", "redis-tools"),
        ],
        prepare: |_, size| {
            Ok(Run::Redis {
                requests: if size == Size::Quick { 20_000 } else { 100_000 },
            })
        },
    },
    Program {
        name: "python3",
        about: "an LRU cache of 20 000 JSON documents: 200 000 lookups, misses parse a new \
                document and evict the oldest, on 4 threads (one lock)",
        quick: false,
        needs: &[("python3", "python3")],
        prepare: |d, _| {
            let script = "import json, threading, collections\n\
                cache = collections.OrderedDict()\n\
                lock = threading.Lock()\n\
                hits = [0]\n\
                def doc(k):\n    return json.dumps({'key': k, 'tags': [str(k % 97)] * (k % 9), \
                'body': 'x' * (k % 300)})\n\
                def work(seed):\n    x = seed * 2654435761 + 1\n    for _ in range(50000):\n\
                \x20       x = (x * 6364136223846793005 + 1442695040888963407) % 2**64\n\
                \x20       k = (x >> 33) % 60000\n\
                \x20       with lock:\n\
                \x20           if k in cache:\n\
                \x20               cache.move_to_end(k); hits[0] += 1; continue\n\
                \x20       v = json.loads(doc(k))\n\
                \x20       with lock:\n\
                \x20           cache[k] = v\n\
                \x20           if len(cache) > 20000: cache.popitem(last=False)\n\
                ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]\n\
                [t.start() for t in ts]; [t.join() for t in ts]\n\
                print(len(cache), all(v['key'] == k for k, v in cache.items()))\n";
            let p = write(d, "lru_cache.py", script)?;
            let mut a = args(&["python3"]);
            a.push(p.into_os_string());
            Ok(Run::Command(a))
        },
    },
    Program {
        name: "sqlite3",
        about: "200 000 rows inserted, indexed, grouped and joined in an in-memory database",
        quick: false,
        needs: &[("sqlite3", "sqlite3")],
        prepare: |d, _| {
            let sql = "create table t(a integer, b text);\n\
                with recursive c(x) as (select 1 union all select x + 1 from c where x < 200000)\n\
                insert into t select x, printf('%08d', x * 7919 % 200000) from c;\n\
                create index i on t(b);\n\
                select count(*), sum(a), min(b), max(b) from t;\n\
                select a % 10, count(*) from t group by a % 10 order by 1;\n\
                select count(*) from t x join t y on x.b = y.b where x.a < 20000;\n";
            let p = write(d, "queries.sql", sql)?;
            let mut a = args(&["sqlite3", ":memory:", "-init"]);
            a.push(p.into_os_string());
            a.push(".quit".into());
            Ok(Run::Command(a))
        },
    },
    Program {
        name: "sort",
        about: "sort of 1 000 000 lines of generated text (200 000 with --quick)",
        quick: true,
        needs: &[("sort", "coreutils")],
        prepare: |d, size| {
            let n = if size == Size::Quick {
                200_000
            } else {
                1_000_000
            };
            let p = write(d, "lines.txt", &text_lines(n))?;
            let mut a = args(&["sort", "-S", "16M"]);
            a.push(p.into_os_string());
            Ok(Run::Command(a))
        },
    },
    Program {
        name: "xz",
        about: "xz -T2 -6 of 100 000 lines of generated text (two compressing threads)",
        quick: false,
        needs: &[("xz", "xz-utils")],
        prepare: |d, _| {
            let p = write(d, "xz-input.txt", &text_lines(100_000))?;
            let mut a = args(&["xz", "-T2", "-6", "-c", "-k"]);
            a.push(p.into_os_string());
            Ok(Run::Command(a))
        },
    },
    Program {
        name: "gcc",
        about: "gcc -O2 -c of a generated C file of 300 functions",
        quick: false,
        needs: &[("gcc", "gcc")],
        prepare: |d, _| {
            let mut src = String::from("#include <string.h>\n");
            for i in 0..300 {
                let _ = writeln!(
                    src,
                    "int f{i}(int *a, int n) {{ int s = {i}; for (int k = 0; k < n; k++) {{ \
                     if (a[k] % {m} == 0) s += a[k] * {i}; else s ^= a[k] << (k % 7); }} \
                     switch (n % 4) {{ case 0: s += f{p}(a, n - 1); break; case 1: s -= n; break; \
                     default: s *= 3; }} return s; }}",
                    m = i % 13 + 2,
                    p = i.max(1) - 1
                );
            }
            let p = write(d, "gen.c", &src)?;
            let mut a = args(&["gcc", "-O2", "-c", "-o"]);
            a.push(d.join("gen.o").into_os_string());
            a.push(p.into_os_string());
            Ok(Run::Command(a))
        },
    },
    Program {
        name: "perl",
        about: "a hash of 300 000 strings, sorted by value length",
        quick: false,
        needs: &[("perl", "perl")],
        prepare: |_, _| {
            Ok(Run::Command(args(&[
                "perl",
                "-e",
                "my %h; $h{$_} = 'x' x ($_ % 100) for 1..300000; \
                 my @s = sort { $a <=> $b } map { length $h{$_} } keys %h; \
                 print scalar(keys %h), ' ', $s[-1], ' ', join(',', @s[0..9]), \"\\n\";",
            ])))
        },
    },
];

/// One program on one allocator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgramCell {
    /// The program.
    pub program: String,
    /// The allocator (policy or peer).
    pub alloc: String,
    /// `ok`, `failed`, `timeout`, `wrong output` or `skipped`.
    pub status: String,
    /// Why, when not `ok`.
    pub reason: Option<String>,
    /// Median elapsed seconds of the runs (redis: of the benchmark).
    pub wall_s: Option<f64>,
    /// Median peak resident memory of the runs, KiB (redis: the server's).
    pub max_rss_kib: Option<u64>,
    /// Every run: (elapsed seconds, peak RSS KiB).
    pub runs: Vec<(f64, u64)>,
}

/// The whole table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Programs {
    /// When it started (UTC).
    pub date: String,
    /// The 1-minute load average before and after.
    pub load: (f64, f64),
    /// Runs per cell.
    pub runs: usize,
    /// The programs, with what each does.
    pub programs: Vec<(String, String)>,
    /// The allocators, in order.
    pub allocs: Vec<String>,
    /// Every cell.
    pub cells: Vec<ProgramCell>,
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn on_path(exe: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(exe).is_file()))
}

/// What one run measured.
struct Measure {
    wall_s: f64,
    max_rss_kib: u64,
    /// What it printed (compared with `system`'s).
    stdout: Vec<u8>,
}

/// `fsm` and the preload library, built into the matrix's target folder.
struct Tools {
    fsm: PathBuf,
    library: PathBuf,
}

impl Tools {
    fn build() -> Result<Tools, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let profile_dir = exe
            .parent()
            .ok_or("the matrix binary has no folder")?
            .to_path_buf();
        let target = profile_dir.parent().ok_or("no target folder")?;
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        eprintln!("matrix: building fsm and libfsm_malloc.so (release) for the programs table");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "fsm",
                "-p",
                "preload",
            ])
            .arg("--target-dir")
            .arg(target)
            .current_dir(&ws)
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err("building fsm and the preload library failed".into());
        }
        let tools = Tools {
            fsm: target.join("release").join("fsm"),
            library: target.join("release").join("libfsm_malloc.so"),
        };
        for p in [&tools.fsm, &tools.library] {
            if !p.is_file() {
                return Err(format!("{} not built", p.display()));
            }
        }
        Ok(tools)
    }

    /// `fsm run` of `cmd` on `alloc`, its figures to `json`.
    fn fsm_run(&self, alloc: &str, json: &Path, cmd: &[OsString]) -> Command {
        let mut c = Command::new(&self.fsm);
        c.args(["run", "--policy", alloc, "--library"])
            .arg(&self.library)
            .arg("--json")
            .arg(json)
            .arg("--")
            .args(cmd);
        // Its own process group: a timeout kills the program with fsm (see `wait_until`).
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        c
    }
}

/// Waits for `child` until `deadline`; kills it after, with its process group when it leads
/// one (`fsm run` and the program under it).
fn wait_until(child: &mut std::process::Child, deadline: Instant) -> Result<(), String> {
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if Instant::now() > deadline => {
                if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: signals the process group our child leads, if it leads one (else
                    // the call fails with ESRCH and changes nothing).
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err("timeout".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The figures `fsm run --json` wrote: (wall seconds, peak RSS KiB), or why the run failed
/// (fsm's own error from `stderr`, where it wrote none: a peer not installed, a bad name).
fn figures(json: &Path, stderr: &Path) -> Result<(f64, u64), String> {
    let Ok(text) = std::fs::read_to_string(json) else {
        let err = std::fs::read_to_string(stderr).unwrap_or_default();
        return Err(err
            .lines()
            .rev()
            .find(|l| l.starts_with("fsm run:"))
            .map_or_else(|| "fsm run wrote no figures".to_string(), str::to_string));
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if v["exit_code"].as_i64() != Some(0) {
        return Err(match v["signal"].as_i64() {
            Some(s) => format!("killed by signal {s}"),
            None => format!("exit status {}", v["exit_code"]),
        });
    }
    Ok((
        v["wall_s"].as_f64().unwrap_or(f64::NAN),
        v["max_rss_kib"].as_u64().unwrap_or(0),
    ))
}

/// One run of `cmd` on `alloc` in `dir`.
fn run_command(
    tools: &Tools,
    alloc: &str,
    dir: &Path,
    cmd: &[OsString],
    timeout: Duration,
) -> Result<Measure, String> {
    let json = dir.join("fsm-run.json");
    let _ = std::fs::remove_file(&json);
    let out_path = dir.join("stdout.txt");
    let err_path = dir.join("stderr.txt");
    let file = |p: &Path| std::fs::File::create(p).map_err(|e| e.to_string());
    let mut child = tools
        .fsm_run(alloc, &json, cmd)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(file(&out_path)?)
        .stderr(file(&err_path)?)
        .spawn()
        .map_err(|e| format!("cannot run fsm: {e}"))?;
    wait_until(&mut child, Instant::now() + timeout)?;
    let (wall_s, max_rss_kib) = figures(&json, &err_path)?;
    let stdout = std::fs::read(&out_path).map_err(|e| e.to_string())?;
    Ok(Measure {
        wall_s,
        max_rss_kib,
        stdout,
    })
}

/// One run of redis-server on `alloc`, driven by `requests` of redis-benchmark per test.
fn run_redis(
    tools: &Tools,
    alloc: &str,
    dir: &Path,
    requests: usize,
    timeout: Duration,
) -> Result<Measure, String> {
    let json = dir.join("fsm-run.json");
    let _ = std::fs::remove_file(&json);
    // A short path: unix socket names are limited to 107 bytes.
    let sock = std::env::temp_dir().join(format!("fsm-redis-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let server: Vec<OsString> = vec![
        "redis-server".into(),
        "--port".into(),
        "0".into(),
        "--unixsocket".into(),
        sock.clone().into_os_string(),
        "--save".into(),
        "".into(),
        "--appendonly".into(),
        "no".into(),
        "--loglevel".into(),
        "warning".into(),
        "--dir".into(),
        dir.as_os_str().to_owned(),
    ];
    let deadline = Instant::now() + timeout;
    let err_path = dir.join("stderr.txt");
    let stderr = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = tools
        .fsm_run(alloc, &json, &server)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run fsm: {e}"))?;
    let cli = |args: &[&str]| {
        let mut c = Command::new("redis-cli");
        c.arg("-s").arg(&sock).args(args);
        c
    };
    let up = loop {
        if cli(&["ping"])
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
        {
            break true;
        }
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !up {
        let _ = child.kill();
        let _ = child.wait();
        return Err(figures(&json, &err_path)
            .err()
            .unwrap_or_else(|| "redis-server did not answer".into()));
    }
    let t0 = Instant::now();
    // The benchmark has a deadline too: against a server that broke, it can wait for ever.
    let bench = Command::new("redis-benchmark")
        .arg("-s")
        .arg(&sock)
        .args(["-q", "-P", "16", "-d", "64", "-r", "100000"])
        .args(["-t", "set,get,lpush,lpop,sadd,hset,incr"])
        .args(["-n", &requests.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-benchmark: {e}"));
    let finished = bench.and_then(|mut b| {
        wait_until(&mut b, deadline)
            .map_err(|e| format!("redis-benchmark: {e}"))
            .and_then(|()| b.wait().map_err(|e| format!("redis-benchmark: {e}")))
    });
    let wall_s = t0.elapsed().as_secs_f64();
    let _ = cli(&["shutdown", "nosave"]).output();
    // A server that does not stop after the benchmark's deadline is killed.
    let stopped = wait_until(
        &mut child,
        deadline.max(Instant::now() + Duration::from_secs(10)),
    );
    let _ = std::fs::remove_file(&sock);
    let status = finished?;
    if !status.success() {
        return Err(format!("redis-benchmark: {status}"));
    }
    stopped?;
    let (_, max_rss_kib) = figures(&json, &err_path)?;
    Ok(Measure {
        wall_s,
        max_rss_kib,
        // The benchmark's own figures vary from run to run: nothing to compare.
        stdout: Vec::new(),
    })
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> Option<T> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len() / 2).copied()
}

/// Runs the programs table: the programs named in `only_programs` (all, or the `--quick`
/// subset, when empty) on `allocs`. Missing programs or peers skip their cells, except under
/// `CI=true`, where they fail the run.
pub fn run(
    quick: bool,
    allocs: &[String],
    only_programs: &[String],
    work: &Path,
) -> Result<Programs, String> {
    let size = if quick { Size::Quick } else { Size::Full };
    let runs = if quick { 1 } else { 3 };
    let timeout = Duration::from_secs(if quick { 60 } else { 180 });
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let redis_timeout = if quick {
        REDIS_TIMEOUT.1
    } else {
        REDIS_TIMEOUT.0
    };
    for p in only_programs {
        if !PROGRAMS.iter().any(|q| q.name == p) {
            let names: Vec<&str> = PROGRAMS.iter().map(|q| q.name).collect();
            return Err(format!(
                "unknown program '{p}'; valid names: {}",
                names.join(", ")
            ));
        }
    }
    let chosen: Vec<&Program> = PROGRAMS
        .iter()
        .filter(|p| {
            if only_programs.is_empty() {
                p.quick || !quick
            } else {
                only_programs.iter().any(|n| n == p.name)
            }
        })
        .collect();
    // fsm runs in each program's folder: every path it gets must be absolute.
    let work = &std::path::absolute(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let date = crate::report::now_utc();
    let load_before = load_average();
    let tools = Tools::build()?;
    let mut cells = Vec::new();
    for prog in &chosen {
        let dir = work.join(prog.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let missing: Vec<String> = prog
            .needs
            .iter()
            .filter(|(exe, _)| !on_path(exe))
            .map(|(exe, pkg)| format!("{exe} is not installed (apt-get install {pkg})"))
            .collect();
        let what = if missing.is_empty() {
            (prog.prepare)(&dir, size)
        } else {
            Err(missing.join("; "))
        };
        let what = match what {
            Ok(w) => w,
            Err(e) if ci => return Err(format!("programs table, {}: {e}", prog.name)),
            Err(e) => {
                eprintln!("matrix: {} skipped: {e}", prog.name);
                for a in allocs {
                    cells.push(ProgramCell {
                        program: prog.name.into(),
                        alloc: a.clone(),
                        status: "skipped".into(),
                        reason: Some(e.clone()),
                        wall_s: None,
                        max_rss_kib: None,
                        runs: Vec::new(),
                    });
                }
                continue;
            }
        };
        let mut want: Option<Vec<u8>> = None;
        for alloc in allocs {
            eprintln!("matrix: {} on {alloc}", prog.name);
            let mut cell = ProgramCell {
                program: prog.name.into(),
                alloc: alloc.clone(),
                status: "ok".into(),
                reason: None,
                wall_s: None,
                max_rss_kib: None,
                runs: Vec::new(),
            };
            for _ in 0..runs {
                let m = match &what {
                    Run::Command(cmd) => run_command(&tools, alloc, &dir, cmd, timeout),
                    Run::Redis { requests } => {
                        run_redis(&tools, alloc, &dir, *requests, timeout.min(redis_timeout))
                    }
                };
                match m {
                    Ok(m) => {
                        if alloc == "system" && want.is_none() {
                            want = Some(m.stdout.clone());
                        }
                        if want.as_ref().is_some_and(|w| *w != m.stdout) {
                            cell.status = "wrong output".into();
                            cell.reason = Some("stdout differs from system's".into());
                            break;
                        }
                        cell.runs.push((m.wall_s, m.max_rss_kib));
                    }
                    Err(e) => {
                        let missing_peer = e.contains("is not installed");
                        if missing_peer && ci {
                            return Err(format!("programs table, {alloc}: {e}"));
                        }
                        cell.status = if missing_peer {
                            "skipped"
                        } else if e == "timeout" {
                            "timeout"
                        } else {
                            "failed"
                        }
                        .into();
                        cell.reason = Some(e);
                        break;
                    }
                }
            }
            if cell.status == "ok" {
                cell.wall_s = median(cell.runs.iter().map(|r| r.0).collect());
                cell.max_rss_kib = median(cell.runs.iter().map(|r| r.1).collect());
            }
            cells.push(cell);
        }
    }
    Ok(Programs {
        date,
        load: (load_before, load_average()),
        runs,
        programs: chosen
            .iter()
            .map(|p| (p.name.to_string(), p.about.to_string()))
            .collect(),
        allocs: allocs.to_vec(),
        cells,
    })
}

impl Programs {
    fn cell(&self, program: &str, alloc: &str) -> Option<&ProgramCell> {
        self.cells
            .iter()
            .find(|c| c.program == program && c.alloc == alloc)
    }

    /// A table: allocators by programs, each cell `value` (formatted with `unit`) and its ratio
    /// to `system`'s.
    fn grid(&self, value: impl Fn(&ProgramCell) -> Option<f64>, unit: &str) -> Table {
        let mut head = vec!["allocator".to_string()];
        head.extend(self.programs.iter().map(|(p, _)| p.clone()));
        let mut rows = vec![head];
        for a in &self.allocs {
            let mut row = vec![a.clone()];
            for (p, _) in &self.programs {
                let base = self.cell(p, "system").and_then(&value);
                row.push(match self.cell(p, a) {
                    Some(c) if c.status == "ok" => match (value(c), base) {
                        (Some(v), Some(b)) if b > 0.0 => format!("{v:.2}{unit} ({:.2}x)", v / b),
                        (Some(v), _) => format!("{v:.2}{unit}"),
                        _ => "n/a".into(),
                    },
                    Some(c) => c.status.clone(),
                    None => "-".into(),
                });
            }
            rows.push(row);
        }
        Table { rows, left: 1 }
    }

    /// Elapsed seconds (median), ratio to `system`.
    pub fn time_grid(&self) -> Table {
        self.grid(|c| c.wall_s, " s")
    }

    /// Peak RSS in MiB (median), ratio to `system`.
    pub fn rss_grid(&self) -> Table {
        self.grid(|c| c.max_rss_kib.map(|k| k as f64 / 1024.0), " MiB")
    }

    /// Failed and skipped cells, one line each.
    pub fn problems(&self) -> Vec<String> {
        self.cells
            .iter()
            .filter(|c| c.status != "ok")
            .map(|c| {
                format!(
                    "{} on program {}: {} ({})",
                    c.alloc,
                    c.program,
                    c.status,
                    c.reason.as_deref().unwrap_or("")
                )
            })
            .collect()
    }

    /// The section of the Markdown summary: both tables and what each program does (its failed
    /// cells are in the report's `problems`).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n## Programs: elapsed time and peak resident memory (median of {} run{}), ratio to `system`\n\n\
             Each program preloaded with the allocator (`fsm run`); lower is better. Started {}, \
             load average {:.1} before, {:.1} after. redis: the benchmark's elapsed time and \
             the server's peak RSS (Debian's redis-server links jemalloc, so `system` is jemalloc \
             there).\n",
            self.runs,
            if self.runs == 1 { "" } else { "s" },
            self.date,
            self.load.0,
            self.load.1
        );
        for (p, about) in &self.programs {
            let _ = writeln!(s, "- `{p}`: {about}");
        }
        let _ = writeln!(s, "\n### Elapsed time\n");
        s.push_str(&self.time_grid().text(true));
        let _ = writeln!(s, "\n### Peak RSS\n");
        s.push_str(&self.rss_grid().text(true));
        s
    }
}

/// The programs table's section of the HTML page (`html::extra_sections`), when it ran.
pub fn section(r: &Report) -> Option<Section> {
    let p = r.programs.as_ref()?;
    let mut s = format!(
        "<p class=\"note\">Each program preloaded with the allocator (<code>fsm run</code>): \
         elapsed time and peak resident memory, median of {} run{}, ratio to <code>system</code> \
         in brackets; lower is better. Started {}, load average {:.1} before, {:.1} after. \
         redis: the benchmark's elapsed time and the server's peak RSS.</p>\n<ul>\n",
        p.runs,
        if p.runs == 1 { "" } else { "s" },
        html::escape(&p.date),
        p.load.0,
        p.load.1
    );
    for (name, about) in &p.programs {
        let _ = writeln!(
            s,
            "<li><code>{}</code>: {}</li>",
            html::escape(name),
            html::escape(about)
        );
    }
    s.push_str("</ul>\n<h3>Elapsed time</h3>\n");
    s.push_str(&html::table(&p.time_grid()));
    s.push_str("<h3>Peak RSS</h3>\n");
    s.push_str(&html::table(&p.rss_grid()));
    Some(Section {
        id: "programs".into(),
        title: "Programs: elapsed time and peak RSS".into(),
        html: s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(program: &str, alloc: &str, status: &str, wall: f64, rss: u64) -> ProgramCell {
        ProgramCell {
            program: program.into(),
            alloc: alloc.into(),
            status: status.into(),
            reason: (status != "ok").then(|| "it broke".to_string()),
            wall_s: (status == "ok").then_some(wall),
            max_rss_kib: (status == "ok").then_some(rss),
            runs: vec![(wall, rss)],
        }
    }

    fn sample() -> Programs {
        Programs {
            date: "2026-12-05 14:00 UTC".into(),
            load: (1.5, 2.0),
            runs: 3,
            programs: vec![
                ("sort".into(), "sorts <lines>".into()),
                ("redis".into(), "a server".into()),
            ],
            allocs: vec!["system".into(), "best-fit".into()],
            cells: vec![
                cell("sort", "system", "ok", 2.0, 2048),
                cell("sort", "best-fit", "ok", 3.0, 1024),
                cell("redis", "system", "ok", 1.0, 4096),
                cell("redis", "best-fit", "timeout", 0.0, 0),
            ],
        }
    }

    #[test]
    fn cells_carry_their_ratio_to_system() {
        let t = sample().time_grid();
        assert_eq!(t.rows[0], ["allocator", "sort", "redis"]);
        assert_eq!(t.rows[1], ["system", "2.00 s (1.00x)", "1.00 s (1.00x)"]);
        assert_eq!(t.rows[2], ["best-fit", "3.00 s (1.50x)", "timeout"]);
        let m = sample().rss_grid();
        assert_eq!(m.rows[2][1], "1.00 MiB (0.50x)");
    }

    #[test]
    fn failed_cells_are_problems_naming_allocator_and_program() {
        assert_eq!(
            sample().problems(),
            ["best-fit on program redis: timeout (it broke)"]
        );
    }

    #[test]
    fn the_summary_and_the_page_show_date_load_and_both_tables() {
        let md = sample().markdown();
        assert!(md.contains("2026-12-05 14:00 UTC"), "{md}");
        assert!(md.contains("load average 1.5 before, 2.0 after"), "{md}");
        assert!(
            md.lines().any(|l| l.starts_with("| best-fit")
                && l.contains("| 3.00 s (1.50x) |")
                && l.ends_with("timeout |")),
            "{md}"
        );
        let report = Report {
            machine: "m".into(),
            date: "d".into(),
            settings: "s".into(),
            allocs: Vec::new(),
            workloads: Vec::new(),
            cells: Vec::new(),
            programs: Some(sample()),
        };
        let s = section(&report).expect("a section when the table ran");
        assert_eq!(s.id, "programs");
        assert_eq!(s.html.matches("<table").count(), 2, "{}", s.html);
        assert!(
            s.html.contains("sorts &lt;lines&gt;"),
            "escaped: {}",
            s.html
        );
        let none = Report {
            programs: None,
            ..report
        };
        assert!(section(&none).is_none());
    }

    #[test]
    fn the_median_is_the_middle_run() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(Vec::<u64>::new()), None);
    }
}
