//! What a fit manager is configured with: the policy, the list order, coalescing, the mechanism,
//! the check word, a trim threshold, a header size and a size alignment; and the names users type
//! (`best-fit:lifo`, `first-fit:addr`, `best-fit:checked`).
//!
//! ```text
//!   "best-fit:lifo:no-coalesce:checked"
//!    ^^^^^^^^ ^^^^ ^^^^^^^^^^^ ^^^^^^^
//!    Policy   Order Coalesce   check word     (suffixes in any order, each kind at most once;
//!                                              every one is in Config::SUFFIXES)
//! ```

use core::fmt;
use core::str::FromStr;

/// Which free chunk serves a request (the placement policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// The first chunk in list order that is large enough.
    FirstFit,
    /// First fit, but the search starts where the previous one ended (the *rover*) and wraps
    /// around the end of the list.
    NextFit,
    /// The smallest chunk that is large enough; ties go to the earliest in list order.
    BestFit,
    /// The largest chunk that is large enough; ties go to the earliest in list order.
    WorstFit,
}

impl Policy {
    /// Every policy, in the order the docs list them.
    pub const ALL: [Policy; 4] = [
        Policy::FirstFit,
        Policy::NextFit,
        Policy::BestFit,
        Policy::WorstFit,
    ];

    /// The policy's name as users type it: `first-fit`, `next-fit`, `best-fit`, `worst-fit`.
    pub const fn name(self) -> &'static str {
        match self {
            Policy::FirstFit => "first-fit",
            Policy::NextFit => "next-fit",
            Policy::BestFit => "best-fit",
            Policy::WorstFit => "worst-fit",
        }
    }
}

/// Where a freed chunk goes in the free list (OSTEP's `-l`).
///
/// The sorted orders append the chunk and then stably re-sort the *whole* list, so that disorder
/// left behind by in-place splits is repaired at the next free (exactly as `malloc.py` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    /// `ADDRSORT` (`addr`): ascending address.
    AddrSort,
    /// `SIZESORT+` (`size-asc`): ascending size, stable.
    SizeAsc,
    /// `SIZESORT-` (`size-desc`): descending size, stable (ties keep their list order).
    SizeDesc,
    /// `INSERT-FRONT` (`lifo`): a freed chunk goes to the front.
    InsertFront,
    /// `INSERT-BACK` (`fifo`): a freed chunk goes to the back.
    InsertBack,
}

impl Order {
    /// Every order.
    pub const ALL: [Order; 5] = [
        Order::AddrSort,
        Order::SizeAsc,
        Order::SizeDesc,
        Order::InsertFront,
        Order::InsertBack,
    ];

    /// The suffix users type: `addr`, `size-asc`, `size-desc`, `lifo`, `fifo`.
    pub const fn name(self) -> &'static str {
        match self {
            Order::AddrSort => "addr",
            Order::SizeAsc => "size-asc",
            Order::SizeDesc => "size-desc",
            Order::InsertFront => "lifo",
            Order::InsertBack => "fifo",
        }
    }

    /// The name `malloc.py` uses: `ADDRSORT`, `SIZESORT+`, `SIZESORT-`, `INSERT-FRONT`,
    /// `INSERT-BACK`.
    pub const fn ostep_name(self) -> &'static str {
        match self {
            Order::AddrSort => "ADDRSORT",
            Order::SizeAsc => "SIZESORT+",
            Order::SizeDesc => "SIZESORT-",
            Order::InsertFront => "INSERT-FRONT",
            Order::InsertBack => "INSERT-BACK",
        }
    }

    /// Whether the list is kept sorted by re-sorting on every free.
    pub const fn is_sorted(self) -> bool {
        matches!(self, Order::AddrSort | Order::SizeAsc | Order::SizeDesc)
    }

    /// Whether the order sorts by size (so in-place size changes can unsort it).
    pub const fn is_size_sorted(self) -> bool {
        matches!(self, Order::SizeAsc | Order::SizeDesc)
    }
}

/// How freed chunks merge with free neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coalesce {
    /// Never merge.
    Off,
    /// OSTEP's `-C`: after each free, one pass over the whole list merging chunks that are
    /// neighbours *in list order* and contiguous in ascending address order. Full coalescing under
    /// `ADDRSORT`; partial (order-dependent) under the others.
    ListOrder,
    /// Merge with the chunks *physically* before and after the freed one (boundary tags in the
    /// real heap), whatever the list order; the merged chunk is then inserted by the list order.
    Physical,
}

impl Coalesce {
    /// The suffix users type: `no-coalesce`, `list-coalesce`, `coalesce`.
    pub const fn name(self) -> &'static str {
        match self {
            Coalesce::Off => "no-coalesce",
            Coalesce::ListOrder => "list-coalesce",
            Coalesce::Physical => "coalesce",
        }
    }
}

