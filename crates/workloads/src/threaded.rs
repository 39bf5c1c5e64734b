//! Threaded replay: a trace through a concurrent [`GlobalAlloc`], one OS thread per trace thread.
//!
//! ```text
//!   Trace ──compile──> ThreadedProgram
//!                        threads[t]: t's events in trace order, each naming its block's
//!                                    lifetime L and its place k in that lifetime (0 = the allocation)
//!                        lives[L]:   the alignment (fixed for a lifetime) and the thread that
//!                                    allocated it
//!   replay: one OS thread per trace thread; they wait on a start flag, then run their events
//!      state per lifetime L:  version (events of L done) ─ ptr ─ size       (atomics)
//!      event (L, k):  wait until version[L] == k    (only when another thread did event k-1)
//!                     call the allocator, touch the block, publish ptr and size,
//!                     version[L] = k + 1  (Release; the waiter's Acquire load orders the block's
//!                                          bytes and the pointer before its own use)
//! ```
//!
//! **Causal order.** A block's events happen in trace order: an event on a block another thread
//! allocated (a cross-thread free, or a realloc) waits until the block's previous event has
//! happened. Each thread otherwise runs freely, so the replay keeps every thread's own order and
//! every block's order, but not the interleaving of unrelated events (that is what the threads'
//! real concurrency decides). The wait cannot deadlock on a trace that [`ThreadedProgram::compile`]
//! accepted: every event waits only for events before it in trace order, so the earliest event not
//! yet done can always run. A waiting thread spins briefly, yields for up to 200 µs, then sleeps
//! (`park`) until another thread makes progress: on a 2-core machine running four threads, the
//! thread it waits for may need its core.
//!
//! **Window.** Causality alone lets a thread that never waits (a producer) run arbitrarily far
//! ahead, so the live memory could grow far beyond the trace's. Each thread therefore also keeps
//! within [`ThreadedOptions::window`] events (in trace order) of the slowest unfinished thread:
//! threads publish their position (every 64 events, and exactly before any wait) and an event
//! more than `window` past the slowest published position waits. This cannot deadlock either:
//! a thread waits only after publishing its exact position, and the thread whose next event is
//! earliest in trace order never has to wait.
//!
//! Each lifetime gets its own state (IDs reused after a free become new lifetimes), so an
//! allocation never waits: the trace's ID reuse carries no order between the allocators' calls.
//!
//! **Contents.** Every new block gets a tag byte (derived from its lifetime) written to its first
//! and last byte (calloc's are first checked to read zero); a realloc checks the first byte
//! survived and writes the new last byte; a free checks both. A mismatch (an allocator that hands
//! a block out twice, or loses contents over a realloc) is a [`ReplayError`] naming the event, as
//! is a null result. On any error every thread stops at its next event and the blocks still live
//! are freed.
//!
//! **Timing.** The clock starts when the threads are released and stops when the last one has
//! done its last event (thread creation and exit are outside it; the tag bytes are inside: a
//! program uses its blocks, and on another thread that costs a cache-line transfer). Blocks the
//! trace leaves live are freed afterwards, untimed, by the calling thread.

use core::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::mapping::Mapping;
use crate::replay::{ReplayError, layout_of};
use crate::trace::{Op, Trace};

/// At most this many threads are replayed (one OS thread each).
pub const MAX_THREADS: usize = 256;

/// What one event of a thread does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `malloc` (or `memalign`) of `size` bytes.
    Alloc,
    /// `calloc`: the block must read as zero.
    AllocZeroed,
    /// `realloc` from the block's previous size to `size`.
    Realloc {
        /// The block's size before.
        old_size: usize,
    },
    /// `free`.
    Free,
}

/// One event of a thread's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadStep {
    /// What happens.
    pub action: Action,
    /// The block's lifetime (index into [`ThreadedProgram::lives`]).
    pub life: u32,
    /// The event's place in its lifetime (0 = the allocation).
    pub seq: u32,
    /// Whether the previous event of this lifetime ran on another thread (so this one may wait).
    pub cross: bool,
    /// The block's size after the event (for a free: its size before), at least 1.
    pub size: usize,
    /// 1-based event number in the trace (for errors).
    pub event: usize,
}

