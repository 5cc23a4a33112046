use std::time::Duration;

use crate::util::{Game, alive, text, wait_until};

#[test]
fn start_status_stop() {
    let game = Game::new();
    let out = game.start();
    let said = text(&out);
    let addr = game.telnet_addr();
    assert!(
        said.contains(&addr.to_string()),
        "start does not name the telnet address {addr}: {said}"
    );

    let pids = game.pids();
    let names: Vec<&str> = pids.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["supervisor", "portal", "server"],
        "pidfiles after start"
    );
    for (name, pid) in &pids {
        assert!(
            alive(*pid),
            "{name} pid {pid} from its pidfile is not running"
        );
    }
    let supervisor = game.pid("supervisor").unwrap();
    assert!(
        said.contains(&format!("supervisor pid {supervisor}")),
        "{said}"
    );

    let again = game.evctl(&["start"]);
    assert!(
        !again.status.success(),
        "a second start succeeded: {}",
        text(&again)
    );
    assert!(text(&again).contains("already running"), "{}", text(&again));
    assert_eq!(game.pids(), pids, "a refused start changed the pidfiles");

    let status = game.evctl(&["status"]);
    assert!(status.status.success(), "status: {}", text(&status));
    for (name, pid) in &pids {
        assert!(
            text(&status).contains(&pid.to_string()),
            "status does not show the {name} pid {pid}: {}",
            text(&status)
        );
    }

    let json = game.evctl(&["status", "--json"]);
    assert!(json.status.success(), "status --json: {}", text(&json));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", text(&json)));
    assert!(value.is_object(), "status --json is not an object: {value}");
    let portal = game.pid("portal").unwrap();
    assert!(
        contains_number(&value, portal as u64),
        "status --json does not hold the portal pid {portal}: {value}"
    );

    let stop = game.evctl(&["stop"]);
    assert!(stop.status.success(), "stop: {}", text(&stop));
    // stop returns once every process is gone: no waiting here.
    for (name, pid) in &pids {
        assert!(
            !alive(*pid),
            "{name} pid {pid} still runs after `evctl stop` returned"
        );
    }
    let status = game.evctl(&["status"]);
    assert_eq!(
        status.status.code(),
        Some(3),
        "status with nothing running: {}",
        text(&status)
    );

    // And it starts again in the same directory.
    game.start();
    let mut c = game.guest("after restart");
    c.send_line("ping back");
    c.expect("pong back");
}

fn contains_number(v: &serde_json::Value, n: u64) -> bool {
    match v {
        serde_json::Value::Number(x) => x.as_u64() == Some(n),
        serde_json::Value::Array(a) => a.iter().any(|v| contains_number(v, n)),
        serde_json::Value::Object(o) => o.values().any(|v| contains_number(v, n)),
        _ => false,
    }
}

#[test]
fn reload_reports_the_dark_time() {
    let game = Game::started();
    let mut c = game.login("Alice");
    let server = game.pid("server").unwrap();
    let portal = game.pid("portal").unwrap();

    let out = game.reload();
    let said = text(&out);
    assert!(
        said.contains("reloaded") && said.contains("dark for"),
        "{said}"
    );

    let new_server = game.pid("server").unwrap();
    assert_ne!(new_server, server, "server.pid did not change on reload");
    assert_eq!(
        game.pid("portal"),
        Some(portal),
        "the portal was restarted by a reload"
    );
    wait_until("the old server to exit", Duration::from_secs(15), || {
        !alive(server)
    });
    assert!(alive(portal));

    c.send_line("ping after");
    c.expect("pong after");
    c.look().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn stop_with_players_connected_closes_them() {
    let game = Game::started();
    let mut c = game.login("Alice");
    let pids = game.pids();
    let stop = game.evctl(&["stop"]);
    assert!(stop.status.success(), "stop: {}", text(&stop));
    assert!(
        c.is_closed(Duration::from_secs(15)),
        "the connection outlived `evctl stop`"
    );
    for (name, pid) in &pids {
        assert!(
            !alive(*pid),
            "{name} pid {pid} still runs after `evctl stop` returned"
        );
    }
}

#[test]
fn status_of_a_stopped_game_exits_3() {
    let game = Game::new();
    let status = game.evctl(&["status"]);
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
}

/// Issue 11: a typo'd `-g` (or a directory without ev.toml) is a usage
/// error that says so, not "ev is not running".
#[test]
fn a_directory_that_is_no_game_is_named_as_such() {
    let game = Game::new();
    for dir in [game.tmp().join("nope"), game.tmp().to_path_buf()] {
        for command in ["status", "stop", "reload", "passwd"] {
            let mut cmd = crate::util::evctl_command();
            cmd.arg("-g").arg(&dir).arg(command);
            if command == "passwd" {
                cmd.arg("Root").env("EV_NEW_PASSWORD", "never-used");
            }
            let out = crate::util::run(cmd, Duration::from_secs(30));
            let said = text(&out);
            assert_eq!(out.status.code(), Some(2), "evctl {command}: {said}");
            assert!(
                said.contains("is not a game directory (no ev.toml)")
                    && said.contains("evctl init"),
                "evctl {command} on {}: {said}",
                dir.display()
            );
        }
    }
}

/// Issue 11: with the telnet port taken, the cause is the first line.
#[test]
fn a_start_on_a_taken_port_says_so_first() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port to take");
    let addr = taken.local_addr().expect("its address");
    let game = Game::with_config(|c| c.portal.telnet = addr);
    let out = game.evctl(&["start"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "evctl: cannot start: {addr} is in use by another process (portal.telnet in ev.toml)"
        ),
        "{said}"
    );
    assert!(
        game.pids().is_empty(),
        "something started: {:?}",
        game.pids()
    );
}

