//! What `inspect()` shows: the bitmap grant, every block in address order, and one list per
//! order named `order k (N B)`, its blocks in address order (the order allocation takes them).
//!
//! ```text
//!   region  data .. end of the bitmaps
//!   block   a0  64 B        Live
//!   block   a1  64 B        Free
//!   block   a2 128 B        Free
//!   block   ...             Padding    (a gap, if any)
//!   block   meta            Metadata   (the bitmaps: after the data, or between chunks)
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
        let mut gap: Option<usize> = None;
        let flush = |gap: &mut Option<usize>, at: usize, out: &mut dyn Inspector| {
            if let Some(g) = gap.take() {
                out.block(g, at - g, BlockKind::Padding);
            }
        };
        while at < end {
            if at == self.meta {
                flush(&mut gap, at, out);
                out.block(self.meta, self.meta_len, BlockKind::Metadata);
                at += self.meta_len;
                continue;
            }
            if let Some((k, free)) = self.blocks.block_starting_at(at, self.data_end) {
                flush(&mut gap, at, out);
                let kind = if free {
                    BlockKind::Free
                } else {
                    BlockKind::Live { requested: 0 }
                };
                out.block(at, self.size(k), kind);
                at += self.size(k);
                continue;
            }
            gap.get_or_insert(at);
            at = if at < self.data_end {
                at + (1usize << self.blocks.min_shift)
            } else if self.meta > at {
                self.meta
            } else {
                end
            };
        }
        flush(&mut gap, at, out);
        for k in 0..self.blocks.orders {
            out.begin_list(format_args!("order {k} ({} B)", self.size(k)));
            self.blocks
                .bits
                .for_each_free(k, |i| out.list_entry(self.addr_of(k, i), self.size(k)));
            out.end_list();
        }
        out.value(format_args!("min block"), 1usize << self.blocks.min_shift);
        out.value(format_args!("orders"), self.blocks.orders as usize);
        out.value(format_args!("metadata bytes"), self.meta_len);
    }
}
