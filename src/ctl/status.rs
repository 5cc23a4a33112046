//! `evctl status [--json]`.

use serde::Serialize;

use super::{EXIT_NOT_RUNNING, EXIT_OK, EXIT_SERVER_DOWN, Failure, Outcome, client, probe, say};
use crate::gamedir::GameDir;
use crate::pb::control::{StatusReply, StatusRequest};

#[derive(Debug, Serialize)]
struct Process {
    name: String,
    pid: u32,
    state: String,
    uptime_ms: u64,
    rss_bytes: u64,
    cpu_ms: u64,
}

/// `--json`: the same fields as the table.
#[derive(Debug, Serialize)]
struct Status {
    running: bool,
    /// Running, but the server is down and not restarted (a crash loop).
    server_down: bool,
    game_dir: String,
    telnet_addr: String,
    /// Telnet over TLS; empty: not served.
    tls_addr: String,
    /// The webclient's page (`http://` or `https://`); empty: not served.
    web_url: String,
    /// The webclient's WebSocket (`ws://` or `wss://`); empty: not served.
    web_socket: String,
    processes: Vec<Process>,
    server_generation: u64,
    build_id: String,
    server_restarts: u64,
    reloads: u64,
    last_exit_reason: String,
    sessions: u64,
    logged_in: u64,
    /// Where Prometheus metrics are served; empty: not served.
    metrics_addr: String,
    /// Why the serving build is not the newest (a fallback after a crash
    /// loop), or why a fallback was refused; empty: neither.
    build_note: String,
}

impl From<StatusReply> for Status {
    fn from(r: StatusReply) -> Status {
        let server_down = r
            .processes
            .iter()
            .any(|p| p.name == "server" && p.state == "crash-loop");
        Status {
            running: true,
            server_down,
            game_dir: r.game_dir,
            telnet_addr: r.telnet_addr,
            tls_addr: String::new(),
            web_url: String::new(),
            web_socket: String::new(),
            processes: r
                .processes
                .into_iter()
                .map(|p| Process {
                    name: p.name,
                    pid: p.pid,
                    state: p.state,
                    uptime_ms: p.uptime_ms,
                    rss_bytes: p.rss_bytes,
                    cpu_ms: p.cpu_ms,
                })
                .collect(),
            server_generation: r.server_generation,
            build_id: r.build_id,
            server_restarts: r.server_restarts,
            reloads: r.reloads,
            last_exit_reason: r.last_exit_reason,
            sessions: r.sessions,
            logged_in: r.logged_in,
            metrics_addr: r.metrics_addr,
            build_note: r.build_note,
        }
    }
}

pub async fn run(game: &GameDir, json: bool) -> Outcome {
    let Some(pid) = probe::supervisor(game) else {
        return not_running(game, json);
    };
    let reply = match ask(game).await {
        Ok(reply) => reply,
        // It may have exited between the probe and the call.
        Err(_) if probe::supervisor(game).is_none() => return not_running(game, json),
        Err(e) => return Err(client::unreachable(game, "no status", pid, &e)),
    };
    let mut status = Status::from(reply);
    let listening = Listening::read(game);
    status.tls_addr = listening.tls.unwrap_or_default();
    if let Some(web) = listening.web {
        status.web_socket = socket_url(&web);
        status.web_url = web;
    }
    if json {
        let text = serde_json::to_string_pretty(&status)
            .map_err(|e| Failure::new(format!("encoding the status: {e}")))?;
        say(text)?;
    } else {
        if status.server_down {
            say(
                "ev is running, but the server is down: it kept crashing and is not restarted \
                 any more (crash loop; see `last exit reason`). Fix it, then run `evctl reload`.\n",
            )?;
        }
        say(table(&status))?;
    }
    Ok(if status.server_down {
        EXIT_SERVER_DOWN
    } else {
        EXIT_OK
    })
}

async fn ask(game: &GameDir) -> Result<StatusReply, String> {
    let mut control = client::connect(game).await.map_err(|e| e.to_string())?;
    match control.status(StatusRequest {}).await {
        Ok(reply) => Ok(reply.into_inner()),
        Err(status) => Err(status.message().to_owned()),
    }
}

