//! What a fit manager is configured with: the policy, the list order, coalescing, a header size and
//! a size alignment; and the names users type (`best-fit:lifo`, `first-fit:addr`).
//!
//! ```text
//!   "best-fit:lifo:no-coalesce"
//!    ^^^^^^^^ ^^^^ ^^^^^^^^^^^
//!    Policy   Order Coalesce      (suffixes in any order, each at most once)
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
}

impl Config {
    /// `policy` over an address-ordered list with physical coalescing, no extra header, no size
    /// rounding: the setting a real heap wants (Johnstone and Wilson's good policies).
    pub const fn new(policy: Policy) -> Self {
        Config {
            policy,
            order: Order::AddrSort,
            coalesce: Coalesce::Physical,
            header: 0,
            align: 1,
        }
    }

    /// OSTEP `malloc.py`'s configuration: `-p`, `-l`, `-C`, `-H`, `-a` (`None` for `-a -1`).
    pub const fn ostep(
        policy: Policy,
        order: Order,
        coalesce: bool,
        header: usize,
        align: Option<usize>,
    ) -> Self {
        Config {
            policy,
            order,
            coalesce: if coalesce {
                Coalesce::ListOrder
            } else {
                Coalesce::Off
            },
            header,
            align: match align {
                Some(a) => a,
                None => 1,
            },
        }
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
/// coalescing is not the default (header and alignment are not part of the name).
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.policy, self.order)?;
        if self.coalesce != Coalesce::Physical {
            write!(f, ":{}", self.coalesce)?;
        }
        Ok(())
    }
}

/// A name that is not a fit policy, list order or coalescing setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseConfigError {
    /// The policy part is not one of the four.
    #[error(
        "unknown fit policy `{0}` (expected first-fit, next-fit, best-fit or worst-fit, \
         optionally followed by :addr, :size-asc, :size-desc, :lifo or :fifo)"
    )]
    Policy(Name),
    /// A suffix is not a list order or coalescing setting.
    #[error(
        "unknown suffix `{0}` in a fit policy name (expected addr, size-asc, size-desc, lifo, \
         fifo, coalesce, no-coalesce or list-coalesce)"
    )]
    Suffix(Name),
    /// The same kind of suffix appears twice (`best-fit:lifo:fifo`).
    #[error("suffix `{0}` repeats an order or coalescing setting already given")]
    Repeated(Name),
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
    /// `POLICY[:ORDER][:COALESCE]`, e.g. `best-fit`, `best-fit:lifo`, `first-fit:addr`,
    /// `worst-fit:fifo:no-coalesce`. Defaults: `addr`, `coalesce` (physical).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let policy: Policy = parts.next().unwrap_or("").parse()?;
        let mut cfg = Config::new(policy);
        let (mut seen_order, mut seen_coalesce) = (false, false);
        for part in parts {
            let coalesce = match part {
                "coalesce" => Some(Coalesce::Physical),
                "no-coalesce" => Some(Coalesce::Off),
                "list-coalesce" => Some(Coalesce::ListOrder),
                _ => None,
            };
            let seen = if let Some(c) = coalesce {
                cfg.coalesce = c;
                &mut seen_coalesce
            } else {
                cfg.order = part.parse()?;
                &mut seen_order
            };
            if core::mem::replace(seen, true) {
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
                    let cfg = Config::new(p).with_order(o).with_coalesce(c);
                    let name = cfg.to_string();
                    assert_eq!(name.parse::<Config>(), Ok(cfg), "{name}");
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
    }
}
