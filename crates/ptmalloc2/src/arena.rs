//! The arena: glibc's `malloc_state` and the algorithms that run on it, `_int_malloc`, `_int_free`,
//! `malloc_consolidate`, `_int_realloc` and `_int_memalign`, in glibc 2.36's order.
//!
//! ```text
//!  _int_malloc(nb):                               _int_free(p):
//!   1 fastbin[nb] (LIFO)       -> stash rest        1 tcache (if room)
//!   2 smallbin[nb] (oldest)    -> stash rest        2 fastbin (no coalescing)
//!   3 large request: consolidate fastbins           3 coalesce with free neighbours,
//!   4 unsorted, oldest first:                          head of unsorted (or into top)
//!       last remainder split for small requests     4 >= 64 KiB: consolidate, trim top
//!       exact fit -> tcache (or return)
//!       else sort into small/large bin
//!   5 large request: best fit in its bin (skip list)
//!   6 binmap: next non-empty larger bin, split
//!   7 top; else consolidate and retry from 4; else sysmalloc
//! ```
//!
//! Chunks are addresses in the arena's memory ([`crate::chunk::Mem`]); the bins' heads live here.

use crate::bins::*;
use crate::checks::*;
use crate::chunk::*;
use crate::tcache::{self, Tc};
use crate::tunables::Params;

/// Why an internal operation failed: no memory (malloc returns NULL) or a failed integrity check
/// (glibc aborts with the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    Oom,
    Corrupt(&'static str),
}

impl From<&'static str> for Fail {
    fn from(s: &'static str) -> Self {
        Fail::Corrupt(s)
    }
}

pub(crate) type R<T> = Result<T, Fail>;

/// glibc's `struct malloc_state` (less the mutex and the arena list).
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub fastbins: [usize; NFASTBINS],
    pub top: usize,
    pub last_remainder: usize,
    /// `bins[i] = [fd, bk]` of bin `i`.
    pub bins: [[usize; 2]; NBINS],
    pub binmap: [u32; BINMAPSIZE],
    pub have_fastchunks: bool,
    pub system_mem: usize,
    pub max_system_mem: usize,
    /// `NON_MAIN_ARENA` for a thread arena, else 0.
    pub arena_flag: usize,
    /// Lowest address of the arena's memory (glibc's `sbrk_base` for the main arena).
    pub base: usize,
}

impl State {
    /// `malloc_init_state`: every bin empty (linked to itself), top = the initial (empty) top.
    pub fn new(arena_flag: usize) -> Self {
        let mut bins = [[0usize; 2]; NBINS];
        for (i, b) in bins.iter_mut().enumerate() {
            *b = [i, i];
        }
        State {
            fastbins: [0; NFASTBINS],
            top: 0,
            last_remainder: 0,
            bins,
            binmap: [0; BINMAPSIZE],
            have_fastchunks: false,
            system_mem: 0,
            max_system_mem: 0,
            arena_flag,
            base: 0,
        }
    }
}

/// The memory-independent core of one arena: state, parameters and the memory accessor.
/// The memory behind it (the main heap, or a thread arena's heaps) supplies growth through [`Grow`].
pub(crate) struct Core {
    pub m: Mem,
    pub st: State,
    pub mp: Params,
}

/// What the arena algorithms need from the memory behind them: `sysmalloc` and `systrim`.
pub(crate) trait Grow {
    /// glibc's `sysmalloc(nb, av)`: get more memory (or a mapped chunk); returns a user pointer.
    fn sysmalloc(&mut self, core: &mut Core, tc: Tc, nb: usize) -> R<usize>;
    /// `systrim(pad, av)` for the main arena, `heap_trim` for a thread arena.
    fn trim(&mut self, core: &mut Core, pad: usize) -> R<()>;
    /// The accessor for the mapped chunk containing `a`, if `a` is in one.
    fn mapped_mem(&self, a: usize) -> Option<Mem>;
    /// The mapped chunk containing `a` now starts `lead` bytes into its mapping (`memalign`).
    fn set_mapped_lead(&mut self, a: usize, lead: usize);
}

// Every `unsafe` block in this impl reads or writes chunk words at addresses derived from the
// arena's own bookkeeping (bins, top, chunk sizes), which stay inside the region `m` manages as
// long as the heap is consistent; entry points validate caller-supplied chunks first (see
// `crate::heap`), and the integrity checks below catch the inconsistencies glibc catches.
impl Core {
    pub fn new(m: Mem, mp: Params, arena_flag: usize) -> Self {
        Core {
            m,
            st: State::new(arena_flag),
            mp,
        }
    }