/// A fit manager's configuration.
///
/// `header` and `align` mean exactly what OSTEP's `-H` and `-a` mean for the range manager
/// ([`crate::ranges::RangeList`]): `header` bytes are added to every block, and the request size
/// (not the address) is rounded up to a multiple of `align` before the header is added (`1` turns
/// rounding off). The real heap ([`crate::FitHeap`]) uses at least its own in-band header and
/// 16-byte granules; see its docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Config {
    /// The placement policy.
    pub policy: Policy,
    /// Where freed chunks go in the list.
    pub order: Order,
    /// How freed chunks merge.
    pub coalesce: Coalesce,
    /// Header bytes added to every block.
    pub header: usize,
    /// Request sizes are rounded up to a multiple of this (`1`: no rounding; `0` is invalid).
    pub align: usize,
    /// How the real heap finds a free block: the index where it makes the list's decisions
    /// (address order, physical or no coalescing), else the list. The range manager always
    /// uses the list.
    pub mechanism: Mechanism,
    /// The real heap keeps a check word in every live block (`:checked`): a free of a pointer
    /// into the heap that is not a block's start is refused (see [`crate::FitHeap`]).
    pub checked: bool,
    /// The real heap gives a free block at its end back to the source when the block reaches
    /// this many bytes (keeping 64 KiB); `usize::MAX` never gives memory back. Default 128 KiB,
    /// glibc's `M_TRIM_THRESHOLD`.
    pub trim_threshold: usize,
}

/// The mechanism that finds free blocks (Wilson et al.'s *mechanism*, apart from the *policy*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// The index (see `crate::index`): O(log n) searches that make exactly the list's decisions
    /// in address order. Used where defined (address order, physical or no coalescing); other
    /// configurations fall back to the list.
    Index,
    /// The explicit free list, searched in list order (`:list`): the reference, and the only
    /// mechanism for the LIFO, FIFO and size orders and OSTEP's list-order coalescing.
    List,
}

/// One suffix a fit name accepts: `POLICY:SUFFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suffix {
    /// What the user types after a `:`.
    pub name: &'static str,
    /// What it selects, in one line.
    pub about: &'static str,
    /// Whether it is what the bare policy name already means (`addr`, `coalesce`): spelling it
    /// out changes nothing.
    pub is_default: bool,
}

const fn suffix(name: &'static str, about: &'static str, is_default: bool) -> Suffix {
    Suffix {
        name,
        about,
        is_default,
    }
}

/// glibc's default `M_TRIM_THRESHOLD`: 128 KiB.
pub const DEFAULT_TRIM_THRESHOLD: usize = 128 << 10;

