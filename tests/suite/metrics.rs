//! Prometheus metrics (issue 14): the supervisor serves them on
//! `supervisor.metrics`, off unless set. A real game is scraped over HTTP
//! while a player's command, a reload and a `kill -9` of the server each
//! move what they should; the portal's counters carry on across server
//! generations. Bad requests get an HTTP error, never a hang, and the
//! shipped Grafana dashboard asks only for metrics a scrape has.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::{Config, Game, alive, text, wait_until};

/// How long any metric may take to show what happened.
const SETTLE: Duration = Duration::from_secs(30);

fn with_metrics(c: &mut Config) {
    // Port 0: the supervisor writes the port it got to run/metrics.addr.
    c.supervisor.metrics = "127.0.0.1:0".into();
}

fn metrics_addr(game: &Game) -> SocketAddr {
    let path = game.root().join("run/metrics.addr");
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}{}", path.display(), game.log_tails()));
    raw.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{} holds {raw:?}: {e}", path.display()))
}

/// Sends `request` as it is and returns everything the server sent until it
/// closed the connection; fails the test if that takes past `timeout`.
fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    // A server that refuses a request may close before it is all sent.
    if let Err(e) = stream.write_all(request)
        && !matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        )
    {
        panic!("sending to {addr}: {e}");
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{addr} did not close the connection within {timeout:?}; got {:?}",
            String::from_utf8_lossy(&got)
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("reading from {addr}: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn get(addr: SocketAddr, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ev-test\r\n\r\n");
    exchange(addr, request.as_bytes(), Duration::from_secs(20))
}

/// The status line of a response, e.g. `HTTP/1.1 200 OK`.
fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

/// One scrape, as `series → value`, where a series is the name with its
/// labels as written (`ev_sessions{protocol="telnet"}`).
struct Scrape {
    text: String,
    series: BTreeMap<String, f64>,
}

impl Scrape {
    fn take(addr: SocketAddr) -> Scrape {
        let response = get(addr, "/metrics");
        assert_eq!(status_line(&response), "HTTP/1.1 200 OK", "{response}");
        let head_end = response.find("\r\n\r\n").expect("a response head");
        let (head, body) = response.split_at(head_end);
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        let mut series = BTreeMap::new();
        for line in body
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (name, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("{line:?}: not a number: {e}"));
            series.insert(name.to_owned(), value);
        }
        Scrape {
            text: body.to_owned(),
            series,
        }
    }

    /// The value of `series`; panics naming it and the scrape if absent.
    fn get(&self, series: &str) -> f64 {
        *self
            .series
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in the scrape:\n{}", self.text))
    }

    /// The value of `series`, if the scrape has it (`ev_server_generation`
    /// only while a server serves).
    fn value(&self, series: &str) -> Option<f64> {
        self.series.get(series).copied()
    }

    /// Names of every metric family (`# TYPE` lines).
    fn families(&self) -> Vec<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_owned)
            .collect()
    }
}