/// One block's lifetime: from its allocation to its free (or the end of the trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Life {
    /// Its alignment (a realloc keeps it).
    pub align: usize,
    /// The thread index that allocated it.
    pub thread: u32,
}

/// A trace compiled for a threaded replay.
#[derive(Debug, Clone, Default)]
pub struct ThreadedProgram {
    /// Each thread's events in trace order; thread index `i` is the trace's
    /// `thread_ids[i]` (`None`: events without a thread field).
    pub threads: Vec<Vec<ThreadStep>>,
    /// The trace's thread IDs, in order of first appearance.
    pub thread_ids: Vec<Option<u32>>,
    /// Every block lifetime.
    pub lives: Vec<Life>,
    /// Events in the trace.
    pub events: usize,
}

impl ThreadedProgram {
    /// Compiles `trace`, checking it: the error names the 1-based event (a free or realloc of a
    /// block that is not live, an allocation of a live ID, a size with no layout, more than
    /// [`MAX_THREADS`] threads).
    pub fn compile(trace: &Trace) -> Result<ThreadedProgram, ReplayError> {
        let mut tindex: HashMap<Option<u32>, u32> = HashMap::new();
        let mut p = ThreadedProgram {
            events: trace.events.len(),
            ..ThreadedProgram::default()
        };
        // ID -> (lifetime, events so far, size now, thread of the last event).
        let mut live: HashMap<u64, (u32, u32, usize, u32)> = HashMap::new();
        for (i, ev) in trace.events.iter().enumerate() {
            let err = |message: String| ReplayError {
                event: i + 1,
                message,
            };
            let t = match tindex.get(&ev.thread) {
                Some(&t) => t,
                None => {
                    if p.threads.len() == MAX_THREADS {
                        return Err(err(format!(
                            "more than {MAX_THREADS} threads (a threaded replay runs one OS thread each)"
                        )));
                    }
                    let t = p.threads.len() as u32;
                    tindex.insert(ev.thread, t);
                    p.thread_ids.push(ev.thread);
                    p.threads.push(Vec::new());
                    t
                }
            };
            let step = match ev.op {
                op if op.is_alloc() => {
                    if live.contains_key(&ev.id) {
                        return Err(err(format!("block {} allocated while live", ev.id)));
                    }
                    let layout = layout_of(op, None).map_err(err)?;
                    let life = u32::try_from(p.lives.len())
                        .map_err(|_| err("more than 2^32 block lifetimes".into()))?;
                    p.lives.push(Life {
                        align: layout.align(),
                        thread: t,
                    });
                    let size = layout.size().max(1);
                    live.insert(ev.id, (life, 1, size, t));
                    ThreadStep {
                        action: if matches!(op, Op::Calloc { .. }) {
                            Action::AllocZeroed
                        } else {
                            Action::Alloc
                        },
                        life,
                        seq: 0,
                        cross: false,
                        size,
                        event: i + 1,
                    }
                }
                Op::Free => {
                    let (life, seq, size, last) = live
                        .remove(&ev.id)
                        .ok_or_else(|| err(format!("free of block {} which is not live", ev.id)))?;
                    ThreadStep {
                        action: Action::Free,
                        life,
                        seq,
                        cross: last != t,
                        size,
                        event: i + 1,
                    }
                }
                op => {
                    let e = live.get_mut(&ev.id).ok_or_else(|| {
                        err(format!("realloc of block {} which is not live", ev.id))
                    })?;
                    let (life, seq, old_size, last) = *e;
                    let align = p.lives[life as usize].align;
                    let old = Layout::from_size_align(old_size, align)
                        .map_err(|_| err("bad layout".into()))?;
                    let new = layout_of(op, Some(old)).map_err(err)?;
                    let size = new.size().max(1);
                    *e = (
                        life,
                        seq.checked_add(1)
                            .ok_or_else(|| err("too many reallocs of one block".into()))?,
                        size,
                        t,
                    );
                    ThreadStep {
                        action: Action::Realloc { old_size },
                        life,
                        seq,
                        cross: last != t,
                        size,
                        event: i + 1,
                    }
                }
            };
            p.threads[t as usize].push(step);
        }
        Ok(p)
    }

