//! Tunables, named and written as glibc's: `glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0`.
//!
//! [`Tunables::parse`] reads a `GLIBC_TUNABLES`-style string; [`Params`] is what the arena runs
//! with (glibc's `mp_` plus `global_max_fast`), derived exactly as glibc's tunable callbacks do:
//! setting `top_pad`, `mmap_threshold`, `trim_threshold` or `mmap_max` freezes the dynamic mmap
//! threshold. Where glibc silently ignores an out-of-range value, the parser reports it.

use core::fmt;

use crate::bins::{DEFAULT_MXFAST, MAX_FAST_SIZE, max_fast_for};
use crate::chunk::request2size;
use crate::tcache::{
    MAX_TCACHE_COUNT, MAX_TCACHE_SIZE, TCACHE_FILL_COUNT, TCACHE_MAX_BINS, csize2tidx,
};

/// `DEFAULT_MMAP_THRESHOLD_MIN`: the initial mmap threshold (128 KiB).
pub const DEFAULT_MMAP_THRESHOLD: usize = 128 * 1024;
/// `DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit: where the dynamic threshold stops (32 MiB).
pub const DEFAULT_MMAP_THRESHOLD_MAX: usize = 4 * 1024 * 1024 * 8;
/// `HEAP_MAX_SIZE`: the size (and alignment) of a thread arena's heap (64 MiB).
pub const HEAP_MAX_SIZE: usize = 2 * DEFAULT_MMAP_THRESHOLD_MAX;
/// Default `trim_threshold` (128 KiB).
pub const DEFAULT_TRIM_THRESHOLD: usize = 128 * 1024;
/// Default `top_pad` on glibc 2.36 (`malloc-machine.h`: 128 KiB).
pub const DEFAULT_TOP_PAD: usize = 128 * 1024;
/// Default `mmap_max`.
pub const DEFAULT_MMAP_MAX: usize = 65536;

/// The malloc tunables of glibc 2.36 (`elf/dl-tunables.list`); `None` means not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tunables {
    /// `glibc.malloc.check` (0..=3). Accepted; the checking hooks live in `libc_malloc_debug.so`
    /// and are not modelled.
    pub check: Option<usize>,
    /// `glibc.malloc.top_pad`: extra bytes asked of `sbrk` on each growth.
    pub top_pad: Option<usize>,
    /// `glibc.malloc.perturb` (0..=255): fill byte for freed memory (its complement for fresh).
    pub perturb: Option<usize>,
    /// `glibc.malloc.mmap_threshold` (at most 32 MiB).
    pub mmap_threshold: Option<usize>,
    /// `glibc.malloc.trim_threshold`.
    pub trim_threshold: Option<usize>,
    /// `glibc.malloc.mmap_max`: most chunks mapped at once (0 turns mmap off).
    pub mmap_max: Option<usize>,
    /// `glibc.malloc.arena_max` (at least 1).
    pub arena_max: Option<usize>,
    /// `glibc.malloc.arena_test` (at least 1).
    pub arena_test: Option<usize>,
    /// `glibc.malloc.tcache_max`: largest cached request (at most 1032).
    pub tcache_max: Option<usize>,
    /// `glibc.malloc.tcache_count`: chunks per tcache bin (at most 65535; 0 turns caching off).
    pub tcache_count: Option<usize>,
    /// `glibc.malloc.tcache_unsorted_limit`: unsorted chunks processed after a stash (0 = no limit).
    pub tcache_unsorted_limit: Option<usize>,
    /// `glibc.malloc.mxfast`: largest fastbin request (at most 160; 0 turns fastbins off).
    pub mxfast: Option<usize>,
    /// `glibc.malloc.hugetlb` (0..=2). Accepted; huge pages are not modelled.
    pub hugetlb: Option<usize>,
}

/// What was wrong with a tunables string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunableError {
    /// An item is not `name=value`.
    Malformed(String),
    /// The name is not one of glibc 2.36's malloc tunables.
    Unknown(String),
    /// The value is not a number (decimal or `0x` hex).
    NotANumber {
        /// The tunable.
        name: String,
        /// The value given.
        value: String,
    },
    /// The value is outside what glibc accepts.
    OutOfRange {
        /// The tunable.
        name: String,
        /// The value given.
        value: usize,
        /// The accepted range.
        range: &'static str,
    },
}

impl fmt::Display for TunableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunableError::Malformed(s) => write!(
                f,
                "tunable `{s}` is not of the form glibc.malloc.NAME=VALUE"
            ),
            TunableError::Unknown(s) => write!(
                f,
                "unknown tunable `{s}` (known: glibc.malloc.{{{}}})",
                NAMES.join(",")
            ),
            TunableError::NotANumber { name, value } => {
                write!(f, "tunable {name}: `{value}` is not a number")
            }
            TunableError::OutOfRange { name, value, range } => {
                write!(f, "tunable {name}: {value} is out of range ({range})")
            }
        }
    }
}

