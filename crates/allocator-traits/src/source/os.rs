//! Operating-system memory: a `brk`-like growing region and page-granular mappings.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::{MemorySource, align_up, dont_need, round_request};
use crate::SourceError;

/// The OS page size (cached after the first call).
pub fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let v = if v > 0 { v as usize } else { 4096 };
    PAGE.store(v, Ordering::Relaxed);
    v
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A contiguous region that grows like `brk`: it reserves `reserve` bytes of address space on
/// first use (no memory committed), and commits pages read-write as grants reach them.
///
/// ```text
///   base              base+used     base+committed              base+reserve
///   |=== granted =====|.. RW ..........|...... PROT_NONE ..........|
/// ```
///
/// Its constructor is `const`, so it can sit in a `static` behind a `#[global_allocator]`.
/// Releasing the tail gives the pages back (`madvise(MADV_DONTNEED)` then `PROT_NONE`).
#[derive(Debug)]
pub struct BrkRegion {
    reserve: usize,
    base: *mut u8,
    used: usize,
    committed: usize,
    /// Bytes inside `0..used` given back by `decommit` and not recommitted.
    decommitted: usize,
}

// SAFETY: the reservation is owned by this value alone.
unsafe impl Send for BrkRegion {}

impl BrkRegion {
    /// A region that may grow up to `reserve` bytes (rounded up to pages on first use).
    pub const fn new(reserve: usize) -> Self {
        BrkRegion {
            reserve,
            base: core::ptr::null_mut(),
            used: 0,
            committed: 0,
            decommitted: 0,
        }
    }

    /// Address of the first byte, or 0 before the first grant.
    pub fn start(&self) -> usize {
        self.base as usize
    }

    fn reserve_now(&mut self) -> Result<(), SourceError> {
        let page = page_size();
        let len = align_up(self.reserve.max(page), page).ok_or(SourceError::InvalidRequest {
            size: self.reserve,
            align: page,
        })?;
        // SAFETY: an anonymous PROT_NONE reservation touches no existing mapping.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(SourceError::Os {
                call: "mmap",
                errno: errno(),
            });
        }
        self.base = p.cast();
        self.reserve = len;
        Ok(())
    }
}

impl Drop for BrkRegion {
    fn drop(&mut self) {
        if !self.base.is_null() {
            // SAFETY: the reservation was mapped by `reserve_now` with this length and is ours.
            unsafe { libc::munmap(self.base.cast(), self.reserve) };
        }
    }
}

