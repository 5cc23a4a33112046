//! One child process: spawned in its own process group with its output
//! appended to its log file, and watched until it exits.
//!
//! tokio reaps the child (`Child::wait` in a task of its own); everyone else
//! learns of the exit through a `watch` channel, so any number of tasks can
//! wait for it and nobody misses an exit that happened before they looked.

use std::ffi::OsString;
use std::fmt;
use std::fs::OpenOptions;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ev::process::alive;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// `wait` failed, or the status had neither a code nor a signal.
    Unknown,
    /// An adopted process (not our child) is gone; its status went to its
    /// real parent.
    Vanished,
}

impl From<std::process::ExitStatus> for Exit {
    fn from(status: std::process::ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Unknown,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exited with status {code}"),
            Exit::Signal(signal) => match Signal::try_from(*signal) {
                Ok(name) => write!(f, "killed by signal {signal} ({})", name.as_str()),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
            Exit::Unknown => write!(f, "ended for an unknown reason"),
            Exit::Vanished => write!(f, "exited (status unknown: it was adopted)"),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// "portal" or "server": names the log and the messages.
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// stdout and stderr are appended here, so the log outlives the supervisor.
    pub log: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("opening log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
}

/// A handle on a spawned process. Clones share the same exit.
#[derive(Debug, Clone)]
pub struct Child {
    pub name: &'static str,
    pub pid: u32,
    pub started: Instant,
    exit: watch::Receiver<Option<Exit>>,
}

impl Child {
    /// Spawns `spec` in a new process group (so signals meant for the
    /// supervisor's terminal or group never reach it, and killing its group
    /// also kills anything it started). Must be called inside a tokio runtime.
    pub fn spawn(spec: &Spec) -> Result<Child, SpawnError> {
        let log_err = |source| SpawnError::Log {
            path: spec.log.clone(),
            source,
        };
        let stdout = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(log_err)?;
        let stderr = stdout.try_clone().map_err(log_err)?;
        let mut command = tokio::process::Command::new(&spec.program);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            // Only the supervisor speaks to systemd.
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false);
        // A supervisor started by hand or by a unit with a password still
        // exported must not pass it on.
        for var in ev::ctl::PASSWORD_VARS {
            command.env_remove(var);
        }
        let spawn_err = |source| SpawnError::Spawn {
            program: spec.program.clone(),
            source,
        };
        let mut child = command.spawn().map_err(spawn_err)?;
        let pid = child
            .id()
            .ok_or_else(|| spawn_err(std::io::Error::other("the process has no pid")))?;
        let (tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let status = child.wait().await.map(Exit::from).unwrap_or(Exit::Unknown);
            tx.send_replace(Some(status));
        });
        Ok(Child {
            name: spec.name,
            pid,
            started: Instant::now(),
            exit,
        })
    }

    /// Watches a process an earlier supervisor started (its parent is now
    /// init, which reaps it). Not our child, so tokio cannot wait for it: a
    /// pidfd, readable once the process exits, is awaited instead (its /proc
    /// entry is polled on a kernel without pidfds).
    pub fn adopt(name: &'static str, pid: u32) -> Child {
        let (tx, exit) = watch::channel(None);
        let pidfd = ev::sys::process_exit(pid);
        tokio::spawn(async move {
            let exited = match pidfd {
                Ok(exit) => exit.await.is_ok(),
                Err(_) => false,
            };
            if !exited {
                while alive(pid) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            tx.send_replace(Some(Exit::Vanished));
        });
        // Uptime counts from the process's start, not from its adoption.
        let age = ev::process::age(pid).unwrap_or_default();
        Child {
            name,
            pid,
            started: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            exit,
        }
    }

    /// The exit, if the process has ended (and been reaped).
    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// Waits for the process to end.
    pub async fn exited(&self) -> Exit {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(exit) => exit.unwrap_or(Exit::Unknown),
            // The reaping task is gone without a word: only at runtime shutdown.
            Err(_) => Exit::Unknown,
        }
    }

    /// Waits up to `timeout` for the process to end.
    pub async fn exited_within(&self, timeout: Duration) -> Option<Exit> {
        tokio::time::timeout(timeout, self.exited()).await.ok()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sends `signal` to the child's whole process group.
    pub fn signal_group(&self, signal: Signal) {
        let Ok(pgid) = i32::try_from(self.pid) else {
            return;
        };
        if pgid > 1 {
            // ESRCH: the group is already gone, which is what we wanted.
            let _ = killpg(Pid::from_raw(pgid), signal);
        }
    }

    /// SIGKILLs the group and waits (briefly) until the child is reaped.
    pub async fn kill(&self) -> Option<Exit> {
        self.signal_group(Signal::SIGKILL);
        self.exited_within(Duration::from_secs(5)).await
    }

    /// Waits up to `grace` for the child to exit by itself, then kills it.
    pub async fn exit_or_kill(&self, grace: Duration) -> Option<Exit> {
        match self.exited_within(grace).await {
            Some(exit) => Some(exit),
            None => {
                tracing::warn!(
                    "{} (pid {}) did not exit within {} ms; killing it",
                    self.name,
                    self.pid,
                    grace.as_millis()
                );
                self.kill().await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ev::process::runs_in;

    fn sh(script: &str, log: PathBuf) -> Spec {
        Spec {
            name: "test",
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("EV_TEST_VALUE".into(), "42".into())],
            log,
        }
    }

    #[tokio::test]
    async fn output_goes_to_the_log_and_the_exit_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        std::fs::write(&log, "before\n").unwrap();
        let child = Child::spawn(&sh(
            "echo out $EV_TEST_VALUE; echo err >&2; exit 3",
            log.clone(),
        ))
        .unwrap();
        assert_eq!(child.exited().await, Exit::Code(3));
        assert_eq!(child.exit(), Some(Exit::Code(3)));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.starts_with("before\n"), "{text}");
        assert!(text.contains("out 42"), "{text}");
        assert!(text.contains("err"), "{text}");
    }

    #[tokio::test]
    async fn kill_reaches_the_group_and_names_the_signal() {
        let dir = tempfile::tempdir().unwrap();
        let child = Child::spawn(&sh("sleep 30", dir.path().join("x.log"))).unwrap();
        assert_eq!(child.exit(), None);
        let exit = child.kill().await.unwrap();
        assert_eq!(exit, Exit::Signal(9));
        assert_eq!(exit.to_string(), "killed by signal 9 (SIGKILL)");
    }

    #[tokio::test]
    async fn an_adopted_process_is_seen_to_exit() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().to_string_lossy().into_owned();
        let mut other = std::process::Command::new("sh")
            .args(["-c", "read line", &marker])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = other.id();
        // Until `sh` has exec'd, /proc shows the test binary's command line.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !runs_in(pid, dir.path()) {
            assert!(
                std::time::Instant::now() < deadline,
                "sh never showed its arguments"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(!runs_in(pid, std::path::Path::new("/elsewhere")));
        let adopted = Child::adopt("portal", pid);
        assert_eq!(adopted.exit(), None);
        other.kill().unwrap();
        other.wait().unwrap();
        assert_eq!(adopted.exited().await, Exit::Vanished);
        assert!(!alive(pid));
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = sh("", dir.path().join("x.log"));
        spec.program = dir.path().join("no-such-binary");
        let err = Child::spawn(&spec).unwrap_err().to_string();
        assert!(err.contains("no-such-binary"), "{err}");
    }
}
