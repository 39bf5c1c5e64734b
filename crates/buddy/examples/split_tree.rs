//! Prints a small buddy heap after each of a few operations: its blocks (address order, `#` live,
//! `.` free) and one list per order. `cargo run -p buddy --example split_tree`

use core::fmt;

use allocator_traits::{BlockKind, BoxedRegion, FreeSpaceManager, Inspector, Layout};
use buddy::{Buddy, Config};

/// Draws blocks relative to the data start, and the non-empty free lists.
struct Picture {
    origin: Option<usize>,
    blocks: String,
    lists: String,
    list: Vec<usize>,
    name: String,
}

impl Inspector for Picture {
    fn block(&mut self, addr: usize, len: usize, kind: BlockKind) {
        let (mark, live) = match kind {
            BlockKind::Live { .. } => ('#', true),
            BlockKind::Free => ('.', false),
            _ => return,
        };
        let o = *self.origin.get_or_insert(addr);
        let _ = live;
        self.blocks += &format!("[{}{:>4}@{:<4}]", mark, len, addr - o);
    }
    fn begin_list(&mut self, name: fmt::Arguments<'_>) {
        self.name = name.to_string();
        self.list.clear();
    }
    fn list_entry(&mut self, addr: usize, _len: usize) {
        self.list.push(addr - self.origin.unwrap_or(addr));
    }
    fn end_list(&mut self) {
        if !self.list.is_empty() {
            self.lists += &format!("  {}: {:?}\n", self.name, self.list);
        }
    }
}

fn show(step: &str, h: &Buddy<BoxedRegion>) {
    let mut p = Picture {
        origin: None,
        blocks: String::new(),
        lists: String::new(),
        list: Vec::new(),
        name: String::new(),
    };
    h.inspect(&mut p);
    println!("{step}\n  {}\n{}", p.blocks, p.lists);
}

fn main() {
    // 1 KiB of data (plus the bitmaps) with 16-byte minimum blocks.
    let cap = 1024 + 112;
    let mut h = Buddy::try_new(BoxedRegion::new(cap).unwrap(), Config::new(cap)).unwrap();
    show("fresh", &h);
    let l = |n| Layout::from_size_align(n, 8).unwrap();
    let a = h.allocate(l(100)).unwrap();
    show(
        "a = alloc(100): 128 B; the 1024 B block is split into 512, 256, 128 and 128",
        &h,
    );
    let b = h.allocate(l(20)).unwrap();
    show(
        "b = alloc(20): 32 B; the free 128 is split into 64, 32 and 32",
        &h,
    );
    let c = h.allocate(l(60)).unwrap();
    show("c = alloc(60): 64 B; the free 64 fits as it is", &h);
    // SAFETY: live blocks, freed once with their layouts.
    unsafe {
        h.deallocate(b.cast(), l(20)).unwrap();
        show(
            "free(b): merges with its free buddy at 160 into a 64; that one's buddy (c) is live",
            &h,
        );
        h.deallocate(c.cast(), l(60)).unwrap();
        show(
            "free(c): merges with the 64 at 128 into a 128; a is live",
            &h,
        );
        h.deallocate(a.cast(), l(100)).unwrap();
        show("free(a): merges 128, 256, 512: the whole 1024 B again", &h);
    }
}
