//! The supervisor's shared state and its life: start, serve, stop.
//!
//! One `Shared` is behind every task: the keeper (`restart`), the reload
//! (`reload`), the Control service (`control`), the signal handler and one
//! monitor task per child. State changes go through [`Shared::update`], which
//! bumps a `watch` counter so waiters (the keeper, `WaitReady`) re-check.
//! Server starts and hand-overs are serialised by `ops`; stop is not, it
//! cancels `stop` and every operation gives way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ev::config::Config;
use ev::gamedir::GameDir;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::binary::Installer;
use crate::child::Child;
use crate::notify::Notifier;
use crate::pidfile::PidLock;
use crate::portal_client::PortalClient;
use crate::settings::Settings;

/// What the supervisor tells players when the game stops.
pub const GOODBYE: &str = "The game is shutting down. Goodbye!";

/// How the supervisor was invoked.
#[derive(Debug, Clone)]
pub struct Options {
    pub game: GameDir,
    /// Informational: evctl decides about detaching; the supervisor behaves
    /// the same either way (logs to stderr, notifies systemd if asked to).
    pub foreground: bool,
    /// Auto-reload for this run whatever ev.toml says (`evctl start --watch`).
    pub watch: bool,
}

/// What a server process is doing, as far as the supervisor is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Spawned, not yet attached: whoever started it watches it.
    Starting,
    /// The one server that serves: its unexpected exit is a crash.
    Serving,
    /// Handed over (or being handed over): its exit is expected.
    Draining,
}

#[derive(Debug, Clone)]
pub(crate) struct ServerProc {
    pub child: Child,
    pub generation: u64,
    pub build_id: String,
    pub role: Role,
    pub serving_since: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub portal: Option<Child>,
    /// The current portal has answered `PortalAdmin.Status`.
    pub portal_ready: bool,
    pub portal_streak: u32,
    /// Every server process not yet reaped, by pid.
    pub servers: BTreeMap<u32, ServerProc>,
    /// The last generation handed out.
    pub generation: u64,
    pub restarts: u64,
    pub reloads: u64,
    /// Reloads that failed (the serving server kept serving).
    pub reload_failures: u64,
    /// Serving servers that exited without handing over.
    pub crashes: u64,
    /// Times `crash_loop_limit` was reached.
    pub crash_loops: u64,
    /// Times the portal exited unexpectedly.
    pub portal_crashes: u64,
    /// The last reload's dark time, for systemd's status line.
    pub last_dark_micros: Option<u64>,
    pub last_exit_reason: String,
    /// Server crashes (or failed starts) in a row.
    pub crash_streak: u32,
    /// `crash_loop_limit` reached: no more automatic restarts.
    pub crash_looped: bool,
    /// Server starts in a row that failed because the database could not be
    /// written: they back off like crashes but never end the restarts.
    pub storage_streak: u32,
    pub stopping: bool,
    /// Why the supervisor stops, when it is not because it was asked to.
    pub stop_reason: String,
    /// The build id of the last server that served: crash restarts use it.
    pub last_serving_build: Option<String>,
    /// The build that served before `last_serving_build` took over, kept
    /// in run/bin: the last-known-good build a crash loop falls back to.
    /// None before the first change of build, and after a fallback (there
    /// is no going forward to the build that crashed).
    pub previous_build: Option<String>,
    /// When `last_serving_build` took over from another build.
    pub build_since: Option<Instant>,
    /// Why the serving build is not the newest one (a fallback), or why a
    /// fallback was refused; empty when neither. Shown by `evctl status`.
    pub build_note: String,
    /// Times the supervisor fell back to the previous build.
    pub fallbacks: u64,
}

impl State {
    pub fn serving(&self) -> Option<&ServerProc> {
        self.servers.values().find(|s| s.role == Role::Serving)
    }
}

pub(crate) struct Shared {
    pub game: GameDir,
    /// ev.toml as last read: at start, and again at each reload.
    settings: std::sync::RwLock<Arc<Settings>>,
    /// Where the supervisor's own binary is: ev-portal and the default
    /// ev-server are found beside it.
    beside: PathBuf,
    /// `--watch`: auto-reload on, whatever ev.toml says.
    watch: bool,
    pub portal_bin: PathBuf,
    pub installer: Installer,
    pub portal: PortalClient,
    pub notifier: Notifier,
    /// Each reload's dark time, for the metrics.
    pub dark_times: crate::metrics::DarkTimes,
    /// Where metrics are served, once bound; None: not served.
    pub metrics_addr: std::sync::OnceLock<std::net::SocketAddr>,
    pub started: Instant,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    pub stop: CancellationToken,
    /// One server start or hand-over at a time.
    pub ops: tokio::sync::Mutex<()>,
    /// Held for a whole reload; a second reload is refused, not queued.
    pub reload_busy: tokio::sync::Mutex<()>,
}

