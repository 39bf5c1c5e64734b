//! The range manager on hand-worked OSTEP `malloc.py` cases (explicit `-A` mode with `-c`).
//!
//! `run` drives a `RangeList` the way `malloc.py`'s `-A` driver does and prints what it prints
//! (minus the header block), so each expectation below is the script's output, worked by hand
//! from the semantics in `reference/ostep-malloc-sim.md`.

use std::fmt::Write;

use fit::ranges::{Chunk, FailureReason, FreeRangeError, RangeList};
use fit::{Coalesce, Config, Order, Policy};

fn cfg(p: Policy, o: Order, coalesce: bool) -> Config {
    Config::ostep(p, o, coalesce, 0, None)
}

/// Runs `ops` (`+N` / `-I`, comma separated) like `malloc.py -A ops -c`.
fn run(heap: &mut RangeList, ops: &str) -> String {
    let mut out = String::new();
    let mut p: Vec<usize> = Vec::new();
    let mut c = 0;
    for op in ops.split(',') {
        let n: usize = op[1..].parse().unwrap();
        if op.starts_with('+') {
            let r = heap.malloc(n);
            match r {
                Ok(pl) => {
                    p.push(pl.addr);
                    writeln!(
                        out,
                        "ptr[{c}] = Alloc({n}) returned {} (searched {} elements)",
                        pl.addr, pl.searched
                    )
                    .unwrap();
                }
                Err(f) => writeln!(
                    out,
                    "ptr[{c}] = Alloc({n}) returned -1 (searched {} elements)",
                    f.searched
                )
                .unwrap(),
            }
            c += 1;
        } else {
            if n >= p.len() {
                writeln!(out, "Invalid Free: Skipping").unwrap();
                continue;
            }
            let rc = if heap.free(p[n]).is_ok() { 0 } else { -1 };
            writeln!(out, "Free(ptr[{n}])\nreturned {rc}").unwrap();
        }
        heap.check_invariants().unwrap();
        write!(out, "Free List [ Size {} ]: ", heap.free_len()).unwrap();
        for ch in heap.free_list() {
            write!(out, "[ addr:{} sz:{} ]", ch.addr, ch.size).unwrap();
        }
        out.push_str("\n\n");
    }
    out
}

fn list(heap: &RangeList) -> Vec<(usize, usize)> {
    heap.free_list().map(|c| (c.addr, c.size)).collect()
}

#[test]
fn best_fit_addrsort_without_and_with_coalescing() {
    let mut h = RangeList::new(1000, 100, cfg(Policy::BestFit, Order::AddrSort, false)).unwrap();
    let expected = "\
ptr[0] = Alloc(10) returned 1000 (searched 1 elements)
Free List [ Size 1 ]: [ addr:1010 sz:90 ]

ptr[1] = Alloc(20) returned 1010 (searched 1 elements)
Free List [ Size 1 ]: [ addr:1030 sz:70 ]

Free(ptr[0])
returned 0
Free List [ Size 2 ]: [ addr:1000 sz:10 ][ addr:1030 sz:70 ]

Free(ptr[1])
returned 0
Free List [ Size 3 ]: [ addr:1000 sz:10 ][ addr:1010 sz:20 ][ addr:1030 sz:70 ]

";
    assert_eq!(run(&mut h, "+10,+20,-0,-1"), expected);

    let mut h = RangeList::new(1000, 100, cfg(Policy::BestFit, Order::AddrSort, true)).unwrap();
    let out = run(&mut h, "+10,+20,-0,-1");
    assert!(
        out.ends_with("Free(ptr[1])\nreturned 0\nFree List [ Size 1 ]: [ addr:1000 sz:100 ]\n\n"),
        "{out}"
    );
}

