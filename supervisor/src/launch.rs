//! Starting the portal and servers: spawn, wait until they answer, and watch
//! each one until it exits.
//!
//! A server is "started" once it is attached to the portal; only then does
//! [`make_serving`] turn it into *the* serving server, whose unexpected exit
//! is a crash. Until then whoever started it races its exit against the
//! attach, so an exit at any moment is seen exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::child::{Child, Spec};
use crate::logtail;
use crate::portal_client::NotAttached;
use crate::restart;
use crate::supervisor::{Role, ServerProc, Shared};

/// A served at least this long was healthy: its crash starts a new count.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// ev-server's exit status when it found before attaching that it could not
/// write its database: storage, not the build, so no crash.
const EXIT_UNWRITABLE: i32 = 4;

/// ev-server's exit status when a newer build migrated its database (the
/// runtime's schema or the game's own migrations): it can never serve it.
const EXIT_TOO_OLD: i32 = 5;

/// Spawns the portal and waits until `PortalAdmin.Status` answers.
/// Caller holds `ops`.
pub(crate) async fn start_portal(shared: &Arc<Shared>) -> Result<(), String> {
    let game = &shared.game;
    // A stale address must not be mistaken for this portal's.
    let _ = std::fs::remove_file(game.telnet_addr_path());
    let spec = Spec {
        name: "portal",
        program: shared.portal_bin.clone(),
        args: vec!["--game-dir".into(), game.root().into()],
        env: vec![
            ("EV_GAME_DIR".into(), game.root().display().to_string()),
            log_filter(shared),
        ],
        log: game.log_path("portal"),
    };
    let child = Child::spawn(&spec).map_err(|e| e.to_string())?;
    tracing::info!("portal started (pid {})", child.pid);
    if let Err(e) = game.write_pid("portal", child.pid) {
        tracing::warn!("cannot write {}: {e}", game.pid_path("portal").display());
    }
    shared.update(|s| {
        s.portal = Some(child.clone());
        s.portal_ready = false;
    });
    tokio::spawn(watch_portal(shared.clone(), child.clone()));

    match wait_portal_ready(shared, &child).await {
        Ok(()) => {
            shared.update(|s| {
                if s.portal.as_ref().is_some_and(|p| p.pid == child.pid) {
                    s.portal_ready = true;
                }
            });
            tracing::info!("portal ready (pid {})", child.pid);
            Ok(())
        }
        Err(e) => {
            // Forget it first, so its death is not reported as a crash.
            shared.update(|s| {
                if s.portal.as_ref().is_some_and(|p| p.pid == child.pid) {
                    s.portal = None;
                }
            });
            child.kill().await;
            Err(e)
        }
    }
}

async fn wait_portal_ready(shared: &Shared, child: &Child) -> Result<(), String> {
    let timeout = shared.start_timeout();
    let answers = async {
        let mut delay = Duration::from_millis(5);
        loop {
            if shared.portal.status().await.is_ok() {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    };
    tokio::select! {
        () = answers => Ok(()),
        exit = child.exited() => Err(format!(
            "portal {exit} before it was ready (see {})",
            shared.game.log_path("portal").display()
        )),
        () = tokio::time::sleep(timeout) => Err(format!(
            "portal did not answer on {} within {} ms",
            shared.game.link_socket().display(),
            timeout.as_millis()
        )),
        () = shared.stop.cancelled() => Err("ev is stopping".into()),
    }
}

async fn watch_portal(shared: Arc<Shared>, child: Child) {
    let exit = child.exited().await;
    let unexpected = shared.update(|s| {
        if s.portal.as_ref().is_none_or(|p| p.pid != child.pid) {
            return false;
        }
        s.portal = None;
        // Before it was ready, whoever starts it reports the failure.
        let was_ready = std::mem::replace(&mut s.portal_ready, false);
        if s.stopping || !was_ready {
            return false;
        }
        if child.uptime() >= HEALTHY_AFTER {
            s.portal_streak = 0;
        }
        s.portal_streak += 1;
        s.portal_crashes += 1;
        true
    });
    if unexpected {
        tracing::error!(
            "portal (pid {}) {exit} unexpectedly; restarting it",
            child.pid
        );
    } else {
        tracing::info!("portal (pid {}) {exit}", child.pid);
    }
}

/// A server that attached to the portal.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    pub child: Child,
    pub generation: u64,
    pub build_id: String,
}

/// Why a server did not attach, with its last log lines.
#[derive(Debug, Clone)]
pub(crate) struct StartError {
    pub error: String,
    pub log_tail: Vec<String>,
    /// It exited because its database could not be written.
    pub storage: bool,
    /// It exited because a newer build migrated the database past it.
    pub too_old: bool,
}

impl StartError {
    pub fn new(error: impl Into<String>) -> StartError {
        StartError {
            error: error.into(),
            log_tail: Vec::new(),
            storage: false,
            too_old: false,
        }
    }
}

/// Copies the server binary, spawns the copy as the next generation and waits
/// until it attaches. On failure it is killed and reaped. Caller holds `ops`.
/// Which server binary to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Build {
    /// A fresh copy of `server.binary` (start, reload): picks up a rebuild.
    Fresh,
    /// The copy the last serving server ran (restart after a crash), so a
    /// crash never swaps in whatever happens to be on disk now; a fresh copy
    /// if there is none yet.
    LastServing,
}

