//! Crash safety (issue 3): kill -9 of any process, failpoints in every window
//! of the exactly-once protocol, kills during a reload, the crash-loop limit,
//! poison input and hung servers. Each test runs numbered load
//! ([`crate::util::load`]) across the crash and checks that every numbered
//! line is answered exactly once, in order, that no connection closes (except
//! where the portal itself dies, which is documented) and that every player
//! is still logged in and in character afterwards.
//!
//! The server is `ev-test-server` behind a wrapper script (`[server]
//! binary`), so a test can arm a failpoint or gate a start. The supervisor
//! restarts a crashed server from the copy of the script that was serving,
//! so a script that must crash only once marks that it did in a file.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::load::{Load, Spec};
use crate::util::{
    Client, Config, Game, PASSWORD, REPLY_TIMEOUT, alive, exec_test_server, heavy, once_then_plain,
    text, wait_until,
};

/// Ping periods (20 ms each) of load before the crash...
const BEFORE: u64 = 15;
/// ...and after the game serves again.
const AFTER: u64 = 25;
/// How long a replacement server may take to serve after a crash.
const RECOVERY: Duration = Duration::from_secs(30);

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).unwrap_or_else(|e| panic!("{sig} to pid {pid}: {e}"));
}

/// A started game whose server is ev-test-server behind a script.
fn crash_game(tweak: impl FnOnce(&mut Config)) -> Game {
    let game = Game::with_server_script(tweak);
    game.start();
    game
}

fn serving_pid(game: &Game) -> u32 {
    game.pid("server")
        .filter(|&p| alive(p))
        .unwrap_or_else(|| panic!("no live server in run/server.pid{}", game.log_tails()))
}

/// Waits until a live server other than `old` is named in run/server.pid and
/// `old` is gone; returns the new pid.
fn wait_replaced(game: &Game, old: u32) -> u32 {
    wait_until(
        &format!("a new server to replace pid {old}"),
        RECOVERY,
        || !alive(old) && game.pid("server").is_some_and(|p| p != old && alive(p)),
    );
    game.pid("server").unwrap()
}

fn log(game: &Game, process: &str) -> String {
    std::fs::read_to_string(game.root().join("logs").join(format!("{process}.log")))
        .unwrap_or_default()
}

