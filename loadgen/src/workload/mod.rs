//! The workloads, one module each, and what they share: running an operator
//! command (`sh -c`) with a time limit and keeping its output.

mod broadcast;
mod flood;
mod hold;
mod latency;
mod provision;
mod reload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::Workload;
use crate::game::Game;
use crate::report::Outcome;

pub async fn run(game: Arc<Game>, workload: Workload) -> anyhow::Result<Outcome> {
    match workload {
        Workload::Provision { sessions } => provision::provision(game, sessions).await,
        Workload::Login {
            name,
            create_missing,
            retry_ms,
        } => hold::login_once(game, name, create_missing, Duration::from_millis(retry_ms)).await,
        Workload::Latency {
            sessions,
            rate,
            duration,
            drain_ms,
        } => {
            latency::latency(
                game,
                sessions,
                rate,
                secs(duration)?,
                Duration::from_millis(drain_ms),
            )
            .await
        }
        Workload::Throughput {
            sessions,
            duration,
            depth,
            drain_ms,
        } => {
            latency::throughput(
                game,
                sessions,
                depth,
                secs(duration)?,
                Duration::from_millis(drain_ms),
            )
            .await
        }
        Workload::Broadcast {
            listeners,
            duration,
            say,
            echo,
            heard,
            rate,
            depth,
            drain_ms,
        } => {
            let args = broadcast::Args {
                listeners,
                duration: secs(duration)?,
                say,
                echo,
                heard,
                rate,
                depth,
                drain: Duration::from_millis(drain_ms),
            };
            broadcast::broadcast(game, args).await
        }
        Workload::Reload(args) => reload::reload(game, args).await,
        Workload::Hold {
            sessions,
            then,
            duration,
        } => hold::hold(game, sessions, then, secs(duration)?).await,
        Workload::Flood(args) => flood::flood(game, *args).await,
    }
}

/// The number of sessions a workload opens at once (for the open-file check).
pub fn sessions_needed(workload: &Workload) -> u64 {
    let n = match workload {
        Workload::Provision { .. } | Workload::Login { .. } => 1,
        Workload::Latency { sessions, .. }
        | Workload::Throughput { sessions, .. }
        | Workload::Hold { sessions, .. } => *sessions,
        Workload::Broadcast { listeners, .. } => listeners.saturating_add(1),
        Workload::Reload(args) => args.sessions,
        Workload::Flood(args) => flood::sessions_needed(args),
    };
    u64::from(n)
}

fn secs(s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| anyhow::anyhow!("{s} is not a duration in seconds"))
}

/// An operator command's run.
#[derive(Debug, Clone, Serialize)]
pub struct CmdRun {
    pub command: String,
    /// None if it was killed by a signal or timed out.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub elapsed_ms: f64,
    /// The last non-empty line of its stdout (else stderr).
    pub last_line: String,
    /// Its stdout and stderr, cut to the last 4 KiB.
    pub output: String,
}

impl CmdRun {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// Runs `command` with `sh -c`, killing it after `limit`.
pub async fn run_cmd(command: &str, limit: Duration) -> CmdRun {
    let started = Instant::now();
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut run = CmdRun {
        command: command.to_owned(),
        exit_code: None,
        timed_out: false,
        elapsed_ms: 0.0,
        last_line: String::new(),
        output: String::new(),
    };
    match child {
        Err(e) => run.output = format!("cannot run sh: {e}"),
        Ok(child) => match tokio::time::timeout(limit, child.wait_with_output()).await {
            Err(_) => run.timed_out = true,
            Ok(Err(e)) => run.output = format!("waiting for the command: {e}"),
            Ok(Ok(out)) => {
                run.exit_code = out.status.code();
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                run.last_line = last_line(&stdout)
                    .or_else(|| last_line(&stderr))
                    .unwrap_or_default()
                    .to_owned();
                let all = format!("{stdout}{stderr}");
                let mut cut = all.len().saturating_sub(4096);
                while !all.is_char_boundary(cut) {
                    cut += 1;
                }
                run.output = all[cut..].trim_end().to_owned();
            }
        },
    }
    run.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    run
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_report_status_output_and_time_limit() {
        let ok = run_cmd(
            "echo one; echo 'dark for 3 ms'; echo >&2 err",
            Duration::from_secs(10),
        )
        .await;
        assert!(ok.succeeded());
        assert_eq!(ok.last_line, "dark for 3 ms");
        assert!(ok.output.contains("err"));
        let failed = run_cmd("echo >&2 broken; exit 3", Duration::from_secs(10)).await;
        assert_eq!(failed.exit_code, Some(3));
        assert_eq!(failed.last_line, "broken");
        let slow = run_cmd("sleep 5", Duration::from_millis(50)).await;
        assert!(slow.timed_out && !slow.succeeded());
    }
}
