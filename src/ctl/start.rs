//! `evctl start [--foreground]`.
//!
//! Detached: spawn the supervisor in a new session with its output appended
//! to logs/supervisor.log, then wait on its Control service until a server
//! serves. Foreground: become the supervisor (exec), so systemd's main pid is
//! the supervisor itself.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{EXIT_OK, Failure, Outcome, client, probe, say};
use crate::config::Config;
use crate::gamedir::GameDir;
use crate::pb::control::WaitReadyRequest;

/// How many lines of each log a failed start shows.
const TAIL: usize = 20;

pub fn run(game: &GameDir, foreground: bool, watch: bool) -> Outcome {
    let fail = |e: &dyn std::fmt::Display| Failure::new(format!("cannot start: {e}"));
    game.check_exists().map_err(|e| fail(&e))?;
    game.check_socket_paths().map_err(|e| fail(&e))?;
    let config = Config::load(&game.config_path()).map_err(|e| fail(&e))?;
    if let Some(pid) = probe::supervisor(game) {
        return Err(Failure::new(format!("already running (pid {pid})")));
    }
    // A portal left running (its supervisor died) is adopted, port and all.
    if !probe::live(game).iter().any(|&(name, _)| name == "portal") {
        port_free(config.portal.telnet, "portal.telnet").map_err(|e| fail(&e))?;
        if let Some(web) = config.portal.web {
            port_free(web, "portal.web").map_err(|e| fail(&e))?;
        }
    }
    // The supervisor serves metrics itself: none runs, so the port must be free.
    if let Ok(Some(addr)) = config.supervisor.metrics_addr() {
        port_free(addr, "supervisor.metrics").map_err(|e| fail(&e))?;
    }
    game.create_dirs().map_err(|e| fail(&e))?;
    let supervisor = beside_me("ev-supervisor").map_err(|e| fail(&e))?;
    let mut command = std::process::Command::new(&supervisor);
    command.arg("--game-dir").arg(game.root());
    if watch {
        command.arg("--watch");
    }
    // `EV_ADMIN_PASSWORD=… evctl init` in a script often leaves it exported
    // (`EV_NEW_PASSWORD` too, for `evctl passwd`): no long-lived process
    // keeps one in its environment (/proc/PID/environ).
    for var in super::password::PASSWORD_VARS {
        command.env_remove(var);
    }

    if foreground {
        let err = command.arg("--foreground").exec();
        return Err(fail(&format!("running {}: {err}", supervisor.display())));
    }

    let log_path = game.log_path("supervisor");
    let offsets = Offsets::now(game);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| fail(&format!("opening {}: {e}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|e| fail(&format!("opening {}: {e}", log_path.display())))?;
    command.stdin(Stdio::null()).stdout(log).stderr(log_err);
    crate::sys::detach(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| fail(&format!("running {}: {e}", supervisor.display())))?;
    let pid = child.id();

    let timeout = Duration::from_millis(config.server.start_timeout_ms) + Duration::from_secs(10);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&format!("starting the async runtime: {e}")))?;
    let stop_timeout =
        Duration::from_millis(config.supervisor.stop_timeout_ms) + Duration::from_secs(5);
    let ready = runtime.block_on(async {
        match wait_ready(game, &mut child, timeout).await {
            // It gave up and is on its way out: report its exit, with its words.
            Err(Why::NotReady(why)) if why.starts_with("ev is stopping") => {
                match wait_exit(&mut child, stop_timeout).await {
                    Some(exit) => Err(Why::Exited(exit)),
                    None => Err(Why::NotReady(why)),
                }
            }
            other => other,
        }
    });
    match ready {
        Ok(telnet) => {
            // Written by the portal before it is ready: the webclient's
            // page, and the TLS listener's address (removed when it has none).
            let listening = super::status::Listening::read(game);
            let web = listening
                .web
                .map(|url| format!(", web {url}"))
                .unwrap_or_default();
            let tls = listening
                .tls
                .map(|addr| format!(", TLS {addr}"))
                .unwrap_or_default();
            say(format!(
                "ev is running: telnet {telnet}{web}{tls} (supervisor pid {pid})"
            ))?;
            Ok(EXIT_OK)
        }
        Err(Why::Exited(status)) => {
            let said = last_words(&log_path, offsets.supervisor);
            let reason = match said {
                Some(words) => format!("the supervisor {status}: {words}"),
                None => format!("the supervisor {status}"),
            };
            Err(Failure::new(format!("start failed: {reason}")).with_details(offsets.tails(game)))
        }
        Err(Why::NotReady(reason)) => Err(Failure::new(format!(
            "start failed: {reason}; the supervisor (pid {pid}) is still running: see `evctl status`, stop it with `evctl stop`"
        ))
        .with_details(offsets.tails(game))),
    }
}

/// Fails with a plain reason when `addr` cannot be listened on: otherwise the
/// cause surfaces only as the last of many log lines, after the portal died.
pub(super) fn port_free(addr: std::net::SocketAddr, key: &str) -> Result<(), String> {
    if addr.port() == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "{addr} is in use by another process ({key} in ev.toml)"
        )),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
            "{addr} needs privileges to listen on (ports below 1024 do): use a higher {key} port"
        )),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => Err(format!(
            "{addr} is not an address of this machine ({key} in ev.toml)"
        )),
        Err(e) => Err(format!("cannot listen on {addr}: {e}")),
    }
}

