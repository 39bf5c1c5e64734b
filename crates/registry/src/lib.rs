//! The one list of the workspace's policies. The shells (`fsm`, the matrix, the benches, the
//! preload library) take policies from here and from nowhere else: none of them matches a
//! policy's name.
//!
//! ```text
//!   "segregated:buddy" ──lookup──> Spec { descriptor, suffixes: ["buddy"] }
//!                                    │
//!            ┌───────────────────────┼──────────────────────────┬───────────────────────┐
//!   build(&Config)           build_in(BoxedRegion, &Config)   concurrent(&Config)     descriptor:
//!   a growing brk-like       a caller's region (`fsm sim`)    Tcmalloc, Ptmalloc,      name, about,
//!   reservation                                               or Locked<the manager>   suffixes, classes,
//!            └──────────> Instance { manager: Box<dyn FreeSpaceManager + Send>,       sim view
//!                                    built: "Segregated over Buddy<BrkRegion>" }
//! ```
//!
//! A [`Descriptor`] says everything the shells need of a policy: its name (DESIGN.md's), one line
//! about it, the suffixes it accepts (an unknown suffix is an error listing the valid ones, never
//! dropped), how to build it over each kind of [memory](Memory), its concurrent [front](Front),
//! its size classes where it has them, and how `fsm sim` shows it ([`SimView`]). [`all`] lists
//! them in the order reports use; [`variants`] the named variants the matrix runs by default.
//!
//! # Adding a policy
//! One new crate, one [`Descriptor`] in `catalog.rs`, one docs page. The registry's tests then
//! build it over both kinds of memory, replay a trace through it and its front, and check its
//! suffixes; `fsm`, the matrix and the benches list it without further change.
//!
//! # Features
//!
//! None.
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.

mod catalog;
mod descriptor;
mod front;
mod spec;

pub use catalog::{all, variants};
pub use descriptor::{ClassRun, Descriptor, Family, Front, MakeC, Memory, SimView, Suffix};
pub use front::{Concurrent, SharedAlloc, SharedC};
pub use spec::{Config, Instance, OffsetInstance, OffsetSpace, RegistryError, Spec, lookup};

/// The base names of every policy, in report order.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|d| d.name).collect()
}

/// One line listing every policy with its suffixes: what an unknown name's error shows.
pub fn listing() -> String {
    all()
        .iter()
        .map(|d| {
            if d.suffixes.is_empty() {
                d.name.to_string()
            } else {
                let s: Vec<String> = d.suffixes.iter().map(|s| format!(":{}", s.name)).collect();
                format!("{} [{}]", d.name, s.join(" "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The base names of the policies that have an offset manager ([`Spec::build_offsets`]), in
/// report order.
pub fn offset_names() -> Vec<&'static str> {
    all()
        .iter()
        .filter(|d| d.has_offsets())
        .map(|d| d.name)
        .collect()
}

/// The family of the policy called `name` (suffixes allowed), `None` if it is no policy.
pub fn family(name: &str) -> Option<Family> {
    lookup(name).ok().map(|s| s.descriptor.family)
}
