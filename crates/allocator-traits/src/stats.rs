//! What a manager holds, as the fragmentation measures need it.
//!
//! ```text
//!   footprint (from the source) ────────────────────────────────────────────┐
//!   live_held (blocks in use, headers and rounding included) ──────┐        │
//!   live_requested (what callers asked for) ──────┐                │        │
//!   |################################################|++++++++++++++|........|
//!                                                  internal        external
//! ```
//!
//! Internal fragmentation is `live_held - live_requested`; external is `footprint - live_held`
//! (free memory, bins, caches, and the manager's own metadata inside the footprint).
//! Johnstone and Wilson's measure #3 is `footprint_peak / live_at_footprint_peak - 1`, #4 is
//! `footprint_peak / live_requested_peak - 1` (see `docs/` and the reference notes).

/// Counters every policy keeps. Policies update them through the `record_*` methods so the peaks
/// and op counts mean the same thing everywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sum of the sizes callers asked for, over live blocks.
    pub live_requested: usize,
    /// Bytes occupied by live blocks: the request plus header, alignment padding and rounding.
    pub live_held: usize,
    /// Number of live blocks.
    pub live_blocks: usize,
    /// Bytes obtained from the memory source and not yet given back.
    pub footprint: usize,
    /// Highest `live_requested` seen.
    pub peak_live_requested: usize,
    /// Highest `live_held` seen.
    pub peak_live_held: usize,
    /// Highest `footprint` seen.
    pub peak_footprint: usize,
    /// `live_requested` at the moment `footprint` reached `peak_footprint` (for measure #3).
    pub live_requested_at_peak_footprint: usize,
    /// Successful allocations.
    pub allocs: u64,
    /// Successful frees.
    pub frees: u64,
    /// Successful grows and shrinks (moved or in place).
    pub resizes: u64,
    /// Resizes done without moving the block.
    pub in_place_resizes: u64,
    /// Allocations refused.
    pub failed_allocs: u64,
    /// Frees refused as invalid (foreign pointer, double free, corruption).
    pub bad_frees: u64,
}

impl Stats {
    /// An all-zero record.
    pub const fn new() -> Self {
        Stats {
            live_requested: 0,
            live_held: 0,
            live_blocks: 0,
            footprint: 0,
            peak_live_requested: 0,
            peak_live_held: 0,
            peak_footprint: 0,
            live_requested_at_peak_footprint: 0,
            allocs: 0,
            frees: 0,
            resizes: 0,
            in_place_resizes: 0,
            failed_allocs: 0,
            bad_frees: 0,
        }
    }

    /// A block of `requested` bytes occupying `held` bytes became live.
    #[inline]
    pub fn record_alloc(&mut self, requested: usize, held: usize) {
        self.allocs += 1;
        self.live_blocks += 1;
        self.add_live(requested, held);
    }

    /// Counts an offset manager's answer to a request of `requested` bytes and passes it on:
    /// a range at `offset` holding `held` bytes in a space starting at `base` (as
    /// [`record_alloc`](Self::record_alloc), and the footprint, the end of the highest live
    /// range, rises to its end if that is higher), or a refusal.
    #[inline]
    pub fn record_placement(
        &mut self,
        placed: Result<(usize, usize), crate::AllocError>,
        requested: usize,
        base: usize,
    ) -> Result<usize, crate::AllocError> {
        match placed {
            Ok((offset, held)) => {
                self.record_alloc(requested, held);
                let end = offset + held - base;
                if end > self.footprint {
                    self.set_footprint(end);
                }
                Ok(offset)
            }
            Err(e) => {
                self.record_failure();
                Err(e)
            }
        }
    }

    /// A live block of `requested` bytes occupying `held` bytes was freed.
    #[inline]
    pub fn record_free(&mut self, requested: usize, held: usize) {
        self.frees += 1;
        self.live_blocks = self.live_blocks.saturating_sub(1);
        self.live_requested = self.live_requested.saturating_sub(requested);
        self.live_held = self.live_held.saturating_sub(held);
    }

