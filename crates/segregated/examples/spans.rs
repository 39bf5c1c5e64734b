//! Prints a small segregated heap (Go's classes over a buddy page level) after a few operations:
//! each span's objects (`#` live, `.` free, `h` header) and the per-class statistics.
//! `cargo run -p segregated --example spans`

use core::fmt;

use allocator_traits::{BlockKind, BoxedRegion, FreeSpaceManager, Inspector, Layout};
use buddy::Buddy;
use segregated::{Segregated, TINY};

type Heap = Segregated<Buddy<BoxedRegion>>;

/// Collects the spans (regions after the page level's own) and draws each slot as one character.
#[derive(Default)]
struct Picture {
    regions: Vec<(usize, usize)>,
    rows: Vec<Vec<(usize, char)>>,
    lists: Vec<String>,
    list: Option<String>,
}

impl Inspector for Picture {
    fn region(&mut self, start: usize, len: usize) {
        self.regions.push((start, len));
        if self.regions.len() > 1 {
            self.rows.push(Vec::new());
        }
    }
    fn block(&mut self, _addr: usize, len: usize, kind: BlockKind) {
        if self.regions.len() < 2 {
            return; // the page level's own blocks
        }
        let c = match kind {
            BlockKind::Live { .. } => '#',
            BlockKind::Free => '.',
            BlockKind::Metadata => 'h',
            _ => '_',
        };
        if let Some(row) = self.rows.last_mut() {
            row.push((len, c));
        }
    }
    fn begin_list(&mut self, name: fmt::Arguments<'_>) {
        let name = name.to_string();
        if name.starts_with("class") || name.starts_with("tiny") {
            self.list = Some(format!("{name}: spans with a free object:"));
        }
    }
    fn list_entry(&mut self, _addr: usize, len: usize) {
        if let Some(l) = &mut self.list {
            l.push_str(&format!(" [{len} B]"));
        }
    }
    fn end_list(&mut self) {
        if let Some(l) = self.list.take() {
            self.lists.push(l);
        }
    }
}

fn show(step: &str, h: &Heap) {
    let mut p = Picture::default();
    h.inspect(&mut p);
    println!("{step}");
    for (r, (_, len)) in p.rows.iter().zip(p.regions.iter().skip(1)) {
        // One character per object slot: the live blocks' size is the unit.
        let unit = r
            .iter()
            .filter(|b| b.1 == '#')
            .map(|b| b.0)
            .min()
            .unwrap_or(r.iter().map(|b| b.0).min().unwrap_or(1));
        let mut line = String::new();
        for &(n, c) in r {
            let k = (n / unit).max(1);
            if k > 12 {
                line.push_str(&format!("{c}{c}{c}..({k}).."));
            } else {
                line.extend(std::iter::repeat_n(c, k));
            }
        }
        println!("  span of {len} B: {line}");
    }
    for l in &p.lists {
        println!("  {l}");
    }
    for c in (1..=h.table().len()).chain([TINY]) {
        if let Some(cs) = h.class_stats(c).filter(|cs| cs.spans > 0) {
            println!(
                "  class {c:>3} ({:>4} B): {} live, {} B asked, {} B rounding, {} free objects, {} B span overhead",
                cs.size,
                cs.live_objects,
                cs.live_requested,
                cs.rounding_waste(),
                cs.free_objects,
                cs.overhead_bytes()
            );
        }
    }
    let t = h.tiny_stats();
    if t.live_objects > 0 {
        println!(
            "  tiny: {} objects in {} blocks, {} B saved",
            t.live_objects,
            t.live_blocks,
            t.bytes_saved()
        );
    }
    println!();
}

fn main() {
    let cap = 1 << 20;
    let pages = Buddy::try_new(BoxedRegion::new(cap).unwrap(), buddy::Config::new(cap)).unwrap();
    let mut h: Heap = Segregated::new(pages);
    let l = |n| Layout::from_size_align(n, 8).unwrap();
    // Class 31 (896 B): an 8 KiB span holds 9 objects after its header.
    let a: Vec<_> = (0..3).map(|_| h.allocate(l(800)).unwrap()).collect();
    show("3 x alloc(800): class 31 (896 B), one 8 KiB span", &h);
    let b = |n| Layout::from_size_align(n, 1).unwrap();
    let t: Vec<_> = [5, 3, 6, 2, 7]
        .iter()
        .map(|&n| h.allocate(b(n)).unwrap())
        .collect();
    show(
        "alloc 5, 3, 6, 2, 7 bytes (align 1): tiny objects share 16-byte blocks",
        &h,
    );
    // SAFETY: live blocks, freed once with their layouts.
    unsafe {
        h.deallocate(a[1].cast(), l(800)).unwrap();
        show(
            "free the second 896-byte object: its slot goes on the span's free list",
            &h,
        );
        for (p, n) in t.iter().zip([5, 3, 6, 2, 7]) {
            h.deallocate(p.cast(), b(n)).unwrap();
        }
        h.deallocate(a[0].cast(), l(800)).unwrap();
        h.deallocate(a[2].cast(), l(800)).unwrap();
    }
    show(
        "free everything: the empty spans are kept (one per class) ...",
        &h,
    );
    h.release_empty_spans();
    show(
        "... until release_empty_spans() gives them back to the page level",
        &h,
    );
}
