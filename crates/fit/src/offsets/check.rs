//! The offset manager's invariant walk ([`OffsetManager::check_invariants`]): the index over
//! the table, then the table in offset order against the index, the map of live ranges and the
//! stats.
//!
//! [`OffsetManager::check_invariants`]: allocator_traits::OffsetManager::check_invariants

use allocator_traits::Corruption;

use super::FitOffsets;
use super::table::State;
use crate::index::NIL;

/// Walks `m`: the index's own walk (bins, tree, rover), each of its nodes a free range of the
/// table; then the table from its first range: each range starts where the one below ends (from
/// the tiled part's start to its end), `prev` names the range below, sizes are whole granules,
/// a free range is in the index and (with coalescing) has no free neighbour below, a live range
/// is the map's entry for its offset; the index holds every free range and nothing else, the map
/// every live range; used and vacant slots add up to the table; the stats are the live ranges'
/// and the footprint the highest live range's end. O(ranges).
pub(super) fn walk(m: &FitOffsets) -> Result<(), Corruption> {
    const T: &str = "offset table";
    let t = m.table();
    let g = t.granule();
    m.index.check_invariants(0, |x| {
        let ok = t.holds(x) && t.node(x).state == State::Free;
        Corruption::ensure(ok, "index", x as usize, "a node that is not a free range")
    })?;
    let (mut at, mut below) = (m.tiled.start, NIL);
    let (mut free, mut live, mut held, mut asked, mut top) = (0usize, 0usize, 0usize, 0usize, 0);
    let mut x = t.first;
    let mut steps = 0usize;
    while x != NIL {
        steps += 1;
        Corruption::ensure(
            t.holds(x) && steps <= t.used,
            T,
            at,
            "a link to a vacant slot, or a cycle",
        )?;
        let n = t.node(x);
        Corruption::ensure(
            n.addr == at,
            T,
            at,
            "a range does not start where the one below ends",
        )?;
        Corruption::ensure(n.prev == below, T, at, "prev does not name the range below")?;
        Corruption::ensure(
            n.size >= g && n.size.is_multiple_of(g),
            T,
            at,
            "size not a positive multiple of the granule",
        )?;
        match n.state {
            State::Free => {
                Corruption::ensure(m.index.is_listed(x), T, at, "a free range not in the index")?;
                let merged = !m.coalesces() || below == NIL || t.node(below).state != State::Free;
                Corruption::ensure(merged, T, at, "two free neighbours not merged")?;
                free += 1;
            }
            State::Live => {
                let entry = m.live.get(&n.addr);
                Corruption::ensure(
                    entry.is_some_and(|&(y, _)| y == x),
                    "live ranges",
                    at,
                    "a live range the map does not name",
                )?;
                let a = entry.map_or(0, |&(_, a)| a);
                Corruption::ensure(a <= n.size, "live ranges", at, "more asked than held")?;
                live += 1;
                held += n.size;
                asked += a;
                top = n.addr + n.size - m.range.start;
            }
            State::Vacant => unreachable!("`holds` refuses vacant slots"),
        }
        at = n.addr.saturating_add(n.size);
        below = x;
        x = n.next;
    }
    Corruption::ensure(
        at == m.tiled.end,
        T,
        at,
        "the ranges do not end at the space's end",
    )?;
    Corruption::ensure(t.last == below, T, at, "last is not the highest range")?;
    Corruption::ensure(
        free == m.index.len(),
        "index",
        0,
        "holds more than the free ranges",
    )?;
    Corruption::ensure(
        live == m.live.len(),
        "live ranges",
        0,
        "the map holds more than the live ranges",
    )?;
    let slots = t
        .vacant_count()
        .is_some_and(|v| v + t.used == t.nodes.len());
    Corruption::ensure(
        slots,
        T,
        0,
        "vacant and used slots do not add up to the table",
    )?;
    Corruption::ensure(t.used == free + live, T, 0, "used slots are not the ranges")?;
    let s = &m.stats;
    let agree = (s.live_blocks, s.live_held, s.live_requested) == (live, held, asked);
    Corruption::ensure(agree, "stats", 0, "live ranges differ from the stats")?;
    Corruption::ensure(
        s.footprint == top,
        "stats",
        0,
        "footprint is not the highest live range's end",
    )
}

