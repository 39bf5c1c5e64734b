//! The golden vectors of the reference (section 1.12), verified on glibc 2.36: offsets of user
//! pointers from the start of the heap, and the chunks' size words.

use allocator_traits::BoxedRegion;
use ptmalloc2::{Arena, Placement, SystemPages, Tunables};

type A = Arena<BoxedRegion, SystemPages>;

fn arena(t: &str) -> A {
    Arena::new(
        BoxedRegion::new(8 << 20).unwrap(),
        SystemPages::new(),
        &Tunables::parse(t).unwrap(),
    )
}

fn off(a: &A, p: std::ptr::NonNull<u8>) -> Option<usize> {
    match a.placement(p) {
        Placement::Heap(o) => Some(o),
        Placement::Mapped => None,
    }
}

/// The size word with its flags (the word before the user pointer).
fn head(p: std::ptr::NonNull<u8>) -> usize {
    // SAFETY: every user pointer of the arena is preceded by its chunk's size word.
    unsafe { p.as_ptr().cast::<usize>().sub(1).read() }
}

fn run_first_vector(tunables: &str) -> Vec<(Option<usize>, usize)> {
    let mut a = arena(tunables);
    let mut got = Vec::new();
    let mut p = Vec::new();
    for s in [24, 100, 1000, 2000, 40, 24, 5000, 200_000, 120, 130] {
        let q = a.malloc(s).unwrap();
        got.push((off(&a, q), head(q)));
        p.push(q);
    }
    for i in [1, 3, 4, 8] {
        // SAFETY: live blocks.
        unsafe { a.free(p[i]) }.unwrap();
    }
    for s in [24, 100, 1000, 2000, 40, 24] {
        let q = a.malloc(s).unwrap();
        got.push((off(&a, q), head(q)));
    }
    for i in [2, 6, 7] {
        // SAFETY: live blocks.
        unsafe { a.free(p[i]) }.unwrap();
    }
    for s in [3000, 64, 1] {
        let q = a.malloc(s).unwrap();
        got.push((off(&a, q), head(q)));
    }
    got
}

#[test]
fn first_vector_without_tcache() {
    let got = run_first_vector("glibc.malloc.tcache_count=0");
    let want: Vec<(Option<usize>, usize)> = vec![
        (Some(0x2a0), 0x21),
        (Some(0x2c0), 0x71),
        (Some(0x330), 0x3f1),
        (Some(0x720), 0x7e1),
        (Some(0xf00), 0x31),
        (Some(0xf30), 0x21),
        (Some(0xf50), 0x1391),
        (None, 0x31002),
        (Some(0x22e0), 0x81),
        (Some(0x2360), 0x91),
        (Some(0x720), 0x21),
        (Some(0x2c0), 0x71),
        (Some(0x740), 0x3f1),
        (Some(0x23f0), 0x7e1),
        (Some(0x22e0), 0x31),
        (Some(0x2310), 0x21),
        (Some(0xf50), 0xbc1),
        (Some(0x330), 0x51),
        (Some(0x380), 0x21),
    ];
    assert_eq!(got, want);
}

#[test]
fn first_vector_with_default_tcache() {
    let got = run_first_vector("");
    let offs: Vec<Option<usize>> = got.iter().map(|g| g.0).collect();
    // Differs from the tcache-less run only where the reference says.
    assert_eq!(got[14], (Some(0xf00), 0x30));
    assert_eq!(offs[15], Some(0xb30));
    assert_eq!(got[17], (Some(0xb50), 0x51));
    assert_eq!(offs[18], Some(0xba0));
    assert_eq!(
        offs[..14],
        run_first_vector("glibc.malloc.tcache_count=0")
            .iter()
            .map(|g| g.0)
            .collect::<Vec<_>>()[..14]
    );
}

#[test]
fn fastbins_then_consolidation() {
    let mut a = arena("glibc.malloc.tcache_count=0");
    let v: Vec<_> = (0..4).map(|_| a.malloc(24).unwrap()).collect();
    let o: Vec<_> = v.iter().map(|&p| off(&a, p).unwrap()).collect();
    assert_eq!(o, [0x2a0, 0x2c0, 0x2e0, 0x300]);
    // SAFETY: live blocks.
    unsafe {
        a.free(v[0]).unwrap();
        a.free(v[1]).unwrap();
    }
    let b = a.malloc(24).unwrap();
    assert_eq!(off(&a, b), Some(0x2c0), "fastbin LIFO");
    // SAFETY: live blocks.
    unsafe {
        a.free(b).unwrap();
        a.free(v[2]).unwrap();
    }
    let big = a.malloc(1500).unwrap();
    assert_eq!(off(&a, big), Some(0x320));
    let c = a.malloc(80).unwrap();
    assert_eq!(off(&a, c), Some(0x2a0));
    let d = a.malloc(24).unwrap();
    assert_eq!(off(&a, d), Some(0x910));
}

#[test]
fn first_growth_takes_top_pad() {
    let mut a = arena("");
    a.malloc(1).unwrap();
    assert_eq!(a.system_mem(), 0x21000);
    let mut b = arena("glibc.malloc.top_pad=0");
    b.malloc(1).unwrap();
    assert_eq!(b.system_mem(), 0x1000);
}

#[test]
fn detected_bad_frees_carry_glibc_messages() {
    use allocator_traits::FreeError;
    let mut a = arena("glibc.malloc.tcache_count=0");
    let p = a.malloc(24).unwrap();
    let _q = a.malloc(24).unwrap();
    // SAFETY: testing the diagnosis of a double free.
    unsafe {
        a.free(p).unwrap();
        assert!(matches!(
            a.free(p),
            Err(FreeError::Corrupted {
                what: "double free or corruption (fasttop)",
                ..
            })
        ));
    }
    let mut a = arena("");
    let p = a.malloc(24).unwrap();
    // SAFETY: as above.
    unsafe {
        a.free(p).unwrap();
        assert!(matches!(
            a.free(p),
            Err(FreeError::Corrupted {
                what: "free(): double free detected in tcache 2",
                ..
            })
        ));
    }
    let mut a = arena("glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0");
    let p = a.malloc(24).unwrap();
    let _q = a.malloc(24).unwrap();
    // SAFETY: as above.
    unsafe {
        a.free(p).unwrap();
        assert!(matches!(
            a.free(p),
            Err(FreeError::Corrupted {
                what: "double free or corruption (!prev)",
                ..
            })
        ));
    }
    let mut a = arena("");
    let p = a.malloc(100).unwrap();
    let mut x = 0u64;
    // SAFETY: foreign and misaligned pointers are diagnosed without touching them.
    unsafe {
        assert!(matches!(
            a.free(std::ptr::NonNull::from(&mut x).cast()),
            Err(FreeError::Foreign { .. })
        ));
        assert!(matches!(
            a.free(p.add(8)),
            Err(FreeError::Corrupted {
                what: "free(): invalid pointer",
                ..
            })
        ));
    }
}