impl Shared {
    fn new(game: GameDir, mut config: Config, watch: bool) -> anyhow::Result<Shared> {
        config.server.auto_reload |= watch;
        let exe = std::env::current_exe().context("finding the supervisor's own executable")?;
        let beside = exe.parent().map(Path::to_owned).unwrap_or_default();
        let settings = Settings::new(config, &game, &beside);
        Ok(Shared {
            portal_bin: beside.join("ev-portal"),
            settings: std::sync::RwLock::new(Arc::new(settings)),
            beside,
            watch,
            installer: Installer::new(game.bin_dir()),
            portal: PortalClient::new(&game.link_socket()),
            notifier: Notifier::from_env(),
            dark_times: crate::metrics::DarkTimes::default(),
            metrics_addr: std::sync::OnceLock::new(),
            started: Instant::now(),
            state: Mutex::new(State::default()),
            changed: watch::Sender::new(0),
            stop: CancellationToken::new(),
            ops: tokio::sync::Mutex::new(()),
            reload_busy: tokio::sync::Mutex::new(()),
            game,
        })
    }

    /// ev.toml as last read.
    pub fn config(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads ev.toml again for a reload: what a reload applies takes effect
    /// (the new server reads the file itself; the supervisor's own settings
    /// are read where they are used). Returns the changed keys that only a
    /// restart applies; a file that does not load changes nothing.
    pub fn reread_config(&self) -> Result<Vec<String>, String> {
        let mut fresh = Config::load(&self.game.config_path()).map_err(|e| e.to_string())?;
        fresh.server.auto_reload |= self.watch;
        let mut settings = self.settings.write().unwrap_or_else(|e| e.into_inner());
        let pending = crate::settings::restart_only_changes(&settings.running, &fresh);
        *settings = Arc::new(settings.reread(fresh, &self.game, &self.beside));
        Ok(pending)
    }

    /// Changes the state and wakes everyone waiting for a change.
    pub fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let result = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut state)
        };
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        result
    }

    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&state)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Begins the stop; returns at once.
    pub fn request_stop(&self) {
        if !self.stop.is_cancelled() {
            tracing::info!("stop requested");
        }
        self.update(|s| s.stopping = true);
        self.stop.cancel();
    }

    /// Stops because the supervisor cannot go on; `WaitReady` reports why.
    fn fail(&self, reason: &str) {
        tracing::error!("{reason}; stopping");
        self.update(|s| {
            s.stopping = true;
            s.stop_reason = reason.to_owned();
        });
        self.stop.cancel();
    }

    pub fn start_timeout(&self) -> Duration {
        Duration::from_millis(self.config().server.start_timeout_ms)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.config().server.drain_timeout_ms)
    }

    /// run/telnet.addr, as the portal wrote it.
    pub fn telnet_addr_file(&self) -> String {
        std::fs::read_to_string(self.game.telnet_addr_path())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    /// Blocks until the portal answers and a server serves, or `timeout`.
    /// Fails early when the supervisor stops or the server is crash-looping.
    /// Returns the telnet address.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.subscribe();
        loop {
            changed.borrow_and_update();
            let verdict = self.read(|s| {
                if s.stopping && s.stop_reason.is_empty() {
                    Some(Err("ev is stopping".to_owned()))
                } else if s.stopping {
                    Some(Err(format!("ev is stopping: {}", s.stop_reason)))
                } else if s.crash_looped {
                    Some(Err(format!(
                        "the server failed {} times in a row and is not restarted any more (last: {}); fix it and run `evctl reload`",
                        s.crash_streak, s.last_exit_reason
                    )))
                } else if s.portal_ready && s.serving().is_some() {
                    Some(Ok(()))
                } else {
                    None
                }
            });
            match verdict {
                Some(Ok(())) => break,
                Some(Err(e)) => return Err(e),
                None => {}
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    let last = self.read(|s| s.last_exit_reason.clone());
                    let mut message = format!("not ready within {} ms", timeout.as_millis());
                    if !last.is_empty() {
                        message.push_str(&format!(" (last server failure: {last})"));
                    }
                    return Err(message);
                }
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), self.portal.status()).await {
            Ok(Ok(status)) if !status.telnet_addr.is_empty() => Ok(status.telnet_addr),
            Ok(Ok(_)) => Ok(self.telnet_addr_file()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the portal did not answer within 5 s".into()),
        }
    }
}