/// Planted corruptions: each breaks one invariant of the walk and must be reported.
#[cfg(test)]
mod tests {
    use allocator_traits::OffsetManager;

    use super::*;
    use crate::config::Config;
    use crate::index::Space;

    fn manager() -> (FitOffsets, std::vec::Vec<usize>) {
        let mut m = FitOffsets::new(0..1 << 20, Config::best_fit(), 16).unwrap();
        let offs = (0..8)
            .map(|i| m.allocate(40 + 3000 * (i % 2), 16).unwrap())
            .collect();
        (m, offs)
    }

    fn problem(m: &FitOffsets) -> &'static str {
        m.check_invariants()
            .expect_err("the walk must report it")
            .problem
    }

    #[test]
    fn a_long_random_workload_keeps_the_walk_passing() {
        for cfg in [
            Config::best_fit(),
            Config::first_fit(),
            Config::next_fit(),
            Config::worst_fit(),
        ] {
            let mut m = FitOffsets::new(0..4 << 20, cfg, 16).unwrap();
            let mut live = std::vec::Vec::new();
            let mut r = 0x2545_F491_4F6C_DD1Du64;
            let steps = if cfg!(miri) { 300 } else { 20_000 };
            for _ in 0..steps {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                if !r.is_multiple_of(3) || live.is_empty() {
                    let size = (r >> 8) as usize % 5000;
                    if let Ok(o) = m.allocate(size, 1 << ((r >> 40) % 8)) {
                        live.push(o);
                    }
                } else {
                    let o = live.swap_remove((r >> 8) as usize % live.len());
                    m.free(o).unwrap();
                }
            }
            m.check_invariants().unwrap();
            for o in live {
                m.free(o).unwrap();
            }
            m.check_invariants().unwrap();
            assert_eq!(m.free_ranges().count(), 1);
        }
    }

    #[test]
    fn a_size_that_breaks_the_tiling() {
        let (mut m, offs) = manager();
        let x = m.live[&offs[2]].0;
        m.index.space.set_size_for_test(x, 64);
        assert_eq!(
            problem(&m),
            "a range does not start where the one below ends"
        );
    }

    #[test]
    fn a_free_range_missing_from_the_index() {
        let (mut m, offs) = manager();
        m.free(offs[3]).unwrap();
        m.check_invariants().unwrap();
        let x = m.table().first;
        let x = m
            .table()
            .in_order()
            .find(|&y| m.table().addr(y) == offs[3])
            .unwrap_or(x);
        m.index.unlink_for_test(x);
        assert_eq!(problem(&m), "a free range not in the index");
    }

    #[test]
    fn a_live_range_the_map_forgot() {
        let (mut m, offs) = manager();
        m.live.remove(&offs[5]);
        assert_eq!(problem(&m), "a live range the map does not name");
    }

    #[test]
    fn stats_that_differ() {
        let (mut m, _) = manager();
        m.stats.live_requested += 1;
        assert_eq!(problem(&m), "live ranges differ from the stats");
    }

    #[test]
    fn a_footprint_that_lies() {
        let (mut m, _) = manager();
        m.stats.footprint -= 16;
        assert_eq!(problem(&m), "footprint is not the highest live range's end");
    }

    #[test]
    fn a_prev_link_that_lies() {
        let (mut m, offs) = manager();
        let x = m.live[&offs[4]].0;
        let first = m.table().first;
        m.index.space.set_prev_for_test(x, first);
        assert_eq!(problem(&m), "prev does not name the range below");
    }
}
