//! Storage faults (issue 9, item 3) and database size (item 6): a database
//! that cannot be written for a while stalls the game instead of crashing
//! it, a reload onto one fails before the hand-over, and the file gives
//! back what a burst of output took.
//!
//! The server is `ev-test-server` with `EV_STORAGE_FAULT` naming a file in
//! the test's temp dir: while it exists, database writes fail with an I/O
//! error, as on a full or read-only disk, and a new server refuses to start.
//! (Permissions do not bind root, which the tests may run as.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::load::{Load, Spec};
use crate::util::{Client, Game, alive, exec_test_server, heavy, text, wait_until};

const LONG: Duration = Duration::from_secs(30);

fn log(game: &Game, process: &str) -> String {
    std::fs::read_to_string(game.root().join("logs").join(format!("{process}.log")))
        .unwrap_or_default()
}

fn wait_log_count(game: &Game, process: &str, needle: &str, count: usize) {
    wait_until(
        &format!("logs/{process}.log to say {needle:?} {count} times"),
        LONG,
        || log(game, process).matches(needle).count() >= count,
    );
}

/// A game whose server runs with `EV_STORAGE_FAULT` at `tmp/name`; returns
/// that path.
fn faulty_game(name: &str) -> (Game, PathBuf) {
    let game = Game::with_server_script(|c| c.database.retry_max_ms = 200);
    let fault = game.tmp().join(name);
    game.set_server_script(&exec_test_server(&format!(
        "EV_STORAGE_FAULT={}",
        fault.display()
    )));
    game.start();
    (game, fault)
}

fn status(game: &Game) -> String {
    let out = game.evctl(&["status"]);
    assert!(out.status.success(), "evctl status: {}", text(&out));
    text(&out)
}

/// Sends `ping TOKEN` and asserts nothing answers for a while.
fn assert_unanswered(c: &mut Client, token: &str) {
    c.send_line(&format!("ping {token}"));
    let lines = c.poll_lines(Duration::from_millis(400));
    assert!(
        !lines.iter().any(|l| l.contains(token)),
        "a command was answered while storage failed: {lines:?}"
    );
}

/// Waits for exactly one `pong TOKEN` and then for a fresh ping's answer,
/// checking nothing else mentions the token.
fn assert_answered_once(c: &mut Client, token: &str) {
    let after = format!("{token}after");
    c.send_line(&format!("ping {after}"));
    let lines = c
        .read_all_until("the next pong", |l| l.contains(&after), LONG)
        .unwrap_or_else(|e| panic!("{e}"));
    let pongs = lines
        .iter()
        .filter(|l| l.trim() == format!("pong {token}"))
        .count();
    assert_eq!(pongs, 1, "`ping {token}` answered {pongs} times: {lines:?}");
}

fn quarantined(game: &Game) -> bool {
    log(game, "portal").contains("quarantined")
}

/// Storage fails at the commit (`commit`) or at the start of a transaction
/// (`begin`) under load, then comes back: players are not answered
/// meanwhile, then every ping is answered exactly once, in order; the same
/// server process serves throughout and nothing is quarantined.
fn outage_under_load(mode: &str, name: &'static str) {
    let _heavy = heavy();
    let (game, fault) = faulty_game("fault");
    let load = Load::start(
        &game,
        Spec {
            clients: 20,
            sayers: 3,
            name,
            ..Spec::default()
        },
    );
    let mut checker = game.login("Checker");
    load.wait_progress(15);
    let pid = game.pid("server").expect("a server pid");

    std::fs::write(&fault, mode).unwrap();
    wait_log_count(&game, "server", "storage failed", 1);
    assert_unanswered(&mut checker, "held");
    // Several retries fail (50, 100, 200, 200 ms...), past the heartbeats.
    wait_log_count(&game, "server", "storage still failing", 4);
    std::fs::remove_file(&fault).unwrap();
    wait_log_count(&game, "server", "storage is back", 1);

    assert_answered_once(&mut checker, "held");
    load.wait_progress(25);
    let report = load.finish();
    report.assert_clean();
    report.assert_accounts_connect(&game);

    assert_eq!(game.pid("server"), Some(pid), "the server was replaced");
    assert!(alive(pid), "the server (pid {pid}) died");
    let said = status(&game);
    assert!(said.contains("restarts           0"), "{said}");
    assert!(!quarantined(&game), "{}", log(&game, "portal"));
}

#[test]
fn a_commit_that_fails_on_storage_is_retried_and_nothing_is_lost() {
    outage_under_load("commit", "Commit");
}

