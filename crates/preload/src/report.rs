//! What the library says at exit: the policy's counters (and its front's own gauges: arenas,
//! threads holding a cache, footprint), written as JSON to the file `FSM_STATS_OUT` names
//! (`fsm run` reads it), if it is set.

use crate::front;

/// Writes the report (at the process's exit; nothing if `FSM_STATS_OUT` is unset).
pub fn at_exit() {
    // SAFETY: a NUL-terminated name; the result is copied at once.
    let p = unsafe { libc::getenv(c"FSM_STATS_OUT".as_ptr()) };
    if p.is_null() {
        return;
    }
    // SAFETY: non-null, NUL-terminated.
    let Ok(path) = unsafe { core::ffi::CStr::from_ptr(p) }.to_str() else {
        return;
    };
    let Some(f) = front::built() else { return };
    let stats = f.api.stats().map(|s| {
        serde_json::json!({
            "allocs": s.allocs, "frees": s.frees, "resizes": s.resizes,
            "failed_allocs": s.failed_allocs,
            "live_requested": s.live_requested, "live_held": s.live_held,
            "live_blocks": s.live_blocks, "footprint": s.footprint,
            "peak_live_requested": s.peak_live_requested, "peak_live_held": s.peak_live_held,
            "peak_footprint": s.peak_footprint,
            "frag3": s.fragmentation_3(), "frag4": s.fragmentation_4(),
        })
    });
    let gauges: serde_json::Map<String, serde_json::Value> = f
        .api
        .gauges()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    let v = serde_json::json!({
        "policy": f.name,
        "runs_as": f.runs_as,
        "stats": stats,
        "gauges": gauges,
        "bootstrap_bytes": crate::BOOTSTRAP.used(),
    });
    if std::fs::write(path, v.to_string()).is_err() {
        front::say(&format!("libfsm_malloc: cannot write FSM_STATS_OUT {path}"));
    }
}
