//! The registry's promises: every policy builds over every kind of memory and replays a trace
//! there and through its concurrent front; every listed suffix is accepted and changes what is
//! built (a default one changes nothing); a wrong name or suffix is refused with the valid ones.

use allocator_traits::BoxedRegion;
use registry::{Config, OffsetSpace, RegistryError};
use workloads::replay::{Options, Program, replay_manager, replay_offset_manager};
use workloads::threaded::{ThreadedOptions, ThreadedProgram, replay_threaded};

/// A short churn through `name` built over a growing reservation and over a fixed region.
fn replays_over_both_memories(name: &str) {
    let spec = registry::lookup(name).unwrap_or_else(|e| panic!("{e}"));
    let trace = workloads::synth::uniform(3000, 2048, 7);
    let prog = Program::compile(&trace).unwrap();
    let cfg = Config::for_peak(prog.live_profile().1);
    let mut grown = spec.build(&cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
    let out = replay_manager(&mut *grown.manager, &prog, Options::default(), None)
        .unwrap_or_else(|e| panic!("{name} ({}): {e}", grown.built));
    assert_eq!(
        out.refused, 0,
        "{name} over a growing reservation refused a request"
    );
    grown
        .manager
        .check_invariants()
        .unwrap_or_else(|c| panic!("{name}: {c}"));

    let len = (8 << 20usize).max(spec.descriptor.sim.min_heap);
    let region = BoxedRegion::new(len).unwrap();
    let mut fixed = spec
        .build_in(region, &Config::default())
        .unwrap_or_else(|e| panic!("{name} over a region: {e}"));
    assert_ne!(
        grown.built, fixed.built,
        "the memory is part of what is built"
    );
    let out = replay_manager(&mut *fixed.manager, &prog, Options::default(), None)
        .unwrap_or_else(|e| panic!("{name} ({}): {e}", fixed.built));
    assert_eq!(out.refused, 0, "{name} over {len} bytes refused a request");
    fixed
        .manager
        .check_invariants()
        .unwrap_or_else(|c| panic!("{name}: {c}"));
}

#[test]
fn every_variant_builds_over_both_memories_and_replays() {
    for name in registry::variants() {
        replays_over_both_memories(name);
    }
}

/// Every policy with an offset manager builds it through the registry, with each of its
/// suffixes the manager takes (a suffix it cannot serve is a clear error), and the manager passes
/// the kit's offset shadow model and replays a trace with its walk after every event.
#[test]
fn every_offset_manager_builds_passes_the_kit_and_replays() {
    let names = registry::offset_names();
    assert!(names.len() >= 4, "{names:?}");
    let trace = workloads::synth::uniform(3000, 2048, 7);
    let prog = Program::compile(&trace).unwrap();
    for d in registry::all() {
        let spec = registry::lookup(d.name).unwrap();
        let space = |len: usize| OffsetSpace {
            range: 4096..4096 + len,
            granule: 16,
        };
        if !d.has_offsets() {
            let e = spec.build_offsets(&space(1 << 20)).unwrap_err();
            assert!(
                matches!(e, RegistryError::NoOffsets { .. }),
                "{}: {e}",
                d.name
            );
            assert!(e.to_string().contains(&names.join(", ")), "{e}");
            continue;
        }
        let built = spec.build_offsets(&space(1 << 20)).unwrap().built;
        assert!(built.contains("4096..1052672"), "{}: {built}", d.name);
        // Each suffix is used or refused over offsets, never dropped: it builds something else,
        // or says why not (`:no-tiny` builds what segregated's offsets build anyway: no tiny
        // blocks).
        for suffix in d.suffixes.iter().filter(|s| !s.default) {
            let name = format!("{}:{}", d.name, suffix.name);
            match registry::lookup(&name)
                .unwrap()
                .build_offsets(&space(1 << 20))
            {
                Ok(other) if suffix.name == "no-tiny" => assert_eq!(other.built, built),
                Ok(other) => assert_ne!(other.built, built, "{name} changed nothing"),
                Err(e) => assert!(
                    matches!(e, RegistryError::Build { .. }) && e.to_string().contains(&name),
                    "{name}: {e}"
                ),
            }
        }
        allocator_traits::conformance::check_offset_shadow(true, |len| {
            spec.build_offsets(&space(len))
                .unwrap_or_else(|e| panic!("{}: {e}", d.name))
                .manager
        });
        let mut m = spec.build_offsets(&space(64 << 20)).unwrap().manager;
        let opts = Options {
            check: true,
            ..Options::default()
        };
        let out = replay_offset_manager(&mut *m, &prog, opts, None)
            .unwrap_or_else(|e| panic!("{}: {e}", d.name));
        assert_eq!(out.refused, 0, "{}", d.name);
    }
}

#[test]
fn every_variant_replays_threaded_through_its_front() {
    for t in [
        workloads::synth::larson(4000, 3, 1),
        workloads::synth::producer_consumer(4000, 2, 2),
    ] {
        let prog = ThreadedProgram::compile(&t).unwrap();
        let peak = Program::compile(&t).unwrap().live_profile().1;
        for name in registry::variants() {
            let spec = registry::lookup(name).unwrap();
            let c = spec
                .concurrent(&Config::for_peak(peak))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let out = replay_threaded(&*c.alloc, &prog, ThreadedOptions::default())
                .unwrap_or_else(|e| panic!("{name} ({}): {e}", c.runs_as));
            assert_eq!((out.steps, out.refused), (t.len(), 0), "{name}");
        }
    }
}

#[test]
fn every_listed_suffix_is_accepted_and_changes_what_is_built() {
    let cfg = Config::default();
    for d in registry::all() {
        let bare = registry::lookup(d.name).unwrap().build(&cfg).unwrap().built;
        let mut seen = vec![bare.clone()];
        for s in d.suffixes {
            let name = format!("{}:{}", d.name, s.name);
            let spec = registry::lookup(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let built = spec
                .build(&cfg)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .built;
            if s.default {
                assert_eq!(built, bare, "{name} is listed as the default");
            } else {
                assert!(
                    !seen.contains(&built),
                    "{name} builds what another name does: {built}"
                );
                seen.push(built);
            }
            replays_over_both_memories(&name);
        }
    }
}

#[test]
fn a_wrong_name_or_suffix_is_refused_with_the_valid_ones() {
    let e = registry::lookup("good-fit").unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, RegistryError::UnknownPolicy { .. }), "{e}");
    assert!(!text.contains('\n'), "{text}");
    for d in registry::all() {
        assert!(text.contains(d.name), "{text} lacks {}", d.name);
    }
    // Never dropped: `segregated:buddy` is not `segregated:bogus`.
    let e = registry::lookup("segregated:bogus")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":bogus") && e.contains(":buddy") && e.contains(":no-tiny"),
        "{e}"
    );
    let e = registry::lookup("tcmalloc:fast").unwrap_err().to_string();
    assert!(e.contains("takes no suffixes"), "{e}");
    // Each suffix valid, together not.
    let e = registry::lookup("best-fit:lifo:fifo")
        .unwrap()
        .build(&Config::default())
        .unwrap_err();
    assert!(matches!(e, RegistryError::BadCombination { .. }), "{e}");
    // A huge name is not echoed whole.
    let long = format!("x{}", "y".repeat(10_000));
    assert!(registry::lookup(&long).unwrap_err().to_string().len() < 2000);
}