// SAFETY: grants are disjoint, ascending sub-ranges of one reservation, committed read-write before
// they are returned; the tail alone is released. Contiguous by construction.
unsafe impl MemorySource for BrkRegion {
    fn acquire(&mut self, size: usize, align: usize) -> Result<NonNull<[u8]>, SourceError> {
        let page = page_size();
        let size = round_request(size, align, page)?;
        if self.base.is_null() {
            self.reserve_now()?;
        }
        let exhausted = SourceError::Exhausted {
            requested: size,
            available: self.reserve - self.used,
        };
        let start = align_up(self.used, align).ok_or(exhausted)?;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= self.reserve)
            .ok_or(exhausted)?;
        if end > self.committed {
            // `end` is a page multiple: `used` always is, `size` is rounded, and `align` below a
            // page keeps `start` on a page; above, `start` is a multiple of a larger power of two.
            let from = self.committed;
            // SAFETY: `from..end` lies inside our reservation.
            let rc = unsafe {
                libc::mprotect(
                    self.base.add(from).cast(),
                    end - from,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if rc != 0 {
                return Err(SourceError::Os {
                    call: "mprotect",
                    errno: errno(),
                });
            }
            self.committed = end;
        }
        self.used = end;
        // SAFETY: `start <= reserve`, inside the mapping.
        let ptr = unsafe { self.base.add(start) };
        NonNull::new(core::ptr::slice_from_raw_parts_mut(ptr, size)).ok_or(exhausted)
    }

    unsafe fn release(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), SourceError> {
        let p = ptr.as_ptr() as usize;
        let base = self.base as usize;
        let bad = SourceError::InvalidRelease { ptr: p, size };
        if self.base.is_null() || p < base || p.checked_add(size) != Some(base + self.used) {
            return Err(bad);
        }
        let page = page_size();
        let new_used = self.used - size;
        // Give back whole pages past the new end.
        let keep = align_up(new_used, page).ok_or(bad)?;
        if keep < self.committed {
            // SAFETY: `keep..committed` is inside our reservation and no longer granted.
            unsafe {
                let at = self.base.add(keep).cast();
                libc::madvise(at, self.committed - keep, libc::MADV_DONTNEED);
                libc::mprotect(at, self.committed - keep, libc::PROT_NONE);
            }
            self.committed = keep;
        }
        self.used = new_used;
        // A caller that releases a tail it had decommitted without recommitting it first would
        // leave the count above what is granted: keep it within.
        self.decommitted = self.decommitted.min(new_used);
        Ok(())
    }

    fn granularity(&self) -> usize {
        page_size()
    }

    fn is_contiguous(&self) -> bool {
        true
    }

    fn footprint(&self) -> usize {
        self.used - self.decommitted
    }

    unsafe fn decommit(&mut self, ptr: NonNull<u8>, size: usize) -> bool {
        let at = ptr.as_ptr() as usize;
        let base = self.base as usize;
        let inside = !self.base.is_null()
            && at >= base
            && at
                .checked_add(size)
                .is_some_and(|end| end <= base + self.used);
        // SAFETY: a page-aligned range of our reservation, committed read-write, whose contents
        // the caller gives up.
        if !inside || !unsafe { dont_need(ptr, size) } {
            return false;
        }
        self.decommitted += size;
        true
    }

    unsafe fn recommit(&mut self, _ptr: NonNull<u8>, size: usize) {
        // The pages stay read-write: the kernel maps fresh zero pages on first touch.
        self.decommitted = self.decommitted.saturating_sub(size);
    }
}

/// Page-granular OS mappings: every grant is its own anonymous `mmap`, every release a `munmap`.
#[derive(Debug, Default)]
pub struct OsPages {
    footprint: usize,
}

impl OsPages {
    /// A source with nothing mapped yet.
    pub const fn new() -> Self {
        OsPages { footprint: 0 }
    }
}

// SAFETY: each grant is a fresh private anonymous mapping (so disjoint from every other grant),
// trimmed to the asked alignment, and valid until unmapped by `release`.
unsafe impl MemorySource for OsPages {
    fn acquire(&mut self, size: usize, align: usize) -> Result<NonNull<[u8]>, SourceError> {
        let page = page_size();
        let size = round_request(size.max(1), align, page)?;
        let extra = if align > page { align } else { 0 };
        let map_len = size
            .checked_add(extra)
            .ok_or(SourceError::InvalidRequest { size, align })?;
        // SAFETY: a fresh anonymous mapping touches no existing memory.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(SourceError::Os {
                call: "mmap",
                errno: errno(),
            });
        }
        let base = p as usize;
        let start = align_up(base, align.max(page)).unwrap_or(base);
        // Trim the over-mapping on both sides so only `start..start+size` stays mapped.
        // SAFETY: both trimmed ranges lie inside the mapping just made and are page-aligned.
        unsafe {
            if start > base {
                libc::munmap(p, start - base);
            }
            let tail = base + map_len - (start + size);
            if tail > 0 {
                libc::munmap((start + size) as *mut libc::c_void, tail);
            }
        }
        self.footprint += size;
        // SAFETY: `start` is inside the mapping (`start - base < align`), so the offset keeps the
        // mapping's provenance.
        let ptr = unsafe { p.cast::<u8>().add(start - base) };
        NonNull::new(core::ptr::slice_from_raw_parts_mut(ptr, size))
            .ok_or(SourceError::InvalidRequest { size, align })
    }

    unsafe fn release(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), SourceError> {
        let page = page_size();
        let len = align_up(size.max(1), page).ok_or(SourceError::InvalidRelease {
            ptr: ptr.as_ptr() as usize,
            size,
        })?;
        // SAFETY: the caller promises this range is one of our grants.
        if unsafe { libc::munmap(ptr.as_ptr().cast(), len) } != 0 {
            return Err(SourceError::Os {
                call: "munmap",
                errno: errno(),
            });
        }
        self.footprint = self.footprint.saturating_sub(len);
        Ok(())
    }

    fn granularity(&self) -> usize {
        page_size()
    }

    fn is_contiguous(&self) -> bool {
        false
    }

    fn footprint(&self) -> usize {
        self.footprint
    }

    unsafe fn decommit(&mut self, ptr: NonNull<u8>, size: usize) -> bool {
        // SAFETY: the caller promises a page-aligned range of one of our grants, unneeded.
        if !unsafe { dont_need(ptr, size) } {
            return false;
        }
        self.footprint = self.footprint.saturating_sub(size);
        true
    }

    unsafe fn recommit(&mut self, _ptr: NonNull<u8>, size: usize) {
        // The mapping stays read-write: the kernel maps fresh zero pages on first touch.
        self.footprint += size;
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn brk_grows_contiguously_and_releases_its_tail() {
        let page = page_size();
        let mut r = BrkRegion::new(64 * page);
        let a = r.acquire(10, 16).unwrap();
        assert_eq!(a.len(), page);
        let b = r.acquire(3 * page, 16).unwrap();
        assert_eq!(b.cast::<u8>().as_ptr() as usize, r.start() + page);
        // Committed memory is writable.
        // SAFETY: `b` is a fresh grant of `3 * page` bytes.
        unsafe { b.cast::<u8>().as_ptr().add(3 * page - 1).write(7) };
        assert_eq!(r.footprint(), 4 * page);
        assert!(matches!(
            r.acquire(64 * page, 1),
            Err(SourceError::Exhausted { .. })
        ));
        // SAFETY: `b` is the tail and unused from here.
        unsafe { r.release(b.cast(), 3 * page) }.unwrap();
        assert_eq!(r.footprint(), page);
        let c = r.acquire(page, 1).unwrap();
        assert_eq!(c.cast::<u8>().as_ptr() as usize, r.start() + page);
    }

    #[test]
    fn decommitted_pages_leave_the_footprint_and_come_back() {
        let page = page_size();
        let mut r = BrkRegion::new(64 * page);
        let a = r.acquire(8 * page, page).unwrap().cast::<u8>();
        // SAFETY: inside the grant.
        unsafe { a.as_ptr().add(2 * page).write(9) };
        // SAFETY: pages 2..4 of the grant, unneeded.
        assert!(unsafe { r.decommit(a.add(2 * page), 2 * page) });
        assert_eq!(r.footprint(), 6 * page);
        // SAFETY: as above; the kernel gave the page back: it reads as zero.
        unsafe {
            r.recommit(a.add(2 * page), 2 * page);
            assert_eq!(a.as_ptr().add(2 * page).read(), 0);
        }
        assert_eq!(r.footprint(), 8 * page);
        // A range outside the grants is refused.
        // SAFETY: refused before any call.
        assert!(!unsafe { r.decommit(a.add(8 * page), page) });

        let mut s = OsPages::new();
        let b = s.acquire(4 * page, page).unwrap().cast::<u8>();
        // SAFETY: inside the grant.
        unsafe { b.as_ptr().write(5) };
        // SAFETY: the first two pages of the grant, unneeded.
        assert!(unsafe { s.decommit(b, 2 * page) });
        assert_eq!(s.footprint(), 2 * page);
        // SAFETY: as above.
        unsafe {
            s.recommit(b, 2 * page);
            assert_eq!(b.as_ptr().read(), 0);
        }
        assert_eq!(s.footprint(), 4 * page);
        // SAFETY: the whole grant, unused from here.
        unsafe { s.release(b, 4 * page) }.unwrap();
    }

    #[test]
    fn os_pages_map_aligned_grants() {
        let mut s = OsPages::new();
        let a = s.acquire(1, 1 << 16).unwrap();
        assert_eq!(a.cast::<u8>().as_ptr() as usize % (1 << 16), 0);
        // SAFETY: fresh grant.
        unsafe { a.cast::<u8>().as_ptr().write(1) };
        assert_eq!(s.footprint(), page_size());
        // SAFETY: `a` was granted by `s` and is unused from here.
        unsafe { s.release(a.cast(), a.len()) }.unwrap();
        assert_eq!(s.footprint(), 0);
    }
}
