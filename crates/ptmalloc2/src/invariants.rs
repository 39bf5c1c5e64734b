//! The invariant walk: every structure of an arena checked against every other, in the spirit
//! of glibc's `do_check_malloc_state` (written for the model, not copied).
//!
//! ```text
//!  1 chunk chain   first ──> ... ──> top          (each heap segment tiled by chunk sizes)
//!                  size % 16 == 0, size >= 32 (16: a fencepost), inside the segment,
//!                  free (next's PREV_INUSE clear) => footer == size, previous chunk not free
//!                  top: last, PREV_INUSE set, ends where the segment ends
//!  2 tcache        entries[i] -> e -> e -> 0: exactly counts[i] in-use chunks of 32+16i,
//!                  each with the tcache key; bins >= tcache_bins empty
//!  3 fastbins      fastbins[i] -> p -> p -> 0: in-use chunks of 32+16i (<= max_fast),
//!                  each carrying the model's fastbin mark; any => have_fastchunks
//!  4 bins          head <-> p <-> p <-> head: fd->bk == self all round; free chunks only;
//!                  small: exact size; large: in range, sizes falling along fd, one
//!                  fd_nextsize/bk_nextsize ring through the first chunk of each size
//!                  (the others' nextsize links are null); binmap bit set if non-empty
//!  5 coverage      every free chunk of the chain is in exactly one bin; no chunk is in two
//!                  lists (or twice in one: cycles end there)
//!  6 mappings      sorted, disjoint, page-sized; each holds one IS_MMAPPED chunk whose
//!                  prev_size is its lead; n_mmaps and mmapped_mem count them
//!  7 Arena         the fast paths' tcache is the tcache while no check failed, else none;
//!                  the statistics' headroom <= its exact value
//! ```
//!
//! What the model promises about the binmap (glibc promises the same): the bit of bin `i` is
//! set whenever bin `i` holds a chunk; a set bit over an empty bin is allowed (bits are cleared
//! lazily by malloc's scan); the bits of bins 0, 1 (unsorted) and 127 are never set.
//!
//! The walk reads only the allocator's metadata (headers, links, the tcache struct) and every
//! address it follows is checked to be a chunk of the chain before it is read, so a corrupted
//! heap is reported, never followed out of bounds. It is O(chunks) in time and memory: for tests
//! and debugging.

use allocator_traits::Corruption;

use crate::arena::Core;
use crate::bins::*;
use crate::checks::FASTBIN_MARK;
use crate::chunk::*;
use crate::heap::Sys;
use crate::mapped::{Mapping, Mappings};
use crate::tcache::{self, TCACHE_KEY, TCACHE_MAX_BINS, Tc};

/// One contiguous piece of an arena's memory: its chunk chain starts at `first` and stays below
/// `end`. The main arena has one; a thread arena one per heap (the last one holds the top).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// The first chunk.
    pub first: usize,
    /// One past the last byte.
    pub end: usize,
}

/// A chunk of the chain, as the lists are checked against it.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    addr: usize,
    size: usize,
    /// Its next chunk's PREV_INUSE is clear: it must be in a bin.
    free: bool,
    /// Fenceposts (the 16-byte and 0-byte chunks closing a heap) are in no list.
    fencepost: bool,
    /// Which list holds it (0 = none yet).
    listed: bool,
}

fn ensure(holds: bool, structure: &'static str, at: usize, problem: &'static str) -> R {
    Corruption::ensure(holds, structure, at, problem)
}

type R = Result<(), Corruption>;

/// The chain of every segment, as read from the chunk headers.
struct Chain {
    chunks: Vec<Chunk>,
}

impl Chain {
    fn find(&self, addr: usize) -> Option<usize> {
        self.chunks.binary_search_by_key(&addr, |c| c.addr).ok()
    }