    /// A live block changed from (`old_requested`, `old_held`) to (`new_requested`, `new_held`).
    #[inline]
    pub fn record_resize(
        &mut self,
        old_requested: usize,
        old_held: usize,
        new_requested: usize,
        new_held: usize,
        in_place: bool,
    ) {
        self.resizes += 1;
        if in_place {
            self.in_place_resizes += 1;
        }
        self.live_requested = self.live_requested.saturating_sub(old_requested);
        self.live_held = self.live_held.saturating_sub(old_held);
        self.add_live(new_requested, new_held);
    }

    /// The last [`record_alloc`](Self::record_alloc) (the new block) and
    /// [`record_free`](Self::record_free) (the old one) were one resize that moved the block:
    /// count them as such. The live bytes are already right; the peaks keep the moment both
    /// blocks were live, which a move has.
    #[inline]
    pub fn record_moved_resize(&mut self) {
        self.allocs = self.allocs.saturating_sub(1);
        self.frees = self.frees.saturating_sub(1);
        self.resizes += 1;
    }

    /// An allocation was refused.
    #[inline]
    pub fn record_failure(&mut self) {
        self.failed_allocs += 1;
    }

    /// A free was refused as invalid.
    #[inline]
    pub fn record_bad_free(&mut self) {
        self.bad_frees += 1;
    }

    /// The memory source now has `footprint` bytes out.
    #[inline]
    pub fn set_footprint(&mut self, footprint: usize) {
        self.footprint = footprint;
        if footprint > self.peak_footprint {
            self.peak_footprint = footprint;
            self.live_requested_at_peak_footprint = self.live_requested;
        }
    }

    #[inline]
    fn add_live(&mut self, requested: usize, held: usize) {
        self.live_requested += requested;
        self.live_held += held;
        self.peak_live_requested = self.peak_live_requested.max(self.live_requested);
        self.peak_live_held = self.peak_live_held.max(self.live_held);
        if self.footprint == self.peak_footprint {
            // Live memory grew while the footprint sits at its peak: measure #3 takes the live
            // bytes at the *latest* moment the peak holds, which is the most favourable reading.
            self.live_requested_at_peak_footprint = self
                .live_requested_at_peak_footprint
                .max(self.live_requested);
        }
    }

    /// Internal fragmentation in bytes: headers, padding and rounding of live blocks.
    pub const fn internal_bytes(&self) -> usize {
        self.live_held.saturating_sub(self.live_requested)
    }

    /// External fragmentation in bytes: footprint not occupied by live blocks.
    pub const fn external_bytes(&self) -> usize {
        self.footprint.saturating_sub(self.live_held)
    }

    /// Johnstone and Wilson's measure #3: footprint at its peak over live bytes at that moment,
    /// minus one. `None` when nothing was live then.
    pub fn fragmentation_3(&self) -> Option<f64> {
        (self.live_requested_at_peak_footprint > 0).then(|| {
            self.peak_footprint as f64 / self.live_requested_at_peak_footprint as f64 - 1.0
        })
    }

    /// Johnstone and Wilson's measure #4: peak footprint over peak live bytes, minus one.
    /// `None` when nothing was ever live.
    pub fn fragmentation_4(&self) -> Option<f64> {
        (self.peak_live_requested > 0)
            .then(|| self.peak_footprint as f64 / self.peak_live_requested as f64 - 1.0)
    }
}

/// [`Stats`] for a policy's fast paths: exact, at the cost of plain adds and one sign test per
/// allocation instead of [`Stats::record_alloc`]'s three peak updates.
///
/// ```text
///   alloc(r, h):  allocs += 1, live += (r, h), headroom -= h;  headroom < 0 -> peaks raised
///   free(r, h):   frees += 1,  live -= (r, h), headroom += r
///   headroom <= min(gate_requested - live_requested, gate_held - live_held), where the gates
///   are the live counts up to which an allocation changes no peak (peak_live_held, and
///   peak_live_requested or, while the footprint is at its peak, live_requested_at_peak_footprint
///   if lower)
/// ```
///
/// An allocation takes its held bytes off the headroom (no fewer than its requested ones) and a
/// free gives its requested bytes back (no more than its held ones), so the headroom stays a
/// lower bound of both distances, and a peak is raised exactly when it would be by
/// [`Stats::record_alloc`]. Every other change goes through the `record_*` methods here, which
/// set the headroom again. `live_blocks` is `allocs - frees`, filled in by [`FastStats::get`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastStats {
    stats: Stats,
    headroom: isize,
}