    /// Threads in the trace.
    pub fn thread_count(&self) -> usize {
        self.threads.len()
    }

    /// Events on a block whose previous event ran on another thread (frees and reallocs).
    pub fn cross_thread_events(&self) -> usize {
        self.threads.iter().flatten().filter(|s| s.cross).count()
    }

    /// Bytes a [`BumpFloor`] needs for one replay: every allocation and realloc's size plus its
    /// alignment (nothing is reused).
    pub fn bump_bytes(&self) -> usize {
        self.threads
            .iter()
            .flatten()
            .filter(|s| s.action != Action::Free)
            .map(|s| s.size.saturating_add(self.lives[s.life as usize].align))
            .fold(0usize, usize::saturating_add)
    }
}

/// The replay's floor: a concurrent bump allocator over its own address-space reservation that
/// frees nothing (one shared atomic cursor; a realloc allocates and copies). A threaded replay
/// through it costs the replay's own work (waiting for blocks' earlier events, the window, tag
/// bytes, thread scheduling) and next to no allocator work, so its time is the floor under every
/// allocator's threaded time on the same trace and machine.
pub struct BumpFloor {
    map: Mapping,
    next: AtomicUsize,
}

impl std::fmt::Debug for BumpFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BumpFloor")
            .field("len", &self.map.len())
            .field("used", &self.next.load(Ordering::Relaxed))
            .finish()
    }
}

impl BumpFloor {
    /// Reserves `len` bytes of address space (pages become resident when touched).
    pub fn new(len: usize) -> Result<Self, String> {
        let map = Mapping::new(len).map_err(|e| format!("the replay floor: {e}"))?;
        Ok(BumpFloor {
            map,
            next: AtomicUsize::new(0),
        })
    }

    /// Starts again from the beginning (the pages stay resident): only when no block is live.
    pub fn reset(&mut self) {
        *self.next.get_mut() = 0;
    }
}

// SAFETY: each block is a distinct range of the mapping (the cursor only moves forward, by the
// size plus the alignment, so the aligned start and the size fit in what was claimed), aligned
// as asked, valid until the value is reset or dropped (both need `&mut self`); null when the
// mapping is used up. Freeing does nothing.
unsafe impl GlobalAlloc for BumpFloor {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let need = layout.size().saturating_add(layout.align());
        let off = self.next.fetch_add(need, Ordering::Relaxed);
        if off.saturating_add(need) > self.map.len() {
            return core::ptr::null_mut();
        }
        let at = self.map.base().as_ptr().wrapping_add(off);
        // Derived from the mapping's pointer (keeps its provenance); `pad < align <= need - size`.
        at.wrapping_add(at.addr().wrapping_neg() & (layout.align() - 1))
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

/// The distinct thread IDs of a trace (events without one count as one thread).
pub fn thread_count(trace: &Trace) -> usize {
    let mut seen: Vec<Option<u32>> = Vec::new();
    for e in &trace.events {
        if !seen.contains(&e.thread) {
            seen.push(e.thread);
        }
    }
    seen.len()
}

/// How to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadedOptions {
    /// How far (in trace events) a thread may run ahead of the slowest unfinished thread
    /// (`usize::MAX`: no limit, causality only).
    pub window: usize,
    /// Stop a replay that runs longer than this: it fails with an error saying so (the blocks
    /// still live are freed). `None`: no limit.
    pub deadline: Option<Duration>,
}