fn wait_log(game: &Game, process: &str, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !log(game, process).contains(needle) {
        if Instant::now() >= deadline {
            panic!(
                "logs/{process}.log did not say {needle:?} within {timeout:?}{}",
                game.log_tails()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(game: &Game) -> (Option<i32>, String) {
    let out = game.evctl(&["status"]);
    (out.status.code(), text(&out))
}

/// Every logged-in load client, plus `extra`, is listed by `who` (the
/// creator's account of the moment, `New...`, may be online too).
fn assert_who(checker: &mut Client, load: &Load, extra: &[&str]) {
    let mut want = load.names().to_vec();
    want.extend(extra.iter().map(|s| s.to_string()));
    want.sort();
    let mut who = checker.who();
    who.retain(|n| !n.starts_with("New"));
    assert_eq!(who, want, "`who` after the crash");
}

fn load_spec(name: &'static str, clients: usize) -> Spec {
    Spec {
        clients,
        sayers: 3.min(clients),
        name,
        ..Spec::default()
    }
}

/// kill -9 of the serving server under the full load of issue 3: 50 pinging
/// clients, 3 of them saying, one creating accounts.
#[test]
fn a_crashed_server_is_replaced_and_nothing_is_lost() {
    let _heavy = heavy();
    let game = crash_game(|_| {});
    let load = Load::start(&game, load_spec("Crash", 50));
    let mut checker = game.login("Checker");
    load.wait_progress(BEFORE);

    let old = serving_pid(&game);
    signal(old, Signal::SIGKILL);
    let new = wait_replaced(&game, old);
    load.wait_progress(AFTER);

    assert_who(&mut checker, &load, &["Checker"]);
    let (code, said) = status(&game);
    assert_eq!(code, Some(0), "evctl status after the crash: {said}");
    assert!(
        said.contains("restarts           1") && said.contains("SIGKILL"),
        "evctl status does not show the restart and its reason: {said}"
    );
    let report = load.finish();
    report.assert_clean();
    report.assert_accounts_connect(&game);
    assert!(!report.created.is_empty(), "the creator made no account");
    assert!(alive(new), "the replacement server (pid {new}) died");
}

/// Arms failpoint `point` in a fresh server (by a reload once the load runs,
/// so it fires under load and not during the logins), lets it abort the
/// server once, and checks the load.
fn crash_at_failpoint(point: &str) {
    let _heavy = heavy();
    let game = crash_game(|_| {});
    let load = Load::start(&game, load_spec("Fail", 20));
    let mut checker = game.login("Checker");
    load.wait_progress(BEFORE);

    let fired = game.tmp().join("fired");
    game.set_server_script(&once_then_plain(
        &fired,
        &format!("EV_FAILPOINT={point}:40"),
    ));
    game.reload();
    let armed = serving_pid(&game);
    wait_log(
        &game,
        "server",
        &format!("failpoint {point} hit"),
        Duration::from_secs(30),
    );
    wait_replaced(&game, armed);
    load.wait_progress(AFTER);

    assert_who(&mut checker, &load, &["Checker"]);
    let report = load.finish();
    report.assert_clean();
    report.assert_accounts_connect(&game);
    assert!(!report.created.is_empty(), "the creator made no account");
}

/// The transaction committed, nothing of it was sent: the outbox is re-sent.
#[test]
fn failpoint_after_commit_loses_nothing() {
    crash_at_failpoint("after_commit");
}

/// Output left, acks did not: the portal drops the re-sent output seqs.
#[test]
fn failpoint_after_output_doubles_nothing() {
    crash_at_failpoint("after_output");
}

/// Half a group commit applied, nothing committed: all of it runs again.
#[test]
fn failpoint_mid_batch_loses_nothing() {
    crash_at_failpoint("mid_batch");
}

/// Runs `evctl reload` on another thread while `during` acts on the game;
/// returns the reload's output.
fn reload_while(game: &Game, during: impl FnOnce()) -> std::process::Output {
    std::thread::scope(|s| {
        let reload = s.spawn(|| game.evctl(&["reload"]));
        during();
        reload.join().expect("the evctl reload thread panicked")
    })
}

fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// When the new server is killed during a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NewKill {
    /// Started, held at a gate in its script: it never attaches.
    BeforeAttaching,
    /// As soon as the supervisor logs that it attached.
    OnceAttached,
}

/// Kills the new server of a reload under load (see [`NewKill`]).
///
/// Before attaching, the reload fails (exit 1, `reload failed`) and the old
/// server never noticed: it still serves. Once attached, it depends on
/// whether the hand-over had begun: the reload fails (exit 1; the old server
/// keeps serving, or, if it had drained already, a server of its build is
/// started) or succeeds (exit 0) and the kill is an ordinary crash of the new
/// serving server, restarted from its build. Either way no input is lost or
/// doubled and nobody is logged out.
fn new_server_killed(when: NewKill, name: &'static str) {
    let _heavy = heavy();
    let game = crash_game(|_| {});
    let load = Load::start(&game, load_spec(name, 10));
    let mut checker = game.login("Checker");
    load.wait_progress(BEFORE);
    let old = serving_pid(&game);

    let b_pid = game.tmp().join("b.pid");
    let gate = match when {
        NewKill::BeforeAttaching => format!(
            "while [ ! -e {} ]; do sleep 0.02; done\n",
            game.tmp().join("never").display()
        ),
        NewKill::OnceAttached => String::new(),
    };
    game.set_server_script(&format!(
        "echo $$ > {}\n{gate}{}",
        b_pid.display(),
        exec_test_server("")
    ));
    let mut killed = 0;
    let out = reload_while(&game, || {
        wait_until("the new server to start", RECOVERY, || {
            read_pid_file(&b_pid).is_some()
        });
        killed = read_pid_file(&b_pid).unwrap();
        if when == NewKill::OnceAttached {
            wait_log(
                &game,
                "supervisor",
                &format!("(pid {killed}) attached"),
                RECOVERY,
            );
        }
        signal(killed, Signal::SIGKILL);
    });
    let said = text(&out);
    match (when, out.status.code()) {
        (NewKill::OnceAttached, Some(0)) => {
            eprintln!("the reload completed before the kill: {said}")
        }
        (_, Some(1)) => assert!(said.contains("reload failed"), "{said}"),
        (_, other) => {
            panic!("evctl reload exited {other:?} with the new server killed {when:?}: {said}")
        }
    }
    wait_until("a live server after the reload", RECOVERY, || {
        !alive(killed) && game.pid("server").is_some_and(|p| p != killed && alive(p))
    });
    if when == NewKill::BeforeAttaching {
        assert_eq!(
            game.pid("server"),
            Some(old),
            "the old server should have kept serving"
        );
    }
    eprintln!(
        "old server {old}, killed new server {killed}, now serving {}",
        serving_pid(&game)
    );
    load.wait_progress(AFTER);

    assert_who(&mut checker, &load, &["Checker"]);
    let report = load.finish();
    report.assert_clean();
    report.assert_accounts_connect(&game);
}

#[test]
fn the_new_server_killed_before_attaching_fails_the_reload_only() {
    new_server_killed(NewKill::BeforeAttaching, "Early");
}

/// Regression: when the kill landed after the old server's `Drained`, the
/// portal made the exiting old server active again and quarantined an
/// innocent input (issue 3; fixed in the portal's hub by 311caa2).
#[test]
fn the_new_server_killed_once_attached_during_a_reload() {
    new_server_killed(NewKill::OnceAttached, "Fresh");
}

/// The old server is SIGKILLed while the new one is starting (held at a gate
/// in its script until the old one is dead). The reload succeeds: the new
/// server is simply made active (there is nothing to drain), and it serves
/// every input the dead one had not acked.
#[test]
fn the_old_server_killed_during_a_reload() {
    let _heavy = heavy();
    let game = crash_game(|_| {});
    let load = Load::start(&game, load_spec("Stale", 10));
    let mut checker = game.login("Checker");
    load.wait_progress(BEFORE);
    let old = serving_pid(&game);

    let b_pid = game.tmp().join("b.pid");
    let go = game.tmp().join("go");
    game.set_server_script(&format!(
        "echo $$ > {}\nwhile [ ! -e {} ]; do sleep 0.02; done\n{}",
        b_pid.display(),
        go.display(),
        exec_test_server("")
    ));
    let out = reload_while(&game, || {
        wait_until("the new server to start", RECOVERY, || {
            read_pid_file(&b_pid).is_some()
        });
        signal(old, Signal::SIGKILL);
        wait_until("the old server to die", RECOVERY, || !alive(old));
        std::fs::write(&go, "").unwrap();
    });
    assert!(
        out.status.success(),
        "evctl reload with the old server killed under it: {}{}",
        text(&out),
        game.log_tails()
    );
    let new = read_pid_file(&b_pid).unwrap();
    assert_eq!(
        game.pid("server"),
        Some(new),
        "the new server is not the serving one"
    );
    load.wait_progress(AFTER);

    assert_who(&mut checker, &load, &["Checker"]);
    let report = load.finish();
    report.assert_clean();
    report.assert_accounts_connect(&game);
}

/// A build that cannot start (it exits while a control file exists) after a
/// crash: the supervisor gives up after `crash_loop_limit` failures, says so
/// in `evctl status`, players stay connected and are told; a reload of a
/// fixed build brings everyone back, still logged in.
#[test]
fn crash_loop_limit_then_a_fixed_build_restores_everyone() {
    let _heavy = heavy();
    let game = crash_game(|c| {
        c.supervisor.crash_loop_limit = 3;
        c.supervisor.restart_backoff_ms = 50;
        c.supervisor.restart_backoff_max_ms = 200;
        // The crash loop itself: without this the supervisor would fall
        // back to the build before the reload (builds.rs tests that).
        c.supervisor.fallback_window_s = 0;
    });
    let broken = game.tmp().join("broken");
    game.set_server_script(&format!(
        "if [ -e {} ]; then echo 'this build is broken' >&2; exit 1; fi\n{}",
        broken.display(),
        exec_test_server("")
    ));
    // The reload makes the serving copy the script with the control file.
    game.reload();
    let load = Load::start(
        &game,
        Spec {
            creator: false,
            ..load_spec("Loop", 10)
        },
    );
    let mut watcher = game.login("Watcher");
    load.wait_progress(BEFORE);

    std::fs::write(&broken, "").unwrap();
    signal(serving_pid(&game), Signal::SIGKILL);
    let mut said = String::new();
    let mut code = None;
    wait_until("evctl status to show the crash loop", RECOVERY, || {
        (code, said) = status(&game);
        said.contains("crash-loop")
    });
    // Issue 11: a monitoring check must not read a crash loop as healthy.
    assert_eq!(code, Some(4), "evctl status in a crash loop: {said}");
    let out = game.evctl(&["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ev is running, but the server is down"),
        "the first line does not say the server is down: {said}"
    );
    assert!(
        said.contains("exited with status 1"),
        "evctl status does not give the last exit reason: {said}"
    );
    let restarts: u64 = said
        .lines()
        .find_map(|l| l.strip_prefix("restarts"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no restarts count in evctl status: {said}"));
    // The kill and two failed restarts make the three failures in a row.
    assert!(restarts >= 2, "restarts {restarts} < 2: {said}");
    watcher.expect("[ev] The game is down after repeated crashes");

    std::fs::remove_file(&broken).unwrap();
    let out = game.reload();
    assert!(text(&out).contains("dark for"), "{}", text(&out));
    load.wait_progress(AFTER);
    watcher.look().unwrap_or_else(|e| panic!("{e}"));
    let (code, said) = status(&game);
    assert!(
        !said.contains("crash-loop") && code == Some(0),
        "still a crash loop after the reload (exit {code:?}): {said}"
    );
    assert_who(&mut watcher, &load, &["Watcher"]);
    load.finish().assert_clean();
}

/// `poison` sends `command` (which crashes the server each time it runs)
/// under load; it is quarantined once it crashes a server alone, everyone else's
/// commands run exactly once, and the server serves again.
fn poison(command: &str, tweak: impl FnOnce(&mut Config)) {
    let _heavy = heavy();
    let game = crash_game(tweak);
    let load = Load::start(
        &game,
        Spec {
            creator: false,
            ..load_spec("Victim", 10)
        },
    );
    let mut poisoner = game.login("Poisoner");
    load.wait_progress(BEFORE);

    poisoner.send_line(command);
    let notice = format!(
        "[ev] Your command \"{command}\" crashed the game more than once and was not run again."
    );
    poisoner
        .expect_line(
            &format!("{notice:?}"),
            |l| l.contains(&notice),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e}{}", game.log_tails()));
    // The poisoner plays on.
    poisoner.send_line("ping after");
    poisoner.expect("pong after");
    poisoner.look().unwrap_or_else(|e| panic!("{e}"));
    load.wait_progress(AFTER);
    assert!(
        log(&game, "portal").contains("quarantined"),
        "the portal log does not name the quarantined input{}",
        game.log_tails()
    );
    assert_who(&mut poisoner, &load, &["Poisoner"]);
    load.finish().assert_clean();
}

#[test]
fn a_command_that_crashes_the_server_is_quarantined() {
    poison("@crash", |_| {});
}

/// The server's own watchdog aborts it when a command runs past
/// `command_timeout_ms`; twice is a quarantine as for any crash.
#[test]
fn a_command_that_hangs_the_server_is_quarantined() {
    poison("@hang", |c| c.server.command_timeout_ms = 1_000);
}

/// A stopped (SIGSTOP) server keeps its Link open but answers no heartbeat:
/// the supervisor kills it and a new one serves everyone.
#[test]
fn a_hung_server_is_killed_and_replaced() {
    let _heavy = heavy();
    let game = crash_game(|c| {
        c.server.heartbeat_ms = 200;
        c.server.heartbeat_timeout_ms = 1_500;
    });
    let load = Load::start(&game, load_spec("Hung", 10));
    let mut checker = game.login("Checker");
    load.wait_progress(BEFORE);

    let old = serving_pid(&game);
    signal(old, Signal::SIGSTOP);
    wait_replaced(&game, old);
    load.wait_progress(AFTER);

    assert!(
        log(&game, "supervisor").contains(&format!("(pid {old}) has not answered the portal")),
        "the supervisor log does not say why it killed the stopped server{}",
        game.log_tails()
    );
    let (_, said) = status(&game);
    assert!(said.contains("restarts           1"), "{said}");
    assert_who(&mut checker, &load, &["Checker"]);
    let report = load.finish();
    report.assert_clean();
    report.assert_accounts_connect(&game);
}

/// Logs in a new account, retrying the connection until the portal answers
/// (its address may change when it restarts).
fn login_when_up(game: &Game, name: &str) -> Client {
    let deadline = Instant::now() + RECOVERY;
    loop {
        // A restarting portal removes run/telnet.addr, then writes its new one.
        let addr = std::fs::read_to_string(game.root().join("run/telnet.addr"))
            .ok()
            .and_then(|a| a.trim().parse().ok());
        let attempt = addr
            .ok_or_else(|| "no telnet address in run/telnet.addr".to_owned())
            .and_then(|addr| Client::try_connect(addr, name).map_err(|e| e.to_string()))
            .and_then(|mut c| {
                c.expect_line(
                    "the welcome screen",
                    |l| l.contains("Welcome to "),
                    REPLY_TIMEOUT,
                )?;
                Ok(c)
            });
        match attempt {
            Ok(mut c) => {
                c.send_line(&format!("create {name} {PASSWORD}"));
                c.expect_line(
                    &format!("`Welcome, {name}!`"),
                    |l| l.contains(&format!("Welcome, {name}!")),
                    RECOVERY,
                )
                .unwrap_or_else(|e| panic!("{e}{}", game.log_tails()));
                return c;
            }
            Err(e) if Instant::now() >= deadline => {
                panic!(
                    "{name}: the game did not take logins again: {e}{}",
                    game.log_tails()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// kill -9 of the portal: its connections are lost (documented in the
/// README), a new portal takes new logins, and `who` lists no ghost of the
/// old sessions.
#[test]
fn a_killed_portal_is_restarted_without_ghosts() {
    let game = crash_game(|_| {});
    let mut alice = game.login("Alice");
    let mut bob = game.login("Bob");
    assert_eq!(alice.who(), ["Alice", "Bob"]);
    let portal = game.pid("portal").unwrap();
    let server = serving_pid(&game);

    signal(portal, Signal::SIGKILL);
    for c in [&mut alice, &mut bob] {
        assert!(
            c.is_closed(REPLY_TIMEOUT),
            "{}: still connected after the portal died",
            c.label()
        );
    }
    wait_until("a new portal", RECOVERY, || {
        game.pid("portal").is_some_and(|p| p != portal && alive(p))
    });
    let mut carol = login_when_up(&game, "Carol");
    let mut dave = login_when_up(&game, "Dave");
    assert_eq!(
        carol.who(),
        ["Carol", "Dave"],
        "ghosts after the portal died"
    );
    let mut alice = game
        .connect_account("Alice")
        .unwrap_or_else(|e| panic!("{e}"));
    alice.look().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dave.who(), ["Alice", "Carol", "Dave"]);
    wait_until(
        &format!("the server of the dead portal (pid {server}) to exit"),
        RECOVERY,
        || !alive(server),
    );
    game.reload();
    assert_eq!(carol.who(), ["Alice", "Carol", "Dave"], "after a reload");
}

/// kill -9 of the supervisor: players play on; `evctl status` says it is
/// gone; `evctl start` adopts the running portal and server; a reload
/// works afterwards. The load runs throughout.
#[test]
fn a_killed_supervisor_is_replaced_by_one_that_adopts_the_game() {
    let _heavy = heavy();
    let game = crash_game(|_| {});
    let load = Load::start(&game, load_spec("Orphan", 10));
    load.wait_progress(BEFORE);
    let supervisor = game.pid("supervisor").unwrap();
    let portal = game.pid("portal").unwrap();
    let server = serving_pid(&game);

    signal(supervisor, Signal::SIGKILL);
    wait_until("the supervisor to die", RECOVERY, || !alive(supervisor));
    load.wait_progress(BEFORE);
    let (code, said) = status(&game);
    assert_eq!(code, Some(3), "evctl status without a supervisor: {said}");
    assert!(
        said.contains("without a supervisor"),
        "evctl status does not say the portal and server run without a supervisor: {said}"
    );
    assert!(alive(portal) && alive(server), "{said}");

    game.start();
    assert_ne!(game.pid("supervisor"), Some(supervisor));
    assert_eq!(
        game.pid("portal"),
        Some(portal),
        "the portal was not adopted"
    );
    assert_eq!(
        game.pid("server"),
        Some(server),
        "the server was not adopted"
    );
    load.wait_progress(BEFORE);
    let (code, said) = status(&game);
    assert_eq!(code, Some(0), "evctl status after adoption: {said}");
    // An adopted process's uptime counts from its own start, so the portal
    // has been up longer than the supervisor that adopted it.
    let json = game.evctl(&["status", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("status --json ({e}): {}", text(&json)));
    let uptime = |name: &str| {
        value["processes"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .and_then(|p| p["uptime_ms"].as_u64())
            .unwrap_or_else(|| panic!("no {name} uptime in {value}"))
    };
    assert!(
        uptime("portal") > uptime("supervisor"),
        "the adopted portal's uptime counts from its adoption: {value}"
    );

    let out = game.reload();
    assert!(text(&out).contains("dark for"), "{}", text(&out));
    assert_ne!(game.pid("server"), Some(server));
    load.wait_progress(AFTER);
    let report = load.finish();
    report.assert_clean();
    report.assert_accounts_connect(&game);
}