impl FastStats {
    /// An all-zero record.
    pub const fn new() -> Self {
        FastStats {
            stats: Stats::new(),
            headroom: 0,
        }
    }

    /// The statistics, `live_blocks` filled in.
    #[inline]
    pub fn get(&self) -> Stats {
        let mut s = self.stats;
        s.live_blocks = s.allocs.saturating_sub(s.frees) as usize;
        s
    }

    /// A block of `requested` bytes occupying `held` (`>= requested`) bytes became live.
    #[inline(always)]
    pub fn alloc(&mut self, requested: usize, held: usize) {
        let s = &mut self.stats;
        s.allocs += 1;
        s.live_requested = s.live_requested.wrapping_add(requested);
        s.live_held = s.live_held.wrapping_add(held);
        self.headroom = self.headroom.wrapping_sub(held as isize);
        if self.headroom < 0 {
            self.raise_peaks();
        }
    }

    /// A live block of `requested` bytes occupying `held` bytes, counted by [`FastStats::alloc`]
    /// or [`FastStats::record_alloc`] with these sizes, was freed. (Without saturation: a free
    /// with other sizes than the allocation's leaves the live counts off.)
    #[inline(always)]
    pub fn free(&mut self, requested: usize, held: usize) {
        let s = &mut self.stats;
        s.frees += 1;
        s.live_requested = s.live_requested.wrapping_sub(requested);
        s.live_held = s.live_held.wrapping_sub(held);
        self.headroom = self.headroom.wrapping_add(requested as isize);
    }

    /// What [`Stats::record_alloc`] does to the peaks after adding live bytes. Inline: a call
    /// here would make an allocation fast path save its registers.
    #[inline(always)]
    fn raise_peaks(&mut self) {
        let s = &mut self.stats;
        s.peak_live_requested = s.peak_live_requested.max(s.live_requested);
        s.peak_live_held = s.peak_live_held.max(s.live_held);
        if s.footprint == s.peak_footprint {
            s.live_requested_at_peak_footprint =
                s.live_requested_at_peak_footprint.max(s.live_requested);
        }
        self.headroom = self.exact_headroom();
    }

    /// The headroom the fast paths keep (at most [`FastStats::exact_headroom`]: what an
    /// invariant walk checks).
    pub fn headroom(&self) -> isize {
        self.headroom
    }

    /// For an invariant walk: the headroom kept is at most [`FastStats::exact_headroom`] (else a
    /// peak could pass unseen).
    pub fn check_headroom(&self) -> Result<(), crate::Corruption> {
        crate::Corruption::ensure(
            self.headroom <= self.exact_headroom(),
            "stats",
            self.headroom as usize,
            "the headroom is above the live counts' distance to the peaks",
        )
    }

    /// The least distance of `live_requested` and `live_held` to their gates.
    #[inline(always)]
    pub fn exact_headroom(&self) -> isize {
        let s = &self.stats;
        let gate_held = s.peak_live_held;
        let gate_requested = if s.footprint == s.peak_footprint {
            s.peak_live_requested
                .min(s.live_requested_at_peak_footprint)
        } else {
            s.peak_live_requested
        };
        let room = |gate: usize, live: usize| gate.saturating_sub(live).min(isize::MAX as usize);
        room(gate_requested, s.live_requested).min(room(gate_held, s.live_held)) as isize
    }

    /// [`Stats::record_alloc`].
    pub fn record_alloc(&mut self, requested: usize, held: usize) {
        self.stats.record_alloc(requested, held);
        self.headroom = self.exact_headroom();
    }

    /// [`Stats::record_free`].
    pub fn record_free(&mut self, requested: usize, held: usize) {
        self.stats.record_free(requested, held);
        self.headroom = self.exact_headroom();
    }