    #[inline(always)]
    pub fn fd(&self, n: usize) -> usize {
        if n < NBINS {
            self.st.bins[n][0]
        } else {
            // SAFETY: see the impl comment.
            unsafe { self.m.rd(n + 16) }
        }
    }
    #[inline(always)]
    pub fn bk(&self, n: usize) -> usize {
        if n < NBINS {
            self.st.bins[n][1]
        } else {
            // SAFETY: see the impl comment.
            unsafe { self.m.rd(n + 24) }
        }
    }
    #[inline(always)]
    fn set_fd(&mut self, n: usize, v: usize) {
        if n < NBINS {
            self.st.bins[n][0] = v
        } else {
            // SAFETY: see the impl comment.
            unsafe { self.m.wr(n + 16, v) }
        }
    }
    #[inline(always)]
    fn set_bk(&mut self, n: usize, v: usize) {
        if n < NBINS {
            self.st.bins[n][1] = v
        } else {
            // SAFETY: see the impl comment.
            unsafe { self.m.wr(n + 24, v) }
        }
    }
    #[inline(always)]
    pub fn fd_nextsize(&self, n: usize) -> usize {
        // SAFETY: see the impl comment.
        unsafe { self.m.rd(n + 32) }
    }
    #[inline(always)]
    pub fn bk_nextsize(&self, n: usize) -> usize {
        // SAFETY: see the impl comment.
        unsafe { self.m.rd(n + 40) }
    }
    #[inline(always)]
    fn set_fd_nextsize(&mut self, n: usize, v: usize) {
        // SAFETY: see the impl comment.
        unsafe { self.m.wr(n + 32, v) }
    }
    #[inline(always)]
    fn set_bk_nextsize(&mut self, n: usize, v: usize) {
        // SAFETY: see the impl comment.
        unsafe { self.m.wr(n + 40, v) }
    }
    #[inline(always)]
    pub fn size_nomask(&self, p: usize) -> usize {
        // SAFETY: see the impl comment.
        unsafe { size_nomask(&self.m, p) }
    }
    #[inline(always)]
    pub fn csize(&self, p: usize) -> usize {
        // SAFETY: see the impl comment.
        unsafe { chunksize(&self.m, p) }
    }
    #[inline(always)]
    fn head(&mut self, p: usize, v: usize) {
        // SAFETY: see the impl comment.
        unsafe { set_head(&self.m, p, v) }
    }
    #[inline(always)]
    fn foot(&mut self, p: usize, s: usize) {
        // SAFETY: see the impl comment.
        unsafe { set_foot(&self.m, p, s) }
    }
    #[inline(always)]
    fn set_inuse_at(&mut self, p: usize, s: usize) {
        // SAFETY: see the impl comment.
        unsafe { set_inuse_bit_at_offset(&self.m, p, s) }
    }
    #[inline(always)]
    fn set_non_main(&mut self, p: usize) {
        if self.st.arena_flag != 0 {
            // SAFETY: see the impl comment.
            unsafe { self.m.wr(p + 8, self.m.rd(p + 8) | NON_MAIN_ARENA) }
        }
    }

    /// Size of the top chunk (0 before the first `sysmalloc`: glibc's `initial_top`).
    #[inline(always)]
    pub fn top_size(&self) -> usize {
        if self.st.top == 0 {
            0
        } else {
            self.csize(self.st.top)
        }
    }

    #[inline(always)]
    fn mark_bin(&mut self, i: usize) {
        self.st.binmap[idx2block(i)] |= idx2bit(i);
    }

    /// Puts `p` (of `size`) at the head of the unsorted bin with the given check message.
    #[inline(always)]
    fn unsorted_push(&mut self, p: usize, size: usize, check: &'static str) -> R<()> {
        let bck = UNSORTED;
        let fwd = self.fd(bck);
        if self.bk(fwd) != bck {
            return Err(check.into());
        }
        self.set_bk(p, bck);
        self.set_fd(p, fwd);
        self.set_fd(bck, p);
        self.set_bk(fwd, p);
        if !in_smallbin_range(size) {
            self.set_fd_nextsize(p, 0);
            self.set_bk_nextsize(p, 0);
        }
        Ok(())
    }

    /// `unlink_chunk(av, p)`.
    pub fn unlink(&mut self, p: usize) -> R<()> {
        let size = self.csize(p);
        // SAFETY: see the impl comment.
        if size != unsafe { prev_size(&self.m, p + size) } {
            return Err(UNLINK_SIZE.into());
        }
        let fd = self.fd(p);
        let bk = self.bk(p);
        if self.bk(fd) != p || self.fd(bk) != p {
            return Err(UNLINK_LIST.into());
        }
        self.set_bk(fd, bk);
        self.set_fd(bk, fd);
        if !in_smallbin_range(self.size_nomask(p)) && self.fd_nextsize(p) != 0 {
            let fdn = self.fd_nextsize(p);
            let bkn = self.bk_nextsize(p);
            if self.bk_nextsize(fdn) != p || self.fd_nextsize(bkn) != p {
                return Err(UNLINK_NOT_SMALL.into());
            }
            // A bin head's `fd_nextsize` (in glibc, the next bin's fd) is never NULL.
            if fd >= NBINS && self.fd_nextsize(fd) == 0 {
                if fdn == p {
                    self.set_fd_nextsize(fd, fd);
                    self.set_bk_nextsize(fd, fd);
                } else {
                    self.set_fd_nextsize(fd, fdn);
                    self.set_bk_nextsize(fd, bkn);
                    self.set_bk_nextsize(fdn, fd);
                    self.set_fd_nextsize(bkn, fd);
                }
            } else {
                self.set_bk_nextsize(fdn, bkn);
                self.set_fd_nextsize(bkn, fdn);
            }
        }
        Ok(())
    }