    /// Marks the chunk at `addr` as held by `structure`; it must be a chunk of the chain (not a
    /// fencepost) that no list holds yet.
    fn take(&mut self, addr: usize, structure: &'static str) -> Result<Chunk, Corruption> {
        ensure(
            !misaligned(addr),
            structure,
            addr,
            "entry is not 16-aligned",
        )?;
        let i = self.find(addr).ok_or(Corruption::new(
            structure,
            addr,
            "entry is not a chunk of the heap",
        ))?;
        let c = &mut self.chunks[i];
        ensure(!c.fencepost, structure, addr, "entry is a fencepost")?;
        ensure(
            !c.listed,
            structure,
            addr,
            "chunk is already in a list (listed twice, or the list has a cycle)",
        )?;
        c.listed = true;
        Ok(*c)
    }
}

/// Walks the arena `core` over `segments` (ascending; the last one holds the top), whose sizes
/// add up to `system_mem` bytes from the system, with the tcache `tc` if its entries are to be
/// checked (the thread's own; `Tc::NONE` skips them).
pub(crate) fn check_arena(core: &Core, segments: &[Segment], system_mem: usize, tc: Tc) -> R {
    let st = &core.st;
    ensure(
        st.system_mem == system_mem,
        "arena",
        st.system_mem,
        "system_mem is not the size of the arena's heaps",
    )?;
    if st.top == 0 {
        // Before the first growth: glibc's initial top, nothing in any list.
        ensure(
            st.system_mem == 0,
            "arena",
            0,
            "memory counted before the first growth",
        )?;
        ensure(
            st.fastbins.iter().all(|&f| f == 0),
            "fastbins",
            0,
            "a chunk before the first growth",
        )?;
        for i in 0..NBINS {
            ensure(
                st.bins[i] == [i, i],
                "bins",
                i,
                "a chunk before the first growth",
            )?;
        }
        if tc.is_some() {
            for i in 0..TCACHE_MAX_BINS {
                // SAFETY: `tc` is the live tcache struct and `i` one of its bins.
                let (n, e) = unsafe { (tcache::count(&tc, i), tcache::entry(&tc, i)) };
                ensure(
                    n == 0 && e == 0,
                    "tcache",
                    i,
                    "a chunk before the first growth",
                )?;
            }
        }
        return Ok(());
    }
    let mut chain = walk_chain(core, segments)?;
    if tc.is_some() {
        check_tcache(core, &mut chain, tc)?;
    }
    check_fastbins(core, &mut chain)?;
    check_bins(core, &mut chain)?;
    for c in &chain.chunks {
        ensure(
            !c.free || c.listed,
            "chunk chain",
            c.addr,
            "free chunk (next PREV_INUSE clear) in no bin",
        )?;
    }
    Ok(())
}

/// The walk of a main arena over its brk-like heap `sys` (one segment from the heap's start to
/// the break, whose extent is `system_mem`) and its mapped chunks, with the tcache `tc`.
pub(crate) fn check_main<S, M: allocator_traits::MemorySource>(
    core: &Core,
    sys: &Sys<S, M>,
    tc: Tc,
) -> R {
    let base = core.st.base;
    if base == 0 {
        check_arena(core, &[], 0, tc)?;
    } else {
        let seg = Segment {
            first: align_up(base, MALLOC_ALIGNMENT),
            end: sys.brk_end,
        };
        check_arena(core, &[seg], sys.brk_end - base, tc)?;
    }
    check_mappings(core, &sys.maps)
}

