//! The measures the matrix reports, computed from a replay's [`Outcome`].
//!
//! Johnstone and Wilson (ISMM 1998), with fragmentation = (heap - live) / live:
//!
//! ```text
//!   #3 = footprint at its peak / live bytes at that moment - 1
//!   #4 = peak footprint / peak live bytes - 1          (the peaks may come at different times)
//!
//!   at the footprint peak:   footprint = live + internal + external
//!   #3 = internal / live + external / live
//!        (headers, rounding)  (free blocks, caches, metadata in the footprint)
//! ```
//!
//! Live bytes are what the program asked for (`live_requested`). Time per operation is a timed
//! replay's wall time over its number of events.

use serde::{Deserialize, Serialize};

use crate::replay::{Outcome, Sample};

/// Fragmentation and footprint of one replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fragmentation {
    /// Highest footprint seen (bytes).
    pub peak_footprint: usize,
    /// Highest live requested bytes.
    pub peak_live: usize,
    /// Live requested bytes when the footprint peaked.
    pub live_at_peak_footprint: usize,
    /// Johnstone & Wilson's #3 (`None` if nothing was live then).
    pub frag3: Option<f64>,
    /// Johnstone & Wilson's #4 (`None` if nothing was ever live).
    pub frag4: Option<f64>,
    /// Internal part of #3: (held - live) / live at the footprint peak (managers only).
    pub internal: Option<f64>,
    /// External part of #3: (footprint - held) / live at the footprint peak (managers only).
    pub external: Option<f64>,
    /// Footprint over time.
    pub series: Vec<Sample>,
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// #3: `footprint / live - 1` at the footprint peak.
pub fn measure3(peak_footprint: usize, live_then: usize) -> Option<f64> {
    ratio(peak_footprint, live_then).map(|r| r - 1.0)
}

/// #4: `peak footprint / peak live - 1`.
pub fn measure4(peak_footprint: usize, peak_live: usize) -> Option<f64> {
    ratio(peak_footprint, peak_live).map(|r| r - 1.0)
}

impl Fragmentation {
    /// From a tracked replay through a manager: its stats give the exact peaks, the tracked
    /// moment of the peak gives the internal / external split.
    pub fn of_manager(out: &Outcome) -> Self {
        let s = &out.stats;
        let (internal, external) = match out.at_peak {
            Some(p) if p.live > 0 => (
                Some(p.held.saturating_sub(p.live) as f64 / p.live as f64),
                Some(p.footprint.saturating_sub(p.held) as f64 / p.live as f64),
            ),
            _ => (None, None),
        };
        Fragmentation {
            peak_footprint: s.peak_footprint,
            peak_live: s.peak_live_requested,
            live_at_peak_footprint: s.live_requested_at_peak_footprint,
            frag3: s.fragmentation_3(),
            frag4: s.fragmentation_4(),
            internal,
            external,
            series: out.series.clone(),
        }
    }

    /// From a tracked replay through a `GlobalAlloc` whose footprint was sampled, with
    /// `peak_footprint` the high-water mark measured over the whole replay (at least the
    /// highest sample). #3 uses the highest sample and the live bytes then.
    pub fn of_peer(out: &Outcome, peak_footprint: usize) -> Self {
        let top = out
            .series
            .iter()
            .copied()
            .max_by_key(|s| (s.footprint, s.live))
            .unwrap_or(Sample {
                event: 0,
                footprint: 0,
                live: 0,
            });
        let peak = peak_footprint.max(top.footprint);
        Fragmentation {
            peak_footprint: peak,
            peak_live: out.stats.peak_live_requested,
            live_at_peak_footprint: top.live,
            frag3: measure3(top.footprint, top.live),
            frag4: measure4(peak, out.stats.peak_live_requested),
            internal: None,
            external: None,
            series: out.series.clone(),
        }
    }
}

/// Median of `v` (sorted in place); `None` if empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Nanoseconds per event of a timed replay.
pub fn ns_per_op(out: &Outcome) -> f64 {
    out.elapsed.as_nanos() as f64 / out.steps.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{AtPeak, Options, Program, replay_manager};
    use crate::testing::Bump;
    use crate::trace::Trace;

    #[test]
    fn measures_by_hand() {
        assert_eq!(measure3(1500, 1000), Some(0.5));
        assert_eq!(measure4(3000, 2000), Some(0.5));
        assert_eq!(measure4(3000, 0), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn manager_split_adds_up_to_measure_three() {
        // Bump rounds to 16 and never reuses: a 100 (held 112), a 40 (held 48), free the first,
        // a 20 (held 32): footprint 192, peak live 140, live at the peak 60, held 80.
        let t = Trace::read_text("a 1 100\na 2 40\nf 1\na 3 20\n".as_bytes()).unwrap();
        let p = Program::compile(&t).unwrap();
        let mut m = Bump::new(4096);
        let opts = Options {
            track: true,
            series_points: 10,
            ..Options::default()
        };
        let out = replay_manager(&mut m, &p, opts, None).unwrap();
        assert_eq!(
            out.at_peak,
            Some(AtPeak {
                footprint: 192,
                held: 80,
                live: 60
            })
        );
        let f = Fragmentation::of_manager(&out);
        assert_eq!(
            (f.peak_footprint, f.peak_live, f.live_at_peak_footprint),
            (192, 140, 60)
        );
        assert_eq!(f.frag3, Some(192.0 / 60.0 - 1.0));
        assert_eq!(f.frag4, Some(192.0 / 140.0 - 1.0));
        assert_eq!(f.internal, Some(20.0 / 60.0));
        assert_eq!(f.external, Some(112.0 / 60.0));
        let sum = f.internal.unwrap() + f.external.unwrap();
        assert!((sum - f.frag3.unwrap()).abs() < 1e-12);
        assert_eq!(
            f.series.iter().map(|s| s.footprint).collect::<Vec<_>>(),
            vec![112, 160, 160, 192]
        );
    }

    #[test]
    fn peer_uses_the_high_water_mark_for_measure_four() {
        let out = Outcome {
            stats: {
                let mut s = allocator_traits::Stats::new();
                s.record_alloc(1000, 1000);
                s.record_free(1000, 1000);
                s.record_alloc(500, 500);
                s
            },
            series: vec![
                Sample {
                    event: 1,
                    footprint: 4096,
                    live: 1000,
                },
                Sample {
                    event: 3,
                    footprint: 8192,
                    live: 500,
                },
            ],
            ..Outcome::default()
        };
        let f = Fragmentation::of_peer(&out, 12288);
        assert_eq!(f.frag3, Some(8192.0 / 500.0 - 1.0));
        assert_eq!(f.frag4, Some(12288.0 / 1000.0 - 1.0));
        assert_eq!(f.peak_footprint, 12288);
    }
}