    /// `_int_malloc(av, bytes)` with the thread's tcache at `tc` (0 = none). Returns the user
    /// pointer and whether glibc would `alloc_perturb` it (not when it comes out of the tcache).
    pub fn int_malloc<G: Grow>(&mut self, g: &mut G, tc: Tc, bytes: usize) -> R<(usize, bool)> {
        let (mem, fresh) = self.int_malloc_inner(g, tc, bytes)?;
        if fresh && mem >= self.st.base && mem < self.st.top {
            // The model clears the word where free looks for the tcache key (and the fastbin
            // mark), so that it is never read uninitialised; glibc leaves stale bytes there.
            // SAFETY: a heap chunk of at least 32 bytes was just handed out.
            unsafe { self.m.wr(mem + 8, 0) };
        }
        Ok((mem, fresh))
    }

    fn int_malloc_inner<G: Grow>(&mut self, g: &mut G, tc: Tc, bytes: usize) -> R<(usize, bool)> {
        let nb = checked_request2size(bytes).ok_or(Fail::Oom)?;
        let tc_idx = tcache::csize2tidx(nb);
        let use_tc = tc.is_some() && tc_idx < self.mp.tcache_bins;
        let m = self.m;

        // 1. Fastbins.
        if nb <= self.mp.max_fast {
            let idx = fastbin_index(nb);
            let victim = self.st.fastbins[idx];
            if victim != 0 {
                if misaligned(victim) {
                    return Err(FAST_UNALIGNED_2.into());
                }
                // SAFETY: see the impl comment.
                self.st.fastbins[idx] = unsafe { m.rd(victim + 16) };
                // SAFETY: the chunk's `bk` word (the model's fastbin marker).
                unsafe { m.wr(victim + 24, 0) };
                if (self.csize(victim) >> 4).wrapping_sub(2) != idx {
                    return Err(FAST_CORRUPT.into());
                }
                if use_tc {
                    // SAFETY: `tc` is the live tcache struct.
                    while unsafe { tcache::count(&tc, tc_idx) } < self.mp.tcache_count {
                        let t = self.st.fastbins[idx];
                        if t == 0 {
                            break;
                        }
                        if misaligned(t) {
                            return Err(FAST_UNALIGNED_3.into());
                        }
                        // SAFETY: `t` is a fastbin chunk; `tc` the live tcache struct.
                        unsafe {
                            self.st.fastbins[idx] = m.rd(t + 16);
                            tcache::put(&m, &tc, t, tc_idx);
                        }
                    }
                }
                return Ok((chunk2mem(victim), true));
            }
        }

        // 2. Small bins (exact size, oldest first); 3. consolidation for large requests.
        let mut idx;
        if in_smallbin_range(nb) {
            idx = smallbin_index(nb);
            let victim = self.bk(idx);
            if victim != idx {
                let bck = self.bk(victim);
                if self.fd(bck) != victim {
                    return Err(SMALL_LIST.into());
                }
                self.set_inuse_at(victim, nb);
                self.set_bk(idx, bck);
                self.set_fd(bck, idx);
                self.set_non_main(victim);
                if use_tc {
                    // SAFETY: `tc` is the live tcache struct.
                    while unsafe { tcache::count(&tc, tc_idx) } < self.mp.tcache_count {
                        let t = self.bk(idx);
                        if t == idx {
                            break;
                        }
                        let bck = self.bk(t);
                        self.set_inuse_at(t, nb);
                        self.set_non_main(t);
                        self.set_bk(idx, bck);
                        self.set_fd(bck, idx);
                        // SAFETY: `t` is now an in-use chunk of bin `tc_idx`'s size.
                        unsafe { tcache::put(&m, &tc, t, tc_idx) };
                    }
                }
                return Ok((chunk2mem(victim), true));
            }
        } else {
            idx = largebin_index(nb);
            if self.st.have_fastchunks {
                self.consolidate()?;
            }
        }

        let mut return_cached = false;
        let mut unsorted_count = 0usize;
        loop {
            // 4. The unsorted bin, oldest first.
            let mut iters = 0;
            loop {
                let victim = self.bk(UNSORTED);
                if victim == UNSORTED {
                    break;
                }
                let bck = self.bk(victim);
                let size = self.csize(victim);
                if size <= CHUNK_HDR_SZ || size > self.st.system_mem {
                    return Err(UNSORTED_SIZE.into());
                }
                let next = victim + size;
                let next_nomask = self.size_nomask(next);
                if next_nomask < CHUNK_HDR_SZ || next_nomask > self.st.system_mem {
                    return Err(UNSORTED_NEXT_SIZE.into());
                }
                // SAFETY: see the impl comment.
                if unsafe { prev_size(&m, next) } & !SIZE_BITS != size {
                    return Err(UNSORTED_PREV_SIZE.into());
                }
                if self.fd(bck) != victim || self.fd(victim) != UNSORTED {
                    return Err(UNSORTED_LIST.into());
                }
                if next_nomask & PREV_INUSE != 0 {
                    return Err(UNSORTED_PREV_INUSE.into());
                }

                // The last-remainder rule: keep splitting the same chunk for runs of small
                // requests (locality).
                if in_smallbin_range(nb)
                    && bck == UNSORTED
                    && victim == self.st.last_remainder
                    && size > nb + MINSIZE
                {
                    let rs = size - nb;
                    let r = victim + nb;
                    self.set_bk(UNSORTED, r);
                    self.set_fd(UNSORTED, r);
                    self.st.last_remainder = r;
                    self.set_bk(r, UNSORTED);
                    self.set_fd(r, UNSORTED);
                    if !in_smallbin_range(rs) {
                        self.set_fd_nextsize(r, 0);
                        self.set_bk_nextsize(r, 0);
                    }
                    self.head(victim, nb | PREV_INUSE | self.st.arena_flag);
                    self.head(r, rs | PREV_INUSE);
                    self.foot(r, rs);
                    return Ok((chunk2mem(victim), true));
                }

                if self.fd(bck) != victim {
                    return Err(UNSORTED_3.into());
                }
                self.set_bk(UNSORTED, bck);
                self.set_fd(bck, UNSORTED);

                if size == nb {
                    self.set_inuse_at(victim, size);
                    self.set_non_main(victim);
                    // SAFETY: `tc` is the live tcache struct.
                    if use_tc && unsafe { tcache::count(&tc, tc_idx) } < self.mp.tcache_count {
                        // SAFETY: `victim` is an in-use chunk of the bin's size.
                        unsafe { tcache::put(&m, &tc, victim, tc_idx) };
                        return_cached = true;
                        continue;
                    }
                    return Ok((chunk2mem(victim), true));
                }

                // Sort the chunk into its bin.
                let vi;
                let mut bck;
                let mut fwd;
                if in_smallbin_range(size) {
                    vi = smallbin_index(size);
                    bck = vi;
                    fwd = self.fd(vi);
                } else {
                    vi = largebin_index(size);
                    bck = vi;
                    fwd = self.fd(vi);
                    if fwd != bck {
                        let sizep = size | PREV_INUSE;
                        if sizep < self.size_nomask(self.bk(bck)) {
                            // Smaller than the smallest: append at the end.
                            fwd = bck;
                            bck = self.bk(bck);
                            let first = self.fd(fwd);
                            self.set_fd_nextsize(victim, first);
                            self.set_bk_nextsize(victim, self.bk_nextsize(first));
                            let bkn = self.bk_nextsize(victim);
                            self.set_fd_nextsize(bkn, victim);
                            self.set_bk_nextsize(first, victim);
                        } else {
                            while sizep < self.size_nomask(fwd) {
                                fwd = self.fd_nextsize(fwd);
                            }
                            if sizep == self.size_nomask(fwd) {
                                // Always insert in the second position.
                                fwd = self.fd(fwd);
                            } else {
                                self.set_fd_nextsize(victim, fwd);
                                self.set_bk_nextsize(victim, self.bk_nextsize(fwd));
                                if self.fd_nextsize(self.bk_nextsize(fwd)) != fwd {
                                    return Err(LARGE_NEXTSIZE.into());
                                }
                                self.set_bk_nextsize(fwd, victim);
                                let bkn = self.bk_nextsize(victim);
                                self.set_fd_nextsize(bkn, victim);
                            }
                            bck = self.bk(fwd);
                            if self.fd(bck) != fwd {
                                return Err(LARGE_BK.into());
                            }
                        }
                    } else {
                        self.set_fd_nextsize(victim, victim);
                        self.set_bk_nextsize(victim, victim);
                    }
                }
                self.mark_bin(vi);
                self.set_bk(victim, bck);
                self.set_fd(victim, fwd);
                self.set_bk(fwd, victim);
                self.set_fd(bck, victim);

                unsorted_count += 1;
                if return_cached
                    && self.mp.tcache_unsorted_limit > 0
                    && unsorted_count > self.mp.tcache_unsorted_limit
                {
                    // SAFETY: `tc` is live and bin `tc_idx` holds the stashed chunk.
                    return Ok((unsafe { tcache::get(&m, &tc, tc_idx) }?, false));
                }
                iters += 1;
                if iters >= 10000 {
                    break;
                }
            }
            if return_cached {
                // SAFETY: as above.
                return Ok((unsafe { tcache::get(&m, &tc, tc_idx) }?, false));
            }

            // 5. Large request: the smallest chunk that fits in its own bin.
            if !in_smallbin_range(nb) {
                let bin = idx;
                let first = self.fd(bin);
                if first != bin && self.size_nomask(first) >= nb {
                    let mut victim = self.bk_nextsize(first);
                    let mut size;
                    loop {
                        size = self.csize(victim);
                        if size >= nb {
                            break;
                        }
                        victim = self.bk_nextsize(victim);
                    }
                    // Take the second of equal-size chunks so the skip list stays untouched.
                    if victim != self.bk(bin)
                        && self.size_nomask(victim) == self.size_nomask(self.fd(victim))
                    {
                        victim = self.fd(victim);
                    }
                    let rs = size - nb;
                    self.unlink(victim)?;
                    if rs < MINSIZE {
                        self.set_inuse_at(victim, size);
                        self.set_non_main(victim);
                    } else {
                        let r = victim + nb;
                        self.unsorted_push(r, rs, UNSORTED_1)?;
                        self.head(victim, nb | PREV_INUSE | self.st.arena_flag);
                        self.head(r, rs | PREV_INUSE);
                        self.foot(r, rs);
                    }
                    return Ok((chunk2mem(victim), true));
                }
            }

            // 6. The binmap: the next non-empty bin of larger chunks.
            idx += 1;
            let mut bin = idx;
            let mut block = idx2block(idx);
            let mut map = self.st.binmap[block];
            let mut bit = idx2bit(idx);
            let found = loop {
                if bit > map || bit == 0 {
                    loop {
                        block += 1;
                        if block >= BINMAPSIZE {
                            break;
                        }
                        map = self.st.binmap[block];
                        if map != 0 {
                            break;
                        }
                    }
                    if block >= BINMAPSIZE {
                        break None;
                    }
                    bin = block << 5;
                    bit = 1;
                }
                while bit & map == 0 {
                    bin += 1;
                    bit <<= 1;
                }
                let victim = self.bk(bin);
                if victim == bin {
                    // A stale bit: clear it and go on.
                    map &= !bit;
                    self.st.binmap[block] = map;
                    bin += 1;
                    bit <<= 1;
                } else {
                    break Some(victim);
                }
            };
            if let Some(victim) = found {
                let size = self.csize(victim);
                let rs = size - nb;
                self.unlink(victim)?;
                if rs < MINSIZE {
                    self.set_inuse_at(victim, size);
                    self.set_non_main(victim);
                } else {
                    let r = victim + nb;
                    self.unsorted_push(r, rs, UNSORTED_2)?;
                    if in_smallbin_range(nb) {
                        self.st.last_remainder = r;
                    }
                    self.head(victim, nb | PREV_INUSE | self.st.arena_flag);
                    self.head(r, rs | PREV_INUSE);
                    self.foot(r, rs);
                }
                return Ok((chunk2mem(victim), true));
            }

            // 7. The top chunk.
            let victim = self.st.top;
            let size = self.top_size();
            if size > self.st.system_mem {
                return Err(TOP_SIZE.into());
            }
            if size >= nb + MINSIZE {
                let r = victim + nb;
                self.st.top = r;
                self.head(victim, nb | PREV_INUSE | self.st.arena_flag);
                self.head(r, (size - nb) | PREV_INUSE);
                return Ok((chunk2mem(victim), true));
            } else if self.st.have_fastchunks {
                self.consolidate()?;
                idx = bin_index(nb);
            } else {
                return Ok((g.sysmalloc(self, tc, nb)?, true));
            }
        }
    }

