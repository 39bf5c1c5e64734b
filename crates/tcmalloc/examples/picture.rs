//! Prints what the single-threaded core shows through `inspect()` after a few allocations and
//! frees: the regions and spans, the thread cache's lists, the transfer caches, the central
//! lists and the page heap (the same calls `fsm sim --policy tcmalloc` prints).
//!
//! `cargo run -p tcmalloc --example picture`

use std::fmt;

use allocator_traits::{BlockKind, BoxedRegion, FreeSpaceManager, Inspector, Layout};
use tcmalloc::Core;

struct Text {
    base: usize,
    last: Option<(usize, BlockKind, usize)>,
}

impl Text {
    fn flush(&mut self) {
        if let Some((addr, kind, n)) = self.last.take() {
            println!("    +{:#08x} {n:>4} x {kind:?}", addr - self.base);
        }
    }
}

impl Inspector for Text {
    fn region(&mut self, start: usize, len: usize) {
        if self.base == 0 {
            self.base = start;
        }
        println!("region +{:#x} {} KiB", start - self.base, len / 1024);
    }
    fn block(&mut self, addr: usize, len: usize, kind: BlockKind) {
        // Runs of equal objects are folded into one line.
        match &mut self.last {
            Some((_, k, n)) if *k == kind && len <= 262_144 => *n += 1,
            _ => {
                self.flush();
                self.last = Some((addr, kind, 1));
                let _ = len;
            }
        }
    }
    fn begin_list(&mut self, name: fmt::Arguments<'_>) {
        self.flush();
        print!("{name}:");
    }
    fn list_entry(&mut self, addr: usize, len: usize) {
        print!(" [+{:#x} {len}]", addr - self.base);
    }
    fn end_list(&mut self) {
        println!();
    }
    fn value(&mut self, name: fmt::Arguments<'_>, value: usize) {
        self.flush();
        println!("{name} = {value}");
    }
}

fn main() {
    let mut heap = Core::new(BoxedRegion::new(4 << 20).expect("region"));
    let small = Layout::from_size_align(24, 8).unwrap();
    let mid = Layout::from_size_align(1000, 8).unwrap();
    let big = Layout::from_size_align(300_000, 8).unwrap();
    let a: Vec<_> = (0..6).map(|_| heap.allocate(small).unwrap()).collect();
    let b: Vec<_> = (0..3).map(|_| heap.allocate(mid).unwrap()).collect();
    let g = heap.allocate(big).unwrap();
    // SAFETY: each block is live and freed once with its layout.
    unsafe {
        heap.deallocate(a[1].cast(), small).unwrap();
        heap.deallocate(a[4].cast(), small).unwrap();
        heap.deallocate(b[0].cast(), mid).unwrap();
        heap.deallocate(g.cast(), big).unwrap();
    }
    let mut t = Text {
        base: 0,
        last: None,
    };
    heap.inspect(&mut t);
    t.flush();
}