#[test]
fn header_is_added_after_size_rounding_and_never_rounded() {
    // -a 8 -H 3: +1 needs 11, +9 needs 19.
    let c = Config::ostep(Policy::FirstFit, Order::AddrSort, false, 3, Some(8));
    let mut h = RangeList::new(1000, 100, c).unwrap();
    let a = h.malloc(1).unwrap();
    assert_eq!((a.addr, a.size), (1000, 11));
    let b = h.malloc(9).unwrap();
    assert_eq!((b.addr, b.size), (1011, 19));
    assert_eq!(list(&h), [(1030, 70)]);
    // Addresses are never aligned: the base need not be either.
    let mut h = RangeList::new(1001, 50, c).unwrap();
    assert_eq!(h.malloc(8).unwrap().addr, 1001);
    assert_eq!(h.malloc(8).unwrap().addr, 1012);
    // -a 1 behaves like no rounding; -a 0 is refused.
    let mut h = RangeList::new(1000, 100, c.with_align(1).with_header(0)).unwrap();
    assert_eq!(h.malloc(3).unwrap().size, 3);
    assert!(RangeList::new(1000, 100, c.with_align(0)).is_err());
}

#[test]
fn search_counts_per_policy() {
    // Free chunks, address order: (1000,10) (1030,30) (1070,30); live blocks between them.
    let setup = |p: Policy| {
        let mut h = RangeList::new(1000, 100, cfg(p, Order::AddrSort, false)).unwrap();
        for n in [10, 20, 30, 10, 30] {
            h.malloc(n).unwrap();
        }
        h.free(1000).unwrap();
        h.free(1030).unwrap();
        h.free(1070).unwrap();
        assert_eq!(list(&h), [(1000, 10), (1030, 30), (1070, 30)]);
        h
    };
    // First fit stops at the first fit: index + 1.
    let mut h = setup(Policy::FirstFit);
    let p = h.malloc(25).unwrap();
    assert_eq!((p.addr, p.searched), (1030, 2));
    assert_eq!(list(&h), [(1000, 10), (1055, 5), (1070, 30)]);
    // Best fit examines the whole list even after an exact match; ties go to the earliest.
    let mut h = setup(Policy::BestFit);
    let p = h.malloc(10).unwrap();
    assert_eq!((p.addr, p.searched), (1000, 3));
    let p = h.malloc(30).unwrap();
    assert_eq!((p.addr, p.searched), (1030, 2));
    // Worst fit: the largest, ties to the earliest; the whole list.
    let mut h = setup(Policy::WorstFit);
    let p = h.malloc(5).unwrap();
    assert_eq!((p.addr, p.searched), (1030, 3));
    assert_eq!(list(&h), [(1000, 10), (1035, 25), (1070, 30)]);
    // A failure still reports the entries examined; an empty list reports 0.
    let f = h.malloc(31).unwrap_err();
    assert_eq!(f.searched, 3);
    assert_eq!(f.reason, FailureReason::NoFit { need: 31 });
    let mut h = RangeList::new(1000, 100, cfg(Policy::FirstFit, Order::AddrSort, false)).unwrap();
    h.malloc(100).unwrap();
    assert_eq!(h.free_len(), 0);
    assert_eq!(h.malloc(1).unwrap_err().searched, 0);
}

#[test]
fn failed_alloc_changes_nothing_and_uses_up_a_ptr_number() {
    let mut h = RangeList::new(1000, 100, cfg(Policy::BestFit, Order::AddrSort, false)).unwrap();
    let out = run(&mut h, "+200,+10,-1");
    assert_eq!(
        out,
        "\
ptr[0] = Alloc(200) returned -1 (searched 1 elements)
Free List [ Size 1 ]: [ addr:1000 sz:100 ]

ptr[1] = Alloc(10) returned 1000 (searched 1 elements)
Free List [ Size 1 ]: [ addr:1010 sz:90 ]

Invalid Free: Skipping
"
    );
}

