//! An anonymous memory mapping reserved without swap (`MAP_NORESERVE`): pages are committed on
//! first touch and the whole range is unmapped on drop. The matrix's region peers (talc, rlsf,
//! ...) run over one, and so does the threaded replay's floor ([`crate::threaded::BumpFloor`]).

use core::ptr::NonNull;

/// `len` bytes of address space, readable and writable, owned until dropped.
#[derive(Debug)]
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; nothing ties it to a thread.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only reads the base and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes (at least one); the error names the size.
    pub fn new(len: usize) -> Result<Self, String> {
        let len = len.max(1);
        // SAFETY: an anonymous private mapping at an address the kernel picks.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap of {len} bytes failed"));
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or("mmap returned null")?;
        Ok(Mapping { base, len })
    }

    /// The first byte (pointers into the mapping derive from it).
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true (a mapping has at least one byte); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; whoever handed out blocks from it
        // owns this value, so none outlives it.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
