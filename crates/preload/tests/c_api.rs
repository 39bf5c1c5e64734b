//! C's allocation API as glibc 2.36 defines it, on every policy: the special cases, fork with
//! threads running, threads that exit, and bad frees that abort naming the pointer.

mod common;

use common::{compile_c, policies, run, run_env, scratch};

/// Checks every special case of the API; prints `ok` or the first case that fails.
const SEMANTICS: &str = r#"
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define CHECK(c) do { if (!(c)) { printf("FAILED line %d: %s\n", __LINE__, #c); return 1; } } while (0)
int main(void) {
    void *p, *q;
    long page = sysconf(_SC_PAGESIZE);
    errno = 0; CHECK(malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0; CHECK(malloc(PTRDIFF_MAX + (size_t)1) == NULL && errno == ENOMEM);
    errno = 0; CHECK(calloc(SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    errno = 0; CHECK(reallocarray(NULL, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    errno = 0; CHECK(pvalloc(SIZE_MAX) == NULL && errno == ENOMEM);
    p = malloc(0); q = malloc(0); CHECK(p && q && p != q); free(p); free(q);
    free(NULL);
    p = malloc(100); CHECK(p && ((uintptr_t)p & 15) == 0 && malloc_usable_size(p) >= 100);
    memset(p, 7, 100);
    q = realloc(p, 100000); CHECK(q && ((unsigned char *)q)[99] == 7);
    CHECK(malloc_usable_size(q) >= 100000);
    CHECK(realloc(q, 0) == NULL);
    p = realloc(NULL, 10); CHECK(p); free(p);
    p = calloc(1000, 8); CHECK(p); for (int i = 0; i < 8000; i++) CHECK(((char *)p)[i] == 0); free(p);
    CHECK(posix_memalign(&p, 3, 10) == EINVAL);
    CHECK(posix_memalign(&p, 24, 10) == EINVAL);
    CHECK(posix_memalign(&p, 0, 10) == EINVAL);
    CHECK(posix_memalign(&p, 64, 100) == 0 && ((uintptr_t)p & 63) == 0); free(p);
    q = (void *)1; errno = 0;
    CHECK(posix_memalign(&q, 64, SIZE_MAX / 2) == ENOMEM && q == (void *)1 && errno == 0);
    p = memalign(4096, 10); CHECK(p && ((uintptr_t)p & 4095) == 0); free(p);
    p = memalign(100, 10); CHECK(p && ((uintptr_t)p & 127) == 0); free(p);
    errno = 0; CHECK(memalign(SIZE_MAX / 2 + 2, 10) == NULL && errno == EINVAL);
    p = aligned_alloc(256, 1000); CHECK(p && ((uintptr_t)p & 255) == 0); free(p);
    p = valloc(10); CHECK(p && ((uintptr_t)p % page) == 0); free(p);
    p = pvalloc(10); CHECK(p && ((uintptr_t)p % page) == 0 && malloc_usable_size(p) >= (size_t)page); free(p);
    CHECK(malloc_usable_size(NULL) == 0);
    p = reallocarray(NULL, 10, 10); CHECK(p); free(p);
    /* Every byte malloc_usable_size promised survives a realloc that moves the block: C
       programs write up to it (redis's strings do). A neighbour taken first makes a move likely. */
    for (size_t n = 1; n < 5000; n = n * 3 + 1) {
        unsigned char *a = malloc(n), *b;
        size_t u = malloc_usable_size(a);
        void *neighbour = malloc(n);
        CHECK(a && neighbour && u >= n);
        for (size_t i = 0; i < u; i++) a[i] = (unsigned char)(i * 13 + 1);
        b = realloc(a, u + 1); CHECK(b);
        for (size_t i = 0; i < u; i++) CHECK(b[i] == (unsigned char)(i * 13 + 1));
        size_t v = malloc_usable_size(b);
        for (size_t i = 0; i < v; i++) b[i] = (unsigned char)(i * 7 + 3);
        a = realloc(b, 4 * v + 4096); CHECK(a);
        for (size_t i = 0; i < v; i++) CHECK(a[i] == (unsigned char)(i * 7 + 3));
        free(neighbour); free(a);
    }
    puts("ok");
    return 0;
}
"#;

/// Threads allocate while the main thread forks; each child allocates (every lock the parent's
/// threads held is free in it) and exits.
const FORK: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile int stop;
static void *churn(void *arg) {
    void *keep[64] = {0};
    unsigned i = (unsigned)(size_t)arg;
    while (!stop) { i = i * 1103515245 + 12345; free(keep[i % 64]); keep[i % 64] = malloc(i % 5000); }
    for (int k = 0; k < 64; k++) free(keep[k]);
    return 0;
}
int main(void) {
    pthread_t t[3];
    for (int k = 0; k < 3; k++) pthread_create(&t[k], 0, churn, (void *)(size_t)(k + 1));
    for (int n = 0; n < 60; n++) {
        pid_t pid = fork();
        if (pid == 0) {
            void *p[100];
            for (int k = 0; k < 100; k++) p[k] = malloc(k * 37 + 1);
            for (int k = 0; k < 100; k++) free(p[k]);
            _exit(0);
        }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) { puts("child failed"); return 1; }
    }
    stop = 1;
    for (int k = 0; k < 3; k++) pthread_join(t[k], 0);
    puts("ok");
    return 0;
}
"#;

/// Threads that allocate, free some, leave some to the main thread, and exit, many times; the
/// four of a round are alive together (a barrier), so each needs a cache or arena of its own.
const THREAD_EXIT: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
static pthread_barrier_t all4;
static void *work(void *arg) {
    void **out = arg;
    for (int i = 0; i < 1000; i++) free(malloc(i * 3 + 1));
    *out = malloc(1234);
    pthread_barrier_wait(&all4);
    return 0;
}
int main(void) {
    pthread_barrier_init(&all4, 0, 4);
    for (int round = 0; round < 50; round++) {
        pthread_t t[4]; void *left[4];
        for (int k = 0; k < 4; k++) pthread_create(&t[k], 0, work, &left[k]);
        for (int k = 0; k < 4; k++) { pthread_join(t[k], 0); free(left[k]); }
    }
    puts("ok");
    return 0;
}
"#;

/// A bad free of the kind argv[1] names; prints the pointer first (so stdio's buffer exists
/// before: a double free right after the first, with no allocation between that could reuse
/// the block).
const BAD_FREE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    char *p = malloc(64), *bad;
    char local[32];
    int twice = !strcmp(argv[1], "double");
    if (twice) bad = p;
    else if (!strcmp(argv[1], "interior")) bad = p + 16;
    else bad = local + 16;
    printf("%p\n", (void *)bad);
    fflush(stdout);
    if (twice) free(p);
    free(bad);
    puts("survived");
    return 0;
}
"#;

/// Large blocks (CHeap's mapped path, the own fronts' large paths): realloc across the mapping
/// threshold both ways keeps the bytes, calloc reads zero, memalign aligns; then the pages just
/// outside a 16 MiB block's page-aligned range are mapped over afresh (as glibc's tst-free-errno
/// does, where that range is the block's own mapping) and the block is freed: the heap must
/// not have kept anything there.
const LARGE: &str = r#"
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define CHECK(c) do { if (!(c)) { printf("FAILED line %d: %s\n", __LINE__, #c); return 1; } } while (0)
static int same(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i += 4093) if (p[i] != (unsigned char)(i * 7)) return 0;
    return 1;
}
int main(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), mib = (size_t)1 << 20;
    unsigned char *p = malloc(3 * mib);
    CHECK(p && malloc_usable_size(p) >= 3 * mib);
    for (size_t i = 0; i < 3 * mib; i += 4093) p[i] = (unsigned char)(i * 7);
    p = realloc(p, 9 * mib); CHECK(p && same(p, 3 * mib) && malloc_usable_size(p) >= 9 * mib);
    p = realloc(p, 100000); CHECK(p && same(p, 100000));
    p = realloc(p, 2 * mib); CHECK(p && same(p, 100000));
    free(p);
    unsigned char *z = calloc(4, mib);
    CHECK(z); for (size_t i = 0; i < 4 * mib; i += 511) CHECK(z[i] == 0); free(z);
    void *a = memalign(mib, 2 * mib);
    CHECK(a && ((uintptr_t)a & (mib - 1)) == 0); memset(a, 1, 2 * mib); free(a);

    char *before = malloc(page), *after = malloc(page);
    CHECK(before && after);
    /* Something mapped above, so the fresh pages below go over nobody else's memory. */
    CHECK(mmap(NULL, 16 * mib, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED);
    size_t span = 16 * mib;
    char *big = malloc(span - 256);
    CHECK(big);
    char *lo = (char *)((uintptr_t)big & ~(uintptr_t)(page - 1));
    memcpy(before, lo, page);
    memcpy(after, lo + span - page, page);
    CHECK(mmap(lo - page, span + 2 * page, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == lo - page);
    memcpy(lo, before, page);
    memcpy(lo + span - page, after, page);
    free(big);
    for (int i = 0; i < 1000; i++) { void *q = malloc(16 + i * 40); CHECK(q); memset(q, 3, 16 + i * 40); free(q); }
    free(before); free(after);
    puts("ok");
    return 0;
}
"#;

/// Runs `exe` on `policy` in `dir` with the library's exit report on: the output, and the report
/// (`null` if it wrote none).
fn run_reporting(
    policy: &str,
    dir: &std::path::Path,
    exe: &std::path::Path,
) -> (std::process::Output, serde_json::Value) {
    let out = dir.join(format!("{policy}.json"));
    let o = run_env(
        Some(policy),
        dir,
        exe.to_str().unwrap(),
        &[],
        b"",
        &[("FSM_STATS_OUT", out.as_os_str())],
    );
    let report = std::fs::read_to_string(&out)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    (o, report)
}

fn programs(test: &str) -> (std::path::PathBuf, [std::path::PathBuf; 4]) {
    let dir = scratch(test);
    let exes = [
        compile_c(&dir, "semantics", SEMANTICS),
        compile_c(&dir, "fork", FORK),
        compile_c(&dir, "thread_exit", THREAD_EXIT),
        compile_c(&dir, "bad_free", BAD_FREE),
    ];
    (dir, exes)
}

#[test]
fn glibc_semantics_fork_and_thread_exit_on_every_policy() {
    let (dir, exes) = programs("c-api-semantics");
    let mut failures = Vec::new();
    for exe in &exes[..3] {
        let name = exe.file_name().unwrap().to_string_lossy().into_owned();
        // The programs check glibc's own behaviour first: they are right about it.
        let o = run(None, &dir, exe.to_str().unwrap(), &[], b"");
        assert_eq!(o.stdout, b"ok\n", "{name} under glibc: {o:?}");
        for policy in policies() {
            let o = run(Some(policy), &dir, exe.to_str().unwrap(), &[], b"");
            if o.stdout != b"ok\n" || !o.status.success() {
                failures.push(format!(
                    "{name} on {policy}: {} {} {}",
                    o.status,
                    String::from_utf8_lossy(&o.stdout).trim(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_bad_free_aborts_naming_the_pointer_on_every_policy() {
    use std::os::unix::process::ExitStatusExt;
    let (dir, exes) = programs("c-api-bad-free");
    let mut failures = Vec::new();
    for policy in policies() {
        for kind in ["double", "interior", "foreign"] {
            let o = run(Some(policy), &dir, exes[3].to_str().unwrap(), &[kind], b"");
            let out = String::from_utf8_lossy(&o.stdout);
            let ptr = out.lines().next().unwrap_or("?").trim_start_matches("0x");
            let err = String::from_utf8_lossy(&o.stderr);
            let named = err.contains(&format!("0x{ptr}"));
            if o.status.signal() != Some(libc::SIGABRT) || !named || out.contains("survived") {
                failures.push(format!(
                    "{kind} free on {policy}: {} (pointer 0x{ptr}): {}",
                    o.status,
                    err.trim()
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A thread's caches go back when it exits, under LD_PRELOAD too (where the TLS destructor's
/// registration allocates from inside the front: the bootstrap arena serves it). The fronts that
/// say so at exit are checked: Tcmalloc's registry of thread caches is empty or holds only the
/// main thread's (its exit at `exit()` may come after the report); Ptmalloc's arenas are reused
/// by the next threads (at most the main one and one per thread alive at once, 4 here; without
/// the exit path every thread would take a new arena, up to 8 x CPUs).
#[test]
fn thread_exit_returns_the_caches_of_the_own_fronts() {
    let dir = scratch("c-api-thread-exit");
    let exe = compile_c(&dir, "thread_exit", THREAD_EXIT);
    let mut failures = Vec::new();
    for policy in policies() {
        let (o, report) = run_reporting(policy, &dir, &exe);
        assert_eq!(o.stdout, b"ok\n", "{policy}: {o:?}");
        let own = !report["runs_as"].as_str().unwrap().starts_with("CHeap");
        let g = &report["gauges"];
        let threads = g["threads with a cache"].as_u64();
        let arenas = g["arenas"].as_u64();
        if own && threads.is_none() && arenas.is_none() {
            failures.push(format!(
                "{policy}: its own front reports no gauge: {report}"
            ));
        }
        if threads.is_some_and(|t| t > 1) {
            failures.push(format!("{policy}: {threads:?} threads still hold a cache"));
        }
        if arenas.is_some_and(|a| a > 5) {
            failures.push(format!(
                "{policy}: {arenas:?} arenas for 4 threads at a time"
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Large blocks on every policy (the program checks glibc first); the policies behind `CHeap`
/// serve them from mappings of their own: the exit report counts them, all unmapped, and the
/// manager never held one.
#[test]
fn large_blocks_on_every_policy_and_their_own_mappings_under_cheap() {
    let dir = scratch("c-api-large");
    let exe = compile_c(&dir, "large", LARGE);
    let o = run(None, &dir, exe.to_str().unwrap(), &[], b"");
    assert_eq!(o.stdout, b"ok\n", "under glibc: {o:?}");
    let mut failures = Vec::new();
    for policy in policies() {
        let (o, report) = run_reporting(policy, &dir, &exe);
        if o.stdout != b"ok\n" || !o.status.success() {
            failures.push(format!(
                "{policy}: {} {} {}",
                o.status,
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            continue;
        }
        if !report["runs_as"].as_str().unwrap().starts_with("CHeap") {
            continue;
        }
        let g = &report["gauges"];
        let peak = g["peak bytes mapped for large blocks"]
            .as_u64()
            .unwrap_or(0);
        let left = g["large blocks mapped"].as_u64();
        let held = report["stats"]["peak_live_requested"]
            .as_u64()
            .unwrap_or(u64::MAX);
        if peak < 16 << 20 || left != Some(0) || held >= 1 << 20 {
            failures.push(format!(
                "{policy}: mapped at most {peak} B, {left:?} left mapped, the manager held \
                 {held} B at most: {report}"
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