/// 1: the chunk chain of every segment.
fn walk_chain(core: &Core, segments: &[Segment]) -> Result<Chain, Corruption> {
    const S: &str = "chunk chain";
    let m = &core.m;
    let top = core.st.top;
    let mut chunks: Vec<Chunk> = Vec::new();
    for (k, seg) in segments.iter().enumerate() {
        let last = k + 1 == segments.len();
        ensure(
            !misaligned(seg.first),
            S,
            seg.first,
            "first chunk is not 16-aligned",
        )?;
        ensure(seg.first < seg.end, S, seg.first, "segment is empty")?;
        let mut p = seg.first;
        // Whether the chunk before `p` is free, and its size.
        let mut prev: Option<(usize, bool)> = None;
        loop {
            ensure(
                p.checked_add(CHUNK_HDR_SZ).is_some_and(|e| e <= seg.end),
                S,
                p,
                "chunk header runs past the end of its heap",
            )?;
            // SAFETY: the header `p .. p+16` lies inside the segment (checked).
            let nomask = unsafe { size_nomask(m, p) };
            let size = nomask & !SIZE_BITS;
            let p_inuse = nomask & PREV_INUSE != 0;
            match prev {
                None => ensure(p_inuse, S, p, "first chunk of a heap has PREV_INUSE clear")?,
                // (Whether a chunk marked free really is free is checked against the bins.)
                Some((psize, pfree)) => {
                    if pfree {
                        // SAFETY: `p`'s header is inside the segment.
                        let foot = unsafe { prev_size(m, p) };
                        ensure(
                            foot == psize,
                            S,
                            p - psize,
                            "free chunk's footer is not its size",
                        )?;
                    }
                }
            }
            ensure(
                nomask & IS_MMAPPED == 0,
                S,
                p,
                "heap chunk marked IS_MMAPPED",
            )?;
            if core.st.arena_flag == 0 {
                ensure(
                    nomask & NON_MAIN_ARENA == 0,
                    S,
                    p,
                    "main-arena chunk marked NON_MAIN_ARENA",
                )?;
            }
            if last && p == top {
                let end = p.checked_add(size);
                ensure(
                    size >= MINSIZE && size.is_multiple_of(MALLOC_ALIGNMENT),
                    "top",
                    p,
                    "bad top size",
                )?;
                ensure(p_inuse, "top", p, "top has PREV_INUSE clear")?;
                ensure(
                    end == Some(seg.end),
                    "top",
                    p,
                    "top does not end where its heap ends",
                )?;
                break;
            }
            if size == 0 {
                // The 0-size fencepost that closes a heap which is not the top's.
                ensure(!last, S, p, "chain reaches a 0-size chunk before the top")?;
                chunks.push(Chunk {
                    addr: p,
                    size,
                    free: false,
                    fencepost: true,
                    listed: false,
                });
                break;
            }
            ensure(
                size.is_multiple_of(MALLOC_ALIGNMENT),
                S,
                p,
                "size is not a multiple of 16",
            )?;
            ensure(size >= CHUNK_HDR_SZ, S, p, "size below the minimum")?;
            let next = p.checked_add(size).filter(|&n| n <= seg.end - CHUNK_HDR_SZ);
            let next = next.ok_or(Corruption::new(S, p, "chunk runs past the end of its heap"))?;
            ensure(
                !(last && p < top && next > top),
                S,
                p,
                "chunk overlaps the top",
            )?;
            // SAFETY: `next`'s header lies inside the segment (checked).
            let free = !unsafe { prev_inuse(m, next) };
            let fencepost = size < MINSIZE;
            ensure(!(free && fencepost), S, p, "fencepost chunk marked free")?;
            if free {
                ensure(
                    !prev.is_some_and(|(_, f)| f),
                    S,
                    p,
                    "two free chunks side by side",
                )?;
            }
            chunks.push(Chunk {
                addr: p,
                size,
                free,
                fencepost,
                listed: false,
            });
            prev = Some((size, free));
            p = next;
        }
    }
    chunks.sort_by_key(|c| c.addr);
    Ok(Chain { chunks })
}

