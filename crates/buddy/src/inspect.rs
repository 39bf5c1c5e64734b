//! What `inspect()` shows: the bitmap grant, every block in address order, and one list per
//! order named `order k (N B)`, its blocks in address order (the order allocation takes them).
//!
//! ```text
//!   region  data .. end of the bitmaps
//!   block   a0  64 B        Live
//!   block   a1  64 B        Free
//!   block   a2 128 B        Free
//!   block   ...             Padding    (a gap, if any)
//!   block   meta            Metadata   (the bitmaps; first instead when the heap grows)
//!   list    order 2 (64 B):  a1
//!   list    order 3 (128 B): a2
//! ```

use allocator_traits::{BlockKind, Inspector};

use crate::{Buddy, MemorySource, Phase};

impl<S: MemorySource> Buddy<S> {
    pub(crate) fn show(&self, out: &mut dyn Inspector) {
        if self.phase != Phase::Ready {
            out.value(format_args!("min block"), self.config.min_block);
            return;
        }
        let start = self.meta.min(self.origin);
        let end = self.data_end.max(self.meta + self.meta_len);
        out.region(start, end - start);
        let mut at = start;
        if self.meta < self.origin {
            out.block(self.meta, self.meta_len, BlockKind::Metadata);
            at = self.meta + self.meta_len;
        }
        let mut gap = None;
        while at < self.data_end {
            match self.block_starting_at(at) {
                Some((k, free)) => {
                    if let Some(g) = gap.take() {
                        out.block(g, at - g, BlockKind::Padding);
                    }
                    let kind = if free {
                        BlockKind::Free
                    } else {
                        BlockKind::Live { requested: 0 }
                    };
                    out.block(at, self.size(k), kind);
                    at += self.size(k);
                }
                None => {
                    gap.get_or_insert(at);
                    at += 1usize << self.min_shift;
                }
            }
        }
        if let Some(g) = gap {
            out.block(g, at - g, BlockKind::Padding);
        }
        if self.meta >= self.data_end {
            if self.meta > self.data_end {
                out.block(self.data_end, self.meta - self.data_end, BlockKind::Padding);
            }
            out.block(self.meta, self.meta_len, BlockKind::Metadata);
        }
        for k in 0..self.orders {
            out.begin_list(format_args!("order {k} ({} B)", self.size(k)));
            self.bits
                .for_each_free(k, |i| out.list_entry(self.addr_of(k, i), self.size(k)));
            out.end_list();
        }
        out.value(format_args!("min block"), 1usize << self.min_shift);
        out.value(format_args!("orders"), self.orders as usize);
        out.value(format_args!("metadata bytes"), self.meta_len);
    }
}
