//! A generic view of any manager: what its [`Inspector`] calls say, collected, then printed as
//! text (after each op with `-c`) and turned into a [`Snapshot`] for the SVG.
//!
//! ```text
//!   manager.inspect(&mut Collected) --> regions, blocks, lists, values
//!        |                                   |                 |
//!        |                    write_text(): Heap/Blocks/list lines    to_snapshot(): SVG segments
//! ```
//!
//! Addresses are shown the way the simulator shows them: `base + (address - heap start)`, so a
//! real heap over a region reads like OSTEP's heap at 1000. A named value that falls inside the
//! heap (a rover, a top chunk) is shown the same way; other values (counts) print as they are.

use std::fmt::Write as _;

use std::collections::BTreeMap;

use allocator_traits::{BlockKind, Inspector};

use super::svg::{Kind, Seg, Snapshot};

/// Everything one `inspect` call reported, in order.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    /// `(start, len)` of each region.
    pub regions: Vec<(usize, usize)>,
    /// `(addr, len, kind)` of each block.
    pub blocks: Vec<(usize, usize, BlockKind)>,
    /// Each list's name and entries `(addr, len)` in list order.
    pub lists: Vec<(String, Vec<(usize, usize)>)>,
    /// Named values.
    pub values: Vec<(String, usize)>,
    /// What the caller knows of its live blocks: manager address of each block it was handed
    /// → the bytes it asked for. Names the request of a live block whose manager does not keep
    /// it (`BlockKind::Live { requested: 0 }`).
    pub known: std::collections::BTreeMap<usize, usize>,
}

impl Inspector for Collected {
    fn region(&mut self, start: usize, len: usize) {
        self.regions.push((start, len));
    }
    fn block(&mut self, addr: usize, len: usize, kind: BlockKind) {
        self.blocks.push((addr, len, kind));
    }
    fn begin_list(&mut self, name: std::fmt::Arguments<'_>) {
        self.lists.push((name.to_string(), Vec::new()));
    }
    fn list_entry(&mut self, addr: usize, len: usize) {
        if let Some((_, entries)) = self.lists.last_mut() {
            entries.push((addr, len));
        }
    }
    fn value(&mut self, name: std::fmt::Arguments<'_>, value: usize) {
        self.values.push((name.to_string(), value));
    }
}

/// Writes `[ addr:A sz:L WHAT ]` per item; a run of three or more items of one size and label,
/// each starting where the one before ends, is one `[ addr:A N x sz:L WHAT ]` (a span of 512
/// free 16-byte slots is one item, not a line of 20 000 characters).
fn write_runs(out: &mut String, map: &AddrMap, items: &[(usize, usize, String)], sep: &str) {
    let mut i = 0;
    while i < items.len() {
        let (a, l, what) = &items[i];
        let mut n = 1;
        while let Some((b, m, w)) = items.get(i + n) {
            if m != l || w != what || *b != a + n * l {
                break;
            }
            n += 1;
        }
        let what = if what.is_empty() {
            String::new()
        } else {
            format!(" {what}")
        };
        if n >= 3 {
            let _ = write!(out, "{sep}[ addr:{} {n} x sz:{l}{what} ]", map.show(*a));
            i += n;
        } else {
            let _ = write!(out, "{sep}[ addr:{} sz:{l}{what} ]", map.show(*a));
            i += 1;
        }
    }
}

/// Maps a manager's addresses to the addresses the simulator prints.
#[derive(Debug, Clone, Copy)]
pub struct AddrMap {
    /// The manager's address of the heap's first byte.
    pub heap_start: usize,
    /// The heap's length.
    pub heap_len: usize,
    /// The printed address of the heap's first byte (`-b`).
    pub base: i128,
}

impl AddrMap {
    /// The printed form of manager address `a`.
    pub fn show(&self, a: usize) -> i128 {
        self.base + (a as i128 - self.heap_start as i128)
    }

    fn inside(&self, a: usize) -> bool {
        a >= self.heap_start && a - self.heap_start <= self.heap_len
    }
}

/// How a block reads: `live(10)` where the request is known (from the manager, or the one block
/// the caller has inside it), `live` where it is not.
fn kind_name(kind: BlockKind, addr: usize, len: usize, known: &BTreeMap<usize, usize>) -> String {
    match kind {
        BlockKind::Live { requested } if requested > 0 => format!("live({requested})"),
        BlockKind::Live { .. } => {
            let mut inside = known.range(addr..addr.saturating_add(len.max(1)));
            match (inside.next(), inside.next()) {
                (Some((_, size)), None) => format!("live({size})"),
                _ => "live".into(),
            }
        }
        BlockKind::Free => "free".into(),
        BlockKind::Cached => "cached".into(),
        BlockKind::Header => "header".into(),
        BlockKind::Padding => "padding".into(),
        BlockKind::Top => "top".into(),
        BlockKind::Metadata => "metadata".into(),
        _ => "other".into(),
    }
}