pub(crate) async fn start_server(
    shared: &Arc<Shared>,
    build: Build,
) -> Result<Started, StartError> {
    let game = &shared.game;
    let last = shared.read(|s| s.last_serving_build.clone());
    let reuse = match (build, last) {
        (Build::LastServing, Some(id)) => {
            let path = game.bin_dir().join(&id);
            path.is_file()
                .then_some(crate::binary::Installed { build_id: id, path })
        }
        _ => None,
    };
    let installed = if let Some(installed) = reuse {
        installed
    } else {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || shared.installer.install(&shared.config().server_bin))
            .await
            .map_err(|e| StartError::new(format!("installing the server binary: {e}")))?
            .map_err(|e| StartError::new(format!("cannot install the server binary: {e}")))?
    };
    let generation = shared.update(|s| {
        s.generation += 1;
        s.generation
    });
    save_generation(shared, generation);
    let log = game.log_path("server");
    let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let spec = Spec {
        name: "server",
        program: installed.path.clone(),
        args: vec!["--game-dir".into(), game.root().into()],
        env: vec![
            ("EV_GAME_DIR".into(), game.root().display().to_string()),
            ("EV_GENERATION".into(), generation.to_string()),
            ("EV_BUILD_ID".into(), installed.build_id.clone()),
            log_filter(shared),
        ],
        log: log.clone(),
    };
    let child = Child::spawn(&spec).map_err(|e| StartError::new(e.to_string()))?;
    tracing::info!(
        "server generation {generation} started (pid {}, build {})",
        child.pid,
        installed.build_id
    );
    shared.update(|s| {
        s.servers.insert(
            child.pid,
            ServerProc {
                child: child.clone(),
                generation,
                build_id: installed.build_id.clone(),
                role: Role::Starting,
                serving_since: None,
            },
        );
    });
    tokio::spawn(watch_server(shared.clone(), child.clone()));

    let timeout = shared.start_timeout();
    let did_not_attach = || {
        format!(
            "new server did not attach within {} ms (server.start_timeout_ms)",
            timeout.as_millis()
        )
    };
    let outcome = tokio::select! {
        reply = shared.portal.wait_attached(generation, timeout) => match reply {
            Ok(Ok(())) => Ok(()),
            Ok(Err(NotAttached::Timeout)) => Err(did_not_attach()),
            Ok(Err(NotAttached::Refused(why))) => Err(format!("new server refused: {why}")),
            Err(e) => Err(e.to_string()),
        },
        exit = child.exited() => Err(format!("new server {exit} before attaching")),
        // In case the portal does not keep its own deadline.
        () = tokio::time::sleep(timeout + Duration::from_secs(1)) => Err(did_not_attach()),
        () = shared.stop.cancelled() => Err("ev is stopping".into()),
    };
    match outcome {
        Ok(()) => {
            tracing::info!(
                "server generation {generation} (pid {}) attached",
                child.pid
            );
            Ok(Started {
                child,
                generation,
                build_id: installed.build_id,
            })
        }
        Err(error) => {
            tracing::warn!(
                "server generation {generation} (pid {}): {error}",
                child.pid
            );
            child.kill().await;
            let tag = ev::logging::tag("server", generation, child.pid);
            Err(StartError {
                error,
                log_tail: logtail::read(&log, offset, &tag),
                storage: child.exit() == Some(crate::child::Exit::Code(EXIT_UNWRITABLE)),
                too_old: child.exit() == Some(crate::child::Exit::Code(EXIT_TOO_OLD)),
            })
        }
    }
}