    /// [`Stats::record_resize`].
    pub fn record_resize(
        &mut self,
        old_requested: usize,
        old_held: usize,
        new_requested: usize,
        new_held: usize,
        in_place: bool,
    ) {
        self.stats
            .record_resize(old_requested, old_held, new_requested, new_held, in_place);
        self.headroom = self.exact_headroom();
    }

    /// [`Stats::record_moved_resize`] (the live counts do not change).
    pub fn record_moved_resize(&mut self) {
        self.stats.record_moved_resize();
    }

    /// [`Stats::record_failure`].
    pub fn record_failure(&mut self) {
        self.stats.record_failure();
    }

    /// [`Stats::record_bad_free`].
    pub fn record_bad_free(&mut self) {
        self.stats.record_bad_free();
    }

    /// [`Stats::set_footprint`].
    pub fn set_footprint(&mut self, footprint: usize) {
        self.stats.set_footprint(footprint);
        self.headroom = self.exact_headroom();
    }

    /// The record itself, to change it by hand (a planted corruption in a walk's test); the
    /// headroom is set again afterwards only through the `record_*` methods.
    pub fn raw_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// Sets the headroom to `h` (a planted corruption in a walk's test).
    pub fn plant_headroom(&mut self, h: isize) {
        self.headroom = h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_and_measures_by_hand() {
        let mut s = Stats::new();
        s.set_footprint(1000);
        s.record_alloc(100, 112);
        s.record_alloc(300, 320);
        assert_eq!(
            (s.live_requested, s.live_held, s.live_blocks),
            (400, 432, 2)
        );
        s.record_free(100, 112);
        s.set_footprint(2000);
        s.record_alloc(500, 512);
        // peak live = 800 (300 + 500); footprint peak 2000 first reached with 300 live, then
        // 800 live while it holds.
        assert_eq!(s.peak_live_requested, 800);
        assert_eq!(s.live_requested_at_peak_footprint, 800);
        assert_eq!(s.fragmentation_4(), Some(2000.0 / 800.0 - 1.0));
        assert_eq!(s.fragmentation_3(), Some(2000.0 / 800.0 - 1.0));
        s.record_free(500, 512);
        s.set_footprint(500);
        assert_eq!(s.peak_footprint, 2000);
        assert_eq!(s.internal_bytes(), 20);
        assert_eq!(s.external_bytes(), 500 - 320);
        assert_eq!((s.allocs, s.frees), (3, 2));
    }

    #[test]
    fn fast_stats_agree_with_stats_on_a_random_sequence() {
        let (mut fast, mut exact) = (FastStats::new(), Stats::new());
        let mut live: Vec<(usize, usize)> = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if step.is_multiple_of(997) {
                let f = (x % 50_000) as usize;
                fast.set_footprint(f);
                exact.set_footprint(f);
            } else if !x.is_multiple_of(3) || live.is_empty() {
                let r = (x % 600) as usize;
                let h = r + (x >> 20) as usize % 17;
                if step.is_multiple_of(5) {
                    fast.record_alloc(r, h);
                } else {
                    fast.alloc(r, h);
                }
                exact.record_alloc(r, h);
                live.push((r, h));
            } else {
                let (r, h) = live.swap_remove((x >> 8) as usize % live.len());
                fast.free(r, h);
                exact.record_free(r, h);
            }
            assert_eq!(fast.get(), exact, "step {step}");
            assert!(fast.headroom() <= fast.exact_headroom());
        }
    }

    #[test]
    fn measure_three_uses_live_at_the_footprint_peak() {
        let mut s = Stats::new();
        s.record_alloc(1000, 1000);
        s.set_footprint(1000);
        s.record_free(1000, 1000);
        s.record_alloc(10, 16);
        s.set_footprint(4000); // peak reached with 10 bytes live
        s.set_footprint(100);
        s.record_alloc(2000, 2000);
        assert_eq!(s.fragmentation_3(), Some(4000.0 / 10.0 - 1.0));
        assert_eq!(s.fragmentation_4(), Some(4000.0 / 2010.0 - 1.0));
    }
}