/// 2: the tcache bins.
fn check_tcache(core: &Core, chain: &mut Chain, tc: Tc) -> R {
    const S: &str = "tcache";
    for i in 0..TCACHE_MAX_BINS {
        // SAFETY: `tc` is the live tcache struct and `i` one of its bins.
        let (count, mut e) = unsafe { (tcache::count(&tc, i), tcache::entry(&tc, i)) };
        if i >= core.mp.tcache_bins {
            ensure(
                count == 0 && e == 0,
                S,
                i,
                "bin beyond tcache_bins holds chunks",
            )?;
            continue;
        }
        ensure(
            count <= core.mp.tcache_count,
            S,
            i,
            "count above tcache_count",
        )?;
        let mut n = 0;
        while e != 0 {
            ensure(n < count, S, e, "bin holds more chunks than its count")?;
            let c = chain.take(mem2chunk(e), S)?;
            ensure(
                !c.free,
                S,
                e,
                "cached chunk is free to its neighbours (not in use)",
            )?;
            ensure(
                c.size == tcache::tidx2usize(i) + SIZE_SZ,
                S,
                e,
                "chunk size is not its bin's",
            )?;
            // SAFETY: `e` is the user pointer of a chunk of the chain of at least 32 bytes.
            let (next, key) = unsafe { (core.m.rd(e), core.m.rd(e + SIZE_SZ)) };
            ensure(key == TCACHE_KEY, S, e, "cached chunk lacks the tcache key")?;
            e = next;
            n += 1;
        }
        ensure(n == count, S, i, "bin holds fewer chunks than its count")?;
    }
    Ok(())
}

/// 3: the fastbins.
fn check_fastbins(core: &Core, chain: &mut Chain) -> R {
    const S: &str = "fastbin";
    let st = &core.st;
    for i in 0..NFASTBINS {
        let mut p = st.fastbins[i];
        if p != 0 {
            ensure(
                st.have_fastchunks,
                S,
                i,
                "non-empty fastbin but have_fastchunks is clear",
            )?;
            ensure(
                32 + 16 * i <= core.mp.max_fast,
                S,
                i,
                "fastbin above global_max_fast in use",
            )?;
        }
        while p != 0 {
            let c = chain.take(p, S)?;
            ensure(
                !c.free,
                S,
                p,
                "fastbin chunk is free to its neighbours (not in use)",
            )?;
            ensure(
                c.size == 32 + 16 * i,
                S,
                p,
                "chunk size is not its fastbin's",
            )?;
            // SAFETY: `p` is a chunk of the chain of at least 32 bytes.
            let (next, mark) = unsafe { (core.m.rd(p + 16), core.m.rd(p + 24)) };
            ensure(
                mark == FASTBIN_MARK,
                S,
                p,
                "fastbin chunk lacks the model's fastbin mark",
            )?;
            p = next;
        }
    }
    Ok(())
}

/// 4: the unsorted, small and large bins, and the binmap.
fn check_bins(core: &Core, chain: &mut Chain) -> R {
    let st = &core.st;
    for i in [0, NBINS - 1] {
        ensure(st.bins[i] == [i, i], "bins", i, "unused bin holds chunks")?;
    }
    for i in [0, UNSORTED, NBINS - 1] {
        ensure(
            st.binmap[idx2block(i)] & idx2bit(i) == 0,
            "binmap",
            i,
            "bit set for a bin the binmap never marks",
        )?;
    }
    for i in UNSORTED..NBINS - 1 {
        let s: &'static str = if i == UNSORTED {
            "unsorted bin"
        } else if i < NSMALLBINS {
            "small bin"
        } else {
            "large bin"
        };
        let mut prev = i;
        let mut p = st.bins[i][0];
        // (chunk, size) of each chunk in fd order, for the large bins' checks.
        let mut order: Vec<(usize, usize)> = Vec::new();
        while p != i {
            ensure(p >= NBINS, s, p, "fd leads to another bin's head")?;
            let c = chain.take(p, s)?;
            ensure(
                c.free,
                s,
                p,
                "chunk in a bin is in use (next PREV_INUSE set)",
            )?;
            ensure(
                core.bk(p) == prev,
                s,
                p,
                "bk does not lead back (fd->bk != self)",
            )?;
            ensure(c.size >= MINSIZE, s, p, "size below the minimum")?;
            if i == UNSORTED {
                if !in_smallbin_range(c.size) {
                    ensure(
                        core.fd_nextsize(p) == 0 && core.bk_nextsize(p) == 0,
                        s,
                        p,
                        "large chunk in the unsorted bin has nextsize links",
                    )?;
                }
            } else if i < NSMALLBINS {
                ensure(c.size == i * 16, s, p, "chunk size is not its small bin's")?;
            } else {
                ensure(
                    largebin_index(c.size) == i,
                    s,
                    p,
                    "chunk size outside its large bin",
                )?;
                ensure(
                    order.last().is_none_or(|&(_, last)| last >= c.size),
                    s,
                    p,
                    "sizes do not fall along fd",
                )?;
            }
            order.push((p, c.size));
            prev = p;
            p = core.fd(p);
        }
        ensure(
            st.bins[i][1] == prev,
            s,
            i,
            "head's bk is not the last chunk",
        )?;
        if !order.is_empty() && i != UNSORTED {
            ensure(
                st.binmap[idx2block(i)] & idx2bit(i) != 0,
                "binmap",
                i,
                "bit clear for a non-empty bin",
            )?;
        }
        if i >= NSMALLBINS {
            check_nextsize(core, &order)?;
        }
    }
    Ok(())
}