fn not_running(game: &GameDir, json: bool) -> Outcome {
    let orphans = probe::live(game);
    if json {
        let status = Status {
            running: false,
            server_down: false,
            game_dir: game.root().display().to_string(),
            telnet_addr: String::new(),
            tls_addr: String::new(),
            web_url: String::new(),
            web_socket: String::new(),
            processes: orphans
                .iter()
                .map(|&(name, pid)| Process {
                    name: name.into(),
                    pid,
                    state: "running without a supervisor".into(),
                    uptime_ms: 0,
                    rss_bytes: 0,
                    cpu_ms: 0,
                })
                .collect(),
            server_generation: 0,
            build_id: String::new(),
            server_restarts: 0,
            reloads: 0,
            last_exit_reason: String::new(),
            sessions: 0,
            logged_in: 0,
            metrics_addr: String::new(),
            build_note: String::new(),
        };
        let text = serde_json::to_string_pretty(&status)
            .map_err(|e| Failure::new(format!("encoding the status: {e}")))?;
        say(text)?;
    } else {
        say("ev is not running")?;
        if let Some(note) = probe::orphan_note(game) {
            say(note)?;
        }
    }
    Ok(EXIT_NOT_RUNNING)
}

fn table(s: &Status) -> String {
    let mut rows = vec![[
        "PROCESS".to_owned(),
        "PID".to_owned(),
        "STATE".to_owned(),
        "UPTIME".to_owned(),
        "RSS".to_owned(),
        "CPU".to_owned(),
    ]];
    for p in &s.processes {
        let known = p.pid != 0;
        rows.push([
            p.name.clone(),
            if known { p.pid.to_string() } else { "-".into() },
            p.state.clone(),
            if known {
                duration(p.uptime_ms)
            } else {
                "-".into()
            },
            if known {
                bytes(p.rss_bytes)
            } else {
                "-".into()
            },
            if known { cpu(p.cpu_ms) } else { "-".into() },
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            // Numbers right-aligned, words left-aligned.
            if matches!(i, 1 | 3 | 4 | 5) {
                line.push_str(&format!("{cell:>w$}  "));
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push('\n');
    let build = if s.build_id.is_empty() {
        String::new()
    } else {
        format!(" (build {})", s.build_id)
    };
    out.push_str(&format!(
        "server generation  {}{build}\n",
        s.server_generation
    ));
    if !s.build_note.is_empty() {
        out.push_str(&format!("build note         {}\n", s.build_note));
    }
    out.push_str(&format!("reloads            {}\n", s.reloads));
    out.push_str(&format!("restarts           {}\n", s.server_restarts));
    if !s.last_exit_reason.is_empty() {
        out.push_str(&format!("last exit reason   {}\n", s.last_exit_reason));
    }
    out.push_str(&format!(
        "sessions           {} ({} logged in)\n",
        s.sessions, s.logged_in
    ));
    if !s.telnet_addr.is_empty() {
        out.push_str(&format!("telnet             {}\n", s.telnet_addr));
    }
    if !s.tls_addr.is_empty() {
        out.push_str(&format!("telnet over TLS    {}\n", s.tls_addr));
    }
    if !s.web_url.is_empty() {
        out.push_str(&format!(
            "webclient          {} (socket {})\n",
            s.web_url, s.web_socket
        ));
    }
    if !s.metrics_addr.is_empty() {
        out.push_str(&format!(
            "metrics            http://{}/metrics\n",
            s.metrics_addr
        ));
    }
    out.push_str(&format!("game directory     {}", s.game_dir));
    out
}

/// What the portal listens on besides telnet, as it wrote it in run/ when
/// it bound (the files go with the portal): the supervisor's status knows
/// only telnet's address.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Listening {
    /// Telnet over TLS, `HOST:PORT`.
    pub tls: Option<String>,
    /// The webclient's page, `http://HOST:PORT/` or `https://…`.
    pub web: Option<String>,
}

impl Listening {
    pub fn read(game: &GameDir) -> Listening {
        let read = |path: std::path::PathBuf| {
            std::fs::read_to_string(path)
                .ok()
                .map(|text| text.trim().to_owned())
                .filter(|text| !text.is_empty())
        };
        Listening {
            tls: read(game.tls_addr_path()),
            web: read(game.web_url_path()),
        }
    }
}

/// The WebSocket of the page at `page` (`https://h:p/` → `wss://h:p/ws`).
fn socket_url(page: &str) -> String {
    let (scheme, rest) = match page.split_once("://") {
        Some(("https", rest)) => ("wss", rest),
        Some((_, rest)) => ("ws", rest),
        None => ("ws", page),
    };
    format!("{scheme}://{}/ws", rest.trim_end_matches('/'))
}

/// 1h02m, 3m07s, 12.3s.
fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{:.1}s", ms as f64 / 1000.0),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let n = n as f64;
    if n < KIB * KIB {
        format!("{:.0} KiB", n / KIB)
    } else if n < KIB * KIB * KIB {
        format!("{:.1} MiB", n / (KIB * KIB))
    } else {
        format!("{:.2} GiB", n / (KIB * KIB * KIB))
    }
}

fn cpu(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::control::ProcessInfo;

    fn reply() -> StatusReply {
        StatusReply {
            processes: vec![
                ProcessInfo {
                    name: "supervisor".into(),
                    pid: 100,
                    state: "running".into(),
                    uptime_ms: 65_000,
                    rss_bytes: 12 * 1024 * 1024,
                    cpu_ms: 1234,
                },
                ProcessInfo {
                    name: "server".into(),
                    pid: 0,
                    state: "crash-loop".into(),
                    ..ProcessInfo::default()
                },
            ],
            server_generation: 3,
            build_id: "0123456789abcdef".into(),
            server_restarts: 2,
            last_exit_reason: "server generation 2 (pid 7) killed by signal 9 (SIGKILL)".into(),
            sessions: 5,
            logged_in: 3,
            telnet_addr: "127.0.0.1:4000".into(),
            game_dir: "/srv/game".into(),
            reloads: 1,
            metrics_addr: "127.0.0.1:9100".into(),
            build_note: "fell back from build fedcba9876543210".into(),
        }
    }

    #[test]
    fn table_shows_every_field() {
        let text = table(&Status::from(reply()));
        for needle in [
            "PROCESS",
            "supervisor",
            "100",
            "1m05s",
            "12.0 MiB",
            "1.23s",
            "crash-loop",
            "generation  3 (build 0123456789abcdef)",
            "SIGKILL",
            "5 (3 logged in)",
            "127.0.0.1:4000",
            "http://127.0.0.1:9100/metrics",
            "build note         fell back from build fedcba9876543210",
            "/srv/game",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
    }

    #[test]
    fn every_listener_is_shown_with_its_scheme() {
        let mut status = Status::from(reply());
        status.tls_addr = "127.0.0.1:4003".into();
        status.web_url = "https://127.0.0.1:4001/".into();
        status.web_socket = socket_url(&status.web_url);
        assert_eq!(status.web_socket, "wss://127.0.0.1:4001/ws");
        let text = table(&status);
        assert!(text.contains("telnet over TLS    127.0.0.1:4003"), "{text}");
        assert!(
            text.contains(
                "webclient          https://127.0.0.1:4001/ (socket wss://127.0.0.1:4001/ws)"
            ),
            "{text}"
        );
        assert_eq!(socket_url("http://[::1]:80/"), "ws://[::1]:80/ws");
        let bare = table(&Status::from(reply()));
        assert!(
            !bare.contains("webclient") && !bare.contains("over TLS"),
            "{bare}"
        );
    }

    #[test]
    fn json_has_the_same_fields() {
        let value = serde_json::to_value(Status::from(reply())).unwrap();
        assert_eq!(value["processes"][0]["pid"], 100);
        assert_eq!(value["server_generation"], 3);
        assert_eq!(value["logged_in"], 3);
        assert_eq!(value["running"], true);
        assert_eq!(
            value["server_down"], true,
            "the reply's server is in a crash loop"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(1_500), "1.5s");
        assert_eq!(duration(3_723_000), "1h02m");
        assert_eq!(duration(90_061_000), "1d01h");
    }
}