#[test]
fn tunables_go_only_to_policies_that_take_them() {
    let cfg = Config {
        tunables: Some("glibc.malloc.tcache_count=0".into()),
        ..Config::default()
    };
    assert!(registry::lookup("ptmalloc2").unwrap().build(&cfg).is_ok());
    let e = registry::lookup("best-fit")
        .unwrap()
        .build(&cfg)
        .unwrap_err();
    assert!(matches!(e, RegistryError::Tunables { .. }), "{e}");
    let bad = Config {
        tunables: Some("glibc.malloc.nonsense=1".into()),
        ..Config::default()
    };
    assert!(registry::lookup("ptmalloc2").unwrap().build(&bad).is_err());
}

#[test]
fn size_classes_are_runs_that_cover_from_one() {
    let mut with = Vec::new();
    for d in registry::all() {
        let Some(classes) = d.classes else { continue };
        with.push(d.name);
        let runs = classes();
        assert_eq!(runs[0].0, 1, "{}", d.name);
        for w in runs.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0, "{}: runs must be contiguous", d.name);
            assert!(w[0].2 >= w[0].1 && w[0].2 <= w[1].2, "{}", d.name);
        }
    }
    assert_eq!(with, ["segregated", "ptmalloc2", "tcmalloc"]);
}

#[test]
fn the_names_are_designs() {
    assert_eq!(
        registry::names(),
        [
            "first-fit",
            "next-fit",
            "best-fit",
            "worst-fit",
            "segregated",
            "buddy",
            "ptmalloc2",
            "tcmalloc"
        ]
    );
    for v in registry::variants() {
        assert!(registry::lookup(v).is_ok(), "{v}");
    }
}