#[test]
fn split_stays_at_its_index_and_size_sort_is_repaired_at_the_next_free() {
    // SIZESORT-, worst fit.
    let mut h = RangeList::new(1000, 100, cfg(Policy::WorstFit, Order::SizeDesc, false)).unwrap();
    for n in [10, 20, 30] {
        h.malloc(n).unwrap(); // 1000, 1010, 1030; rest (1060,40)
    }
    h.free(1000).unwrap();
    h.free(1030).unwrap();
    assert_eq!(list(&h), [(1060, 40), (1030, 30), (1000, 10)]);
    let p = h.malloc(35).unwrap();
    assert_eq!((p.addr, p.searched), (1060, 3));
    // The remainder stays at index 0: the list is out of order until the next free.
    assert_eq!(list(&h), [(1095, 5), (1030, 30), (1000, 10)]);
    h.free(1010).unwrap();
    assert_eq!(list(&h), [(1030, 30), (1010, 20), (1000, 10), (1095, 5)]);
}

#[test]
fn size_sorts_are_stable_with_new_chunks_after_older_equals() {
    for order in [Order::SizeAsc, Order::SizeDesc] {
        let mut h = RangeList::new(1000, 100, cfg(Policy::BestFit, order, false)).unwrap();
        for _ in 0..4 {
            h.malloc(10).unwrap(); // 1000 1010 1020 1030; rest (1040,60)
        }
        h.free(1020).unwrap();
        h.free(1000).unwrap();
        let expect: &[(usize, usize)] = if order == Order::SizeAsc {
            &[(1020, 10), (1000, 10), (1040, 60)]
        } else {
            &[(1040, 60), (1020, 10), (1000, 10)]
        };
        assert_eq!(list(&h), expect, "{order:?}");
        // Best fit: exact matches tie; the earliest in list order wins, after a full search.
        let p = h.malloc(10).unwrap();
        assert_eq!((p.addr, p.searched), (1020, 3), "{order:?}");
    }
    // SIZESORT- is a stable descending sort, not the reverse of SIZESORT+.
    let mut h = RangeList::new(1000, 100, cfg(Policy::FirstFit, Order::SizeDesc, false)).unwrap();
    for _ in 0..4 {
        h.malloc(10).unwrap();
    }
    h.malloc(60).unwrap();
    for a in [1030, 1000, 1010] {
        h.free(a).unwrap();
    }
    assert_eq!(list(&h), [(1030, 10), (1000, 10), (1010, 10)]);
}

#[test]
fn insert_front_and_back() {
    let mut h =
        RangeList::new(1000, 100, cfg(Policy::FirstFit, Order::InsertFront, false)).unwrap();
    for _ in 0..3 {
        h.malloc(10).unwrap();
    }
    h.free(1000).unwrap();
    h.free(1010).unwrap();
    assert_eq!(list(&h), [(1010, 10), (1000, 10), (1030, 70)]);
    let mut h = RangeList::new(1000, 100, cfg(Policy::FirstFit, Order::InsertBack, false)).unwrap();
    for _ in 0..3 {
        h.malloc(10).unwrap();
    }
    h.free(1010).unwrap();
    h.free(1000).unwrap();
    assert_eq!(list(&h), [(1030, 70), (1010, 10), (1000, 10)]);
}

