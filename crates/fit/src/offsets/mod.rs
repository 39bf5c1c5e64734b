//! The fit policies over offsets: an [`OffsetManager`] for a space the CPU does not own (a GPU
//! buffer, a file, a shared-memory segment), on the same index as the real heap.
//!
//! ```text
//!   the space (never touched)   base                                              base + len
//!                               | A live 96 | B free 4096 | C live 256 | D free ...   | -> grow
//!
//!   out of band (CPU memory):
//!     Table   one node per range in offset order (prev/next: the boundary tags)    table.rs
//!     Index   the free nodes in bins and a tree, by the policy (crate::index, shared with FitHeap)
//!     live    offset -> (node, bytes asked): free by offset, bad offsets told apart
//! ```
//!
//! A request of `size` bytes takes `size` rounded up to the granule (at least one granule); a
//! larger alignment leaves a free front piece of whole granules. The policy's choice is the
//! heap's, code for code (the module `search`, [`crate::index`]): best fit takes the smallest
//! free range that fits, lowest offset among equals, and keeps the range that ends the space for
//! last; first fit the lowest offset; next fit roves; worst fit the largest. A freed range merges
//! with its free neighbours (unless the configuration says `no-coalesce`).
//!
//! ```
//! use allocator_traits::OffsetManager;
//! use fit::{Config, offsets::FitOffsets};
//!
//! // A 256 MiB GPU heap, offsets from 0, 256-byte granules.
//! let mut heap = FitOffsets::new(0..256 << 20, Config::best_fit(), 256).unwrap();
//! let a = heap.allocate(1000, 256).unwrap();   // 0 (1024 bytes held)
//! let b = heap.allocate(64 << 10, 4096).unwrap();
//! heap.free(a).unwrap();
//! assert!(heap.free(a).is_err());              // a double free is refused, named
//! assert_eq!(heap.stats().live_blocks, 1);
//! # let _ = b;
//! ```
//!
//! Costs: O(log n) per operation on the tree, O(1) for the bins (ranges below 128 granules), plus
//! one hash-map insertion or removal; about 48 bytes of CPU memory per range (live or free) and
//! 16 per live range in the map. Limits: at most `2^32 - 2` granules in the space (with 16-byte
//! granules 64 GiB; use a larger granule for a larger space).

mod check;
mod table;

use core::ops::Range;

use allocator_traits::{
    AllocError, BlockKind, Corruption, Detects, FreeError, Inspector, OffsetManager, Stats,
};
use hashbrown::HashMap;

use crate::config::{Coalesce, Config, Policy};
use crate::index::{Index, NIL, Space};
use crate::search::find;
use table::{State, Table};

