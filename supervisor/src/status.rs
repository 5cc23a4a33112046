//! `Control.Status`: the supervisor's view of its processes, with figures
//! (RSS, CPU time) from `sysinfo` refreshed for those few pids only, never the
//! whole process table.

use std::collections::HashMap;
use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::supervisor::{Role, Shared};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Process {
    pub name: &'static str,
    pub pid: u32,
    pub state: &'static str,
    pub uptime_ms: u64,
    pub rss_bytes: u64,
    pub cpu_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub processes: Vec<Process>,
    pub server_generation: u64,
    pub server_restarts: u64,
    pub last_exit_reason: String,
    pub sessions: u64,
    pub logged_in: u64,
    pub build_id: String,
    pub telnet_addr: String,
    pub game_dir: String,
    pub reloads: u64,
    /// Where metrics are served; empty: not served.
    pub metrics_addr: String,
    /// A fallback to the previous build, or why it was refused.
    pub build_note: String,
}

/// Everything `evctl status` shows. The portal is asked for its session
/// counts with a short deadline: a hung portal must not hang status.
pub(crate) async fn report(shared: &Shared) -> Report {
    let mut report = shared.read(|s| {
        let mut processes = vec![Process {
            name: "supervisor",
            pid: std::process::id(),
            state: if s.stopping { "stopping" } else { "running" },
            uptime_ms: millis(shared.started.elapsed()),
            ..Process::default()
        }];
        processes.push(match &s.portal {
            Some(p) => Process {
                name: "portal",
                pid: p.pid,
                state: if s.portal_ready {
                    "running"
                } else {
                    "starting"
                },
                uptime_ms: millis(p.uptime()),
                ..Process::default()
            },
            None => Process {
                name: "portal",
                state: if s.stopping { "stopped" } else { "restarting" },
                ..Process::default()
            },
        });
        for p in s.servers.values() {
            processes.push(Process {
                name: "server",
                pid: p.child.pid,
                state: match p.role {
                    Role::Starting => "starting",
                    Role::Serving => "running",
                    Role::Draining => "draining",
                },
                uptime_ms: millis(p.child.uptime()),
                ..Process::default()
            });
        }
        if s.serving().is_none() && !s.servers.values().any(|p| p.role == Role::Starting) {
            processes.push(Process {
                name: "server",
                state: if s.stopping {
                    "stopped"
                } else if s.crash_looped {
                    "crash-loop"
                } else {
                    "restarting"
                },
                ..Process::default()
            });
        }
        let serving = s.serving();
        Report {
            processes,
            server_generation: serving.map_or(s.generation, |p| p.generation),
            server_restarts: s.restarts,
            last_exit_reason: s.last_exit_reason.clone(),
            build_id: serving.map(|p| p.build_id.clone()).unwrap_or_default(),
            game_dir: shared.game.root().display().to_string(),
            reloads: s.reloads,
            build_note: s.build_note.clone(),
            metrics_addr: shared
                .metrics_addr
                .get()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            ..Report::default()
        }
    });
    let pids: Vec<u32> = report
        .processes
        .iter()
        .map(|p| p.pid)
        .filter(|&p| p != 0)
        .collect();
    let figures = tokio::task::spawn_blocking(move || usage(&pids))
        .await
        .unwrap_or_default();
    for p in &mut report.processes {
        if let Some(u) = figures.get(&p.pid) {
            p.rss_bytes = u.rss_bytes;
            p.cpu_ms = u.cpu_ms;
        }
    }
    match tokio::time::timeout(Duration::from_secs(2), shared.portal.status()).await {
        Ok(Ok(portal)) => {
            report.sessions = portal.sessions;
            report.logged_in = portal.logged_in;
            report.telnet_addr = portal.telnet_addr;
        }
        Ok(Err(e)) => tracing::debug!("status: {e}"),
        Err(_) => tracing::warn!("status: the portal did not answer within 2 s"),
    }
    if report.telnet_addr.is_empty() {
        report.telnet_addr = shared.telnet_addr_file();
    }
    report
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub rss_bytes: u64,
    pub cpu_ms: u64,
}

/// RSS and cumulative CPU time of each of `pids` that is alive.
pub fn usage(pids: &[u32]) -> HashMap<u32, Usage> {
    let wanted: Vec<Pid> = pids.iter().map(|&p| Pid::from_u32(p)).collect();
    let mut system = System::new();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&wanted),
        true,
        ProcessRefreshKind::nothing().with_memory().with_cpu(),
    );
    pids.iter()
        .filter_map(|&pid| {
            let process = system.process(Pid::from_u32(pid))?;
            Some((
                pid,
                Usage {
                    rss_bytes: process.memory(),
                    cpu_ms: process.accumulated_cpu_time(),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_memory() {
        let me = std::process::id();
        let usage = usage(&[me]);
        assert!(usage[&me].rss_bytes > 0);
    }
}