#[test]
fn list_order_coalescing_depends_on_the_order() {
    let fill = |o: Order| {
        let mut h = RangeList::new(1000, 100, cfg(Policy::FirstFit, o, true)).unwrap();
        for _ in 0..10 {
            h.malloc(10).unwrap();
        }
        assert_eq!(h.free_len(), 0);
        h
    };
    // INSERT-FRONT: descending frees merge everything ...
    let mut h = fill(Order::InsertFront);
    for i in (0..10).rev() {
        h.free(1000 + 10 * i).unwrap();
    }
    assert_eq!(list(&h), [(1000, 100)]);
    // ... ascending frees merge nothing.
    let mut h = fill(Order::InsertFront);
    for i in 0..10 {
        h.free(1000 + 10 * i).unwrap();
    }
    let expect: Vec<(usize, usize)> = (0..10).rev().map(|i| (1000 + 10 * i, 10)).collect();
    assert_eq!(list(&h), expect);
    // INSERT-BACK: descending frees merge nothing, ascending merge everything.
    let mut h = fill(Order::InsertBack);
    for i in (0..10).rev() {
        h.free(1000 + 10 * i).unwrap();
    }
    assert_eq!(h.free_len(), 10);
    let mut h = fill(Order::InsertBack);
    for i in 0..10 {
        h.free(1000 + 10 * i).unwrap();
    }
    assert_eq!(list(&h), [(1000, 100)]);
    // ADDRSORT: full coalescing, three-way merges included.
    let mut h = fill(Order::AddrSort);
    h.free(1000).unwrap();
    h.free(1020).unwrap();
    assert_eq!(list(&h), [(1000, 10), (1020, 10)]);
    h.free(1010).unwrap();
    assert_eq!(list(&h), [(1000, 30)]);
}

#[test]
fn merged_chunk_keeps_its_list_position_and_size_order_may_break() {
    // SIZESORT+, -C: chunks (1000,10) (1010,20) are list neighbours and contiguous.
    let mut h = RangeList::new(1000, 100, cfg(Policy::FirstFit, Order::SizeAsc, true)).unwrap();
    for n in [10, 20, 15, 55] {
        h.malloc(n).unwrap(); // 1000 1010 1030 1045, heap full
    }
    h.free(1030).unwrap(); // [(1030,15)]
    h.free(1000).unwrap(); // [(1000,10),(1030,15)]
    h.free(1010).unwrap(); // sort: (1000,10) (1030,15) (1010,20) -> no list neighbours merge...
    assert_eq!(list(&h), [(1000, 10), (1030, 15), (1010, 20)]);
    // ... and with SIZESORT- the size order puts 1010 before 1000? No: 20,15,10.
    let mut h = RangeList::new(1000, 100, cfg(Policy::FirstFit, Order::SizeAsc, true)).unwrap();
    for n in [10, 20, 30, 40] {
        h.malloc(n).unwrap(); // 1000 1010 1030 1060
    }
    h.free(1000).unwrap(); // [(1000,10)]
    h.free(1010).unwrap(); // sort [(1000,10),(1010,20)] -> merge -> [(1000,30)]
    assert_eq!(list(&h), [(1000, 30)]);
    h.free(1060).unwrap(); // [(1000,30),(1060,40)]
    h.free(1030).unwrap(); // [(1000,30),(1030,30),(1060,40)] -> one pass merges all
    assert_eq!(list(&h), [(1000, 100)]);
}

#[test]
fn merged_chunk_can_leave_a_size_sorted_list_out_of_order() {
    let mut h = RangeList::new(1000, 100, cfg(Policy::FirstFit, Order::SizeAsc, true)).unwrap();
    for n in [5, 5, 20, 70] {
        h.malloc(n).unwrap(); // 1000 1005 1010 1030
    }
    h.free(1010).unwrap(); // [(1010,20)]
    h.free(1000).unwrap(); // [(1000,5),(1010,20)]
    h.free(1005).unwrap(); // sort [(1000,5),(1005,5),(1010,20)] -> merge all -> [(1000,30)]
    assert_eq!(list(&h), [(1000, 30)]);
    // Same, with a chunk of size 8 further back: the merged (1000,10) now sits before it.
    let mut h = RangeList::new(1000, 100, cfg(Policy::FirstFit, Order::SizeAsc, true)).unwrap();
    for n in [5, 5, 40, 8, 42] {
        h.malloc(n).unwrap(); // 1000 1005 1010 1050 1058
    }
    h.free(1050).unwrap();
    h.free(1000).unwrap();
    h.free(1005).unwrap(); // sort [(1000,5),(1005,5),(1050,8)] -> merge -> out of size order
    assert_eq!(list(&h), [(1000, 10), (1050, 8)]);
    h.free(1058).unwrap(); // the next free re-sorts: no list neighbours are contiguous
    assert_eq!(list(&h), [(1050, 8), (1000, 10), (1058, 42)]);
    // Equal sizes keep their list order, so (1005,5) stays before a newly freed (1000,5).
    let mut h = RangeList::new(1000, 100, cfg(Policy::FirstFit, Order::SizeAsc, true)).unwrap();
    for n in [5, 5, 3, 87] {
        h.malloc(n).unwrap(); // 1000 1005 1010 1013
    }
    h.free(1005).unwrap();
    h.free(1010).unwrap(); // [(1010,3),(1005,5)]: not contiguous in ascending order
    assert_eq!(list(&h), [(1010, 3), (1005, 5)]);
    h.free(1000).unwrap();
    assert_eq!(list(&h), [(1010, 3), (1005, 5), (1000, 5)]);
}

