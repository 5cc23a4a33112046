//! Gives freed memory back to the system after a lot of it was freed: a
//! released MCCP2 compressor, an output queue that drained from a flood.
//!
//! Large buffers are unmapped as they are freed (see
//! `ev::sys::unmap_large_frees`), but smaller ones (a compressor's lesser
//! tables, the lines of a drained output queue) stay in the heap among live
//! allocations: ten thousand idle players kept 13 KiB each of it, and 25
//! listeners who had fallen behind a chat flood left 105 MiB after they went.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set when much was freed; see [`after_frees`].
static FREED: AtomicBool = AtomicBool::new(false);

/// How often freed memory is handed back to the system, at most: a trim
/// walks the whole heap.
const EVERY: Duration = Duration::from_secs(1);

/// Something large was freed: trim the heap soon.
pub fn freed() {
    FREED.store(true, Ordering::Relaxed);
}

/// Trims the heap after [`freed`], at most once every [`EVERY`].
pub async fn after_frees() {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if FREED.swap(false, Ordering::Relaxed) {
            ev::sys::trim_heap();
        }
    }
}