/// SIGHUP to the supervisor reloads, as `evctl reload` does (systemd's
/// ExecReload sends it); SIGTERM stops, as `evctl stop` does.
#[test]
fn sighup_reloads_and_sigterm_stops() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    // Told of every pause, however short, so the test sees the hand-over.
    let game = Game::with_config(|c| c.portal.pause_notice_ms = 0);
    game.start();
    let mut player = game.login("Hupper");
    let supervisor = game.pid("supervisor").unwrap();
    let old_server = game.pid("server").unwrap();

    kill(Pid::from_raw(supervisor as i32), Signal::SIGHUP).unwrap();
    wait_until("a new server after SIGHUP", Duration::from_secs(30), || {
        game.pid("server")
            .is_some_and(|p| p != old_server && alive(p))
    });
    // One notice when input starts to wait, one when the new server is ready.
    player.expect("The game is reloading");
    player.expect("The game is back.");
    player.send_line("ping after-hup");
    player.expect("pong after-hup");
    let look = player.look().expect("still logged in after SIGHUP");
    assert!(look.iter().any(|l| l == "Limbo"), "{look:?}");
    assert!(alive(supervisor), "the supervisor exited on SIGHUP");

    let pids = game.pids();
    kill(Pid::from_raw(supervisor as i32), Signal::SIGTERM).unwrap();
    player.expect("shutting down");
    assert!(
        player.is_closed(Duration::from_secs(30)),
        "the connection stayed open after SIGTERM"
    );
    wait_until(
        "every process gone after SIGTERM",
        Duration::from_secs(30),
        || pids.iter().all(|(_, pid)| !alive(*pid)),
    );
    let status = game.evctl(&["status"]);
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
}

/// Issue 9: `EV_ADMIN_PASSWORD=… evctl init` in a script leaves it exported
/// for the `evctl start` after it; no running process may keep it, nor
/// `evctl passwd`'s `EV_NEW_PASSWORD` (issue 11).
#[test]
fn the_admin_password_is_in_no_running_process_environment() {
    let game = Game::new();
    let mut cmd = crate::util::evctl_command();
    cmd.env("EV_ADMIN_PASSWORD", "hunter2-in-the-env")
        .env("EV_NEW_PASSWORD", "hunter3-in-the-env")
        .arg("-g")
        .arg(game.root())
        .arg("start");
    let out = crate::util::run(cmd, Duration::from_secs(90));
    assert!(out.status.success(), "evctl start: {}", text(&out));
    let pids = game.pids();
    assert_eq!(pids.len(), 3, "{pids:?}");
    for (name, pid) in pids {
        let environ = std::fs::read(format!("/proc/{pid}/environ"))
            .unwrap_or_else(|e| panic!("reading the environment of {name} (pid {pid}): {e}"));
        let environ = String::from_utf8_lossy(&environ);
        for secret in [
            "EV_ADMIN_PASSWORD",
            "hunter2-in-the-env",
            "EV_NEW_PASSWORD",
            "hunter3-in-the-env",
        ] {
            assert!(
                !environ.contains(secret),
                "{name} (pid {pid}) has {secret} in its environment"
            );
        }
    }
}

/// Issue 9: a deleted run/control.sock left a live game that evctl called
/// "not running" and could not stop.
#[test]
fn a_deleted_control_socket_is_bound_again() {
    let game = Game::started();
    let socket = game.root().join("run/control.sock");
    std::fs::remove_file(&socket).expect("deleting run/control.sock");
    wait_until(
        "evctl status to answer again",
        Duration::from_secs(20),
        || game.evctl(&["status"]).status.success(),
    );
    let pids = game.pids();
    assert_eq!(pids.len(), 3, "{pids:?}");
    let out = game.evctl(&["stop"]);
    assert!(out.status.success(), "evctl stop: {}", text(&out));
    assert!(
        pids.iter().all(|&(_, pid)| !alive(pid)),
        "still running after stop: {pids:?}"
    );
}