/// The supervisor's whole life. Returns once everything it started is gone.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let game = options.game;
    let config = Config::load(&game.config_path())?;
    game.check_socket_paths()?;
    game.create_dirs()?;
    let lock = PidLock::acquire(&game.pid_path("supervisor"))?;
    let metrics = bind_metrics(&game, &config)?;
    let shared = Arc::new(Shared::new(game, config, options.watch)?);
    tracing::info!(
        "supervisor for {} (portal {}, server {})",
        shared.game.root().display(),
        shared.portal_bin.display(),
        shared.config().server_bin.display()
    );

    let incoming = crate::control::bind(&shared.game.control_socket())
        .with_context(|| format!("binding {}", shared.game.control_socket().display()))?;
    let done = CancellationToken::new();
    let control = tokio::spawn(crate::control::serve(
        shared.clone(),
        incoming,
        done.clone(),
    ));
    let signals = tokio::spawn(handle_signals(shared.clone()));
    if let Some((listener, addr)) = metrics {
        let _ = shared.metrics_addr.set(addr);
        tokio::spawn(crate::exporter::serve(shared.clone(), listener));
    }

    // The first portal must come up, or there is nothing to supervise: a
    // portal that cannot bind its port would only fail again.
    let first = {
        let _ops = shared.ops.lock().await;
        if crate::launch::adopt(&shared).await {
            Ok(())
        } else {
            crate::launch::start_portal(&shared).await
        }
    };
    let result = match first {
        Ok(()) => {
            let keeper = tokio::spawn(crate::restart::keep(shared.clone()));
            let watchdog = tokio::spawn(crate::watchdog::watch(shared.clone()));
            let autoreload = tokio::spawn(crate::autoreload::watch(shared.clone()));
            let logs = tokio::spawn(crate::logrotate::keep_bounded(shared.clone()));
            let sdwatch = tokio::spawn(crate::sdwatch::watch(shared.clone()));
            shared.stop.cancelled().await;
            let _ = keeper.await;
            let _ = watchdog.await;
            // A reload it started must not hold up the stop, which kills
            // whatever servers there are anyway.
            autoreload.abort();
            logs.abort();
            sdwatch.abort();
            Ok(())
        }
        // Asked to stop while the portal was starting: a normal stop.
        Err(_) if shared.stopping() => Ok(()),
        Err(e) => {
            shared.fail(&e);
            Err(anyhow::anyhow!(e))
        }
    };
    shutdown(&shared).await;
    signals.abort();
    done.cancel();
    // In-flight calls end at stop; do not let one hold the exit forever.
    if tokio::time::timeout(Duration::from_secs(2), control)
        .await
        .is_err()
    {
        tracing::warn!("control service did not finish in time");
    }
    let _ = std::fs::remove_file(shared.game.control_socket());
    let _ = std::fs::remove_file(shared.game.metrics_addr_path());
    tracing::info!("supervisor exiting");
    lock.remove();
    result
}

/// Binds `supervisor.metrics`, if set, and writes the address bound to
/// run/metrics.addr (port 0 picks one).
fn bind_metrics(
    game: &GameDir,
    config: &Config,
) -> anyhow::Result<Option<(std::net::TcpListener, std::net::SocketAddr)>> {
    let _ = std::fs::remove_file(game.metrics_addr_path());
    let Some(addr) = config
        .supervisor
        .metrics_addr()
        .map_err(|e| anyhow::anyhow!(e))?
    else {
        return Ok(None);
    };
    let listener = crate::exporter::bind(addr).with_context(|| {
        format!("cannot serve metrics on {addr} (supervisor.metrics in ev.toml)")
    })?;
    let bound = listener.local_addr().context("the metrics address")?;
    let path = game.metrics_addr_path();
    std::fs::write(&path, format!("{bound}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    if !bound.ip().is_loopback() {
        tracing::warn!(
            "metrics are served on {bound}, not a loopback address: anyone who reaches it reads them"
        );
    }
    tracing::info!("metrics at http://{bound}/metrics");
    Ok(Some((listener, bound)))
}

async fn handle_signals(shared: Arc<Shared>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => shared.request_stop(),
            _ = int.recv() => shared.request_stop(),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let shared = shared.clone();
                tokio::spawn(async move {
                    match crate::reload::reload(&shared).await {
                        Ok(done) => tracing::info!("reload done: {done}"),
                        Err(e) => tracing::error!("reload failed: {}", e.error),
                    }
                });
            }
        }
    }
}