    /// Splits `nb` bytes off the top chunk (which must hold at least `nb + MINSIZE`).
    pub fn split_top(&mut self, nb: usize) -> usize {
        let victim = self.st.top;
        let size = self.top_size();
        let r = victim + nb;
        self.st.top = r;
        self.head(victim, nb | PREV_INUSE | self.st.arena_flag);
        self.head(r, (size - nb) | PREV_INUSE);
        chunk2mem(victim)
    }

    /// `malloc_consolidate(av)`: empties every fastbin, coalescing each chunk with its free
    /// neighbours into the unsorted bin (or the top).
    pub fn consolidate(&mut self) -> R<()> {
        self.st.have_fastchunks = false;
        let m = self.m;
        for i in 0..NFASTBINS {
            let mut p = self.st.fastbins[i];
            self.st.fastbins[i] = 0;
            while p != 0 {
                if misaligned(p) {
                    return Err(CONS_UNALIGNED.into());
                }
                if (self.csize(p) >> 4).wrapping_sub(2) != i {
                    return Err(CONS_SIZE.into());
                }
                // SAFETY: see the impl comment.
                let nextp = unsafe { m.rd(p + 16) };
                let mut size = self.csize(p);
                let next = p + size;
                let nextsize = self.csize(next);
                // SAFETY: see the impl comment.
                if !unsafe { prev_inuse(&m, p) } {
                    // SAFETY: see the impl comment.
                    let ps = unsafe { prev_size(&m, p) };
                    size += ps;
                    p -= ps;
                    if self.csize(p) != ps {
                        return Err(CONS_PREV.into());
                    }
                    self.unlink(p)?;
                }
                if next != self.st.top {
                    // SAFETY: see the impl comment.
                    let nextinuse = unsafe { inuse_bit_at_offset(&m, next, nextsize) };
                    if !nextinuse {
                        size += nextsize;
                        self.unlink(next)?;
                    } else {
                        // SAFETY: see the impl comment.
                        unsafe { clear_inuse_bit_at_offset(&m, next, 0) };
                    }
                    let first = self.fd(UNSORTED);
                    self.set_fd(UNSORTED, p);
                    self.set_bk(first, p);
                    if !in_smallbin_range(size) {
                        self.set_fd_nextsize(p, 0);
                        self.set_bk_nextsize(p, 0);
                    }
                    self.head(p, size | PREV_INUSE);
                    self.set_bk(p, UNSORTED);
                    self.set_fd(p, first);
                    self.foot(p, size);
                } else {
                    size += nextsize;
                    self.head(p, size | PREV_INUSE);
                    self.st.top = p;
                }
                p = nextp;
            }
        }
        Ok(())
    }

