//! Why an allocation was refused, read through the manager's
//! [`inspect`](allocator_traits::FreeSpaceManager::inspect) interface: the one explanation every
//! shell prints (`fsm replay`, `fsm compare`, the replay engine's strict errors and its summary
//! of refusals).
//!
//! ```text
//!   manager.inspect(&mut Walk) ──> blocks: Free / Top ──> largest free block, free bytes in all
//!                                          Cached ──────> bytes held by caches (one size each)
//!                                  lists "NAME (N B)" ──> the request's size class: the listed
//!                                                         class with the smallest N that holds it
//!   ──> Refusal ──Display──> "the largest free block is 4 KiB (4096 B), 12 KiB free in all in
//!                             3 blocks; its size class: order 9 (8192 B), no free entry"
//! ```
//!
//! A policy without size classes (the fits) names no class; one whose lists are named
//! `... (N B)` (segregated classes, buddy orders, ptmalloc2's bins, tcmalloc's class lists)
//! gets the class its request falls in, among the lists it shows.

use core::alloc::Layout;
use core::fmt;

use allocator_traits::{BlockKind, FreeSpaceManager, Inspector};

/// What the heap looked like when a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The request.
    pub size: usize,
    /// Its alignment.
    pub align: usize,
    /// The largest free block (free chunks, the top chunk; not cached blocks).
    pub largest_free: usize,
    /// Bytes in free blocks and the top chunk, in all.
    pub free_bytes: usize,
    /// How many free blocks.
    pub free_blocks: usize,
    /// Bytes in blocks held by caches that serve one size (tcache, fastbins, thread caches).
    pub cached_bytes: usize,
    /// The footprint: what the manager has taken from its memory source.
    pub footprint: usize,
    /// The request's size class, for a policy whose lists are size classes.
    pub class: Option<Class>,
}

/// The size class a refused request falls in, as the manager's lists show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    /// The first list of that class, as the manager names it (`order 9 (8192 B)`).
    pub list: String,
    /// The class's block size (the upper end of a range).
    pub size: usize,
    /// Entries in the class's lists, in all.
    pub entries: usize,
}

/// The sizes a list's name gives: `(N B)` or `(A..B B)`, as `(A, B)`.
fn class_range(name: &str) -> Option<(usize, usize)> {
    let open = name.rfind('(')?;
    let inner = name[open + 1..]
        .strip_suffix(')')
        .unwrap_or(&name[open + 1..]);
    let inner = inner.split(" B").next()?.trim();
    match inner.split_once("..") {
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        None => {
            let n = inner.parse().ok()?;
            Some((n, n))
        }
    }
}

#[derive(Default)]
struct Walk {
    largest: usize,
    free: usize,
    blocks: usize,
    cached: usize,
    lists: Vec<(String, usize)>,
}

impl Inspector for Walk {
    fn block(&mut self, _addr: usize, len: usize, kind: BlockKind) {
        match kind {
            BlockKind::Free | BlockKind::Top => {
                self.largest = self.largest.max(len);
                self.free += len;
                self.blocks += 1;
            }
            BlockKind::Cached => self.cached += len,
            _ => {}
        }
    }
    fn begin_list(&mut self, name: fmt::Arguments<'_>) {
        self.lists.push((name.to_string(), 0));
    }
    fn list_entry(&mut self, _addr: usize, _len: usize) {
        if let Some(l) = self.lists.last_mut() {
            l.1 += 1;
        }
    }
}

/// Why `m` refused `layout`: its free space and the request's size class, read through
/// `inspect` (call it right after the refusal: a refusal leaves the manager unchanged).
pub fn refusal(m: &dyn FreeSpaceManager, layout: Layout) -> Refusal {
    let mut w = Walk::default();
    m.inspect(&mut w);
    let size = layout.size();
    // The smallest class listed that holds the request, and every list of that class.
    let class = w
        .lists
        .iter()
        .filter_map(|(name, _)| class_range(name).map(|r| (name, r)))
        .filter(|(_, (_, hi))| *hi >= size)
        .min_by_key(|(_, (_, hi))| *hi)
        .map(|(name, (_, hi))| Class {
            list: name.clone(),
            size: hi,
            entries: w
                .lists
                .iter()
                .filter(|(n, _)| class_range(n).is_some_and(|(_, h)| h == hi))
                .map(|(_, e)| e)
                .sum(),
        });
    Refusal {
        size,
        align: layout.align(),
        largest_free: w.largest,
        free_bytes: w.free,
        free_blocks: w.blocks,
        cached_bytes: w.cached,
        footprint: m.stats().footprint,
        class,
    }
}

impl fmt::Display for Refusal {
    /// One line: `the largest free block is 4096 B, 12288 B free in all in 3 blocks (none large
    /// enough: fragmentation); ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the largest free block is {} B, {} B free in all in {} block{}",
            self.largest_free,
            self.free_bytes,
            self.free_blocks,
            if self.free_blocks == 1 { "" } else { "s" }
        )?;
        if self.free_bytes >= self.size && self.largest_free < self.size {
            f.write_str(" (enough bytes, but no one block large enough: fragmentation)")?;
        } else if self.largest_free >= self.size {
            f.write_str(" (a free block is large enough, but the policy does not use it here)")?;
        }
        if self.cached_bytes > 0 {
            write!(f, ", {} B in caches", self.cached_bytes)?;
        }
        write!(f, "; footprint {} B", self.footprint)?;
        if let Some(c) = &self.class {
            write!(
                f,
                "; its size class: {} ({})",
                c.list,
                match c.entries {
                    0 => "no free entry".to_string(),
                    1 => "1 entry".to_string(),
                    n => format!("{n} entries"),
                }
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Bump;

    #[test]
    fn class_names_give_their_sizes() {
        assert_eq!(class_range("order 9 (8192 B)"), Some((8192, 8192)));
        assert_eq!(class_range("class 3 (24 B)"), Some((24, 24)));
        assert_eq!(
            class_range("largebin[64] (1024..1087 B)"),
            Some((1024, 1087))
        );
        assert_eq!(class_range("tiny (16 B blocks)"), Some((16, 16)));
        assert_eq!(class_range("free list"), None);
    }

    #[test]
    fn a_refused_bump_says_what_is_free() {
        // Bump: 256 bytes, never reuses; two blocks of 112 leave 32 at the end.
        let mut m = Bump::new(256);
        let l = Layout::from_size_align(100, 16).unwrap();
        m.allocate(l).unwrap();
        m.allocate(l).unwrap();
        assert!(m.allocate(l).is_err());
        let r = refusal(&m, l);
        assert_eq!((r.largest_free, r.free_bytes, r.free_blocks), (32, 32, 1));
        assert_eq!(r.class, None);
        let text = r.to_string();
        assert!(
            text.starts_with("the largest free block is 32 B, 32 B free in all in 1 block;"),
            "{text}"
        );
    }
}