/// Graceful stop: the portal tells players and has the server finish; what is
/// still alive at the deadline is killed. Then the run files go.
async fn shutdown(shared: &Shared) {
    shared.notifier.stopping();
    let timeout = Duration::from_millis(shared.config().supervisor.stop_timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    let (portal, servers) = shared.read(|s| {
        let servers: Vec<Child> = s.servers.values().map(|p| p.child.clone()).collect();
        (s.portal.clone(), servers)
    });
    tracing::info!(
        "stopping: portal {:?}, servers {:?}",
        portal.as_ref().map(|c| c.pid),
        servers.iter().map(|c| c.pid).collect::<Vec<_>>()
    );

    let ask = {
        let client = shared.portal.clone();
        let portal = portal.clone();
        let servers = servers.clone();
        tokio::spawn(async move {
            let asked = match &portal {
                Some(p) if p.exit().is_none() => match client.shutdown(GOODBYE, timeout).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!("{e}; sending SIGTERM instead");
                        false
                    }
                },
                _ => false,
            };
            if !asked {
                for child in portal.iter().chain(&servers) {
                    child.signal_group(nix::sys::signal::Signal::SIGTERM);
                }
            }
        })
    };
    for child in portal.iter().chain(&servers) {
        if tokio::time::timeout_at(deadline, child.exited())
            .await
            .is_err()
        {
            break;
        }
    }
    ask.abort();
    // Whatever is left, including a server spawned while the stop began.
    let left: Vec<Child> = shared.read(|s| {
        s.portal
            .iter()
            .cloned()
            .chain(s.servers.values().map(|p| p.child.clone()))
            .chain(servers.iter().cloned())
            .filter(|c| c.exit().is_none())
            .collect()
    });
    for child in &left {
        tracing::warn!(
            "{} (pid {}) still running after {} ms; killing it",
            child.name,
            child.pid,
            timeout.as_millis()
        );
        child.kill().await;
    }
    for name in ["portal", "server"] {
        shared.game.remove_pid(name);
    }
    let _ = std::fs::remove_file(shared.game.link_socket());
    let _ = std::fs::remove_file(shared.game.telnet_addr_path());
    // Nothing is left to adopt: the next start counts from generation 1.
    let _ = std::fs::remove_file(shared.game.run_dir().join("generation"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn game_with(toml: &str) -> (tempfile::TempDir, GameDir) {
        let tmp = tempfile::tempdir().unwrap();
        let game = GameDir::new(tmp.path());
        std::fs::write(game.config_path(), toml).unwrap();
        (tmp, game)
    }

    #[tokio::test]
    async fn a_config_error_names_file_line_and_key() {
        let (_tmp, game) = game_with("[server]\nstart_timeout_ms = 5\nbinarry = \"x\"\n");
        let options = Options {
            watch: false,
            game: game.clone(),
            foreground: false,
        };
        let err = format!("{:#}", run(options).await.unwrap_err());
        let path = game.config_path().display().to_string();
        assert!(err.contains(&path), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("binarry"), "{err}");
        // Nothing was started or locked.
        assert!(!game.pid_path("supervisor").exists());
    }

    #[tokio::test]
    async fn a_second_supervisor_is_refused_with_the_first_ones_pid() {
        let (_tmp, game) = game_with("");
        game.create_dirs().unwrap();
        let _held = PidLock::acquire(&game.pid_path("supervisor")).unwrap();
        let options = Options {
            watch: false,
            game,
            foreground: false,
        };
        let err = run(options).await.unwrap_err().to_string();
        assert_eq!(err, format!("already running (pid {})", std::process::id()));
    }
}