impl Default for ThreadedOptions {
    /// A window of 4096 events, no deadline.
    fn default() -> Self {
        ThreadedOptions {
            window: 4096,
            deadline: None,
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
                    self.fail(ReplayError {
                        event: s.event,
                        message: format!("{TOO_LONG} {} ms", d.as_millis()),
                    });
                    break;
                }
            }
            if index > bound && !self.wait_window(me, index, &mut bound) {
                break;
            }
            if let Err(e) = self.step(g, me, s) {
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

    fn step(
        &self,
        g: &(dyn GlobalAlloc + Sync),
        me: usize,
        s: &ThreadStep,
    ) -> Result<(), ReplayError> {
        let err = |message: String| ReplayError {
            event: s.event,
            message,
        };
        let slot = &self.slots[s.life as usize];
        let align = self.prog.lives[s.life as usize].align;
        let t = tag(s.life);
        if s.cross && !self.wait(me, s.event - 1, slot, s.seq) {
            return Ok(()); // aborted: another thread reported the error
        }
        let layout = |size: usize| {
            Layout::from_size_align(size, align)
                .map_err(|_| err(format!("no layout for {size} bytes aligned to {align}")))
        };
        match s.action {
            Action::Alloc | Action::AllocZeroed => {
                let l = layout(s.size)?;
                let zeroed = s.action == Action::AllocZeroed;
                // SAFETY: `l` has a non-zero size (compile makes every size at least 1).
                let p = unsafe {
                    if zeroed {
                        g.alloc_zeroed(l)
                    } else {
                        g.alloc(l)
                    }
                };
                if p.is_null() {
                    return Err(err(format!("allocation of {} bytes returned null", s.size)));
                }
                if !(p as usize).is_multiple_of(align) {
                    // SAFETY: live, from `g` with `l`, never published.
                    unsafe { g.dealloc(p, l) };
                    return Err(err(format!("block {p:p} is not aligned to {align}")));
                }
                // SAFETY: `p` is a live block of `s.size >= 1` bytes, ours alone until freed.
                unsafe {
                    if zeroed && (p.read() != 0 || p.add(s.size - 1).read() != 0) {
                        // Free it ourselves: it was never published.
                        g.dealloc(p, l);
                        return Err(err(
                            "calloc returned a block that does not read as zero".into()
                        ));
                    }
                    p.write(t);
                    p.add(s.size - 1).write(t);
                }
                slot.ptr.store(p as usize, Ordering::Relaxed);
                slot.size.store(s.size, Ordering::Relaxed);
            }
            Action::Realloc { old_size } => {
                let p = slot.ptr.load(Ordering::Relaxed) as *mut u8;
                let old = layout(old_size)?;
                // SAFETY: `p` is live with `old` (published by the lifetime's previous event,
                // ordered before this one by the version's Release/Acquire); `s.size` is non-zero
                // and valid with `align` (checked by compile's layout).
                let q = unsafe { g.realloc(p, old, s.size) };
                if q.is_null() {
                    return Err(err(format!("realloc to {} bytes returned null", s.size)));
                }
                // SAFETY: `q` is the live block of `s.size >= 1` bytes; the realloc kept its first
                // byte (min(old, new) >= 1 bytes are kept).
                let first = unsafe { q.read() };
                slot.ptr.store(q as usize, Ordering::Relaxed);
                slot.size.store(s.size, Ordering::Relaxed);
                if !(q as usize).is_multiple_of(align) {
                    return Err(err(format!("block {q:p} is not aligned to {align}")));
                }
                if first != t {
                    return Err(err(format!(
                        "realloc lost the block's first byte (0x{first:02x}, 0x{t:02x} written)"
                    )));
                }
                // SAFETY: as above.
                unsafe { q.add(s.size - 1).write(t) };
            }
            Action::Free => {
                let p = slot.ptr.load(Ordering::Relaxed) as *mut u8;
                let l = layout(s.size)?;
                // SAFETY: `p` is live with `l` (as for realloc), `s.size >= 1`.
                let (first, last) = unsafe { (p.read(), p.add(s.size - 1).read()) };
                if first != t || last != t {
                    return Err(err(format!(
                        "block {} was overwritten while live (first byte 0x{first:02x}, last 0x{last:02x}, 0x{t:02x} written)",
                        s.life
                    )));
                }
                // SAFETY: `p` is live in `g` with `l`, freed once (the slot is cleared).
                unsafe { g.dealloc(p, l) };
                slot.ptr.store(0, Ordering::Relaxed);
            }
        }
        slot.version.store(s.seq + 1, Ordering::Release);
        self.progress();
        Ok(())
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn compile_splits_threads_and_marks_cross_thread_events() {
        let p = ThreadedProgram::compile(&trace(
            "t0 a 1 100\nt0 a 2 200\nt1 f 1\nt1 a 1 50\nt0 f 1\nt1 r 2 400\nt1 f 2\n",
        ))
        .unwrap();
        assert_eq!(p.thread_count(), 2);
        assert_eq!(p.thread_ids, vec![Some(0), Some(1)]);
        assert_eq!(p.lives.len(), 3); // ID 1 is reused: a new lifetime
        let t0: Vec<(Action, u32, u32, bool)> = p.threads[0]
            .iter()
            .map(|s| (s.action, s.life, s.seq, s.cross))
            .collect();
        assert_eq!(
            t0,
            vec![
                (Action::Alloc, 0, 0, false),
                (Action::Alloc, 1, 0, false),
                (Action::Free, 2, 1, true),
            ]
        );
        let t1: Vec<(Action, u32, u32, bool)> = p.threads[1]
            .iter()
            .map(|s| (s.action, s.life, s.seq, s.cross))
            .collect();
        assert_eq!(
            t1,
            vec![
                (Action::Free, 0, 1, true),
                (Action::Alloc, 2, 0, false),
                (Action::Realloc { old_size: 200 }, 1, 1, true),
                (Action::Free, 1, 2, false), // the realloc ran on this thread
            ]
        );
        assert_eq!(p.threads[1][2].size, 400);
        assert_eq!(p.threads[1][3].size, 400);
        assert_eq!(p.cross_thread_events(), 3);
        assert_eq!(p.threads[1][0].event, 3);
    }

    #[test]
    fn bad_traces_are_errors_naming_the_event() {
        let e = ThreadedProgram::compile(&Trace::from_events(vec![
            crate::trace::Event::new(1, Op::Malloc { size: 8 }),
            crate::trace::Event::new(2, Op::Free),
        ]))
        .unwrap_err();
        assert_eq!(e.event, 2);
        assert!(e.message.contains("free of block 2"), "{e}");
        let e = ThreadedProgram::compile(&Trace::from_events(vec![
            crate::trace::Event::new(1, Op::Malloc { size: 8 }),
            crate::trace::Event::new(1, Op::Calloc { size: 8 }),
        ]))
        .unwrap_err();
        assert_eq!(e.event, 2);
        let e = ThreadedProgram::compile(&Trace::from_events(vec![crate::trace::Event::new(
            7,
            Op::Realloc { size: 8 },
        )]))
        .unwrap_err();
        assert_eq!(
            (e.event, e.message.contains("realloc of block 7")),
            (1, true)
        );
        let e = ThreadedProgram::compile(&Trace::from_events(vec![crate::trace::Event::new(
            7,
            Op::Memalign { align: 24, size: 8 },
        )]))
        .unwrap_err();
        assert_eq!(e.event, 1);
        let many: Vec<crate::trace::Event> = (0..=MAX_THREADS as u32)
            .map(|t| crate::trace::Event {
                thread: Some(t),
                id: u64::from(t),
                op: Op::Malloc { size: 1 },
            })
            .collect();
        let e = ThreadedProgram::compile(&Trace::from_events(many)).unwrap_err();
        assert_eq!(e.event, MAX_THREADS + 1);
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
        // Too small: a null result is an error naming the event, not a crash.
        let small = BumpFloor::new(4096).unwrap();
        let e = replay_threaded(&small, &p, ThreadedOptions::default()).unwrap_err();
        assert!(e.message.contains("returned null"), "{e}");
    }

    #[test]
    fn a_deadline_stops_a_slow_replay_with_an_error() {
        /// The system allocator, slowed down.
        struct Slow;
        // SAFETY: forwards to `System` after a sleep.
        unsafe impl GlobalAlloc for Slow {
            unsafe fn alloc(&self, l: Layout) -> *mut u8 {
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
        let start = Instant::now();
        let e = replay_threaded(&Slow, &p, opts).unwrap_err();
        assert!(e.message.starts_with(TOO_LONG), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
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
        // A null result names the event.
        let p = ThreadedProgram::compile(&trace("a 1 10\na 2 1000\nf 1\nf 2\n")).unwrap();
        let e = replay_threaded(&g, &p, ThreadedOptions::default()).unwrap_err();
        assert_eq!(e.event, 2);
        assert!(e.message.contains("returned null"), "{e}");
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