#[test]
fn unknown_and_double_frees_change_nothing() {
    let mut h = RangeList::new(1000, 100, cfg(Policy::BestFit, Order::AddrSort, true)).unwrap();
    let a = h.malloc(10).unwrap().addr;
    assert_eq!(h.free(1005), Err(FreeRangeError::Unknown { addr: 1005 }));
    assert_eq!(list(&h), [(1010, 90)]);
    h.free(a).unwrap();
    assert_eq!(h.free(a), Err(FreeRangeError::Unknown { addr: a }));
    assert_eq!(list(&h), [(1000, 100)]);
    // A stale free releases a newer owner of the same address.
    let b = h.malloc(20).unwrap().addr;
    assert_eq!(b, a);
    assert!(h.free(a).is_ok());
    assert_eq!(list(&h), [(1000, 100)]);
    let out = run(
        &mut RangeList::new(1000, 100, cfg(Policy::BestFit, Order::AddrSort, true)).unwrap(),
        "+10,-0,-0",
    );
    assert!(
        out.ends_with("Free(ptr[0])\nreturned -1\nFree List [ Size 1 ]: [ addr:1000 sz:100 ]\n\n")
    );
}

#[test]
fn zero_size_blocks() {
    // Alloc(0) succeeds at the chunk's address without changing the list.
    let mut h = RangeList::new(1000, 100, cfg(Policy::FirstFit, Order::AddrSort, true)).unwrap();
    let p = h.malloc(0).unwrap();
    assert_eq!((p.addr, p.size), (1000, 0));
    assert_eq!(list(&h), [(1000, 100)]);
    // A second Alloc(0) at the same address is malloc.py's assertion: an error here, no change.
    let f = h.malloc(0).unwrap_err();
    assert_eq!(f.reason, FailureReason::DuplicateAddress { addr: 1000 });
    assert_eq!(f.searched, 1);
    assert_eq!(list(&h), [(1000, 100)]);
    // ADDRSORT -C: the stable sort puts the 0-chunk second; it stays unmerged.
    h.free(1000).unwrap();
    assert_eq!(list(&h), [(1000, 100), (1000, 0)]);
    // INSERT-FRONT -C merges it away.
    let mut h = RangeList::new(1000, 100, cfg(Policy::FirstFit, Order::InsertFront, true)).unwrap();
    h.malloc(0).unwrap();
    h.free(1000).unwrap();
    assert_eq!(list(&h), [(1000, 100)]);
}