impl Config {
    /// Every suffix [`FromStr`] accepts, in the order the docs list them (the order names also
    /// parse under `malloc.py`'s spellings, `ADDRSORT` ...). Any other suffix is an error that
    /// lists these.
    pub const SUFFIXES: &'static [Suffix] = &[
        suffix("addr", "list order: ascending address (the default)", true),
        suffix(
            "size-asc",
            "list order: ascending size (OSTEP's SIZESORT+)",
            false,
        ),
        suffix(
            "size-desc",
            "list order: descending size (OSTEP's SIZESORT-)",
            false,
        ),
        suffix(
            "lifo",
            "list order: a freed block goes first (OSTEP's INSERT-FRONT)",
            false,
        ),
        suffix(
            "fifo",
            "list order: a freed block goes last (OSTEP's INSERT-BACK)",
            false,
        ),
        suffix(
            "coalesce",
            "merge with free physical neighbours (the default)",
            true,
        ),
        suffix("no-coalesce", "never merge free blocks", false),
        suffix(
            "list-coalesce",
            "OSTEP's -C: merge list neighbours after each free",
            false,
        ),
        suffix(
            "list",
            "search the free list even where the index applies (the reference)",
            false,
        ),
        suffix(
            "checked",
            "a check word in every live block: stray pointers into the heap are refused",
            false,
        ),
    ];

    /// `policy` over an address-ordered free set with physical coalescing, the index, no check
    /// word, glibc's trim threshold, no extra header, no size rounding: the setting a real heap
    /// wants (Johnstone and Wilson's good policies).
    pub const fn new(policy: Policy) -> Self {
        Config {
            policy,
            order: Order::AddrSort,
            coalesce: Coalesce::Physical,
            header: 0,
            align: 1,
            mechanism: Mechanism::Index,
            checked: false,
            trim_threshold: DEFAULT_TRIM_THRESHOLD,
        }
    }

    /// Whether the real heap runs on the index: [`Mechanism::Index`] asked, address order, and
    /// physical or no coalescing (where the index and the list are defined alike).
    pub const fn uses_index(&self) -> bool {
        matches!(self.mechanism, Mechanism::Index)
            && matches!(self.order, Order::AddrSort)
            && !matches!(self.coalesce, Coalesce::ListOrder)
    }

    /// OSTEP `malloc.py`'s configuration: `-p`, `-l`, `-C`, `-H`, `-a` (`None` for `-a -1`).
    pub const fn ostep(
        policy: Policy,
        order: Order,
        coalesce: bool,
        header: usize,
        align: Option<usize>,
    ) -> Self {
        let mut c = Config::new(policy);
        c.order = order;
        c.coalesce = if coalesce {
            Coalesce::ListOrder
        } else {
            Coalesce::Off
        };
        c.header = header;
        c.align = match align {
            Some(a) => a,
            None => 1,
        };
        c
    }

    /// First fit, address-ordered, coalescing.
    pub const fn first_fit() -> Self {
        Self::new(Policy::FirstFit)
    }
    /// Next fit, address-ordered, coalescing.
    pub const fn next_fit() -> Self {
        Self::new(Policy::NextFit)
    }
    /// Best fit, address-ordered, coalescing.
    pub const fn best_fit() -> Self {
        Self::new(Policy::BestFit)
    }
    /// Worst fit, address-ordered, coalescing.
    pub const fn worst_fit() -> Self {
        Self::new(Policy::WorstFit)
    }

    /// This configuration with list order `order`.
    pub const fn with_order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }
    /// This configuration with coalescing `coalesce`.
    pub const fn with_coalesce(mut self, coalesce: Coalesce) -> Self {
        self.coalesce = coalesce;
        self
    }
    /// This configuration with a header of `header` bytes.
    pub const fn with_header(mut self, header: usize) -> Self {
        self.header = header;
        self
    }
    /// This configuration with request sizes rounded up to a multiple of `align`.
    pub const fn with_align(mut self, align: usize) -> Self {
        self.align = align;
        self
    }
    /// This configuration with mechanism `mechanism`.
    pub const fn with_mechanism(mut self, mechanism: Mechanism) -> Self {
        self.mechanism = mechanism;
        self
    }
    /// This configuration with (`true`) or without the check word.
    pub const fn with_checked(mut self, checked: bool) -> Self {
        self.checked = checked;
        self
    }
    /// This configuration with trim threshold `bytes` (`usize::MAX`: never give memory back).
    pub const fn with_trim_threshold(mut self, bytes: usize) -> Self {
        self.trim_threshold = bytes;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::first_fit()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
impl fmt::Display for Coalesce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name of the configuration: `policy:order`, plus `:no-coalesce` or `:list-coalesce` when
/// coalescing is not the default, `:list` for the list mechanism and `:checked` for the check
/// word (header, alignment and trim threshold are not part of the name).
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.policy, self.order)?;
        if self.coalesce != Coalesce::Physical {
            write!(f, ":{}", self.coalesce)?;
        }
        if self.mechanism == Mechanism::List {
            f.write_str(":list")?;
        }
        if self.checked {
            f.write_str(":checked")?;
        }
        Ok(())
    }
}

/// A name that is not a fit policy, or a suffix that is not one of [`Config::SUFFIXES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseConfigError {
    /// The policy part is not one of the four.
    Policy(Name),
    /// A suffix is not in [`Config::SUFFIXES`].
    Suffix(Name),
    /// The same kind of suffix appears twice (`best-fit:lifo:fifo`).
    Repeated(Name),
}

/// The valid suffixes, `addr, size-asc, ...`, from [`Config::SUFFIXES`].
struct SuffixNames;

impl fmt::Display for SuffixNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in Config::SUFFIXES.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(s.name)?;
        }
        Ok(())
    }
}

impl fmt::Display for ParseConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseConfigError::Policy(n) => write!(
                f,
                "unknown fit policy `{n}` (expected first-fit, next-fit, best-fit or worst-fit, \
                 optionally followed by :SUFFIX, one of {SuffixNames})"
            ),
            ParseConfigError::Suffix(n) => write!(
                f,
                "unknown suffix `{n}` in a fit policy name (expected one of {SuffixNames})"
            ),
            ParseConfigError::Repeated(n) => write!(
                f,
                "suffix `{n}` repeats an order, coalescing, mechanism or check setting already given"
            ),
        }
    }
}

/// A short copy of a name from the input (no allocation: names longer than 48 bytes are cut).
#[derive(Clone, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; 48],
    len: u8,
}

