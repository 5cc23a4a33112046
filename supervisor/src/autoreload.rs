//! Reload on rebuild (`server.auto_reload`): the server binary's directory is
//! watched with inotify (the `notify` crate), and once the binary has changed
//! and then stayed unchanged for `server.auto_reload_settle_ms` the game
//! reloads, exactly as `evctl reload` would.
//!
//! The directory, not the file, is watched: a build replaces the file (a new
//! inode), and a watch on the old one would never fire again. A binary whose
//! content is what already serves (a `touch`, a rebuild that changed nothing)
//! starts no reload. A half-written binary is refused by the install step
//! itself; the build's next write is another change and another try.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

// `::notify` is the file-watching crate; `crate::notify` is systemd's.
use ::notify::{RecursiveMode, Watcher};
use tokio::sync::Notify;

use crate::supervisor::Shared;

/// Runs until stop. Does nothing unless `server.auto_reload` is on.
pub(crate) async fn watch(shared: Arc<Shared>) {
    let settings = shared.config();
    if !settings.server.auto_reload {
        return;
    }
    // Read once: a reload that names another binary is told that only a
    // restart moves the watch (`settings::restart_only_changes`).
    let binary = settings.server_bin.clone();
    let changed = Arc::new(Notify::new());
    let _watcher = match watch_file(&binary, changed.clone()) {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::error!("auto-reload is off: cannot watch {}: {e}", binary.display());
            return;
        }
    };
    tracing::info!("auto-reload: watching {}", binary.display());
    let settle = Duration::from_millis(settings.server.auto_reload_settle_ms);
    loop {
        tokio::select! {
            () = changed.notified() => {}
            () = shared.stop.cancelled() => return,
        }
        // Wait for the writes to stop.
        loop {
            tokio::select! {
                () = tokio::time::sleep(settle) => break,
                () = changed.notified() => {}
                () = shared.stop.cancelled() => return,
            }
        }
        if is_serving(&shared).await {
            tracing::info!(
                "auto-reload: {} changed but is the build that serves; not reloading",
                binary.display()
            );
            continue;
        }
        tracing::info!("auto-reload: {} was rebuilt; reloading", binary.display());
        match crate::reload::reload(&shared).await {
            Ok(done) => tracing::info!("auto-reload done: {done}"),
            Err(e) => {
                tracing::error!("auto-reload failed: {}", e.error);
                // Whoever just rebuilt is most likely in the game, waiting
                // to see the change: tell the admins there, not only the log.
                let why = e.error.lines().next().unwrap_or_default();
                let told =
                    format!("Auto-reload failed; the game runs the build it ran before. {why}");
                if let Err(e) = shared.portal.notice_admins(&told).await {
                    tracing::warn!("could not tell the admins: {e}");
                }
            }
        }
    }
}

/// Whether the binary on disk is the build that serves now. An install
/// error (the file is gone, or still being written) counts as "no": the
/// reload then reports it.
async fn is_serving(shared: &Arc<Shared>) -> bool {
    let installing = shared.clone();
    let installed = tokio::task::spawn_blocking(move || {
        installing
            .installer
            .install(&installing.config().server_bin)
    })
    .await;
    let serving = shared.read(|s| s.last_serving_build.clone());
    matches!(installed, Ok(Ok(i)) if Some(&i.build_id) == serving.as_ref())
}

/// Watches the directory of `file`; `changed` is notified for every event
/// that names it.
fn watch_file(file: &Path, changed: Arc<Notify>) -> ::notify::Result<::notify::RecommendedWatcher> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let name = file.file_name().map(|n| n.to_owned());
    let mut watcher =
        ::notify::recommended_watcher(move |event: ::notify::Result<::notify::Event>| {
            let ours = match &event {
                Ok(event) => event
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_owned()) == name),
                // The watch itself failed (e.g. inotify's queue overflowed):
                // whether the binary changed is unknown, so look.
                Err(_) => true,
            };
            if ours {
                changed.notify_one();
            }
        })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
