//! A policy's full name (`NAME[:SUFFIX]...`) checked against its descriptor, and building it.

use core::ops::Range;

use allocator_traits::{BoxedRegion, FreeSpaceManager, OffsetManager};

use crate::catalog::all;
use crate::descriptor::{Descriptor, Memory};
use crate::front::Concurrent;

/// How to build a policy.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address space a growing manager may reserve.
    pub reserve: usize,
    /// The capacity to give a policy whose metadata is sized from it (the buddy system's
    /// largest order): the matrix sets it from the trace's peak live bytes.
    pub capacity: usize,
    /// A `GLIBC_TUNABLES`-style string (`glibc.malloc.tcache_count=0:...`) for the policies
    /// that take one ([`Descriptor::takes_tunables`]).
    pub tunables: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reserve: 64 << 30,
            capacity: 1 << 30,
            tunables: None,
        }
    }
}

impl Config {
    /// The default configuration with a capacity fitted to a workload whose live bytes peak at
    /// `peak_live`: eight times that, rounded up to a power of two, at least 64 MiB.
    pub fn for_peak(peak_live: u64) -> Self {
        let want = usize::try_from(peak_live.saturating_mul(8)).unwrap_or(usize::MAX >> 1);
        Config {
            capacity: want
                .max(64 << 20)
                .checked_next_power_of_two()
                .unwrap_or(1 << 40),
            ..Config::default()
        }
    }

    /// The tunables string, empty when none was given.
    pub fn tunables(&self) -> &str {
        self.tunables.as_deref().unwrap_or("")
    }
}

/// Why a policy could not be named or built. Each is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No policy has this name.
    #[error("unknown policy '{name}'; valid names: {valid}")]
    UnknownPolicy {
        /// The name given.
        name: String,
        /// Every policy with its suffixes ([`crate::listing`]).
        valid: String,
    },
    /// The policy does not take this suffix.
    #[error("{policy} takes no suffix ':{suffix}'; {valid}")]
    UnknownSuffix {
        /// The policy's base name.
        policy: &'static str,
        /// The suffix given.
        suffix: String,
        /// The suffixes it takes.
        valid: String,
    },
    /// The suffixes are each valid but do not go together (`best-fit:lifo:fifo`).
    #[error("{name}: {reason}")]
    BadCombination {
        /// The full name given.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Tunables given to a policy that takes none, or tunables it cannot parse.
    #[error("{policy}: {reason}")]
    Tunables {
        /// The policy's base name.
        policy: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The policy has no offset manager ([`Spec::build_offsets`]).
    #[error("{policy} has no offset manager; the policies that have one: {have}")]
    NoOffsets {
        /// The policy's base name.
        policy: &'static str,
        /// The policies that have one ([`crate::offset_names`]), comma-separated.
        have: String,
    },
    /// The policy could not be built over the memory given.
    #[error("{name}: {reason}")]
    Build {
        /// The full name.
        name: String,
        /// What failed.
        reason: String,
    },
}

/// A checked full name: the descriptor and the suffixes after its name, each one it accepts.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The policy.
    pub descriptor: &'static Descriptor,
    /// The full name as given (`best-fit:lifo`).
    pub name: String,
    /// The suffixes, in the order given, without colons.
    pub suffixes: Vec<String>,
}

/// The policy called `name` (`NAME[:SUFFIX]...`), or a one-line error listing the valid names
/// (or the policy's valid suffixes).
pub fn lookup(name: &str) -> Result<Spec, RegistryError> {
    let mut parts = name.split(':');
    let base = parts.next().unwrap_or("");
    let Some(descriptor) = all().iter().find(|d| d.name == base) else {
        return Err(RegistryError::UnknownPolicy {
            name: shorten(name),
            valid: crate::listing(),
        });
    };
    let suffixes: Vec<String> = parts.map(str::to_string).collect();
    for s in &suffixes {
        if !descriptor.suffixes.iter().any(|k| k.name == s) {
            let valid = if descriptor.suffixes.is_empty() {
                format!("{} takes no suffixes", descriptor.name)
            } else {
                let v: Vec<String> = descriptor
                    .suffixes
                    .iter()
                    .map(|k| format!(":{}", k.name))
                    .collect();
                format!("valid: {}", v.join(" "))
            };
            return Err(RegistryError::UnknownSuffix {
                policy: descriptor.name,
                suffix: shorten(s),
                valid,
            });
        }
    }
    let spec = Spec {
        descriptor,
        name: name.to_string(),
        suffixes,
    };
    Ok(spec)
}