/// Scrapes until `cond` holds, failing with the last scrape at the deadline.
fn scrape_until(addr: SocketAddr, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + SETTLE;
    loop {
        let scrape = Scrape::take(addr);
        if cond(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {SETTLE:?} waiting for {what}; last scrape:\n{}",
            scrape.text
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scrape, a command over telnet, a reload and a `kill -9`: each moves
/// its metrics, and the portal's counters carry on across the three server
/// generations.
#[test]
fn metrics_follow_a_command_a_reload_and_a_killed_server() {
    let game = Game::with_config(|c| {
        with_metrics(c);
        // Round trips to time within the test's patience.
        c.server.heartbeat_ms = 100;
    });
    game.start();
    let addr = metrics_addr(&game);
    assert!(
        text(&game.evctl(&["status"])).contains(&format!("http://{addr}/metrics")),
        "evctl status does not show the metrics address"
    );
    // The one listener of the supervisor (what the test with metrics off
    // counts, so that count is known to see one).
    let supervisor = game.pid("supervisor").expect("run/supervisor.pid");
    assert_eq!(listening_tcp_sockets(supervisor), 1);

    let before = Scrape::take(addr);
    for (series, want) in [
        ("ev_reloads_total", 0.0),
        ("ev_reload_dark_seconds_count", 0.0),
        ("ev_server_restarts_total", 0.0),
        ("ev_server_crashes_total", 0.0),
        ("ev_server_fallbacks_total", 0.0),
        ("ev_server_generation", 1.0),
        ("ev_server_serving", 1.0),
        ("ev_portal_up", 1.0),
        ("ev_players", 0.0),
        ("ev_inputs_applied_total", 0.0),
    ] {
        assert_eq!(before.get(series), want, "{series}:\n{}", before.text);
    }
    // Read from the database; what is in it depends on what was delivered.
    assert!(before.value("ev_outbox_rows").is_some(), "{}", before.text);
    for process in ["supervisor", "portal", "server"] {
        let rss = before.get(&format!(
            "ev_process_resident_memory_bytes{{process=\"{process}\"}}"
        ));
        assert!(rss > 1e6, "{process} RSS {rss}");
        before.get(&format!(
            "ev_process_cpu_seconds_total{{process=\"{process}\"}}"
        ));
    }

    // A command over telnet: received, applied, a player logged in.
    let mut player = game.login("Scraper");
    player.send_line("ping one");
    player.expect("pong one");
    let played = scrape_until(addr, "two inputs applied and one player", |s| {
        s.get("ev_inputs_applied_total") >= 2.0 && s.get("ev_players") == 1.0
    });
    assert_eq!(played.get("ev_inputs_received_total"), 2.0);
    assert_eq!(played.get("ev_sessions{protocol=\"telnet\"}"), 1.0);
    assert_eq!(
        played.get("ev_sessions_opened_total{protocol=\"telnet\"}"),
        1.0
    );
    scrape_until(addr, "timed Link round trips", |s| {
        s.get("ev_link_round_trip_seconds_count") > 0.0
    });

    // A reload: counted, its dark time observed, a new generation.
    game.reload();
    let reloaded = scrape_until(addr, "the reload counted", |s| {
        s.get("ev_reloads_total") == 1.0
    });
    assert_eq!(reloaded.get("ev_reload_dark_seconds_count"), 1.0);
    assert_eq!(reloaded.get("ev_server_generation"), 2.0);
    assert_eq!(reloaded.get("ev_server_restarts_total"), 0.0);
    player.send_line("ping two");
    player.expect("pong two");
    scrape_until(addr, "the portal's count going on across the reload", |s| {
        s.get("ev_inputs_applied_total") == 3.0
    });

    // kill -9: a crash and a restart; the reload count stays.
    let server = game.pid("server").expect("run/server.pid");
    kill(Pid::from_raw(server as i32), Signal::SIGKILL).expect("kill -9 the server");
    let restarted = scrape_until(addr, "the killed server restarted", |s| {
        s.get("ev_server_restarts_total") == 1.0
            && s.get("ev_server_serving") == 1.0
            && s.value("ev_server_generation") == Some(3.0)
    });
    assert_eq!(restarted.get("ev_server_crashes_total"), 1.0);
    assert_eq!(restarted.get("ev_reloads_total"), 1.0);
    assert_eq!(restarted.get("ev_server_crash_looped"), 0.0);
    player.send_line("ping three");
    player.expect("pong three");
    let after = scrape_until(addr, "the count going on across the crash", |s| {
        s.get("ev_inputs_applied_total") == 4.0
    });
    assert_eq!(after.get("ev_inputs_received_total"), 4.0);
    assert_eq!(after.get("ev_inputs_quarantined_total"), 0.0);
    assert_eq!(after.get("ev_players"), 1.0);
    let server = game.pid("server").expect("run/server.pid");
    assert!(
        after.get("ev_process_resident_memory_bytes{process=\"server\"}") > 1e6 && alive(server)
    );

    // Every metric the shipped dashboard asks for is in a scrape.
    let families = after.families();
    for name in dashboard_metrics() {
        let known = families.iter().any(|f| {
            name == *f
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name == format!("{f}{suffix}"))
        });
        assert!(
            known,
            "the dashboard asks for {name}, which no scrape has:\n{}",
            after.text
        );
    }
}

/// Every `ev_…` metric name in the expressions of the Grafana dashboard.
fn dashboard_metrics() -> Vec<String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/grafana-dashboard.json");
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let json: serde_json::Value =
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut exprs = Vec::new();
    collect_exprs(&json, &mut exprs);
    assert!(!exprs.is_empty(), "{} has no expressions", path.display());
    let mut names: Vec<String> = exprs
        .iter()
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("ev_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// A command that crashes the server is in flight at the crash: it is
/// replayed to the next server, crashes it too, and is quarantined.
#[test]
fn a_poison_command_is_counted_replayed_then_quarantined() {
    // ev-test-server, whose `@crash` crashes it.
    let game = Game::with_server_script(with_metrics);
    game.start();
    let addr = metrics_addr(&game);
    let mut player = game.login("Poisoner");
    player.send_line("@crash");
    player.expect("crashed the game more than once and was not run again");
    // The portal may count the quarantine before the supervisor has seen the
    // second server go: wait for the third to serve.
    let after = scrape_until(addr, "the quarantine counted and a third server", |s| {
        s.get("ev_inputs_quarantined_total") == 1.0
            && s.get("ev_server_serving") == 1.0
            && s.value("ev_server_generation") == Some(3.0)
    });
    assert_eq!(after.get("ev_inputs_replayed_total"), 1.0, "{}", after.text);
    assert_eq!(after.get("ev_server_crashes_total"), 2.0, "{}", after.text);
    assert_eq!(after.get("ev_server_restarts_total"), 2.0, "{}", after.text);
    // Its player plays on.
    player.send_line("ping after");
    player.expect("pong after");
}

/// Off unless set: no address file, nothing the supervisor listens on, and
/// `evctl status` names no metrics.
#[test]
fn metrics_are_off_by_default() {
    let game = Game::started();
    assert!(!game.root().join("run/metrics.addr").exists());
    let supervisor = game.pid("supervisor").expect("run/supervisor.pid");
    assert_eq!(
        listening_tcp_sockets(supervisor),
        0,
        "the supervisor listens on TCP with metrics off"
    );
    assert!(!text(&game.evctl(&["status"])).contains("metrics"));
}

/// TCP sockets in LISTEN state held by `pid`: its socket inodes, found in
/// the kernel's tables.
fn listening_tcp_sockets(pid: u32) -> usize {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("reading the pid's fds");
    let inodes: Vec<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_owned())
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .map(|row| {
                    row.split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        // Columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode.
        .filter(|cols| cols.get(3).is_some_and(|st| st == "0A"))
        .filter(|cols| cols.get(9).is_some_and(|inode| inodes.contains(inode)))
        .count()
}

/// Whatever a client sends, it gets an HTTP error or the connection closed
/// within bounded time: another path, another method, garbage, a head too
/// large, a head that never ends.
#[test]
fn bad_requests_get_an_error_not_a_hang() {
    let game = Game::with_config(with_metrics);
    game.start();
    let addr = metrics_addr(&game);
    let quick = Duration::from_secs(20);

    assert_eq!(status_line(&get(addr, "/")), "HTTP/1.1 404 Not Found");
    assert_eq!(
        status_line(&get(addr, "/metrics/../secret")),
        "HTTP/1.1 404 Not Found"
    );
    let post = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        quick,
    );
    assert_eq!(status_line(&post), "HTTP/1.1 405 Method Not Allowed");
    let garbage = exchange(addr, b"\x16\x03\x01 hello there\r\n\r\n", quick);
    assert_eq!(status_line(&garbage), "HTTP/1.1 400 Bad Request");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let too_large = exchange(addr, &huge, quick);
    assert!(
        too_large.is_empty() || status_line(&too_large).starts_with("HTTP/1.1 431"),
        "{too_large:?}"
    );
    // A head that never ends is cut off (after the 5 s header timeout).
    let started = Instant::now();
    let unfinished = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n", quick);
    assert!(
        !unfinished.starts_with("HTTP/1.1 200"),
        "an unfinished request was answered: {unfinished:?}"
    );
    assert!(started.elapsed() < quick);

    // The game and its metrics carry on.
    Scrape::take(addr);
    let mut player = game.login("After");
    player.send_line("ping ok");
    player.expect("pong ok");
}

/// A taken metrics port fails the start with the cause first, as a taken
/// telnet port does.
#[test]
fn a_taken_metrics_port_fails_the_start_plainly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port to take");
    let addr = taken.local_addr().expect("its address");
    let game = Game::with_config(|c| c.supervisor.metrics = addr.to_string());
    let out = game.evctl(&["start"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "{addr} is in use by another process (supervisor.metrics in ev.toml)"
        )),
        "{said}"
    );
    wait_until(
        "nothing of the game to run",
        Duration::from_secs(10),
        || game.pids().iter().all(|&(_, pid)| !alive(pid)),
    );
}