impl Name {
    fn new(s: &str) -> Self {
        let mut end = s.len().min(48);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; 48];
        bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        Name {
            bytes,
            len: end as u8,
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl FromStr for Policy {
    type Err = ParseConfigError;
    /// `first-fit`, `next-fit`, `best-fit`, `worst-fit` (also OSTEP's `FIRST`, `BEST`, `WORST`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "first-fit" | "FIRST" => Policy::FirstFit,
            "next-fit" | "NEXT" => Policy::NextFit,
            "best-fit" | "BEST" => Policy::BestFit,
            "worst-fit" | "WORST" => Policy::WorstFit,
            _ => return Err(ParseConfigError::Policy(Name::new(s))),
        })
    }
}

impl FromStr for Order {
    type Err = ParseConfigError;
    /// `addr`, `size-asc`, `size-desc`, `lifo`, `fifo`, or OSTEP's names (`ADDRSORT` ...).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Order::ALL
            .into_iter()
            .find(|o| o.name() == s || o.ostep_name() == s)
            .ok_or_else(|| ParseConfigError::Suffix(Name::new(s)))
    }
}

impl FromStr for Config {
    type Err = ParseConfigError;
    /// `POLICY[:SUFFIX]...`, e.g. `best-fit`, `best-fit:lifo`, `first-fit:addr`,
    /// `worst-fit:fifo:no-coalesce`, `best-fit:checked`, `first-fit:list`: every suffix is one
    /// of [`Config::SUFFIXES`] (orders also under `malloc.py`'s names), each kind at most once.
    /// Defaults: `addr`, `coalesce` (physical), the index, no check word.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let policy: Policy = parts.next().unwrap_or("").parse()?;
        let mut cfg = Config::new(policy);
        // Kinds seen: order, coalescing, mechanism, check word.
        let mut seen = [false; 4];
        for part in parts {
            let kind = match part {
                "coalesce" => {
                    cfg.coalesce = Coalesce::Physical;
                    1
                }
                "no-coalesce" => {
                    cfg.coalesce = Coalesce::Off;
                    1
                }
                "list-coalesce" => {
                    cfg.coalesce = Coalesce::ListOrder;
                    1
                }
                "list" => {
                    cfg.mechanism = Mechanism::List;
                    2
                }
                "checked" => {
                    cfg.checked = true;
                    3
                }
                _ => {
                    cfg.order = part.parse()?;
                    0
                }
            };
            if core::mem::replace(&mut seen[kind], true) {
                return Err(ParseConfigError::Repeated(Name::new(part)));
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    #[test]
    fn names_round_trip() {
        for p in Policy::ALL {
            for o in Order::ALL {
                for c in [Coalesce::Off, Coalesce::ListOrder, Coalesce::Physical] {
                    for m in [Mechanism::Index, Mechanism::List] {
                        for checked in [false, true] {
                            let cfg = Config::new(p)
                                .with_order(o)
                                .with_coalesce(c)
                                .with_mechanism(m)
                                .with_checked(checked);
                            let name = cfg.to_string();
                            assert_eq!(name.parse::<Config>(), Ok(cfg), "{name}");
                        }
                    }
                }
            }
        }
        assert_eq!(
            "best-fit:lifo".parse::<Config>(),
            Ok(Config::best_fit().with_order(Order::InsertFront))
        );
        assert_eq!("first-fit".parse::<Config>(), Ok(Config::first_fit()));
    }

    #[test]
    fn bad_names_are_named_in_the_error() {
        let e = "good-fit:lifo".parse::<Config>().unwrap_err();
        assert!(e.to_string().contains("`good-fit`"), "{e}");
        let e = "best-fit:stack".parse::<Config>().unwrap_err();
        assert!(e.to_string().contains("`stack`"), "{e}");
        let e = "best-fit:lifo:fifo".parse::<Config>().unwrap_err();
        assert!(matches!(e, ParseConfigError::Repeated(_)));
        assert!("".parse::<Config>().is_err());
        assert!("best-fit:".parse::<Config>().is_err());
        let long = "é".repeat(100);
        assert!(long.parse::<Config>().is_err());
        let e = "best-fit:list:list".parse::<Config>().unwrap_err();
        assert!(matches!(e, ParseConfigError::Repeated(_)));
    }

    #[test]
    fn every_listed_suffix_parses_and_the_error_lists_them_all() {
        let e = "best-fit:stack".parse::<Config>().unwrap_err().to_string();
        for s in Config::SUFFIXES {
            let with = std::format!("best-fit:{}", s.name);
            let cfg: Config = with.parse().unwrap_or_else(|e| panic!("{with}: {e}"));
            assert_eq!(cfg == Config::best_fit(), s.is_default, "{with}");
            assert!(e.contains(s.name), "{e} lacks {}", s.name);
        }
    }
}
