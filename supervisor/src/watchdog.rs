//! Kills a serving server that has stopped answering the portal's heartbeats.
//!
//! A server stuck in a loop, deadlocked or stopped (SIGSTOP) keeps its Link
//! open and its process alive, so nothing else would notice. The portal
//! reports how long each server has been silent; past
//! `server.heartbeat_timeout_ms` the supervisor kills the server's group, and
//! the keeper recovers it as from any crash. Killing (not detaching) matters:
//! a hung server that woke up later could still commit an input its
//! successor also applies.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::supervisor::Shared;

/// Runs until stop.
pub(crate) async fn watch(shared: Arc<Shared>) {
    // The portal's heartbeat period is set at its start; the limit is
    // read each round, so a reload applies a changed one.
    let every = Duration::from_millis(shared.config().running.server.heartbeat_ms.max(100));
    loop {
        let limit = Duration::from_millis(shared.config().server.heartbeat_timeout_ms);
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shared.stop.cancelled() => return,
        }
        let Some(serving) = shared.read(|s| s.serving().cloned()) else {
            continue;
        };
        let Ok(status) = shared.portal.status().await else {
            continue;
        };
        let Some(attached) = status
            .servers
            .iter()
            .find(|s| s.generation == serving.generation && s.pid == serving.child.pid)
        else {
            continue;
        };
        if is_hung(attached.silent, limit) && serving.child.exit().is_none() {
            tracing::error!(
                "server generation {} (pid {}) has not answered the portal for {} ms \
                 (server.heartbeat_timeout_ms = {}); killing it",
                serving.generation,
                serving.child.pid,
                attached.silent.as_millis(),
                limit.as_millis()
            );
            shared.update(|s| {
                s.last_exit_reason = format!(
                    "hung: no answer to the portal for {} ms",
                    attached.silent.as_millis()
                )
            });
            serving.child.signal_group(Signal::SIGKILL);
        }
    }
}

fn is_hung(silent: Duration, limit: Duration) -> bool {
    silent > limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_past_the_limit_is_a_hang() {
        let limit = Duration::from_secs(10);
        assert!(!is_hung(Duration::from_secs(9), limit));
        assert!(is_hung(Duration::from_millis(10_001), limit));
    }
}