    /// `_int_free`'s first checks of the chunk at `p`: its size and whether the chunk and the next
    /// header lie below the end of the top chunk (a model guard: glibc would read past its heap).
    /// Shared by [`int_free`](Self::int_free) and its tcache fast path, which must decide alike.
    /// `limit` is the end of the heap holding `p` (the end of the top chunk).
    #[inline(always)]
    fn free_checks(&self, p: usize, limit: usize) -> Result<(usize, bool), &'static str> {
        let size = self.csize(p);
        if p > size.wrapping_neg() || misaligned(p) {
            return Err(FREE_INVALID_POINTER);
        }
        if size < MINSIZE || size & MALLOC_ALIGN_MASK != 0 {
            return Err(FREE_INVALID_SIZE);
        }
        let in_bounds = p < limit && size <= limit - p && limit - p - size >= CHUNK_HDR_SZ;
        Ok((size, in_bounds))
    }

    /// Model check before a chunk is cached or put in a fastbin (glibc 2.36 makes it only on
    /// the coalescing path, as "double free or corruption (!prev)"): the chunk after `p` marks
    /// it in use. A chunk in the unsorted bin that took in its free successor has a new size,
    /// whose tcache bin or fastbin may have room where the first free found the old size's full;
    /// without this check its second free would cache a chunk that is still in a bin.
    #[inline(always)]
    fn check_inuse(&self, p: usize, size: usize) -> R<()> {
        // SAFETY: the caller checked that the next chunk's size word is in bounds.
        if unsafe { inuse_bit_at_offset(&self.m, p, size) } {
            Ok(())
        } else {
            Err(FREE_NOT_INUSE.into())
        }
    }

    /// The common case of [`int_free`](Self::int_free), kept small enough to inline into the
    /// front doors: every check `_int_free` makes before the tcache passes, the chunk does not
    /// carry the tcache key (so no double-free walk) and its tcache bin has room, so the chunk
    /// is cached. Returns its size then; `None` changes nothing and the caller runs the full
    /// `int_free`, which makes the same decisions (and reports what failed).
    ///
    /// The caller has checked that `p` is 16-aligned and its size word lies inside the heap,
    /// which ends at `limit` (the end of the top chunk: the break, for a main arena). With a
    /// size in the tcache's range `_int_free`'s first checks (wrap-around, alignment, minimum
    /// size) pass, and `p + size + 16 <= limit` is its bounds check.
    #[inline(always)]
    pub fn tcache_free_fast(&mut self, tc: Tc, p: usize, limit: usize) -> Option<usize> {
        let nomask = self.size_nomask(p);
        let size = nomask & !SIZE_BITS;
        let i = size.wrapping_sub(MINSIZE) / MALLOC_ALIGNMENT;
        if nomask & (IS_MMAPPED | MALLOC_ALIGN_MASK & !SIZE_BITS) != 0
            || i >= self.mp.tcache_bins
            || p + size + CHUNK_HDR_SZ > limit
        {
            return None;
        }
        // SAFETY: `p` is an in-bounds chunk of at least MINSIZE bytes (its key word is inside)
        // and the next chunk's size word is below `limit`; `tc` is the live tcache struct and
        // `i` one of its bins.
        unsafe {
            if self.m.rd(p + 24) == tcache::TCACHE_KEY
                || !inuse_bit_at_offset(&self.m, p, size)
                || tcache::count(&tc, i) >= self.mp.tcache_count
            {
                return None;
            }
            tcache::put(&self.m, &tc, p, i);
        }
        Some(size)
    }

    /// `_int_free(av, p, have_lock)` for a chunk of this arena that is not mmapped. The caller has
    /// checked that `p` and its size word lie inside the heap; `limit` is the end of the heap
    /// (the end of the top chunk) to keep reads of the next chunk in bounds.
    #[inline]
    pub fn int_free<G: Grow>(&mut self, g: &mut G, tc: Tc, p: usize, have_lock: bool) -> R<()> {
        let m = self.m;
        let limit = self.st.top + self.top_size();
        let (size, in_bounds) = self.free_checks(p, limit).map_err(Fail::Corrupt)?;

        if tc.is_some() && tcache::csize2tidx(size) < self.mp.tcache_bins {
            if !in_bounds {
                return Err(FREE_INVALID_SIZE.into());
            }
            // SAFETY: `tc` is the live tcache struct and `p` an in-bounds chunk of `size`.
            if unsafe { tcache::free_to_cache(&m, &tc, p, size, self.mp.tcache_count) }? {
                return Ok(());
            }
        }

        if size <= self.mp.max_fast {
            if !in_bounds {
                return Err(FREE_NEXT_SIZE_FAST.into());
            }
            let next = p + size;
            if self.size_nomask(next) <= CHUNK_HDR_SZ || self.csize(next) >= self.st.system_mem {
                return Err(FREE_NEXT_SIZE_FAST.into());
            }
            // Before anything changes: a fastbin chunk is still "in use", so this never hides
            // the fasttop check below.
            self.check_inuse(p, size)?;
            self.free_perturb(p, size);
            self.st.have_fastchunks = true;
            let idx = fastbin_index(size);
            let old = self.st.fastbins[idx];
            if old == p {
                return Err(FASTTOP.into());
            }
            // Model-only check (glibc 2.36 checks the bin's head alone): a chunk marked as
            // sitting in a fastbin is looked for in its bin, so a double free deeper in the bin
            // is reported instead of corrupting the list.
            // SAFETY: `p + 24` is inside the chunk.
            if unsafe { m.rd(p + 24) } == FASTBIN_MARK {
                let mut q = old;
                let mut n = 0usize;
                while q != 0 && n < 1 << 20 {
                    if q == p {
                        return Err(FAST_DOUBLE_FREE.into());
                    }
                    // SAFETY: a fastbin chunk's fd word.
                    q = unsafe { m.rd(q + 16) };
                    n += 1;
                }
            }
            // SAFETY: `p + 24` is inside the chunk.
            unsafe { m.wr(p + 24, FASTBIN_MARK) };
            // SAFETY: `p` is a chunk in bounds.
            unsafe { m.wr(p + 16, old) };
            self.st.fastbins[idx] = p;
            if have_lock && old != 0 && (self.csize(old) >> 4).wrapping_sub(2) != idx {
                return Err(FAST_ENTRY.into());
            }
            return Ok(());
        }

        // SAFETY: see the impl comment.
        if unsafe { is_mmapped(&m, p) } {
            return Err(MUNMAP_INVALID.into());
        }
        let next = p + size;
        if p == self.st.top {
            return Err(DF_TOP.into());
        }
        if p > self.st.top {
            // Inside the top chunk: glibc's own checks may miss this (model guard).
            return Err(DF_OUT.into());
        }
        if !in_bounds {
            return Err(DF_OUT.into());
        }
        // SAFETY: `next` is in bounds.
        if !unsafe { prev_inuse(&m, next) } {
            return Err(DF_PREV.into());
        }
        let nextsize = self.csize(next);
        if self.size_nomask(next) <= CHUNK_HDR_SZ || nextsize >= self.st.system_mem {
            return Err(FREE_NEXT_SIZE_NORMAL.into());
        }
        self.free_perturb(p, size);
        self.merge_free(g, p, size, next, nextsize)
    }

    /// The coalescing half of `_int_free` (after the checks).
    #[inline(always)]
    fn merge_free<G: Grow>(
        &mut self,
        g: &mut G,
        mut p: usize,
        mut size: usize,
        next: usize,
        nextsize: usize,
    ) -> R<()> {
        let m = self.m;
        // SAFETY: see the impl comment.
        if !unsafe { prev_inuse(&m, p) } {
            // SAFETY: see the impl comment.
            let ps = unsafe { prev_size(&m, p) };
            if ps > p - self.st.system_mem_base() {
                return Err(CONSOLIDATE_PREV.into());
            }
            size += ps;
            p -= ps;
            if self.csize(p) != ps {
                return Err(CONSOLIDATE_PREV.into());
            }
            self.unlink(p)?;
        }
        if next != self.st.top {
            let limit = self.st.top + self.top_size();
            if next > self.st.top || nextsize > limit - next - CHUNK_HDR_SZ {
                // Model guard: glibc would read past its heap here.
                return Err(FREE_NEXT_SIZE_NORMAL.into());
            }
            // SAFETY: see the impl comment.
            let nextinuse = unsafe { inuse_bit_at_offset(&m, next, nextsize) };
            if !nextinuse {
                self.unlink(next)?;
                size += nextsize;
            } else {
                // SAFETY: see the impl comment.
                unsafe { clear_inuse_bit_at_offset(&m, next, 0) };
            }
            self.unsorted_push(p, size, FREE_UNSORTED)?;
            self.head(p, size | PREV_INUSE);
            self.foot(p, size);
        } else {
            size += nextsize;
            self.head(p, size | PREV_INUSE);
            self.st.top = p;
        }
        if size >= FASTBIN_CONSOLIDATION_THRESHOLD {
            if self.st.have_fastchunks {
                self.consolidate()?;
            }
            let pad = self.mp.top_pad;
            g.trim(self, pad)?;
        }
        Ok(())
    }

    fn free_perturb(&mut self, p: usize, size: usize) {
        if self.mp.perturb != 0 {
            // SAFETY: the chunk's user bytes are in bounds (checked by the caller).
            unsafe {
                self.m
                    .fill(chunk2mem(p), self.mp.perturb, size - CHUNK_HDR_SZ)
            };
        }
    }

    /// `_int_realloc(av, oldp, oldsize, nb)` for a chunk of this arena that is not mmapped.
    /// Returns the user pointer of the (maybe moved) chunk.
    pub fn int_realloc<G: Grow>(
        &mut self,
        g: &mut G,
        tc: Tc,
        oldp: usize,
        oldsize: usize,
        nb: usize,
    ) -> R<Realloc> {
        let m = self.m;
        let limit = self.st.top + self.top_size();
        if self.size_nomask(oldp) <= CHUNK_HDR_SZ || oldsize >= self.st.system_mem {
            return Err(REALLOC_OLD_SIZE.into());
        }
        if oldp >= limit || oldsize > limit - oldp || limit - oldp - oldsize < CHUNK_HDR_SZ {
            return Err(REALLOC_NEXT_SIZE.into());
        }
        let next = oldp + oldsize;
        let nextsize = self.csize(next);
        if self.size_nomask(next) <= CHUNK_HDR_SZ || nextsize >= self.st.system_mem {
            return Err(REALLOC_NEXT_SIZE.into());
        }
        let flag = self.st.arena_flag;
        let (newp, newsize);
        if oldsize >= nb {
            newp = oldp;
            newsize = oldsize;
        } else if next == self.st.top && oldsize + nextsize >= nb + MINSIZE {
            // Grow into the top.
            // SAFETY: see the impl comment.
            unsafe { set_head_size(&m, oldp, nb | flag) };
            self.st.top = oldp + nb;
            self.head(oldp + nb, (oldsize + nextsize - nb) | PREV_INUSE);
            return Ok(Realloc::InPlace(chunk2mem(oldp)));
        } else if next != self.st.top
            // SAFETY: `next` is below the top, its successor's header in bounds.
            && !unsafe { inuse_bit_at_offset(&m, next, nextsize) }
            && oldsize + nextsize >= nb
        {
            // Grow into the free next chunk; split off the rest below.
            newp = oldp;
            newsize = oldsize + nextsize;
            self.unlink(next)?;
        } else {
            // Allocate, copy, free: the caller copies and frees (the new chunk may be mapped).
            let (newmem, _) = self.int_malloc(g, tc, nb - MALLOC_ALIGN_MASK)?;
            let np = mem2chunk(newmem);
            if np == next {
                newp = oldp;
                newsize = self.csize(np) + oldsize;
            } else {
                return Ok(Realloc::Moved(newmem));
            }
        }
        let rs = newsize - nb;
        if rs < MINSIZE {
            // SAFETY: see the impl comment.
            unsafe { set_head_size(&m, newp, newsize | flag) };
            self.set_inuse_at(newp, newsize);
        } else {
            let r = newp + nb;
            // SAFETY: see the impl comment.
            unsafe { set_head_size(&m, newp, nb | flag) };
            self.head(r, rs | PREV_INUSE | flag);
            self.set_inuse_at(r, rs);
            // SAFETY: `r` is a chunk of at least 32 bytes in the heap; its key word (see
            // `int_malloc`) may never have been written.
            unsafe { self.m.wr(r + 24, 0) };
            self.int_free(g, tc, r, true)?;
        }
        Ok(Realloc::InPlace(chunk2mem(newp)))
    }
}