/// Why [`FitOffsets::new`] refused a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("fit offsets: {0}")]
pub struct UnsupportedConfig(pub &'static str);

/// First, next, best or worst fit over the offsets `base..base+len` of a space it never touches
/// (see the [module docs](self)).
#[derive(Debug)]
pub struct FitOffsets {
    /// The free ranges, over the table of every range.
    index: Index<Table>,
    /// The live ranges: `offset -> (node, bytes asked)`; a key iff a live node starts there.
    live: HashMap<usize, (u32, usize)>,
    /// The space as given.
    range: Range<usize>,
    /// The part the table tiles: `range` with its ends rounded inwards to the granule.
    tiled: Range<usize>,
    config: Config,
    /// The counters; `footprint` = the end of the highest live range minus `range.start`.
    stats: Stats,
}

/// The largest number of granules the index counts (32-bit sizes, ids and `NIL`).
const MAX_GRANULES: usize = u32::MAX as usize - 1;

impl FitOffsets {
    /// A manager of `range` (offsets `range.start..range.end`) with `config`'s policy and
    /// coalescing, handing out multiples of `granule` bytes (a power of two; offsets aligned to
    /// it). The index serves address order only: `config` must be in address order with physical
    /// or no coalescing (what [`Config::uses_index`] accepts). The space may be empty and grow.
    pub fn new(
        range: Range<usize>,
        config: Config,
        granule: usize,
    ) -> Result<Self, UnsupportedConfig> {
        if !config.uses_index() {
            return Err(UnsupportedConfig(
                "offsets use the index: address order with physical or no coalescing",
            ));
        }
        if config.checked || config.header != 0 || config.align > 1 {
            return Err(UnsupportedConfig(
                "no headers or check words over offsets (`:checked`, OSTEP's -H and -a)",
            ));
        }
        if !granule.is_power_of_two() {
            return Err(UnsupportedConfig("the granule must be a power of two"));
        }
        if range.end < range.start {
            return Err(UnsupportedConfig("the range ends before it starts"));
        }
        let start = range
            .start
            .checked_next_multiple_of(granule)
            .ok_or(UnsupportedConfig(
                "the range starts too high for the granule",
            ))?;
        let table = Table::new(granule.trailing_zeros());
        let mut m = Self::with_table(range.clone(), start..start, config, table);
        let end = m.tile_end(range.end).ok_or(UnsupportedConfig(
            "more than 2^32 - 2 granules: choose a larger granule",
        ))?;
        m.extend_to(end);
        Ok(m)
    }

    /// Where the tiled part ends for a space ending at `end`: the last whole granule (the
    /// tiled part's start if there is none), or `None` past what the index counts.
    fn tile_end(&self, end: usize) -> Option<usize> {
        let (start, g) = (self.tiled.start, self.granule());
        let len = end.saturating_sub(start) & !(g - 1);
        (len / g <= MAX_GRANULES).then_some(start + len)
    }

    fn with_table(range: Range<usize>, tiled: Range<usize>, config: Config, table: Table) -> Self {
        FitOffsets {
            index: Index::new(&config, table),
            live: HashMap::new(),
            range,
            tiled,
            config,
            stats: Stats::new(),
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// The granule in bytes.
    pub fn granule(&self) -> usize {
        self.table().granule()
    }

    /// The free ranges as (offset, length) in offset order.
    pub fn free_ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let t = self.table();
        t.in_order()
            .map(|x| t.node(x))
            .filter(|n| n.state == State::Free)
            .map(|n| (n.addr, n.size))
    }

    #[inline]
    fn table(&self) -> &Table {
        &self.index.space
    }

    /// Tiles the space up to `end` (a multiple of the granule past `tiled.end`): the new bytes
    /// are one free range, merged with a free range ending the space (if coalescing).
    fn extend_to(&mut self, end: usize) {
        let size = end.saturating_sub(self.tiled.end);
        if size == 0 {
            return;
        }
        let x = self.index.space.push_back(self.tiled.end, size);
        self.tiled.end = end;
        self.index.insert(x, size);
    }

    /// The end of the highest live range minus the space's start (0 if none is live).
    fn high_water(&self) -> usize {
        let t = self.table();
        let mut x = t.last;
        while x != NIL && t.node(x).state != State::Live {
            x = t.node(x).prev;
        }
        match x {
            NIL => 0,
            x => t.node(x).addr + t.node(x).size - self.range.start,
        }
    }

    /// The bytes to leave free in front of a range at `addr` so that it starts aligned to
    /// `align`: 0 or whole granules.
    #[inline]
    fn front(addr: usize, align: usize) -> Option<usize> {
        Some(addr.checked_next_multiple_of(align)? - addr)
    }

    fn place(&mut self, size: usize, align: usize) -> Result<(usize, usize), AllocError> {
        let unsupported = |reason| AllocError::Unsupported {
            size,
            align,
            reason,
        };
        if !align.is_power_of_two() {
            return Err(unsupported("the alignment is not a power of two"));
        }
        let g = self.granule();
        let need = size
            .max(1)
            .checked_next_multiple_of(g)
            .ok_or(unsupported("the size overflows"))?;
        let t = self.table();
        let last = match self.config.policy {
            Policy::BestFit => Some(t.last).filter(|&l| l != NIL && t.node(l).state == State::Free),
            _ => None,
        };
        let (x, front) = find(&self.index, need, last, align > g, |a| {
            Self::front(a, align)
        })
        .ok_or(AllocError::OutOfMemory { size, align })?;
        let (c, carved) = self.index.take(x, front, need, g);
        self.index.space.set_live(c, carved.size);
        self.live.insert(carved.addr, (c, size));
        Ok((carved.addr, carved.size))
    }

    /// The table's walk and the map's, against the index (see `check.rs`).
    fn walk(&self) -> Result<(), Corruption> {
        check::walk(self)
    }
}

impl OffsetManager for FitOffsets {
    fn allocate(&mut self, size: usize, align: usize) -> Result<usize, AllocError> {
        let placed = self.place(size, align);
        self.stats.record_placement(placed, size, self.range.start)
    }

    fn free(&mut self, offset: usize) -> Result<(), FreeError> {
        let Some((x, asked)) = self.live.remove(&offset) else {
            self.stats.record_bad_free();
            return Err(if self.range.contains(&offset) {
                FreeError::NotABlock { ptr: offset }
            } else {
                FreeError::Foreign { ptr: offset }
            });
        };
        let held = self.table().size(x);
        self.stats.record_free(asked, held);
        self.index.space.set_freed(x);
        self.index.insert(x, held);
        if offset + held - self.range.start == self.stats.footprint {
            let top = self.high_water();
            self.stats.set_footprint(top);
        }
        Ok(())
    }

    fn grow(&mut self, additional: usize) -> Result<(), AllocError> {
        let refuse = AllocError::Unsupported {
            size: additional,
            align: 1,
            reason: "the space would pass what the offsets address",
        };
        let end = self.range.end.checked_add(additional).ok_or(refuse)?;
        let tiled_end = self.tile_end(end).ok_or(refuse)?;
        self.range.end = end;
        self.extend_to(tiled_end);
        Ok(())
    }

    fn range(&self) -> Range<usize> {
        self.range.clone()
    }

    fn held(&self, offset: usize) -> Option<usize> {
        self.live.get(&offset).map(|&(x, _)| self.table().size(x))
    }

    fn stats(&self) -> Stats {
        self.stats
    }

    fn inspect(&self, out: &mut dyn Inspector) {
        let t = self.table();
        out.region(self.range.start, self.range.len());
        if self.tiled.start > self.range.start {
            let pad = self.tiled.start.min(self.range.end) - self.range.start;
            out.block(self.range.start, pad, BlockKind::Padding);
        }
        for x in t.in_order() {
            let n = t.node(x);
            let kind = match n.state {
                State::Live => BlockKind::Live {
                    requested: self.live.get(&n.addr).map_or(0, |&(_, asked)| asked),
                },
                _ => BlockKind::Free,
            };
            out.block(n.addr, n.size, kind);
        }
        if self.tiled.end < self.range.end {
            out.block(
                self.tiled.end,
                self.range.end - self.tiled.end,
                BlockKind::Padding,
            );
        }
        out.begin_list(format_args!("free ranges"));
        for (addr, size) in self.free_ranges() {
            out.list_entry(addr, size);
        }
        out.end_list();
        if let Some(r) = self.index.rover() {
            out.value(format_args!("rover"), t.addr(r));
        }
    }

    fn check_invariants(&self) -> Result<(), Corruption> {
        self.walk()
    }

    /// Every bad offset: outside the space (`Foreign`), or inside it where no live range starts
    /// (`NotABlock`: freed already, never handed out, or inside a range).
    fn detects(&self) -> Detects {
        Detects::EVERY_OFFSET
    }
}

/// `coalesce`: whether freed ranges merge (the configuration's physical coalescing).
impl FitOffsets {
    /// Whether freed ranges merge with their free neighbours.
    pub const fn coalesces(&self) -> bool {
        matches!(self.config.coalesce, Coalesce::Physical)
    }
}