/// Makes an attached server ACTIVE at the portal if it is not already
/// (when no other server was active it is so by itself). Returns the dark
/// time of a promotion, 0 if none was needed.
pub(crate) async fn activate(shared: &Shared, started: &Started) -> Result<u64, String> {
    let status = shared.portal.status().await.map_err(|e| e.to_string())?;
    let standby = status
        .servers
        .iter()
        .any(|s| s.generation == started.generation && !s.active);
    if !standby {
        return Ok(0);
    }
    match shared
        .portal
        .promote(started.generation, shared.drain_timeout())
        .await
    {
        Ok(Ok(promoted)) => Ok(promoted.dark_micros),
        Ok(Err(e)) => Err(format!("hand-over failed: {e}")),
        Err(e) => Err(format!("hand-over failed: {e}")),
    }
}

/// Turns an attached server into the serving one. Fails if it has already
/// exited (its monitor saw it as "starting" and left it to us).
pub(crate) fn make_serving(shared: &Shared, started: &Started) -> Result<(), String> {
    let pid = started.child.pid;
    let ok = shared.update(|s| match s.servers.get_mut(&pid) {
        Some(p) if p.child.exit().is_none() => {
            p.role = Role::Serving;
            p.serving_since = Some(Instant::now());
            if s.last_serving_build.as_ref() != Some(&p.build_id) {
                // Another build takes over: the one it replaces served, so
                // it is what a crash loop of this one falls back to.
                s.previous_build = s.last_serving_build.take();
                s.build_since = Some(Instant::now());
                s.build_note.clear();
            }
            s.last_serving_build = Some(p.build_id.clone());
            true
        }
        _ => false,
    });
    if !ok {
        let exit = started
            .child
            .exit()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "exited".into());
        return Err(format!("new server {exit} right after attaching"));
    }
    // Builds no server runs are of no more use but two: a crash restarts
    // the serving build, a crash loop falls back to the one before it; a
    // reload installs its binary afresh.
    let keep: Vec<String> = shared.read(|s| {
        s.servers
            .values()
            .map(|p| p.build_id.clone())
            .chain(s.last_serving_build.clone())
            .chain(s.previous_build.clone())
            .collect()
    });
    let removed = shared.installer.prune(&keep);
    if removed > 0 {
        tracing::info!("removed {removed} server binaries no server runs from run/bin");
    }
    if let Err(e) = shared.game.write_pid("server", pid) {
        tracing::warn!(
            "cannot write {}: {e}",
            shared.game.pid_path("server").display()
        );
    }
    tracing::info!(
        "server generation {} (pid {pid}, build {}) serving",
        started.generation,
        started.build_id
    );
    Ok(())
}

async fn watch_server(shared: Arc<Shared>, child: Child) {
    let exit = child.exited().await;
    let limit = shared.config().supervisor.crash_loop_limit;
    let seen = shared.update(|s| {
        let p = s.servers.remove(&child.pid)?;
        let crashed = p.role == Role::Serving && !s.stopping;
        if crashed {
            s.crashes += 1;
            let served = p.serving_since.map(|t| t.elapsed()).unwrap_or_default();
            let reason = format!(
                "server generation {} (pid {}) {exit}",
                p.generation, child.pid
            );
            if exit == crate::child::Exit::Code(EXIT_UNWRITABLE) {
                // Its storage failed under it: not the build's fault, so
                // it never counts toward a crash loop or a fallback.
                s.storage_streak = s.storage_streak.saturating_add(1);
                s.last_exit_reason = reason;
            } else {
                restart::record_failure(s, reason, served, limit);
            }
        }
        Some((p.generation, p.role, crashed, s.crash_looped))
    });
    match seen {
        Some((generation, _, true, false)) => tracing::error!(
            "server generation {generation} (pid {}) {exit} unexpectedly; restarting it",
            child.pid
        ),
        Some((generation, _, true, true)) => tracing::error!(
            "server generation {generation} (pid {}) {exit} unexpectedly; it failed {limit} times in a row, so it is not restarted until `evctl reload`",
            child.pid
        ),
        Some((generation, role, false, _)) => tracing::info!(
            "server generation {generation} (pid {}) {exit} ({})",
            child.pid,
            match role {
                Role::Starting => "while starting",
                Role::Serving => "while stopping",
                Role::Draining => "after handing over",
            }
        ),
        None => {}
    }
}

