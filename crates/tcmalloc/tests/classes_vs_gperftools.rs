//! Compares the size classes with the real gperftools: `nallocx(size, 0)` from
//! `libtcmalloc_minimal.so.4` (Debian's libtcmalloc-minimal4), loaded with `dlopen`, for every
//! request size 1..=262144 (and a few large sizes).
#![cfg(not(loom))]

use std::ffi::CStr;

type Nallocx = unsafe extern "C" fn(usize, i32) -> usize;

fn load_nallocx() -> Option<Nallocx> {
    for lib in [c"libtcmalloc_minimal.so.4", c"libtcmalloc_minimal.so"] {
        // SAFETY: dlopen with a valid C string; RTLD_LOCAL keeps the library's malloc from
        // interposing on the process's.
        let h = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if h.is_null() {
            continue;
        }
        let sym: &CStr = c"nallocx";
        // SAFETY: `h` is a live handle; the symbol name is a valid C string.
        let f = unsafe { libc::dlsym(h, sym.as_ptr()) };
        if !f.is_null() {
            // SAFETY: gperftools declares `size_t nallocx(size_t size, int flags)`.
            return Some(unsafe { std::mem::transmute::<*mut libc::c_void, Nallocx>(f) });
        }
    }
    None
}

#[test]
#[cfg_attr(miri, ignore = "dlopen is not supported under Miri")]
fn every_size_agrees_with_gperftools_nallocx() {
    let Some(nallocx) = load_nallocx() else {
        eprintln!(
            "\n\n*** SKIPPED: libtcmalloc_minimal.so.4 not found (apt-get install \
             libtcmalloc-minimal4); size classes NOT compared with gperftools ***\n"
        );
        return;
    };
    let mut compared = 0usize;
    let mut mismatches = Vec::new();
    let large = (1..64).map(|k| 262144 + k * 4093);
    for size in (1..=262_144usize).chain(large) {
        // SAFETY: nallocx is a pure function of its arguments.
        let theirs = unsafe { nallocx(size, 0) };
        let ours = tcmalloc::rounded_size(size).unwrap();
        compared += 1;
        if theirs != ours && mismatches.len() < 20 {
            mismatches.push((size, ours, theirs));
        }
    }
    assert!(
        mismatches.is_empty(),
        "(size, ours, gperftools): {mismatches:?}"
    );
    eprintln!("size classes agree with gperftools nallocx on all {compared} sizes");
    assert_eq!(compared, 262_144 + 63);
}
