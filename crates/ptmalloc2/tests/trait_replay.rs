//! Driving an `Arena` through the workspace's `FreeSpaceManager` alone (allocate, which is malloc
//! or memalign; allocate_zeroed, calloc; grow and shrink, realloc; deallocate, free; placement)
//! gives exactly the offsets `Replayer` (the C interface) prints, on every trace the glibc
//! comparison and the golden vectors replay, and on the recorded traces in `traces/`. This is
//! what lets one replay engine drive every policy, ptmalloc2 included.
//!
//! How C's realloc maps onto the trait (what a replay engine has to do): `r ID 0` of a live
//! block is C's `realloc(p, 0)`, which frees in glibc 2.36 and returns NULL: a `deallocate`
//! (the trait's `shrink` to 0 bytes would hand out a minimal block instead); `r ID N` of an ID
//! that is not live is `realloc(NULL, N)`, a malloc: an `allocate`. A refused grow leaves the
//! block live, as C's realloc leaves it on NULL.
#![cfg(all(unix, not(miri)))]

use std::alloc::Layout;
use std::collections::HashMap;
use std::ptr::NonNull;

use allocator_traits::{AllocError, BrkRegion, FreeSpaceManager, OsPages};
use ptmalloc2::{Arena, Event, Replayer, Tunables};

mod common;
use common::{CONFIGS, first_difference, generated, recorded_traces};

/// A trace replayed through the trait only, printing what `Replayer` prints.
struct TraitReplay<M> {
    m: M,
    live: HashMap<u64, (NonNull<u8>, Layout)>,
}

impl<M: FreeSpaceManager> TraitReplay<M> {
    fn line(
        &mut self,
        op: char,
        id: u64,
        size: usize,
        r: Result<NonNull<[u8]>, AllocError>,
    ) -> Result<String, String> {
        let off = match r {
            Ok(b) => {
                let p = b.cast::<u8>();
                self.m.placement(p).to_string()
            }
            Err(AllocError::OutOfMemory { .. }) => "NULL".to_string(),
            Err(e) => return Err(e.to_string()),
        };
        Ok(format!("{op} {id} {size} {off}"))
    }

    fn admit(&mut self, id: u64, r: &Result<NonNull<[u8]>, AllocError>, layout: Layout) {
        if let Ok(b) = r {
            self.live.insert(id, (b.cast(), layout));
        }
    }

    fn apply(&mut self, ev: Event) -> Result<Option<String>, String> {
        let layout = |size: usize, align: usize| Layout::from_size_align(size, align);
        Ok(Some(match ev {
            Event::Malloc { id, size } | Event::Calloc { id, size } => {
                let op = if matches!(ev, Event::Malloc { .. }) {
                    'a'
                } else {
                    'c'
                };
                let Ok(l) = layout(size, 1) else {
                    return Ok(Some(format!("{op} {id} {size} NULL")));
                };
                let r = if op == 'a' {
                    self.m.allocate(l)
                } else {
                    self.m.allocate_zeroed(l)
                };
                self.admit(id, &r, l);
                self.line(op, id, size, r)?
            }
            Event::Memalign { id, align, size } => {
                // memalign rounds an alignment that is not a power of two up to one.
                let a = align.max(1).checked_next_power_of_two();
                let Some(l) = a.and_then(|a| layout(size, a).ok()) else {
                    return Ok(Some(format!("m {id} {size} NULL")));
                };
                let r = self.m.allocate(l);
                self.admit(id, &r, l);
                self.line('m', id, size, r)?
            }
            Event::Realloc { id, size } => match self.live.remove(&id) {
                // realloc(NULL, n) is malloc(n).
                None => {
                    let Ok(l) = layout(size, 1) else {
                        return Ok(Some(format!("r {id} {size} NULL")));
                    };
                    let r = self.m.allocate(l);
                    self.admit(id, &r, l);
                    self.line('r', id, size, r)?
                }
                // realloc(p, 0) frees p and returns NULL (glibc 2.36).
                Some((p, old)) if size == 0 => {
                    // SAFETY: `p` is live, allocated with `old`.
                    unsafe { self.m.deallocate(p, old) }.map_err(|e| e.to_string())?;
                    format!("r {id} 0 NULL")
                }
                Some((p, old)) => {
                    let Ok(new) = layout(size, 1) else {
                        self.live.insert(id, (p, old));
                        return Ok(Some(format!("r {id} {size} NULL")));
                    };
                    // SAFETY: `p` is live, allocated with `old`.
                    let r = unsafe {
                        if size >= old.size() {
                            self.m.grow(p, old, new)
                        } else {
                            self.m.shrink(p, old, new)
                        }
                    };
                    match &r {
                        Ok(b) => {
                            self.live.insert(id, (b.cast(), new));
                        }
                        Err(_) => {
                            self.live.insert(id, (p, old));
                        }
                    }
                    self.line('r', id, size, r)?
                }
            },
            Event::Free { id } => {
                let (p, l) = self
                    .live
                    .remove(&id)
                    .ok_or(format!("block {id} is not live"))?;
                // SAFETY: `p` is live, allocated with `l`.
                unsafe { self.m.deallocate(p, l) }.map_err(|e| e.to_string())?;
                return Ok(None);
            }
        }))
    }
}

