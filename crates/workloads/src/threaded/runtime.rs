//! The threaded replay's threads: one per trace thread, their waits, window and timing.

use core::alloc::{GlobalAlloc, Layout};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use core::ptr::NonNull;

use super::program::{Action, ThreadStep, ThreadedProgram};
use crate::replay::{GlobalTarget, ReplayError, Target};

/// How to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadedOptions {
    /// How far (in trace events) a thread may run ahead of the slowest unfinished thread
    /// (`usize::MAX`: no limit, causality only).
    pub window: usize,
    /// Stop a replay that runs longer than this: it fails with an error saying so (the blocks
    /// still live are freed). `None`: no limit.
    pub deadline: Option<Duration>,
    /// A refused request is an error instead of a NULL the replay goes on with.
    pub strict: bool,
}

impl Default for ThreadedOptions {
    /// A window of 4096 events, no deadline, refusals leave NULL.
    fn default() -> Self {
        ThreadedOptions {
            window: 4096,
            deadline: None,
            strict: false,
        }
    }
}

/// What a threaded replay measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadedOutcome {
    /// From releasing the threads to the last thread's last event.
    pub elapsed: Duration,
    /// Events replayed (all threads).
    pub steps: usize,
    /// OS threads used.
    pub threads: usize,
    /// Events that found their block's previous event not yet done and waited for it.
    pub waits: u64,
    /// Times a thread waited because it was a window ahead of the slowest thread.
    pub window_waits: u64,
    /// Blocks the trace left live (freed after the timed part).
    pub leftovers: usize,
    /// Requests the allocator refused (they left NULL).
    pub refused: usize,
}

impl ThreadedOutcome {
    /// Wall-clock nanoseconds per event.
    pub fn ns_per_op(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.steps.max(1) as f64
    }
}

/// The state of one lifetime during a replay.
struct Slot {
    /// Events of the lifetime done.
    version: AtomicU32,
    /// The block's address (0: not allocated yet, or freed).
    ptr: AtomicUsize,
    /// Its size now.
    size: AtomicUsize,
}

/// The tag byte of lifetime `life` (never 0, so a zeroed block does not pass for a tagged one).
fn tag(life: u32) -> u8 {
    (life.wrapping_mul(0x9e37_79b9) >> 24) as u8 | 1
}

/// A thread's published position, on a cache line of its own.
#[repr(align(128))]
struct Position(AtomicUsize);

/// How long a waiting thread yields before it sleeps. Yielding keeps the hand-over fast when the
/// thread waited for is running (on the other core, or next on this one); sleeping gives the core
/// away when it is not (a loaded machine).
const YIELD_FOR: Duration = Duration::from_micros(200);

/// How a replay stopped by its deadline says so (then the limit).
pub const TOO_LONG: &str = "stopped: the threaded replay ran longer than";

/// Published "all done" position.
const DONE: usize = usize::MAX;

struct Shared<'a> {
    prog: &'a ThreadedProgram,
    window: usize,
    deadline: Option<Duration>,
    strict: bool,
    refused: AtomicUsize,
    /// When the threads were released.
    began: OnceLock<Instant>,
    slots: Vec<Slot>,
    /// Each thread's next event (0-based trace index) or [`DONE`]; may lag behind the truth
    /// except while the thread waits.
    positions: Vec<Position>,
    window_waits: AtomicU64,
    /// Threads in (or about to go into) a sleeping wait.
    sleepers: AtomicUsize,
    /// Each thread's handle, set when it first sleeps, to wake it.
    sleepers_thread: Vec<OnceLock<std::thread::Thread>>,
    start: AtomicBool,
    abort: AtomicBool,
    finished: AtomicUsize,
    end: OnceLock<Instant>,
    waits: AtomicU64,
    error: std::sync::Mutex<Option<ReplayError>>,
}

