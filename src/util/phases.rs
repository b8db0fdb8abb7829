//! Where a loop's time goes, phase by phase, when `GLINT_PROFILE=1` is set: each mark waits
//! for the device, so the time of asynchronous kernels lands in the phase that queued them.
//! Off (the default), a mark costs one relaxed load.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::Device;

/// Seconds and marks per phase.
type Spent = BTreeMap<&'static str, (f64, u64)>;

thread_local! {
    /// The last mark and what was spent since the first.
    static CLOCK: RefCell<Option<(Instant, Spent)>> = const { RefCell::new(None) };
}

/// Whether profiling is on (`GLINT_PROFILE=1`).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("GLINT_PROFILE").is_ok_and(|v| v == "1"))
}

/// End the phase running on this thread as `name` (the time since the last mark), after
/// waiting for `device`.
pub fn mark(device: &Device, name: &'static str) {
    if !enabled() {
        return;
    }
    // A failed wait only blurs the figures of a diagnostic; it never stops the work.
    let _ = device.synchronize();
    let now = Instant::now();
    CLOCK.with(|c| {
        let mut c = c.borrow_mut();
        let (last, spent) = c.get_or_insert_with(|| (now, BTreeMap::new()));
        let e = spent.entry(name).or_insert((0.0, 0));
        e.0 += now.duration_since(*last).as_secs_f64();
        e.1 += 1;
        *last = now;
    });
}

/// The phases measured on this thread, as (name, seconds, count), slowest first; cleared.
pub fn take() -> Vec<(&'static str, f64, u64)> {
    let spent = CLOCK.with(|c| c.borrow_mut().take().map(|(_, s)| s).unwrap_or_default());
    let mut out: Vec<_> = spent.into_iter().map(|(k, (s, n))| (k, s, n)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn marks_cost_nothing_when_off() {
        if super::enabled() {
            return;
        }
        super::mark(&candle_core::Device::Cpu, "x");
        assert!(super::take().is_empty());
    }
}