impl std::error::Error for TunableError {}

const NAMES: [&str; 13] = [
    "check",
    "top_pad",
    "perturb",
    "mmap_threshold",
    "trim_threshold",
    "mmap_max",
    "arena_max",
    "arena_test",
    "tcache_max",
    "tcache_count",
    "tcache_unsorted_limit",
    "mxfast",
    "hugetlb",
];

fn number(s: &str) -> Option<usize> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        usize::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

impl Tunables {
    /// glibc's defaults (nothing set).
    pub const fn new() -> Self {
        Tunables {
            check: None,
            top_pad: None,
            perturb: None,
            mmap_threshold: None,
            trim_threshold: None,
            mmap_max: None,
            arena_max: None,
            arena_test: None,
            tcache_max: None,
            tcache_count: None,
            tcache_unsorted_limit: None,
            mxfast: None,
            hugetlb: None,
        }
    }

    /// Parses `glibc.malloc.NAME=VALUE` items separated by `:` (an empty string sets nothing).
    pub fn parse(s: &str) -> Result<Self, TunableError> {
        let mut t = Tunables::new();
        for item in s.split(':').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| TunableError::Malformed(item.to_string()))?;
            let short = name
                .strip_prefix("glibc.malloc.")
                .ok_or_else(|| TunableError::Unknown(name.to_string()))?;
            let v = number(value).ok_or_else(|| TunableError::NotANumber {
                name: name.to_string(),
                value: value.to_string(),
            })?;
            let range = |ok: bool, range: &'static str| {
                if ok {
                    Ok(Some(v))
                } else {
                    Err(TunableError::OutOfRange {
                        name: name.to_string(),
                        value: v,
                        range,
                    })
                }
            };
            match short {
                "check" => t.check = range(v <= 3, "0..=3")?,
                "top_pad" => t.top_pad = Some(v),
                "perturb" => t.perturb = range(v <= 0xff, "0..=255")?,
                "mmap_threshold" => {
                    t.mmap_threshold = range(v <= HEAP_MAX_SIZE / 2, "0..=33554432")?
                }
                "trim_threshold" => t.trim_threshold = Some(v),
                "mmap_max" => t.mmap_max = range(v <= i32::MAX as usize, "0..=2147483647")?,
                "arena_max" => t.arena_max = range(v >= 1, ">= 1")?,
                "arena_test" => t.arena_test = range(v >= 1, ">= 1")?,
                "tcache_max" => t.tcache_max = range(v <= MAX_TCACHE_SIZE, "0..=1032")?,
                "tcache_count" => t.tcache_count = range(v <= MAX_TCACHE_COUNT, "0..=65535")?,
                "tcache_unsorted_limit" => t.tcache_unsorted_limit = Some(v),
                "mxfast" => t.mxfast = range(v <= MAX_FAST_SIZE, "0..=160")?,
                "hugetlb" => t.hugetlb = range(v <= 2, "0..=2")?,
                _ => return Err(TunableError::Unknown(name.to_string())),
            }
        }
        Ok(t)
    }
}

impl core::str::FromStr for Tunables {
    type Err = TunableError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tunables::parse(s)
    }
}

impl fmt::Display for Tunables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items = [
            ("check", self.check),
            ("top_pad", self.top_pad),
            ("perturb", self.perturb),
            ("mmap_threshold", self.mmap_threshold),
            ("trim_threshold", self.trim_threshold),
            ("mmap_max", self.mmap_max),
            ("arena_max", self.arena_max),
            ("arena_test", self.arena_test),
            ("tcache_max", self.tcache_max),
            ("tcache_count", self.tcache_count),
            ("tcache_unsorted_limit", self.tcache_unsorted_limit),
            ("mxfast", self.mxfast),
            ("hugetlb", self.hugetlb),
        ];
        let mut first = true;
        for (n, v) in items {
            if let Some(v) = v {
                if !first {
                    f.write_str(":")?;
                }
                first = false;
                write!(f, "glibc.malloc.{n}={v}")?;
            }
        }
        Ok(())
    }
}

/// The parameters an arena runs with: glibc's `mp_` and `global_max_fast`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Trim the top when it reaches this size.
    pub trim_threshold: usize,
    /// Extra bytes asked of the system on each growth.
    pub top_pad: usize,
    /// Requests of at least this chunk size are mapped on their own.
    pub mmap_threshold: usize,
    /// Chunks currently mapped.
    pub n_mmaps: usize,
    /// Most chunks mapped at once.
    pub n_mmaps_max: usize,
    /// Peak of `n_mmaps`.
    pub max_n_mmaps: usize,
    /// The dynamic mmap threshold is frozen.
    pub no_dyn_threshold: bool,
    /// Bytes in mapped chunks.
    pub mmapped_mem: usize,
    /// Peak of `mmapped_mem`.
    pub max_mmapped_mem: usize,
    /// Number of tcache bins in use.
    pub tcache_bins: usize,
    /// Chunks per tcache bin.
    pub tcache_count: usize,
    /// Unsorted chunks processed after a stash before returning (0 = no limit).
    pub tcache_unsorted_limit: usize,
    /// `global_max_fast`: largest fastbin chunk size.
    pub max_fast: usize,
    /// Perturb byte (0 = off).
    pub perturb: u8,
    /// `arena_max` (0 = not set).
    pub arena_max: usize,
    /// `arena_test`.
    pub arena_test: usize,
}