#[test]
fn next_fit_roves_and_wraps() {
    let mut h = RangeList::new(1000, 100, cfg(Policy::NextFit, Order::AddrSort, false)).unwrap();
    for _ in 0..3 {
        h.malloc(10).unwrap(); // 1000 1010 1020
    }
    h.free(1000).unwrap();
    assert_eq!(list(&h), [(1000, 10), (1030, 70)]);
    assert_eq!(
        h.rover(),
        Some(Chunk {
            addr: 1030,
            size: 70
        })
    );
    // First fit would take 1000; next fit starts at the rover.
    let p = h.malloc(5).unwrap();
    assert_eq!((p.addr, p.searched), (1030, 1));
    let p = h.malloc(60).unwrap();
    assert_eq!((p.addr, p.searched), (1035, 1));
    assert_eq!(
        h.rover(),
        Some(Chunk {
            addr: 1095,
            size: 5
        })
    );
    // (1095,5) is too small: wrap to the head.
    let p = h.malloc(8).unwrap();
    assert_eq!((p.addr, p.searched), (1000, 2));
    assert_eq!(
        h.rover(),
        Some(Chunk {
            addr: 1008,
            size: 2
        })
    );
    // Nothing fits: the whole list is searched once.
    assert_eq!(h.malloc(50).unwrap_err().searched, 2);
    // Exact fit removes the chunk: the rover moves to the next one (wrapping to the head).
    let p = h.malloc(2).unwrap();
    assert_eq!((p.addr, p.searched), (1008, 1));
    assert_eq!(
        h.rover(),
        Some(Chunk {
            addr: 1095,
            size: 5
        })
    );
}

#[test]
fn physical_coalescing_in_the_range_manager() {
    // Not an OSTEP option: physical neighbours merge whatever the list order.
    let c = Config::new(Policy::FirstFit)
        .with_order(Order::InsertBack)
        .with_coalesce(Coalesce::Physical);
    let mut h = RangeList::new(1000, 100, c).unwrap();
    for _ in 0..10 {
        h.malloc(10).unwrap();
    }
    for i in [9, 7, 8, 0, 2, 1, 5, 3, 4, 6] {
        h.free(1000 + 10 * i).unwrap();
    }
    assert_eq!(list(&h), [(1000, 100)]);
}

#[test]
fn inspect_tiles_the_heap() {
    #[derive(Default)]
    struct Rec(Vec<String>);
    impl allocator_traits::Inspector for Rec {
        fn region(&mut self, s: usize, l: usize) {
            self.0.push(format!("region {s} {l}"));
        }
        fn block(&mut self, a: usize, l: usize, k: allocator_traits::BlockKind) {
            self.0.push(format!("{a} {l} {k:?}"));
        }
        fn begin_list(&mut self, n: std::fmt::Arguments<'_>) {
            self.0.push(format!("list {n}"));
        }
        fn list_entry(&mut self, a: usize, l: usize) {
            self.0.push(format!("entry {a} {l}"));
        }
        fn value(&mut self, n: std::fmt::Arguments<'_>, v: usize) {
            self.0.push(format!("{n}={v}"));
        }
    }
    let c = Config::ostep(Policy::NextFit, Order::InsertFront, false, 2, Some(4));
    let mut h = RangeList::new(1000, 20, c).unwrap();
    h.malloc(3).unwrap(); // 1000: 2 header + 3 live + 1 rounding
    h.malloc(4).unwrap(); // 1006: 2 + 4
    h.free(1000).unwrap();
    let mut r = Rec::default();
    h.inspect(&mut r);
    assert_eq!(
        r.0,
        [
            "region 1000 20",
            "1000 6 Free",
            "1006 2 Header",
            "1008 4 Live { requested: 4 }",
            "1012 8 Free",
            "list free list",
            "entry 1000 6",
            "entry 1012 8",
            "rover=1012",
        ]
    );
}

/// A literal transcription of malloc.py's allocator (Vec list, whole-list stable sort on every
/// free, list-order coalescing pass), to check the linked-list mechanism against.
struct Model {
    list: Vec<(usize, usize)>,
    map: std::collections::HashMap<usize, usize>,
    policy: Policy,
    order: Order,
    coalesce: bool,
}