/// run/generation: the last generation handed out, so a supervisor that
/// adopts a running portal never reuses a generation the portal has seen.
fn generation_path(shared: &Shared) -> std::path::PathBuf {
    shared.game.run_dir().join("generation")
}

fn save_generation(shared: &Shared, generation: u64) {
    let path = generation_path(shared);
    if let Err(e) = std::fs::write(&path, format!("{generation}\n")) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

/// Takes over a portal (and its active server) left running by a supervisor
/// that died, so players stay connected. Returns whether a portal was
/// adopted. Anything of this game that cannot be adopted (a portal that does
/// not answer, a standby server, a server without a portal) is killed, so the
/// fresh start below does not run beside it. Caller holds `ops`.
pub(crate) async fn adopt(shared: &Arc<Shared>) -> bool {
    use ev::process::runs_in;
    let game = &shared.game;
    let root = game.root();
    let saved: u64 = std::fs::read_to_string(generation_path(shared))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    shared.update(|s| s.generation = saved);
    let old_portal = game.read_pid("portal").filter(|&p| runs_in(p, root));
    let old_server = game.read_pid("server").filter(|&p| runs_in(p, root));
    if old_portal.is_none() && old_server.is_none() {
        return false;
    }
    let status = match old_portal {
        Some(_) => tokio::time::timeout(Duration::from_secs(3), shared.portal.status())
            .await
            .ok()
            .and_then(Result::ok),
        None => None,
    };
    let (Some(portal_pid), Some(status)) = (old_portal, status) else {
        for (name, pid) in [("portal", old_portal), ("server", old_server)] {
            if let Some(pid) = pid {
                tracing::warn!(
                    "{name} (pid {pid}) of an earlier supervisor cannot be adopted; killing it"
                );
                Child::adopt(name, pid).kill().await;
            }
        }
        return false;
    };

    let portal = Child::adopt("portal", portal_pid);
    let mut generation = saved;
    let mut adopted = None;
    for server in &status.servers {
        generation = generation.max(server.generation);
        if !runs_in(server.pid, root) {
            continue;
        }
        if server.active && adopted.is_none() {
            adopted = Some(server.clone());
        } else {
            tracing::warn!(
                "server generation {} (pid {}) of an earlier supervisor was not serving; killing it",
                server.generation,
                server.pid
            );
            Child::adopt("server", server.pid).kill().await;
        }
    }
    if let Some(pid) = old_server
        && adopted.as_ref().is_none_or(|a| a.pid != pid)
    {
        tracing::warn!("server (pid {pid}) of an earlier supervisor is not attached; killing it");
        Child::adopt("server", pid).kill().await;
    }
    let server = adopted.map(|a| (Child::adopt("server", a.pid), a));
    shared.update(|s| {
        s.generation = generation;
        s.portal = Some(portal.clone());
        s.portal_ready = true;
        if let Some((child, info)) = &server {
            s.servers.insert(
                child.pid,
                ServerProc {
                    child: child.clone(),
                    generation: info.generation,
                    build_id: info.build_id.clone(),
                    role: Role::Serving,
                    serving_since: Some(Instant::now()),
                },
            );
            s.last_serving_build = Some(info.build_id.clone());
        }
    });
    save_generation(shared, generation);
    tokio::spawn(watch_portal(shared.clone(), portal.clone()));
    match &server {
        Some((child, info)) => {
            tokio::spawn(watch_server(shared.clone(), child.clone()));
            tracing::info!(
                "adopted the running portal (pid {portal_pid}) and server generation {} (pid {})",
                info.generation,
                child.pid
            );
            shared.notifier.ready();
        }
        None => tracing::info!("adopted the running portal (pid {portal_pid}); no server serves"),
    }
    true
}

/// `EV_LOG` for a child: the supervisor's own if the operator set one, else
/// `logs.filter` from ev.toml as last read (so a reload applies a change to
/// the new server).
fn log_filter(shared: &Shared) -> (String, String) {
    let filter = std::env::var("EV_LOG").unwrap_or_else(|_| shared.config().logs.filter.clone());
    ("EV_LOG".into(), filter)
}
