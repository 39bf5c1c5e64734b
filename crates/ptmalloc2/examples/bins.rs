//! Prints the heap and the bins after each step of a small trace, as `inspect` reports them:
//! `cargo run -p ptmalloc2 --example bins [TUNABLES]`.

use std::fmt;

use allocator_traits::{BlockKind, BoxedRegion, FreeSpaceManager, Inspector, Layout};
use ptmalloc2::{Arena, SystemPages, Tunables};
use std::collections::HashMap;
use std::ptr::NonNull;

struct Text {
    base: usize,
    out: String,
}

impl Inspector for Text {
    fn region(&mut self, start: usize, len: usize) {
        if self.base == 0 {
            self.base = start;
        }
        if len > 0 {
            self.out += &format!("  region {:#x}+{len:#x}\n  ", start - self.base);
        }
    }
    fn block(&mut self, addr: usize, len: usize, kind: BlockKind) {
        let tag = match kind {
            BlockKind::Live { .. } => "used",
            BlockKind::Free => "FREE",
            BlockKind::Cached => "cached",
            BlockKind::Top => "top",
            BlockKind::Metadata => "tcache",
            _ => "pad",
        };
        if addr >= self.base && addr - self.base < 1 << 32 {
            if tag == "pad" {
                return;
            }
            // inspect() shows a chunk from its size word; print the chunk's address.
            self.out += &format!("[{:#x} {tag} {len:#x}] ", addr - 8 - self.base);
        } else {
            self.out += &format!("[mmap {tag} {len:#x}] ");
        }
    }
    fn begin_list(&mut self, name: fmt::Arguments<'_>) {
        self.out += &format!("\n  {name}:");
    }
    fn list_entry(&mut self, addr: usize, len: usize) {
        self.out += &format!(" {:#x}({len:#x})", addr - self.base);
    }
    fn value(&mut self, name: fmt::Arguments<'_>, value: usize) {
        let name = name.to_string();
        if name == "top" || name == "last_remainder" {
            if value != 0 {
                self.out += &format!("\n  {name} = {:#x}", value - self.base);
            }
        } else if name == "top_size" {
            self.out += &format!("  {name} = {value:#x}");
        }
    }
}

fn main() {
    let tunables = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "glibc.malloc.tcache_count=0".into());
    let t = Tunables::parse(&tunables).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let arena = Arena::new(BoxedRegion::new(16 << 20).unwrap(), SystemPages::new(), &t);
    let mut arena = arena;
    let mut live: HashMap<&str, (NonNull<u8>, Layout)> = HashMap::new();
    let trace = "a 0 24\na 1 100\na 2 1000\na 3 2000\na 4 40\nf 1\nf 3\nf 4\na 5 24\na 6 1500\nf 0\nf 2\na 7 3000";
    println!("# {tunables}");
    for line in trace.lines() {
        // `a ID SIZE` is malloc(SIZE), `f ID` is free: through the trait, as any replay does.
        let f: Vec<&str> = line.split(' ').collect();
        let res = match f[..] {
            ["a", id, size] => {
                let layout = Layout::from_size_align(size.parse().unwrap(), 16).unwrap();
                let p = arena.allocate(layout).unwrap().cast::<u8>();
                live.insert(id, (p, layout));
                arena.placement(p).to_string()
            }
            ["f", id] => {
                let (p, layout) = live.remove(id).unwrap();
                // SAFETY: `p` is live in the arena with `layout`, freed once (removed above).
                unsafe { arena.deallocate(p, layout) }.unwrap();
                String::new()
            }
            _ => unreachable!("the trace above has only a and f lines"),
        };
        println!("{line:<10} -> {res}");
        let mut text = Text {
            base: arena.heap_start().unwrap_or(0),
            out: String::new(),
        };
        arena.inspect(&mut text);
        println!("{}\n", text.out);
    }
}