#[test]
fn a_transaction_that_cannot_begin_waits_for_storage() {
    outage_under_load("begin", "Begin");
}

/// `evctl reload`, asserting it fails and says `needle`; the old server
/// (`pid`) keeps serving.
fn reload_fails(game: &Game, checker: &mut Client, pid: u32, needle: &str) {
    let out = game.evctl(&["reload"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "evctl reload: {said}");
    assert!(
        said.contains(needle),
        "evctl reload does not say {needle:?}: {said}"
    );
    assert_eq!(game.pid("server"), Some(pid));
    checker.send_line("ping still");
    checker.expect("pong still");
}

/// A reload onto storage that cannot be written fails before the hand-over
/// with a message saying why, and the old server keeps serving.
#[test]
fn a_reload_onto_unwritable_storage_fails_and_the_old_server_serves() {
    let game = Game::with_server_script(|_| {});
    game.start();
    let mut checker = game.login("Checker");
    let pid = game.pid("server").expect("a server pid");

    // The new server's storage refuses writes.
    let fault = game.tmp().join("fault-new");
    std::fs::write(&fault, "").unwrap();
    game.set_server_script(&exec_test_server(&format!(
        "EV_STORAGE_FAULT={}",
        fault.display()
    )));
    reload_fails(&game, &mut checker, pid, "storage fault injected");
    game.set_server_script(&exec_test_server(""));

    // Less free space than the new server asks for.
    let config = std::fs::read_to_string(game.config_path()).unwrap();
    let mut tight = ev::config::Config::parse(&config, &game.config_path()).unwrap();
    tight.database.min_free_mb = u64::MAX >> 21;
    game.write_config(&tight.to_toml());
    reload_fails(&game, &mut checker, pid, "database.min_free_mb");
    game.write_config(&config);

    if !nix::unistd::geteuid().is_root() {
        set_mode(&game.root().join("data"), 0o555);
        let out = game.evctl(&["reload"]);
        set_mode(&game.root().join("data"), 0o755);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("not writable"), "{}", text(&out));
    }

    game.reload();
    checker.send_line("ping after");
    checker.expect("pong after");
    assert!(status(&game).contains("restarts           0"));
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A server killed while storage fails is restarted once it can write,
/// however long that takes: failed starts for storage are not a crash loop.
#[test]
fn servers_that_cannot_write_are_not_a_crash_loop() {
    let (game, fault) = faulty_game("fault");
    let mut checker = game.login("Checker");
    let pid = game.pid("server").expect("a server pid");
    std::fs::write(&fault, "").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Past the crash-loop limit (5) of refused starts.
    wait_log_count(
        &game,
        "supervisor",
        "server cannot start until its database can be written",
        7,
    );
    std::fs::remove_file(&fault).unwrap();
    wait_until("a new server to serve", LONG, || {
        game.pid("server").is_some_and(|p| p != pid && alive(p))
    });
    checker.send_line("ping back");
    checker.expect("pong back");
    assert!(!status(&game).contains("crash-loop"));
}

/// A burst of long lines to a room fills the outbox; once delivered, the
/// file is given back (it used to keep its peak size for good).
#[test]
fn the_database_shrinks_after_a_burst_of_output() {
    let _heavy = heavy();
    let game = Game::started();
    let db = game.root().join("data/game.db");
    let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let mut listeners: Vec<Client> = (0..20)
        .map(|i| game.login(&format!("Ear{}", crate::util::letters(i))))
        .collect();
    let mut speakers: Vec<Client> = (0..4)
        .map(|i| game.login(&format!("Mouth{}", crate::util::letters(i))))
        .collect();
    let line = "x".repeat(3000);
    let mut peak = 0;
    let mut round = 0;
    while peak < 8 << 20 {
        round += 1;
        assert!(round <= 200, "the database never grew past {peak} bytes");
        for s in &mut speakers {
            for _ in 0..40 {
                s.send_line(&format!("say {line}"));
            }
        }
        for s in &mut speakers {
            s.send_line(&format!("ping r{round}"));
            s.expect(&format!("pong r{round}"));
        }
        for l in &mut listeners {
            l.poll_lines(Duration::ZERO);
        }
        peak = peak.max(size());
    }
    wait_until("the database to shrink", Duration::from_secs(60), || {
        for l in &mut listeners {
            l.poll_lines(Duration::ZERO);
        }
        size() < peak / 3
    });
}