impl Model {
    fn malloc(&mut self, need: usize) -> (Option<usize>, usize) {
        let mut best: Option<usize> = None;
        let mut searched = 0;
        for (i, &(_, s)) in self.list.iter().enumerate() {
            searched += 1;
            if s >= need {
                match self.policy {
                    Policy::FirstFit => {
                        best = Some(i);
                        break;
                    }
                    Policy::BestFit if best.is_none_or(|b| s < self.list[b].1) => best = Some(i),
                    Policy::WorstFit if best.is_none_or(|b| s > self.list[b].1) => best = Some(i),
                    _ => {}
                }
            }
        }
        let Some(i) = best else {
            return (None, searched);
        };
        let (a, s) = self.list[i];
        if self.map.contains_key(&a) {
            return (None, usize::MAX);
        }
        if s > need {
            self.list[i] = (a + need, s - need);
        } else {
            self.list.remove(i);
        }
        self.map.insert(a, need);
        (Some(a), searched)
    }

    fn free(&mut self, a: usize) -> bool {
        let Some(s) = self.map.remove(&a) else {
            return false;
        };
        match self.order {
            Order::InsertFront => self.list.insert(0, (a, s)),
            Order::InsertBack => self.list.push((a, s)),
            Order::AddrSort => {
                self.list.push((a, s));
                self.list.sort_by_key(|c| c.0);
            }
            Order::SizeAsc => {
                self.list.push((a, s));
                self.list.sort_by_key(|c| c.1);
            }
            Order::SizeDesc => {
                self.list.push((a, s));
                self.list.sort_by_key(|c| std::cmp::Reverse(c.1));
            }
        }
        if self.coalesce {
            let mut out: Vec<(usize, usize)> = Vec::new();
            for &(ea, es) in &self.list {
                match out.last_mut() {
                    Some(cur) if ea == cur.0 + cur.1 => cur.1 += es,
                    _ => out.push((ea, es)),
                }
            }
            self.list = out;
        }
        true
    }
}

#[test]
fn matches_a_literal_transcription_of_malloc_py() {
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let rounds = if cfg!(miri) { 1 } else { 20 };
    let steps = if cfg!(miri) { 40 } else { 300 };
    for policy in [Policy::FirstFit, Policy::BestFit, Policy::WorstFit] {
        for order in Order::ALL {
            for coalesce in [false, true] {
                for _ in 0..rounds {
                    let header = rand(3);
                    let align = [None, Some(1), Some(4), Some(3)][rand(4)];
                    let c = Config::ostep(policy, order, coalesce, header, align);
                    let mut h = RangeList::new(1000, 200, c).unwrap();
                    let mut m = Model {
                        list: vec![(1000, 200)],
                        map: Default::default(),
                        policy,
                        order,
                        coalesce,
                    };
                    let mut ptrs = Vec::new();
                    for _ in 0..steps {
                        if rand(100) < 55 {
                            let req = rand(20);
                            let need = h.block_size(req).unwrap();
                            let (ma, ms) = m.malloc(need);
                            match h.malloc(req) {
                                Ok(p) => {
                                    assert_eq!((Some(p.addr), p.searched), (ma, ms), "{c}");
                                    ptrs.push(p.addr);
                                }
                                Err(f) => match f.reason {
                                    FailureReason::DuplicateAddress { .. } => {
                                        assert_eq!(ms, usize::MAX, "{c}")
                                    }
                                    _ => assert_eq!((None, f.searched), (ma, ms), "{c}"),
                                },
                            }
                        } else if !ptrs.is_empty() {
                            // Stale and double frees included: ptrs are never removed.
                            let a = ptrs[rand(ptrs.len())];
                            assert_eq!(h.free(a).is_ok(), m.free(a), "{c}");
                        }
                        assert_eq!(list(&h), m.list, "{c}");
                        if let Err(e) = h.check_invariants() {
                            panic!(
                                "{c}: {e}\n{:?}\n{:?}",
                                list(&h),
                                h.blocks().collect::<Vec<_>>()
                            );
                        }
                    }
                }
            }
        }
    }
}
