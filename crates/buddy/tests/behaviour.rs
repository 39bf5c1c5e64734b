//! Split, merge, alignment, bad frees, resizing and inspection, checked block by block.

use core::fmt;

use allocator_traits::{
    BlockKind, BoxedRegion, FixedRegion, FreeError, FreeSpaceManager, Inspector, Layout, Locked,
    MemorySource,
};
use buddy::{Buddy, Config};

fn heap(capacity: usize) -> Buddy<BoxedRegion> {
    Buddy::try_new(BoxedRegion::new(capacity).unwrap(), Config::new(capacity)).unwrap()
}

/// Memory aligned to its own size, freed on drop (after the heap over it).
struct Aligned(*mut u8, std::alloc::Layout);

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `pow2_heap` with this layout.
        unsafe { std::alloc::dealloc(self.0, self.1) }
    }
}

/// A heap whose data is exactly one block of `data` bytes (a power of two), aligned to it.
fn pow2_heap(data: usize) -> (Buddy<FixedRegion>, Aligned) {
    let mut cap = data + 1024;
    for _ in 0..10 {
        let layout = std::alloc::Layout::from_size_align(cap, data).unwrap();
        // SAFETY: non-zero size.
        let mem = Aligned(unsafe { std::alloc::alloc(layout) }, layout);
        // SAFETY: `mem` is ours and outlives the heap (the caller keeps both).
        let region = unsafe { FixedRegion::from_raw_parts(mem.0, cap) };
        let h = Buddy::try_new(region, Config::new(cap)).unwrap();
        let top = h.orders() - 1;
        if h.block_size(top) == data
            && h.free_blocks(top) == 1
            && (0..top).all(|k| h.free_blocks(k) == 0)
        {
            return (h, mem);
        }
        cap = data + h.metadata_bytes() + 16;
    }
    panic!("no capacity gives exactly {data} bytes of data");
}

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn addr(b: core::ptr::NonNull<[u8]>) -> usize {
    b.cast::<u8>().as_ptr() as usize
}

#[test]
fn split_hands_out_buddies_and_merge_restores_the_top_block() {
    let (mut h, _mem) = pow2_heap(1 << 16);
    let a = h.allocate(l(10, 1)).unwrap();
    let b = h.allocate(l(16, 8)).unwrap();
    assert_eq!((a.len(), b.len()), (16, 16));
    // The second 16-byte block is the first one's buddy: the upper half of the same 32 B split.
    assert_eq!(addr(a) ^ 16, addr(b));
    let top = h.orders() - 1;
    let tops_before = (0..h.orders())
        .map(|k| h.free_blocks(k))
        .collect::<Vec<_>>();
    // One free block on each order from 1 up to the order below the first top block's.
    assert!(tops_before[1..].iter().all(|&n| n <= 2));
    // SAFETY: live blocks allocated with these layouts.
    unsafe {
        h.deallocate(a.cast(), l(10, 1)).unwrap();
        assert_eq!(h.free_blocks(0), 1, "a waits for its buddy");
        h.deallocate(b.cast(), l(16, 8)).unwrap();
    }
    assert_eq!(h.free_blocks(0), 0, "merged with its buddy");
    let (mut f, _fresh_mem) = pow2_heap(1 << 16);
    let x = f.allocate(l(1, 1)).unwrap();
    // SAFETY: live block.
    unsafe { f.deallocate(x.cast(), l(1, 1)).unwrap() };
    for k in 0..=top {
        assert_eq!(h.free_blocks(k), f.free_blocks(k), "order {k}");
    }
    let s = h.stats();
    assert_eq!(
        (s.allocs, s.frees, s.live_blocks, s.live_held),
        (2, 2, 0, 0)
    );
}

#[test]
fn alignment_up_to_the_block_size_is_free() {
    let mut h = heap(1 << 16);
    for align in [1, 8, 64, 256, 4096] {
        let b = h.allocate(l(1, align)).unwrap();
        assert_eq!(addr(b) % align, 0);
        assert_eq!(b.len(), align.max(16));
    }
    let b = h.allocate(l(100, 64)).unwrap();
    assert_eq!((b.len(), addr(b) % 128), (128, 0));
}

#[test]
fn stats_split_rounding_from_free_space() {
    let mut h = heap(1 << 16);
    let _a = h.allocate(l(40, 8)).unwrap();
    let _b = h.allocate(l(100, 8)).unwrap();
    let s = h.stats();
    assert_eq!(s.live_requested, 140);
    assert_eq!(s.live_held, 64 + 128);
    assert_eq!(s.internal_bytes(), 24 + 28);
    assert_eq!(s.footprint, h.source().footprint());
    assert!(s.footprint <= 1 << 16 && s.footprint >= (1 << 16) - 16);
    assert_eq!(s.external_bytes(), s.footprint - 192);
}

#[test]
fn bad_frees_are_errors_and_change_nothing() {
    let mut h = heap(1 << 16);
    let a = h.allocate(l(64, 8)).unwrap();
    let b = h.allocate(l(64, 8)).unwrap();
    let mut local = 0u64;
    let foreign = core::ptr::NonNull::from(&mut local).cast::<u8>();
    // SAFETY: each call is a bad free the heap detects; nothing is freed.
    unsafe {
        assert_eq!(
            h.deallocate(foreign, l(8, 8)),
            Err(FreeError::Foreign {
                ptr: foreign.as_ptr() as usize
            })
        );
        let inner = a.cast::<u8>().add(16);
        assert!(matches!(
            h.deallocate(inner, l(16, 8)),
            Err(FreeError::NotABlock { .. })
        ));
        assert!(matches!(
            h.deallocate(a.cast(), l(200, 8)),
            Err(FreeError::LayoutMismatch { .. })
        ));
        h.deallocate(a.cast(), l(64, 8)).unwrap();
        assert_eq!(
            h.deallocate(a.cast(), l(64, 8)),
            Err(FreeError::DoubleFree { ptr: addr(a) })
        );
        // After `b` is freed too, `a` lies inside a merged free block: still a double free.
        h.deallocate(b.cast(), l(64, 8)).unwrap();
        assert!(matches!(
            h.deallocate(a.cast(), l(64, 8)),
            Err(FreeError::DoubleFree { .. })
        ));
    }
    let s = h.stats();
    assert_eq!((s.bad_frees, s.frees, s.live_blocks), (5, 2, 0));
}