/// The skip list of a large bin whose chunks are `order` (fd order, sizes falling): the first
/// chunk of each size is on one `fd_nextsize` ring (falling sizes, `bk_nextsize` back), the
/// others have null links.
fn check_nextsize(core: &Core, order: &[(usize, usize)]) -> R {
    const S: &str = "large bin nextsize";
    let heads: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|&(k, &(_, size))| k == 0 || order[k - 1].1 != size)
        .map(|(_, &(p, _))| p)
        .collect();
    for (k, &(p, size)) in order.iter().enumerate() {
        let head = k == 0 || order[k - 1].1 != size;
        if !head {
            ensure(
                core.fd_nextsize(p) == 0 && core.bk_nextsize(p) == 0,
                S,
                p,
                "chunk that is not the first of its size has nextsize links",
            )?;
        }
    }
    for (k, &h) in heads.iter().enumerate() {
        let next = heads[(k + 1) % heads.len()];
        let back = heads[(k + heads.len() - 1) % heads.len()];
        ensure(
            core.fd_nextsize(h) == next,
            S,
            h,
            "fd_nextsize is not the next size's first chunk",
        )?;
        ensure(
            core.bk_nextsize(h) == back,
            S,
            h,
            "bk_nextsize is not the previous size's first chunk",
        )?;
    }
    Ok(())
}

/// 6: the mapped chunks and the counters that count them.
pub(crate) fn check_mappings<M: allocator_traits::MemorySource>(
    core: &Core,
    maps: &Mappings<M>,
) -> R {
    const S: &str = "mapped chunks";
    let (mut n, mut bytes, mut end) = (0usize, 0usize, 0usize);
    for mp in maps.iter() {
        check_mapping(&mp)?;
        ensure(
            mp.addr >= end,
            S,
            mp.addr,
            "mappings overlap or are out of order",
        )?;
        end = mp.addr + mp.len;
        n += 1;
        bytes += mp.len;
    }
    ensure(
        n == core.mp.n_mmaps,
        S,
        n,
        "n_mmaps does not count the mappings",
    )?;
    ensure(
        bytes == core.mp.mmapped_mem,
        S,
        bytes,
        "mmapped_mem does not add up the mappings",
    )?;
    Ok(())
}