enum Why {
    /// "exited with status 1"
    Exited(String),
    NotReady(String),
}

fn exit_words(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "exited".into(),
    }
}

async fn wait_ready(
    game: &GameDir,
    child: &mut std::process::Child,
    timeout: Duration,
) -> Result<String, Why> {
    let deadline = Instant::now() + timeout;
    let exited = |child: &mut std::process::Child| match child.try_wait() {
        Ok(Some(status)) => Some(exit_words(status)),
        Ok(None) => None,
        Err(e) => Some(format!("cannot be waited for ({e})")),
    };
    // The supervisor binds its control socket before starting anything.
    let mut delay = Duration::from_millis(5);
    let mut control = loop {
        if let Some(status) = exited(child) {
            return Err(Why::Exited(status));
        }
        if let Ok(client) = client::connect(game).await {
            break client;
        }
        if Instant::now() >= deadline {
            return Err(Why::NotReady(format!(
                "the supervisor did not open {} within {} ms",
                game.control_socket().display(),
                timeout.as_millis()
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let reply = control
        .wait_ready(WaitReadyRequest {
            timeout_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
        })
        .await;
    match reply {
        Ok(reply) => {
            let reply = reply.into_inner();
            if reply.ready {
                Ok(reply.telnet_addr)
            } else {
                Err(Why::NotReady(reply.error))
            }
        }
        Err(status) => {
            // The connection broke: most likely the supervisor gave up.
            match wait_exit(child, Duration::from_secs(2)).await {
                Some(exit) => Err(Why::Exited(exit)),
                None => Err(Why::NotReady(format!(
                    "the supervisor did not answer: {}",
                    status.message()
                ))),
            }
        }
    }
}

/// Polls the child for a short while: it is ours, so no pidfd is needed.
async fn wait_exit(child: &mut std::process::Child, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(exit_words(status)),
            Err(e) => return Some(format!("cannot be waited for ({e})")),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Where each log ended before the start, so only this start's lines show.
struct Offsets {
    supervisor: u64,
    portal: u64,
    server: u64,
}

impl Offsets {
    fn now(game: &GameDir) -> Offsets {
        let len = |name| {
            std::fs::metadata(game.log_path(name))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        Offsets {
            supervisor: len("supervisor"),
            portal: len("portal"),
            server: len("server"),
        }
    }

    fn tails(&self, game: &GameDir) -> Vec<String> {
        let mut out = Vec::new();
        for (name, offset) in [
            ("supervisor", self.supervisor),
            ("portal", self.portal),
            ("server", self.server),
        ] {
            let path = game.log_path(name);
            let lines = lines_since(&path, offset);
            if lines.is_empty() {
                continue;
            }
            out.push(format!("--- {} (last lines)", path.display()));
            let from = lines.len().saturating_sub(TAIL);
            out.extend(lines[from..].iter().map(|l| format!("  {l}")));
        }
        out
    }
}

fn lines_since(path: &Path, offset: u64) -> Vec<String> {
    let mut text = Vec::new();
    let read = std::fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut text)
    });
    if read.is_err() {
        return Vec::new();
    }
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The supervisor's own last error (`ev-supervisor: ...`), if it said one.
fn last_words(log: &Path, offset: u64) -> Option<String> {
    lines_since(log, offset)
        .into_iter()
        .rev()
        .find_map(|l| l.strip_prefix("ev-supervisor: ").map(str::to_owned))
}

/// A binary installed beside evctl.
/// The server binary ev.toml names (`server.binary`, relative to the game
/// directory), or `ev-server` beside evctl: what the supervisor starts.
pub(super) fn server_binary(game: &GameDir, config: &Config) -> Result<PathBuf, String> {
    if config.server.binary.as_os_str().is_empty() {
        return beside_me("ev-server");
    }
    let path = game.root().join(&config.server.binary);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} (server.binary in {}) not found",
            path.display(),
            game.config_path().display()
        ))
    }
}

pub fn beside_me(name: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("finding evctl's own path: {e}"))?;
    let path = me
        .parent()
        .map(|dir| dir.join(name))
        .ok_or_else(|| format!("{} has no directory", me.display()))?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found (it is installed beside evctl)",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lines_after_the_offset_and_the_supervisors_last_words() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("supervisor.log");
        std::fs::write(&log, "ev-supervisor: old failure\n").unwrap();
        let offset = std::fs::metadata(&log).unwrap().len();
        assert_eq!(last_words(&log, offset), None);
        std::fs::write(
            &log,
            "ev-supervisor: old failure\n1.0 [supervisor#0/1] INFO x\nev-supervisor: portal exited with status 1 before it was ready\n",
        )
        .unwrap();
        assert_eq!(lines_since(&log, offset).len(), 2);
        assert_eq!(
            last_words(&log, offset).as_deref(),
            Some("portal exited with status 1 before it was ready")
        );
    }
}