#[test]
fn resize_in_place_uses_free_buddies_and_splits_on_shrink() {
    let mut h = heap(1 << 16);
    let a = h.allocate(l(128, 16)).unwrap();
    let at = addr(a);
    assert_eq!(at % 128, 0);
    // SAFETY: `a` (and later `b`, `c`) are live with the layouts passed.
    unsafe {
        let s = h.resize_in_place(a.cast(), l(128, 16), l(20, 16)).unwrap();
        assert_eq!((addr(s), s.len()), (at, 32));
        // The upper halves went back: +64 on order 2, +32 on order 1 (at the head of its list).
        let b = h.allocate(l(32, 16)).unwrap();
        assert_eq!(addr(b), at + 32);
        h.deallocate(b.cast(), l(32, 16)).unwrap();
        let g = h.resize_in_place(a.cast(), l(20, 16), l(100, 16)).unwrap();
        assert_eq!(
            (addr(g), g.len()),
            (at, 128),
            "grown back over its free buddies"
        );
        let s = h.resize_in_place(a.cast(), l(100, 16), l(16, 16)).unwrap();
        assert_eq!(s.len(), 16);
        let c = h.allocate(l(16, 16)).unwrap();
        assert_eq!(addr(c), at + 16, "the buddy is taken");
        assert_eq!(
            h.resize_in_place(a.cast(), l(16, 16), l(32, 16)),
            Err(allocator_traits::AllocError::NotInPlace)
        );
        // A moving grow keeps the contents.
        a.cast::<u8>().as_ptr().write_bytes(7, 16);
        let m = h.grow(a.cast(), l(16, 16), l(64, 16)).unwrap();
        assert_ne!(addr(m), at);
        assert!((0..16).all(|i| *m.cast::<u8>().as_ptr().add(i) == 7));
    }
    let s = h.stats();
    assert_eq!((s.in_place_resizes, s.resizes, s.live_blocks), (3, 4, 2));
}

#[test]
fn grown_regions_merge_across_chunks() {
    let cap = 1 << 16;
    let mut h = Buddy::new(
        BoxedRegion::new(cap).unwrap(),
        Config::new(cap).grow_by(4096),
    );
    let a = h.allocate(l(4096, 8)).unwrap();
    let f1 = h.stats().footprint;
    let b = h.allocate(l(4096, 8)).unwrap();
    assert!(
        h.stats().footprint > f1,
        "the second block needed a new chunk"
    );
    // SAFETY: live blocks.
    unsafe {
        h.deallocate(a.cast(), l(4096, 8)).unwrap();
        h.deallocate(b.cast(), l(4096, 8)).unwrap();
    }
    let big = h.allocate(l(8192, 8192));
    assert!(big.is_ok(), "chunks merged into an 8 KiB block");
}

#[derive(Default)]
struct Text(String);

impl Inspector for Text {
    fn region(&mut self, start: usize, len: usize) {
        self.0 += &format!("region {len}\n");
        let _ = start;
    }
    fn block(&mut self, _addr: usize, len: usize, kind: BlockKind) {
        self.0 += &format!("block {len} {kind:?}\n");
    }
    fn begin_list(&mut self, name: fmt::Arguments<'_>) {
        self.0 += &format!("{name}:");
    }
    fn list_entry(&mut self, _addr: usize, len: usize) {
        self.0 += &format!(" {len}");
    }
    fn end_list(&mut self) {
        self.0 += "\n";
    }
}

#[test]
fn inspect_shows_blocks_and_one_list_per_order() {
    let (mut h, _mem) = pow2_heap(4096);
    let _a = h.allocate(l(16, 8)).unwrap();
    let mut t = Text::default();
    h.inspect(&mut t);
    let text = t.0;
    assert!(text.contains("order 0 (16 B): 16\n"), "{text}");
    assert!(text.contains("block 16 Live"), "{text}");
    assert!(text.contains("Metadata"), "{text}");
    assert!(text.contains("order 5 (512 B):"), "{text}");
}

static mut ARENA: [u64; 1 << 13] = [0; 1 << 13];

// A static heap over a static array: the constructor is `const`.
static HEAP: Locked<Buddy<FixedRegion>> = Locked::new(Buddy::new(
    // SAFETY: ARENA is used by this region alone.
    unsafe { FixedRegion::from_raw_parts(&raw mut ARENA as *mut u8, 8 << 13) },
    Config::new(8 << 13),
));

#[test]
fn a_static_heap_serves_collections() {
    let mut v = allocator_api2::vec::Vec::new_in(&HEAP);
    for i in 0..1000u32 {
        v.push(i);
    }
    assert_eq!(v.iter().sum::<u32>(), 999 * 1000 / 2);
    assert_eq!(HEAP.stats().live_blocks, 1);
    drop(v);
    assert_eq!(HEAP.stats().live_blocks, 0);
}