/// One mapping holds one well-formed IS_MMAPPED chunk.
fn check_mapping(mp: &Mapping) -> R {
    const S: &str = "mapped chunk";
    ensure(
        mp.addr.is_multiple_of(PAGE) && mp.len.is_multiple_of(PAGE) && mp.len > 0,
        S,
        mp.addr,
        "mapping is not whole pages",
    )?;
    let p = mp.addr + mp.lead;
    ensure(
        mp.lead
            .checked_add(2 * CHUNK_HDR_SZ)
            .is_some_and(|e| e <= mp.len)
            && !misaligned(p),
        S,
        p,
        "chunk start is not a 16-aligned place inside its mapping",
    )?;
    let m = Mem::new(mp.ptr);
    // SAFETY: `p .. p+16` lies inside the mapping (checked).
    let (ps, nomask) = unsafe { (prev_size(&m, p), size_nomask(&m, p)) };
    ensure(
        nomask & IS_MMAPPED != 0,
        S,
        p,
        "chunk not marked IS_MMAPPED",
    )?;
    ensure(
        ps == mp.lead,
        S,
        p,
        "prev_size is not the chunk's lead in its mapping",
    )?;
    ensure(
        ps.checked_add(nomask & !SIZE_BITS) == Some(mp.len),
        S,
        p,
        "lead + size is not the mapping's length",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Each test builds a healthy heap, checks that the walk passes, plants one corruption and
    //! checks that the walk reports it (and which invariant broke).
    use core::ptr::NonNull;

    use allocator_traits::{BoxedRegion, FreeSpaceManager};

    use crate::{Arena, SystemPages, Tunables};

    type A = Arena<BoxedRegion, SystemPages>;

    fn arena(t: &str) -> A {
        Arena::new(
            BoxedRegion::new(4 << 20).unwrap(),
            SystemPages::new(),
            &Tunables::parse(&format!(
                "glibc.malloc.top_pad=0{}{t}",
                if t.is_empty() { "" } else { ":" }
            ))
            .unwrap(),
        )
    }

    const NO_CACHES: &str = "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0";

    /// The word at `off` bytes from the user pointer `p` (negative: the header).
    fn word(p: NonNull<u8>, off: isize) -> *mut usize {
        p.as_ptr().wrapping_offset(off).cast()
    }

    fn plant(p: NonNull<u8>, off: isize, f: impl FnOnce(usize) -> usize) {
        // SAFETY: the tests write words of their own heap (headers and links), as a bug would.
        unsafe { word(p, off).write(f(word(p, off).read())) }
    }

    /// The walk fails on `a`, with `problem` in its report.
    fn reports(a: &A, problem: &str) {
        match a.check_invariants() {
            Ok(()) => panic!("the walk missed the corruption (wanted: {problem})"),
            Err(c) => assert!(
                c.problem.contains(problem),
                "the walk reported `{c}`, wanted `{problem}`"
            ),
        }
    }

    /// An arena under tunables `t` with blocks of `sizes` allocated (and zeroed) in order, then
    /// those at the indices `free` freed (in that order); the walk passes on it.
    fn heap(t: &str, sizes: &[usize], free: &[usize]) -> (A, Vec<NonNull<u8>>) {
        let mut a = arena(t);
        // Each block is written, as a program would: a planted corruption sends the walk into
        // user data, which must not be uninitialised memory (Miri).
        let p: Vec<_> = sizes
            .iter()
            .map(|&s| {
                let p = a.malloc(s).unwrap();
                // SAFETY: the block has at least `s` bytes.
                unsafe { p.as_ptr().write_bytes(0, s) };
                p
            })
            .collect();
        for &i in free {
            // SAFETY: live blocks of `a`, each freed once.
            unsafe { a.free(p[i]) }.unwrap();
        }
        a.check_invariants().unwrap();
        (a, p)
    }

    #[test]
    fn healthy_heaps_pass() {
        arena("").check_invariants().unwrap();
        heap("", &[100], &[]);
        heap("", &[100], &[0]);
    }

    #[test]
    fn bad_size_in_a_free_chunk() {
        let (a, p) = heap(NO_CACHES, &[200, 200], &[0]);
        plant(p[0], -8, |s| s + 0x10);
        reports(&a, "footer");
    }

    #[test]
    fn broken_bk_link() {
        let (a, p) = heap(NO_CACHES, &[200, 200, 300, 200], &[0, 2]);
        // The 300-byte chunk is the unsorted bin's first; make the other's bk skip it.
        plant(p[0], 8, |_| 1);
        reports(&a, "fd->bk != self");
    }

    #[test]
    fn tcache_count_off_by_one() {
        let (a, p) = heap("", &[24, 24], &[0]);
        // The tcache struct's user pointer is at heap offset 0x10; the first block at 0x2a0.
        let counts = p[0].as_ptr().wrapping_sub(0x290).cast::<u16>();
        // SAFETY: counts[0] of the arena's tcache struct.
        unsafe { counts.write(counts.read() + 1) };
        reports(&a, "fewer chunks than its count");
    }

    #[test]
    fn fastbin_entry_of_the_wrong_size() {
        let (a, p) = heap("glibc.malloc.tcache_count=0", &[24, 40, 24], &[0]);
        // fastbin[0] -> the 24-byte block's chunk -> the 40-byte one's (48 bytes, in use).
        let other = p[1].as_ptr() as usize - 16;
        plant(p[0], 0, |_| other);
        reports(&a, "not its fastbin's");
    }

    #[test]
    fn cleared_prev_inuse() {
        let (a, p) = heap(NO_CACHES, &[200, 200, 200], &[]);
        // The second chunk's PREV_INUSE says the first is free, with a matching footer.
        plant(p[1], -8, |s| s & !1);
        plant(p[1], -16, |_| 0xd0);
        reports(&a, "in no bin");
    }

    #[test]
    fn binmap_bit_of_a_non_empty_bin() {
        // The 500-byte request sorts the free 0xd0 chunk into small bin 13.
        let (mut a, _) = heap(NO_CACHES, &[200, 200], &[0]);
        a.malloc(500).unwrap();
        a.check_invariants().unwrap();
        a.core_mut().st.binmap[0] &= !(1 << 13);
        reports(&a, "bit clear for a non-empty bin");
    }

    #[test]
    fn small_bin_chunk_of_another_size() {
        let (mut a, p) = heap(NO_CACHES, &[200, 200], &[0]);
        a.malloc(500).unwrap();
        a.check_invariants().unwrap();
        // Cut the 0xd0 chunk into a free 0xa0 chunk and an in-use 0x30 one: the chain still
        // tiles, but small bin 13 (0xd0) now holds an 0xa0 chunk.
        plant(p[0], -8, |_| 0xa0 | 1);
        plant(p[0], 0x90, |_| 0xa0);
        plant(p[0], 0x98, |_| 0x30);
        plant(p[0], 0xc8, |s| s | 1);
        reports(&a, "not its small bin's");
    }

    #[test]
    fn large_bin_skip_list() {
        // The 5000-byte request sorts the free 0x460 and 0x450 chunks into large bin 65: two
        // sizes, so the skip list links both.
        let (mut a, p) = heap(NO_CACHES, &[1100, 24, 1090, 24], &[0, 2]);
        a.malloc(5000).unwrap();
        a.check_invariants().unwrap();
        plant(p[0], 16, |_| 0);
        reports(&a, "nextsize");
    }

    #[test]
    fn mapped_chunk_header() {
        let (a, p) = heap("", &[300_000], &[]);
        plant(p[0], -16, |_| 0x1000);
        reports(&a, "prev_size is not the chunk's lead");
    }

    #[test]
    fn stats_headroom() {
        let (mut a, _p) = heap("", &[100, 200], &[0]);
        let s = a.stats_mut();
        s.plant_headroom(s.exact_headroom() + 1);
        reports(
            &a,
            "the headroom is above the live counts' distance to the peaks",
        );
    }

    #[test]
    fn fast_paths_tcache() {
        let (mut a, _p) = heap("", &[100, 200], &[0]);
        *a.fast_mut() = crate::tcache::Tc::NONE;
        reports(&a, "the fast paths' tcache is not the tcache");
    }

    #[test]
    fn top_size() {
        // The top follows the block's 0x70 chunk.
        let (a, p) = heap("", &[100], &[]);
        plant(p[0], 0x70 - 8, |s| s + 0x1000);
        reports(&a, "top does not end");
    }
}
