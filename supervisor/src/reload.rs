//! Reload: a new server beside the serving one, then a hand-over.
//!
//! 1. Spawn server B (next generation) from a fresh copy of the binary.
//! 2. Wait until B attaches as standby. If it exits, hangs past
//!    `start_timeout_ms` or is refused, it is killed and A keeps serving; the
//!    reply carries B's last log lines.
//! 3. `PortalAdmin.Promote`: the portal drains A and syncs B. On success A
//!    exits by itself (killed after `drain_timeout_ms`), B serves.
//!
//! One reload at a time: a second request while one runs is refused with
//! "a reload is already in progress" rather than queued, so an operator never
//! gets a second, surprising reload after the first finished.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::launch::{self, Started};
use crate::supervisor::{Role, Shared};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reloaded {
    /// Keys changed in ev.toml that this reload could not apply.
    pub restart_needed: Vec<String>,
    pub generation: u64,
    pub pid: u32,
    pub build_id: String,
    pub dark_micros: u64,
    pub total_ms: u64,
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server generation {} (build {}, pid {}), dark for {:.1} ms, total {} ms",
            self.generation,
            self.build_id,
            self.pid,
            self.dark_micros as f64 / 1000.0,
            self.total_ms
        )
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ReloadFailure {
    pub error: String,
    pub log_tail: Vec<String>,
}

fn failure(error: impl Into<String>) -> ReloadFailure {
    ReloadFailure {
        error: error.into(),
        log_tail: Vec::new(),
    }
}

pub(crate) async fn reload(shared: &Arc<Shared>) -> Result<Reloaded, ReloadFailure> {
    let begun = Instant::now();
    let Ok(_busy) = shared.reload_busy.try_lock() else {
        return Err(failure("a reload is already in progress"));
    };
    if shared.stopping() {
        return Err(failure("ev is stopping"));
    }
    let restart_needed = match shared.reread_config() {
        Ok(keys) => keys,
        Err(e) => {
            shared.update(|s| s.reload_failures += 1);
            return Err(failure(format!("ev.toml was not reloaded: {e}")));
        }
    };
    tracing::info!("reload begins");
    shared.notifier.reloading();
    let result = hand_over(shared, begun).await.map(|done| Reloaded {
        restart_needed,
        ..done
    });
    if !shared.stopping() && shared.read(|s| s.serving().is_some()) {
        shared.notifier.ready();
    }
    match &result {
        Ok(done) => tracing::info!("reloaded: {done}"),
        Err(e) => {
            shared.update(|s| s.reload_failures += 1);
            tracing::warn!("reload failed: {}", e.error);
        }
    }
    result
}

async fn hand_over(shared: &Arc<Shared>, begun: Instant) -> Result<Reloaded, ReloadFailure> {
    let _ops = tokio::select! {
        ops = shared.ops.lock() => ops,
        () = shared.stop.cancelled() => return Err(failure("ev is stopping")),
    };
    if !shared.read(|s| s.portal_ready) {
        return Err(failure("the portal is not running"));
    }
    // Players hear nothing of a reload unless its hand-over lasts: the
    // portal tells them after `portal.pause_notice_ms`.
    switch(shared, begun).await
}

/// Starts server B and hands over to it (the caller holds `ops`).
async fn switch(shared: &Arc<Shared>, begun: Instant) -> Result<Reloaded, ReloadFailure> {
    let old = shared.read(|s| s.serving().map(|p| p.child.clone()));
    let new = launch::start_server(shared, launch::Build::Fresh)
        .await
        .map_err(|e| ReloadFailure {
            error: e.error,
            log_tail: e.log_tail,
        })?;

    // A may have crashed while B started; then B only has to be made active.
    let draining = old.filter(|a| {
        shared.update(|s| match s.servers.get_mut(&a.pid) {
            Some(p) if p.role == Role::Serving => {
                p.role = Role::Draining;
                true
            }
            _ => false,
        })
    });
    let dark_micros = match &draining {
        Some(a) => match promote(shared, &new).await {
            Ok(dark) => dark,
            Err(e) => {
                new.child.kill().await;
                // A keeps serving if it is still there; if not, the keeper
                // sees no serving server and starts one.
                shared.update(|s| {
                    if let Some(p) = s.servers.get_mut(&a.pid)
                        && p.role == Role::Draining
                        && p.child.exit().is_none()
                    {
                        p.role = Role::Serving;
                    }
                });
                return Err(failure(e));
            }
        },
        None => match launch::activate(shared, &new).await {
            Ok(dark) => dark,
            Err(e) => {
                new.child.kill().await;
                return Err(failure(e));
            }
        },
    };
    if let Err(e) = launch::make_serving(shared, &new) {
        return Err(failure(e));
    }
    shared.dark_times.observe(dark_micros);
    shared.update(|s| {
        s.reloads += 1;
        s.last_dark_micros = Some(dark_micros);
        s.crash_streak = 0;
        s.storage_streak = 0;
        s.crash_looped = false;
    });
    if let Some(a) = draining {
        a.exit_or_kill(shared.drain_timeout()).await;
    }
    Ok(Reloaded {
        restart_needed: Vec::new(),
        generation: new.generation,
        pid: new.child.pid,
        build_id: new.build_id,
        dark_micros,
        total_ms: u64::try_from(begun.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

async fn promote(shared: &Shared, new: &Started) -> Result<u64, String> {
    let reply = tokio::select! {
        reply = shared.portal.promote(new.generation, shared.drain_timeout()) => reply,
        exit = new.child.exited() => return Err(format!("new server {exit} during the hand-over")),
        () = shared.stop.cancelled() => return Err("ev is stopping".into()),
    };
    match reply {
        Ok(Ok(promoted)) => {
            tracing::info!(
                "promoted generation {}: {} sessions, dark for {} µs",
                new.generation,
                promoted.sessions,
                promoted.dark_micros
            );
            Ok(promoted.dark_micros)
        }
        Ok(Err(e)) => Err(format!("hand-over failed: {e}")),
        Err(e) => Err(format!("hand-over failed: {e}")),
    }
}