impl Core {
    /// `_int_memalign(av, alignment, bytes)` (`alignment` a power of two above 16).
    pub fn int_memalign<G: Grow>(
        &mut self,
        g: &mut G,
        tc: Tc,
        alignment: usize,
        bytes: usize,
    ) -> R<usize> {
        let nb = checked_request2size(bytes).ok_or(Fail::Oom)?;
        if nb > usize::MAX - alignment - MINSIZE {
            return Err(Fail::Oom);
        }
        let (m, _) = self.int_malloc(g, tc, nb + alignment + MINSIZE)?;
        let mut p = mem2chunk(m);
        let flag = self.st.arena_flag;
        let mapped = g.mapped_mem(p);
        if m % alignment != 0 {
            let mut brk = mem2chunk((m + alignment - 1) & alignment.wrapping_neg());
            if brk - p < MINSIZE {
                brk += alignment;
            }
            let newp = brk;
            let leadsize = brk - p;
            if let Some(mm) = mapped {
                // SAFETY: both headers are inside the fresh mapping.
                let lead = unsafe {
                    let newsize = chunksize(&mm, p) - leadsize;
                    let lead = prev_size(&mm, p) + leadsize;
                    set_prev_size(&mm, newp, lead);
                    set_head(&mm, newp, newsize | IS_MMAPPED);
                    lead
                };
                g.set_mapped_lead(newp, lead);
                return Ok(chunk2mem(newp));
            }
            let mm = self.m;
            let newsize = self.csize(p) - leadsize;
            // SAFETY: `p .. p+size` is the fresh chunk in the heap.
            unsafe {
                set_head(&mm, newp, newsize | PREV_INUSE | flag);
                set_inuse_bit_at_offset(&mm, newp, newsize);
                set_head_size(&mm, p, leadsize | flag);
            }
            // SAFETY: the new chunk's key word (see `int_malloc`).
            unsafe { mm.wr(chunk2mem(newp) + 8, 0) };
            self.int_free(g, tc, p, true)?;
            p = newp;
        }
        if mapped.is_none() {
            let size = self.csize(p);
            if size > nb + MINSIZE {
                let rs = size - nb;
                let r = p + nb;
                let mm = self.m;
                // SAFETY: `p .. p+size` is our chunk in the heap.
                unsafe {
                    set_head(&mm, r, rs | PREV_INUSE | flag);
                    set_head_size(&mm, p, nb);
                }
                // SAFETY: `r` is a chunk of at least 32 bytes in the heap; its key word (see
                // `int_malloc`) may never have been written.
                unsafe { self.m.wr(r + 24, 0) };
                self.int_free(g, tc, r, true)?;
            }
        }
        Ok(chunk2mem(p))
    }
}

/// The outcome of [`Core::int_realloc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Realloc {
    /// The chunk stayed where it was (maybe resized); its user pointer.
    InPlace(usize),
    /// A new chunk was allocated: the caller copies `oldsize - 8` bytes and `_int_free`s the old.
    Moved(usize),
}

impl State {
    /// The lowest address of the arena's memory (set by the heap when it first grows).
    #[inline(always)]
    pub fn system_mem_base(&self) -> usize {
        self.base
    }
}
