//! The policy registry: every landed policy by its name, as a `Box<dyn FreeSpaceManager>`.
//!
//! ```text
//!   "best-fit:addr" ──lookup──> Policy { name, about, build } ──build(&Config)──> Instance
//!                                                                  manager: Box<dyn FreeSpaceManager>
//!                                                                  offset:  address -> heap offset | MMAP
//! ```
//!
//! Each manager gets memory from a `brk`-like reservation ([`allocator_traits::BrkRegion`]) of
//! [`Config::reserve`] bytes: address space only, pages are committed as the policy asks for them,
//! so the footprint is what the policy took. Names follow DESIGN.md; fit policies take an order
//! suffix. An unknown name gives one line listing the valid ones.

use allocator_traits::{FreeSpaceManager, Inspector};

/// How to build a policy.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address space each manager may grow into.
    pub reserve: usize,
    /// A `GLIBC_TUNABLES`-style string (`glibc.malloc.tcache_count=0:...`) for ptmalloc2.
    pub tunables: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reserve: 64 << 30,
            tunables: None,
        }
    }
}

/// Where a block lies: its offset from the start of the policy's first (main) heap, or `None` for
/// a block in a separate OS mapping (printed `MMAP`).
pub type OffsetFn = Box<dyn Fn(&dyn FreeSpaceManager, usize) -> Option<usize>>;

/// A built policy.
pub struct Instance {
    /// The manager.
    pub manager: Box<dyn FreeSpaceManager>,
    /// Its notion of block offsets (see [`OffsetFn`]).
    pub offset: OffsetFn,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

/// A registered policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Its name, as DESIGN.md spells it (with an order suffix for fit variants).
    pub name: &'static str,
    /// One line about it.
    pub about: &'static str,
    build: fn(&Config) -> Result<Instance, String>,
}

impl Policy {
    /// Builds a fresh instance.
    pub fn build(&self, cfg: &Config) -> Result<Instance, String> {
        (self.build)(cfg)
    }
}

/// Offsets from the first region the manager reports through `inspect`; an address outside it is
/// in a separate mapping. (Walks the manager's structures: meant for `--offsets`, not for speed.)
pub fn first_region_offset(m: &dyn FreeSpaceManager, addr: usize) -> Option<usize> {
    #[derive(Default)]
    struct First(Option<(usize, usize)>);
    impl Inspector for First {
        fn region(&mut self, start: usize, len: usize) {
            if self.0.is_none() {
                self.0 = Some((start, len));
            }
        }
    }
    let mut f = First::default();
    m.inspect(&mut f);
    let (start, len) = f.0?;
    (addr >= start && addr < start.saturating_add(len.max(1))).then(|| addr - start)
}

#[allow(dead_code)]
fn instance(manager: Box<dyn FreeSpaceManager>) -> Instance {
    Instance {
        manager,
        offset: Box::new(first_region_offset),
    }
}

/// Every registered policy, in the order reports list them.
pub fn all() -> Vec<Policy> {
    #[allow(unused_mut)]
    let mut v: Vec<Policy> = Vec::new();
    v
}

/// The names of every registered policy.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name).collect()
}

/// The policy called `name`, or a one-line error listing the valid names.
pub fn lookup(name: &str) -> Result<Policy, String> {
    all().into_iter().find(|p| p.name == name).ok_or_else(|| {
        let names = names();
        if names.is_empty() {
            format!("unknown policy '{name}': no policy is registered yet")
        } else {
            format!("unknown policy '{name}'; valid names: {}", names.join(", "))
        }
    })
}

/// Builds the policy called `name`.
pub fn build(name: &str, cfg: &Config) -> Result<Instance, String> {
    lookup(name)?.build(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_is_one_line_listing_the_valid_ones() {
        let e = lookup("no-such-fit").unwrap_err();
        assert!(e.starts_with("unknown policy 'no-such-fit'"), "{e}");
        assert!(!e.contains('\n'));
        for n in names() {
            assert!(e.contains(n), "{e} lacks {n}");
        }
    }

    #[test]
    fn every_policy_builds_and_serves_a_block() {
        for p in all() {
            let mut inst = p
                .build(&Config::default())
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            let b = inst
                .manager
                .allocate(core::alloc::Layout::from_size_align(100, 16).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert!(b.len() >= 100);
        }
    }
}