/// The SVG colour class of a block kind.
pub fn svg_kind(kind: BlockKind) -> Kind {
    match kind {
        BlockKind::Live { .. } => Kind::Live,
        BlockKind::Free => Kind::Free,
        BlockKind::Cached => Kind::Cached,
        BlockKind::Header => Kind::Header,
        BlockKind::Padding => Kind::Padding,
        BlockKind::Top => Kind::Top,
        _ => Kind::Metadata,
    }
}

impl Collected {
    /// Writes the generic text view, one line per region, block row, list and value:
    ///
    /// ```text
    /// Heap [ addr:1000 sz:256 ]: [ addr:1000 sz:16 header ][ addr:1016 sz:10 live(10) ]...
    /// free list [ Size 1 ]: [ addr:1032 sz:224 ]
    /// rover: 1032
    /// ```
    pub fn write_text(&self, map: &AddrMap, out: &mut String) {
        // A region of no bytes (a heap that has taken nothing from its source yet) has no
        // meaningful start: it is left out.
        for &(start, len) in self.regions.iter().filter(|(_, len)| *len > 0) {
            let _ = write!(out, "Heap [ addr:{} sz:{len} ]:", map.show(start));
            let blocks: Vec<(usize, usize, String)> = self
                .blocks
                .iter()
                .filter(|(a, _, _)| *a >= start && *a - start < len.max(1))
                .map(|&(a, l, k)| (a, l, kind_name(k, a, l, &self.known)))
                .collect();
            write_runs(out, map, &blocks, " ");
            out.push('\n');
        }
        for (name, entries) in &self.lists {
            let _ = write!(out, "{name} [ Size {} ]: ", entries.len());
            let entries: Vec<(usize, usize, String)> = entries
                .iter()
                .map(|&(a, l)| (a, l, String::new()))
                .collect();
            write_runs(out, map, &entries, "");
            out.push('\n');
        }
        for (name, v) in &self.values {
            if map.inside(*v) {
                let _ = writeln!(out, "{name}: {}", map.show(*v));
            } else {
                let _ = writeln!(out, "{name}: {v}");
            }
        }
    }

    /// The blocks as SVG segments over the heap `map` describes.
    pub fn to_snapshot(&self, map: &AddrMap) -> Snapshot {
        Snapshot {
            start: map.base,
            len: map.heap_len as i128,
            segs: self
                .blocks
                .iter()
                .map(|&(a, len, kind)| Seg {
                    addr: map.show(a),
                    len: len as i128,
                    kind: svg_kind(kind),
                })
                .collect(),
            marks: self
                .values
                .iter()
                .filter(|(_, v)| map.inside(*v))
                .map(|(n, v)| (n.clone(), map.show(*v)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_view_translates_addresses() {
        let mut c = Collected::default();
        c.region(0x5000, 64);
        c.block(0x5000, 16, BlockKind::Header);
        c.block(0x5010, 8, BlockKind::Live { requested: 0 });
        c.block(0x5018, 40, BlockKind::Free);
        c.begin_list(format_args!("free list"));
        c.list_entry(0x5018, 40);
        c.end_list();
        c.value(format_args!("rover"), 0x5018);
        c.value(format_args!("count"), 3);
        c.known.insert(0x5010, 8);
        let map = AddrMap {
            heap_start: 0x5000,
            heap_len: 64,
            base: 1000,
        };
        let mut s = String::new();
        c.write_text(&map, &mut s);
        assert_eq!(
            s,
            "Heap [ addr:1000 sz:64 ]: [ addr:1000 sz:16 header ] [ addr:1016 sz:8 live(8) ] \
             [ addr:1024 sz:40 free ]\nfree list [ Size 1 ]: [ addr:1024 sz:40 ]\nrover: 1024\n\
             count: 3\n"
        );
        let snap = c.to_snapshot(&map);
        assert_eq!(snap.segs.len(), 3);
        assert_eq!(
            snap.segs[2],
            Seg {
                addr: 1024,
                len: 40,
                kind: Kind::Free
            }
        );
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;

    #[test]
    fn runs_of_equal_blocks_print_once_and_unknown_requests_say_live() {
        let mut c = Collected::default();
        c.region(0, 16 * 6);
        c.block(0, 16, BlockKind::Live { requested: 0 });
        for k in 1..6 {
            c.block(16 * k, 16, BlockKind::Free);
        }
        let map = AddrMap {
            heap_start: 0,
            heap_len: 96,
            base: 1000,
        };
        let mut s = String::new();
        c.write_text(&map, &mut s);
        assert_eq!(
            s,
            "Heap [ addr:1000 sz:96 ]: [ addr:1000 sz:16 live ] [ addr:1016 5 x sz:16 free ]\n"
        );
    }
}