impl Shared<'_> {
    fn fail(&self, e: ReplayError) {
        self.abort.store(true, Ordering::Relaxed);
        self.progress();
        if let Ok(mut g) = self.error.lock() {
            match &*g {
                Some(old) if old.event <= e.event => {}
                _ => *g = Some(e),
            }
        }
    }

    /// The earliest position any other thread than `me` has published.
    fn slowest_other(&self, me: usize) -> usize {
        self.positions
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != me)
            .map(|(_, p)| p.0.load(Ordering::Acquire))
            .min()
            .unwrap_or(DONE)
    }

    /// Waits until `ready()`: spinning briefly, then yielding for up to [`YIELD_FOR`], then
    /// sleeping until another thread makes progress; false if the replay was aborted meanwhile.
    fn wait_until(&self, me: usize, ready: impl Fn() -> bool) -> bool {
        let mut round = 0u32;
        let mut yielding: Option<Instant> = None;
        loop {
            if ready() {
                return true;
            }
            if self.abort.load(Ordering::Relaxed) {
                return false;
            }
            round += 1;
            if round < 64 {
                std::hint::spin_loop();
            } else if yielding.get_or_insert_with(Instant::now).elapsed() < YIELD_FOR {
                std::thread::yield_now();
            } else {
                // Sleep: the thread we wait for may need this core. Progress (a block's event
                // done, a position published) wakes every sleeper; the timeout covers a wake-up
                // missed in the moment between the check and the park.
                let _ = self.sleepers_thread[me].set(std::thread::current());
                self.sleepers.fetch_add(1, Ordering::SeqCst);
                if !ready() && !self.abort.load(Ordering::Relaxed) {
                    std::thread::park_timeout(Duration::from_micros(100));
                }
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Wakes the sleeping threads, if any (cheap when none sleeps).
    fn progress(&self) {
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            for t in self.sleepers_thread.iter().filter_map(OnceLock::get) {
                t.unpark();
            }
        }
    }

    /// Waits until event `index` of thread `me` is within the window; false if aborted.
    fn wait_window(&self, me: usize, index: usize, bound: &mut usize) -> bool {
        *bound = self.slowest_other(me).saturating_add(self.window);
        if index <= *bound {
            return true;
        }
        self.positions[me].0.store(index, Ordering::Release);
        self.progress();
        self.window_waits.fetch_add(1, Ordering::Relaxed);
        let ok = self.wait_until(me, || {
            self.slowest_other(me).saturating_add(self.window) >= index
        });
        *bound = self.slowest_other(me).saturating_add(self.window);
        ok
    }

    /// Waits until `slot` has had `seq` events; false if the replay was aborted meanwhile.
    fn wait(&self, me: usize, index: usize, slot: &Slot, seq: u32) -> bool {
        if slot.version.load(Ordering::Acquire) == seq {
            return true;
        }
        self.positions[me].0.store(index, Ordering::Release);
        self.progress();
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.wait_until(me, || slot.version.load(Ordering::Acquire) == seq)
    }

    fn run_thread(&self, g: &(dyn GlobalAlloc + Sync), me: usize, steps: &[ThreadStep]) {
        let mut target = GlobalTarget::new(g, false, None);
        while !self.start.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let mut bound = 0;
        for (k, s) in steps.iter().enumerate() {
            let index = s.event - 1;
            if k % 64 == 0 {
                self.positions[me].0.store(index, Ordering::Release);
                self.progress();
                if self.abort.load(Ordering::Relaxed) {
                    break;
                }
                if let (Some(d), Some(b)) = (self.deadline, self.began.get())
                    && b.elapsed() > d
                {
                    self.fail(
                        self.prog
                            .error(s.event - 1, format!("{TOO_LONG} {} ms", d.as_millis())),
                    );
                    break;
                }
            }
            if index > bound && !self.wait_window(me, index, &mut bound) {
                break;
            }
            if let Err(e) = self.step(&mut target, me, s) {
                self.fail(e);
                break;
            }
        }
        self.positions[me].0.store(DONE, Ordering::Release);
        self.progress();
        if self.finished.fetch_add(1, Ordering::AcqRel) + 1 == self.prog.threads.len() {
            let _ = self.end.set(Instant::now());
        }
    }

    /// A request the allocator refused: NULL and on, or (with `strict`) the replay's error.
    fn refuse(&self, s: &ThreadStep, what: String) -> Result<(), ReplayError> {
        if self.strict {
            return Err(self.prog.error(s.event - 1, what));
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A new block of `s.size` bytes (`calloc`'s when `zeroed`), tagged and published; NULL if
    /// refused.
    fn fresh(
        &self,
        target: &mut GlobalTarget<'_, '_>,
        s: &ThreadStep,
        slot: &Slot,
        zeroed: bool,
    ) -> Result<(), ReplayError> {
        let err = |message: String| self.prog.error(s.event - 1, message);
        let align = self.prog.lives[s.life as usize].align;
        let Ok(l) = Layout::from_size_align(s.size, align) else {
            return self.refuse(s, format!("no layout for {} bytes", s.size));
        };
        let Some(p) = target.alloc(l, zeroed).map_err(err)? else {
            return self.refuse(s, format!("allocation of {} bytes refused", s.size));
        };
        let p = p.as_ptr();
        let t = tag(s.life);
        // SAFETY: `p` is a live block of `s.size >= 1` bytes, ours alone until published.
        unsafe {
            if zeroed && (p.read() != 0 || p.add(s.size - 1).read() != 0) {
                // SAFETY: never published: freed here, once.
                let _ = target.free(NonNull::new_unchecked(p), l);
                return Err(err(
                    "calloc returned a block that does not read as zero".into()
                ));
            }
            p.write(t);
            p.add(s.size - 1).write(t);
        }
        slot.ptr.store(p as usize, Ordering::Relaxed);
        slot.size.store(s.size, Ordering::Relaxed);
        Ok(())
    }

    fn step(
        &self,
        target: &mut GlobalTarget<'_, '_>,
        me: usize,
        s: &ThreadStep,
    ) -> Result<(), ReplayError> {
        let err = |message: String| self.prog.error(s.event - 1, message);
        let slot = &self.slots[s.life as usize];
        let align = self.prog.lives[s.life as usize].align;
        let t = tag(s.life);
        if s.cross && !self.wait(me, s.event - 1, slot, s.seq) {
            return Ok(()); // aborted: another thread reported the error
        }
        // The block as the lifetime's previous event left it (published by its Release store of
        // the version, ordered before this by the Acquire load in `wait`); None: NULL.
        let live = NonNull::new(slot.ptr.load(Ordering::Relaxed) as *mut u8);
        let layout = |size: usize| {
            Layout::from_size_align(size, align)
                .map_err(|_| err(format!("no layout for {size} bytes aligned to {align}")))
        };
        match (s.action, live) {
            (Action::Alloc, _) => self.fresh(target, s, slot, false)?,
            (Action::AllocZeroed, _) => self.fresh(target, s, slot, true)?,
            (Action::Realloc { .. }, None) => self.fresh(target, s, slot, false)?, // realloc(NULL)
            (Action::Realloc { .. }, Some(p)) => {
                // The size the block has now (a refused realloc before left it unchanged).
                let old = layout(slot.size.load(Ordering::Relaxed))?;
                let Ok(new) = Layout::from_size_align(s.size, align) else {
                    return self
                        .refuse(s, format!("no layout for {} bytes", s.size))
                        .map(|()| self.done(slot, s));
                };
                // SAFETY: `p` is live in the allocator with `old` (see `live` above).
                let Some((q, _)) = (unsafe { target.realloc(p, old, new) }).map_err(err)? else {
                    // Refused: the old block stays, unchanged.
                    return self
                        .refuse(s, format!("realloc to {} bytes refused", s.size))
                        .map(|()| self.done(slot, s));
                };
                let q = q.as_ptr();
                slot.ptr.store(q as usize, Ordering::Relaxed);
                slot.size.store(s.size, Ordering::Relaxed);
                // SAFETY: `q` is the live block of `s.size >= 1` bytes; the realloc kept its
                // first byte (min(old, new) >= 1 bytes are kept).
                let first = unsafe { q.read() };
                if first != t {
                    return Err(err(format!(
                        "realloc lost the block's first byte (0x{first:02x}, 0x{t:02x} written)"
                    )));
                }
                // SAFETY: as above.
                unsafe { q.add(s.size - 1).write(t) };
            }
            (Action::Free, None) => {} // free(NULL)
            (Action::Free, Some(p)) => {
                let size = slot.size.load(Ordering::Relaxed);
                let l = layout(size)?;
                let p = p.as_ptr();
                // SAFETY: `p` is live with `l` (see `live` above), `size >= 1`.
                let (first, last) = unsafe { (p.read(), p.add(size - 1).read()) };
                if first != t || last != t {
                    return Err(err(format!(
                        "block {} was overwritten while live (first byte 0x{first:02x}, last 0x{last:02x}, 0x{t:02x} written)",
                        s.life
                    )));
                }
                slot.ptr.store(0, Ordering::Relaxed);
                // SAFETY: `p` is live in the allocator with `l`, freed once (the slot is cleared).
                unsafe { target.free(NonNull::new_unchecked(p), l) }.map_err(err)?;
            }
        }
        self.done(slot, s);
        Ok(())
    }

    /// The lifetime's event `s.seq` is done: the next one (perhaps on another thread) may run.
    fn done(&self, slot: &Slot, s: &ThreadStep) {
        slot.version.store(s.seq + 1, Ordering::Release);
        self.progress();
    }
}

/// Replays `prog` through `g` with one OS thread per trace thread (see the module docs). The
/// blocks still live at the end (the trace's leftovers, or everything live when an error stopped
/// the replay) are freed before returning.
pub fn replay_threaded(
    g: &(dyn GlobalAlloc + Sync),
    prog: &ThreadedProgram,
    opts: ThreadedOptions,
) -> Result<ThreadedOutcome, ReplayError> {
    let shared = Shared {
        prog,
        window: opts.window.max(1),
        deadline: opts.deadline,
        strict: opts.strict,
        refused: AtomicUsize::new(0),
        began: OnceLock::new(),
        positions: prog
            .threads
            .iter()
            .map(|t| Position(AtomicUsize::new(t.first().map_or(DONE, |s| s.event - 1))))
            .collect(),
        window_waits: AtomicU64::new(0),
        sleepers: AtomicUsize::new(0),
        sleepers_thread: prog.threads.iter().map(|_| OnceLock::new()).collect(),
        slots: (0..prog.lives.len())
            .map(|_| Slot {
                version: AtomicU32::new(0),
                ptr: AtomicUsize::new(0),
                size: AtomicUsize::new(0),
            })
            .collect(),
        start: AtomicBool::new(false),
        abort: AtomicBool::new(false),
        finished: AtomicUsize::new(0),
        end: OnceLock::new(),
        waits: AtomicU64::new(0),
        error: std::sync::Mutex::new(None),
    };
    let mut started = None;
    let joined = std::thread::scope(|sc| {
        let mut handles = Vec::with_capacity(prog.threads.len());
        for (i, steps) in prog.threads.iter().enumerate() {
            let sh = &shared;
            let h = std::thread::Builder::new()
                .name(format!("replay-{i}"))
                .spawn_scoped(sc, move || sh.run_thread(g, i, steps));
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    shared.fail(ReplayError {
                        event: 0,
                        line: None,
                        message: format!("cannot start replay thread {i}: {e}"),
                    });
                    break;
                }
            }
        }
        let now = Instant::now();
        started = Some(now);
        let _ = shared.began.set(now);
        shared.start.store(true, Ordering::Release);
        // Join every thread (a short-circuit would leave a panicked one to the scope, which
        // would panic in turn).
        let joins: Vec<bool> = handles.into_iter().map(|h| h.join().is_ok()).collect();
        joins.into_iter().all(|ok| ok)
    });
    let elapsed = match (started, shared.end.get()) {
        (Some(s), Some(e)) => e.saturating_duration_since(s),
        _ => Duration::ZERO,
    };
    // Free what is still live (untimed).
    let mut leftovers = 0;
    for (life, slot) in prog.lives.iter().zip(&shared.slots) {
        let p = slot.ptr.load(Ordering::Acquire) as *mut u8;
        if p.is_null() {
            continue;
        }
        leftovers += 1;
        let size = slot.size.load(Ordering::Relaxed);
        if let Ok(l) = Layout::from_size_align(size, life.align) {
            // SAFETY: a non-null slot holds a block live in `g` with this layout (every thread
            // has been joined, so nothing else uses it); freed once.
            unsafe { g.dealloc(p, l) };
        }
    }
    if !joined {
        return Err(ReplayError {
            event: 0,
            line: None,
            message: "a replay thread panicked".into(),
        });
    }
    if let Some(e) = shared.error.lock().ok().and_then(|mut g| g.take()) {
        return Err(e);
    }
    Ok(ThreadedOutcome {
        elapsed,
        steps: prog.events,
        threads: prog.threads.len(),
        waits: shared.waits.load(Ordering::Relaxed),
        window_waits: shared.window_waits.load(Ordering::Relaxed),
        leftovers,
        refused: shared.refused.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threaded::{BumpFloor, ThreadedProgram, thread_count};
    use crate::trace::Trace;
    use std::collections::HashMap;
    use std::sync::Mutex;

    fn trace(text: &str) -> Trace {
        Trace::read_text(text.as_bytes()).unwrap()
    }

    /// The system allocator, counting calls and keeping the live set (each block once).
    #[derive(Default)]
    struct Counting {
        live: Mutex<HashMap<usize, Layout>>,
        allocs: AtomicUsize,
        zeroed: AtomicUsize,
        reallocs: AtomicUsize,
        frees: AtomicUsize,
        /// (thread name, what) of every free, to see frees happen on the trace's thread.
        threads: Mutex<Vec<String>>,
        bad: AtomicUsize,
        /// The most blocks live at once.
        max_live: AtomicUsize,
    }

    impl Counting {
        fn take(&self, p: *mut u8, l: Layout) {
            let mut live = self.live.lock().unwrap();
            if live.remove(&(p as usize)) != Some(l) {
                self.bad.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn put(&self, p: *mut u8, l: Layout) {
            let mut live = self.live.lock().unwrap();
            if !p.is_null() && live.insert(p as usize, l).is_some() {
                self.bad.fetch_add(1, Ordering::Relaxed);
            }
            self.max_live.fetch_max(live.len(), Ordering::Relaxed);
        }
    }

    // SAFETY: forwards to `System`, only recording the calls.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            self.allocs.fetch_add(1, Ordering::Relaxed);
            // SAFETY: forwarded caller contract.
            let p = unsafe { std::alloc::System.alloc(l) };
            self.put(p, l);
            p
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            self.zeroed.fetch_add(1, Ordering::Relaxed);
            // SAFETY: forwarded caller contract.
            let p = unsafe { std::alloc::System.alloc_zeroed(l) };
            self.put(p, l);
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            self.frees.fetch_add(1, Ordering::Relaxed);
            let name = std::thread::current().name().unwrap_or("?").to_string();
            self.threads.lock().unwrap().push(name);
            self.take(p, l);
            // SAFETY: forwarded caller contract.
            unsafe { std::alloc::System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            self.reallocs.fetch_add(1, Ordering::Relaxed);
            self.take(p, l);
            // SAFETY: forwarded caller contract.
            let q = unsafe { std::alloc::System.realloc(p, l, n) };
            self.put(q, Layout::from_size_align(n, l.align()).unwrap());
            q
        }
    }

    #[test]
    fn cross_thread_frees_are_replayed_on_the_freeing_thread() {
        // Thread 0 allocates; thread 1 frees blocks 1 and 3, reallocs and frees 2; 4 is left live.
        let t = trace(
            "t0 a 1 100\nt0 c 2 64\nt0 a 3 5000\nt1 f 1\nt1 r 2 300\nt0 m 4 64 10\nt1 f 3\nt1 f 2\n",
        );
        let p = ThreadedProgram::compile(&t).unwrap();
        for _ in 0..20 {
            let g = Counting::default();
            let out = replay_threaded(&g, &p, ThreadedOptions::default()).unwrap();
            assert_eq!((out.threads, out.steps, out.leftovers), (2, 8, 1));
            assert_eq!(g.allocs.load(Ordering::Relaxed), 3);
            assert_eq!(g.zeroed.load(Ordering::Relaxed), 1);
            assert_eq!(g.reallocs.load(Ordering::Relaxed), 1);
            assert_eq!(g.frees.load(Ordering::Relaxed), 4);
            assert_eq!(g.bad.load(Ordering::Relaxed), 0);
            assert!(g.live.lock().unwrap().is_empty(), "every block freed");
            // Three frees ran on replay thread 1, the leftover's on this (test) thread.
            let names = g.threads.lock().unwrap().clone();
            assert_eq!(
                names.iter().filter(|n| *n == "replay-1").count(),
                3,
                "{names:?}"
            );
            assert_eq!(
                names.iter().filter(|n| n.starts_with("replay-0")).count(),
                0
            );
        }
    }

    #[test]
    fn synthetic_multi_thread_workloads_replay_completely() {
        for (name, t, threads) in [
            ("prodcons", crate::synth::producer_consumer(20_000, 3, 7), 4),
            ("larson", crate::synth::larson(20_000, 4, 6), 4),
        ] {
            let p = ThreadedProgram::compile(&t).unwrap();
            assert_eq!(p.thread_count(), threads, "{name}");
            assert!(p.cross_thread_events() > 1000, "{name}");
            let allocs = t.events.iter().filter(|e| e.op.is_alloc()).count();
            for _ in 0..3 {
                let g = Counting::default();
                let out = replay_threaded(&g, &p, ThreadedOptions::default()).unwrap();
                assert_eq!(out.steps, t.len(), "{name}");
                assert!(out.elapsed > Duration::ZERO, "{name}");
                assert_eq!(g.allocs.load(Ordering::Relaxed), allocs, "{name}");
                assert_eq!(g.frees.load(Ordering::Relaxed), allocs, "{name}");
                assert_eq!(g.bad.load(Ordering::Relaxed), 0, "{name}");
                assert!(g.live.lock().unwrap().is_empty(), "{name}");
            }
        }
    }

    #[test]
    fn the_window_bounds_how_far_a_producer_runs_ahead() {
        // Thread 0 allocates, thread 1 frees right after: at most one block live in trace order.
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("t0 a {i} 64\nt1 f {i}\n"));
        }
        let p = ThreadedProgram::compile(&trace(&text)).unwrap();
        for window in [1, 16, 256] {
            let g = Counting::default();
            let out = replay_threaded(
                &g,
                &p,
                ThreadedOptions {
                    window,
                    ..ThreadedOptions::default()
                },
            )
            .unwrap();
            // Thread 0 at event i waits until thread 1 has published a position of at least
            // i - window: every free before that is done, so at most about window / 2 + 1 blocks
            // are live (plus the block being allocated).
            let max = g.max_live.load(Ordering::Relaxed);
            assert!(max <= window / 2 + 2, "window {window}: {max} live");
            assert!(g.live.lock().unwrap().is_empty());
            assert_eq!(out.steps, 40_000);
        }
    }

    #[test]
    fn the_floor_replays_every_workload() {
        let t = crate::synth::producer_consumer(20_000, 3, 7);
        let p = ThreadedProgram::compile(&t).unwrap();
        let mut floor = BumpFloor::new(p.bump_bytes()).unwrap();
        for _ in 0..3 {
            let out = replay_threaded(&floor, &p, ThreadedOptions::default()).unwrap();
            assert_eq!(out.steps, t.len());
            floor.reset();
        }
        // Too small: a null result leaves NULL (the replay goes on and counts it), or with
        // `strict` is an error naming the event, never a crash.
        let small = BumpFloor::new(4096).unwrap();
        let out = replay_threaded(&small, &p, ThreadedOptions::default()).unwrap();
        assert!(out.refused > 0, "{out:?}");
        let strict = ThreadedOptions {
            strict: true,
            ..ThreadedOptions::default()
        };
        let e = replay_threaded(&small, &p, strict).unwrap_err();
        assert!(e.message.contains("refused"), "{e}");
    }

    #[test]
    fn a_deadline_stops_a_slow_replay_with_an_error() {
        /// The system allocator, slowed down, counting its allocations.
        struct Slow(AtomicUsize);
        // SAFETY: forwards to `System` after a sleep.
        unsafe impl GlobalAlloc for Slow {
            unsafe fn alloc(&self, l: Layout) -> *mut u8 {
                self.0.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
                // SAFETY: forwarded.
                unsafe { std::alloc::System.alloc(l) }
            }
            unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
                // SAFETY: forwarded.
                unsafe { std::alloc::System.dealloc(p, l) }
            }
        }
        let t = crate::synth::producer_consumer(20_000, 3, 7);
        let p = ThreadedProgram::compile(&t).unwrap();
        let opts = ThreadedOptions {
            deadline: Some(Duration::from_millis(50)),
            ..ThreadedOptions::default()
        };
        let slow = Slow(AtomicUsize::new(0));
        let e = replay_threaded(&slow, &p, opts).unwrap_err();
        assert!(e.message.starts_with(TOO_LONG), "{e}");
        // Stopped early: far fewer allocations than the trace's (the threads check the
        // deadline every 64 events, so a few hundred at most per thread).
        let allocs = t.events.iter().filter(|e| e.op.is_alloc()).count();
        let made = slow.0.load(Ordering::Relaxed);
        assert!(made < allocs / 4, "{made} of {allocs} allocations made");
    }

    #[test]
    fn events_without_a_thread_are_one_thread() {
        let p = ThreadedProgram::compile(&trace("a 1 10\nr 1 20\nf 1\n")).unwrap();
        assert_eq!((p.thread_count(), p.cross_thread_events()), (1, 0));
        let g = Counting::default();
        let out = replay_threaded(&g, &p, ThreadedOptions::default()).unwrap();
        assert_eq!((out.waits, out.leftovers), (0, 0));
        assert_eq!(thread_count(&trace("a 1 10\nt3 f 1\n")), 2);
    }

    /// Hands out the same buffer every time and frees nothing: blocks overlap.
    #[repr(C, align(16))]
    struct OneBuffer(std::cell::UnsafeCell<[u8; 256]>);
    // SAFETY: test only; the tests using it run one replay thread.
    unsafe impl Sync for OneBuffer {}
    // SAFETY: deliberately broken (returns overlapping blocks) to test the replay's checks; the
    // memory itself is valid for 256 bytes for as long as the value lives.
    unsafe impl GlobalAlloc for OneBuffer {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            if l.size() > 256 || l.align() > 1 << 4 {
                return core::ptr::null_mut();
            }
            self.0.get().cast()
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
    }

    #[test]
    fn a_broken_allocator_is_caught_not_a_panic() {
        let g = OneBuffer(std::cell::UnsafeCell::new([0; 256]));
        // Blocks 1 and 2 get the same memory: freeing 1 finds 2's tag.
        let p = ThreadedProgram::compile(&trace("a 1 10\na 2 10\nf 1\nf 2\n")).unwrap();
        let e = replay_threaded(&g, &p, ThreadedOptions::default()).unwrap_err();
        assert_eq!(e.event, 3);
        assert!(e.message.contains("overwritten"), "{e}");
        // A null result is NULL (its free does nothing), or under `strict` names the event and
        // its line.
        let p = ThreadedProgram::compile(&trace("a 1 10\na 2 1000\nf 1\nf 2\n")).unwrap();
        let out = replay_threaded(&g, &p, ThreadedOptions::default()).unwrap();
        assert_eq!(out.refused, 1);
        let strict = ThreadedOptions {
            strict: true,
            ..ThreadedOptions::default()
        };
        let e = replay_threaded(&g, &p, strict).unwrap_err();
        assert_eq!((e.event, e.line), (2, Some(2)));
        assert!(e.message.contains("refused"), "{e}");
        // The default realloc copies; a realloc that forgets to: lost contents are caught.
        struct Forgetful(Counting);
        // SAFETY: forwards to `Counting` except realloc, which returns a fresh block (valid,
        // but without the old contents) and frees the old one.
        unsafe impl GlobalAlloc for Forgetful {
            unsafe fn alloc(&self, l: Layout) -> *mut u8 {
                // SAFETY: forwarded.
                unsafe { self.0.alloc(l) }
            }
            unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
                // SAFETY: forwarded.
                unsafe { self.0.dealloc(p, l) }
            }
            unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
                // SAFETY: a fresh zeroed block; the old one is live with `l` and freed once.
                unsafe {
                    let q = self
                        .0
                        .alloc_zeroed(Layout::from_size_align_unchecked(n, l.align()));
                    self.0.dealloc(p, l);
                    q
                }
            }
        }
        let g = Forgetful(Counting::default());
        let p = ThreadedProgram::compile(&trace("t0 a 1 10\nt1 r 1 20\nt1 f 1\n")).unwrap();
        let e = replay_threaded(&g, &p, ThreadedOptions::default()).unwrap_err();
        assert_eq!(e.event, 2);
        assert!(e.message.contains("first byte"), "{e}");
        assert!(
            g.0.live.lock().unwrap().is_empty(),
            "the block was freed after the error"
        );
    }
}