impl Params {
    /// `free` of a mapped chunk whose size word is `nomask`: glibc raises the dynamic mmap
    /// threshold to that chunk's size (and the trim threshold to twice it), unless a tunable
    /// froze them or the chunk is above `DEFAULT_MMAP_THRESHOLD_MAX`.
    pub fn raise_dynamic_threshold(&mut self, nomask: usize) {
        if !self.no_dyn_threshold
            && nomask > self.mmap_threshold
            && nomask <= DEFAULT_MMAP_THRESHOLD_MAX
        {
            self.mmap_threshold = nomask & !crate::chunk::SIZE_BITS;
            self.trim_threshold = 2 * self.mmap_threshold;
        }
    }

    /// glibc's parameters after `ptmalloc_init` with these tunables.
    pub fn new(t: &Tunables) -> Self {
        let mut p = Params {
            trim_threshold: DEFAULT_TRIM_THRESHOLD,
            top_pad: DEFAULT_TOP_PAD,
            mmap_threshold: DEFAULT_MMAP_THRESHOLD,
            n_mmaps: 0,
            n_mmaps_max: DEFAULT_MMAP_MAX,
            max_n_mmaps: 0,
            no_dyn_threshold: false,
            mmapped_mem: 0,
            max_mmapped_mem: 0,
            tcache_bins: TCACHE_MAX_BINS,
            tcache_count: TCACHE_FILL_COUNT,
            tcache_unsorted_limit: 0,
            max_fast: max_fast_for(DEFAULT_MXFAST),
            perturb: 0,
            arena_max: 0,
            arena_test: 8,
        };
        if let Some(v) = t.top_pad {
            p.top_pad = v;
            p.no_dyn_threshold = true;
        }
        if let Some(v) = t.perturb {
            p.perturb = v as u8;
        }
        if let Some(v) = t.mmap_threshold {
            p.mmap_threshold = v;
            p.no_dyn_threshold = true;
        }
        if let Some(v) = t.trim_threshold {
            p.trim_threshold = v;
            p.no_dyn_threshold = true;
        }
        if let Some(v) = t.mmap_max {
            p.n_mmaps_max = v;
            p.no_dyn_threshold = true;
        }
        if let Some(v) = t.arena_max {
            p.arena_max = v;
        }
        if let Some(v) = t.arena_test {
            p.arena_test = v;
        }
        if let Some(v) = t.tcache_max {
            p.tcache_bins = csize2tidx(request2size(v)) + 1;
        }
        if let Some(v) = t.tcache_count {
            p.tcache_count = v;
        }
        if let Some(v) = t.tcache_unsorted_limit {
            p.tcache_unsorted_limit = v;
        }
        if let Some(v) = t.mxfast {
            p.max_fast = max_fast_for(v);
        }
        p
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::new(&Tunables::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_glibc_strings() {
        let t = Tunables::parse("glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0x0").unwrap();
        assert_eq!(t.tcache_count, Some(0));
        assert_eq!(t.mxfast, Some(0));
        let p = Params::new(&t);
        assert_eq!(p.max_fast, 16);
        assert_eq!(p.tcache_count, 0);
        assert!(!p.no_dyn_threshold);
        assert_eq!(
            t.to_string(),
            "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0"
        );
        let p = Params::new(&Tunables::parse("glibc.malloc.mmap_threshold=131072").unwrap());
        assert!(p.no_dyn_threshold);
        assert_eq!(
            Params::new(&Tunables::parse("glibc.malloc.tcache_max=0").unwrap()).tcache_bins,
            1
        );
        assert!(matches!(
            Tunables::parse("glibc.malloc.mxfast=161"),
            Err(TunableError::OutOfRange { .. })
        ));
        assert!(matches!(
            Tunables::parse("glibc.malloc.nope=1"),
            Err(TunableError::Unknown(_))
        ));
        assert!(matches!(
            Tunables::parse("glibc.malloc.mxfast"),
            Err(TunableError::Malformed(_))
        ));
        assert!(matches!(
            Tunables::parse("glibc.malloc.mxfast=x"),
            Err(TunableError::NotANumber { .. })
        ));
        assert!(Tunables::parse("").unwrap() == Tunables::new());
        assert!(
            TunableError::Unknown("a".into())
                .to_string()
                .contains("tcache_count")
        );
    }
}