/// A name from the input, cut to a length an error line can carry.
fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl Spec {
    /// Whether `suffix` was given.
    pub fn has(&self, suffix: &str) -> bool {
        self.suffixes.iter().any(|s| s == suffix)
    }

    /// Builds the policy over a growing `brk`-like reservation of `cfg.reserve` bytes.
    pub fn build(&self, cfg: &Config) -> Result<Instance, RegistryError> {
        self.check_tunables(cfg)?;
        (self.descriptor.build)(
            self,
            cfg,
            Memory::Growing(allocator_traits::BrkRegion::new(cfg.reserve)),
        )
    }

    /// Builds the policy over a region the caller made (its whole length is the heap).
    pub fn build_in(&self, region: BoxedRegion, cfg: &Config) -> Result<Instance, RegistryError> {
        self.check_tunables(cfg)?;
        (self.descriptor.build)(self, cfg, Memory::Region(region))
    }

    /// The policy as an allocator several threads share: its own front, or the manager
    /// [`build`](Self::build) makes behind [`allocator_traits::Locked`].
    pub fn concurrent(&self, cfg: &Config) -> Result<Concurrent, RegistryError> {
        self.check_tunables(cfg)?;
        crate::front::concurrent(self, cfg)
    }

    /// The policy as C's allocation API (what the preload library exports), with what runs.
    pub fn c_api(&self, cfg: &Config) -> Result<(String, crate::SharedC), RegistryError> {
        self.check_tunables(cfg)?;
        crate::front::c_api(self, cfg)
    }

    /// Builds the policy's offset manager over `space`: the same placement over a range of
    /// offsets it never reads or writes (a GPU buffer, a file). An error if the policy has none
    /// ([`Descriptor::has_offsets`]) or cannot be built with these suffixes over offsets.
    pub fn build_offsets(&self, space: &OffsetSpace) -> Result<OffsetInstance, RegistryError> {
        match self.descriptor.offsets {
            Some(build) => build(self, space),
            None => Err(RegistryError::NoOffsets {
                policy: self.descriptor.name,
                have: crate::offset_names().join(", "),
            }),
        }
    }

    fn check_tunables(&self, cfg: &Config) -> Result<(), RegistryError> {
        if !self.descriptor.takes_tunables && !cfg.tunables().is_empty() {
            return Err(RegistryError::Tunables {
                policy: self.descriptor.name,
                reason: format!("takes no tunables (got '{}')", shorten(cfg.tunables())),
            });
        }
        Ok(())
    }

    /// A build error for this name.
    pub(crate) fn error(&self, reason: impl std::fmt::Display) -> RegistryError {
        RegistryError::Build {
            name: self.name.clone(),
            reason: reason.to_string(),
        }
    }
}

/// The space an offset manager is built over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetSpace {
    /// The offsets managed, `start..end`.
    pub range: Range<usize>,
    /// The smallest unit the manager hands out, in bytes (a power of two): fit's granule, the
    /// buddy system's smallest block, segregated's page level's granule.
    pub granule: usize,
}

/// A built offset manager.
pub struct OffsetInstance {
    /// The manager.
    pub manager: Box<dyn OffsetManager + Send>,
    /// What was built (`FitOffsets best-fit, granule 16 B, over 0..1048576`).
    pub built: String,
}

impl std::fmt::Debug for OffsetInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetInstance")
            .field("built", &self.built)
            .finish_non_exhaustive()
    }
}

/// A built policy.
pub struct Instance {
    /// The manager (`&mut *instance.manager` is a `&mut dyn FreeSpaceManager`).
    pub manager: Box<dyn FreeSpaceManager + Send>,
    /// What was built, read back from the built manager's own configuration
    /// (`FitHeap best-fit:lifo over BrkRegion`): two names that build the same thing say the same.
    pub built: String,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("built", &self.built)
            .finish_non_exhaustive()
    }
}