/// The outputs of `Replayer` and of the trait-only replay of `trace` under `tunables`.
fn both(trace: &str, tunables: &str) -> (String, String) {
    let t = Tunables::parse(tunables).expect("tunables");
    let mut rep = Replayer::new(&t);
    let mut tr = TraitReplay {
        m: Arena::new(BrkRegion::new(64 << 30), OsPages::new(), &t),
        live: HashMap::new(),
    };
    let (mut a, mut b) = (String::new(), String::new());
    for (n, line) in trace.lines().enumerate() {
        let Some(ev) = Event::parse(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1)) else {
            continue;
        };
        match rep.apply(ev) {
            Ok(Some(l)) => a.push_str(&(l + "\n")),
            Ok(None) => {}
            Err(e) => a.push_str(&format!("error: {e}\n")),
        }
        match tr.apply(ev) {
            Ok(Some(l)) => b.push_str(&(l + "\n")),
            Ok(None) => {}
            Err(e) => b.push_str(&format!("error: {e}\n")),
        }
    }
    (a, b)
}

fn same(what: &str, (a, b): (String, String)) -> usize {
    if let Some(d) = first_difference(&a, &b, ("Replayer", "trait")) {
        panic!("{what}: {d}");
    }
    a.lines().count()
}

#[test]
fn the_trait_places_as_the_c_interface_on_the_glibc_traces() {
    let mut lines = 0;
    for (ci, cfg) in CONFIGS.iter().enumerate() {
        for seed in 0..3 {
            for t in generated(seed * 1000 + ci as u64, 1) {
                let name = format!(
                    "`{cfg}`, seed {seed}, {}",
                    t.text.lines().next().unwrap_or("")
                );
                lines += same(&name, both(&t.text, cfg));
            }
        }
    }
    println!("{lines} placements identical");
}

#[test]
fn the_trait_places_as_the_c_interface_on_the_golden_vectors() {
    // tests/golden.rs as traces: the reference's first vector and the fastbin sequence.
    let first = "a 0 24\na 1 100\na 2 1000\na 3 2000\na 4 40\na 5 24\na 6 5000\na 7 200000\n\
                 a 8 120\na 9 130\nf 1\nf 3\nf 4\nf 8\na 10 24\na 11 100\na 12 1000\na 13 2000\n\
                 a 14 40\na 15 24\nf 2\nf 6\nf 7\na 16 3000\na 17 64\na 18 1";
    let fast =
        "a 0 24\na 1 24\na 2 24\na 3 24\nf 0\nf 1\na 4 24\nf 4\nf 2\na 5 1500\na 6 80\na 7 24";
    for cfg in ["", "glibc.malloc.tcache_count=0"] {
        same(&format!("first vector `{cfg}`"), both(first, cfg));
        same(&format!("fastbins `{cfg}`"), both(fast, cfg));
    }
}

#[test]
fn the_trait_places_as_the_c_interface_on_the_recorded_traces() {
    for (name, text) in recorded_traces() {
        same(&name, both(&text, ""));
    }
}
