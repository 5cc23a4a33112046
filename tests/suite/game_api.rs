//! The game API through the real binaries: a game's timers fire exactly once
//! across a reload and across a crash right after their commit (the
//! `after_commit` failpoint), and a password asked for at a secret prompt
//! reaches no log, not even at the `trace` level.
//!
//! The test build's `@timer SECS TEXT` schedules a timer through the same
//! queue and table as a game's, which tells every player TEXT when it fires;
//! `@timers` counts the ones still scheduled. `@work MS TEXT` defers work
//! (`Context::defer`) that sleeps MS on a thread of its own, then tells its
//! player "Worked: TEXT": its result must reach the player exactly once
//! whatever happens to the server meanwhile.

use std::time::Duration;

use crate::util::{Client, Game, PASSWORD, REPLY_TIMEOUT, alive, once_then_plain, wait_until};

/// How long a replacement server may take to serve after a crash.
const RECOVERY: Duration = Duration::from_secs(30);

/// Lines up to the answer to a `ping` sent now: everything sent before it.
fn until_pong(c: &mut Client, tag: &str) -> Vec<String> {
    c.send_line(&format!("ping {tag}"));
    c.read_all_until(
        &format!("pong {tag}"),
        |l| l.contains(&format!("pong {tag}")),
        REPLY_TIMEOUT + RECOVERY,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn count(lines: &[String], text: &str) -> usize {
    lines.iter().filter(|l| l.contains(text)).count()
}

/// `@timers` once the game answers again: how many test timers are left.
fn timers_left(c: &mut Client) -> String {
    c.send_line("@timers");
    c.expect("Test timers:")
}

#[test]
fn a_timer_fires_once_across_a_reload_that_comes_before_it_is_due() {
    let game = Game::with_server_script(|_| {});
    game.start();
    let mut alice = game.login("Alice");
    alice.send_line("@timer 2 the hour strikes");
    alice.expect("Timer set.");
    let out = game.reload();
    assert!(out.status.success(), "{}", crate::util::text(&out));
    alice
        .expect_line(
            "the timer after the reload",
            |l| l.contains("the hour strikes"),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let rest = until_pong(&mut alice, "after");
    assert_eq!(count(&rest, "the hour strikes"), 0, "{rest:?}");
    assert_eq!(timers_left(&mut alice).trim(), "Test timers: 0");
}

#[test]
fn a_timer_whose_firing_committed_before_a_crash_is_told_once_and_not_fired_again() {
    let game = Game::with_server_script(|_| {});
    game.start();
    let mut alice = game.login("Alice");
    // The second commit with work in it after the reload is the timer's:
    // the first is the `@timer` input itself.
    let fired = game.tmp().join("fired");
    game.set_server_script(&once_then_plain(&fired, "EV_FAILPOINT=after_commit:2"));
    let out = game.reload();
    assert!(out.status.success(), "{}", crate::util::text(&out));
    let armed = game.pid("server").expect("a serving server");
    alice.send_line("@timer 1 the bell rings");
    alice.expect("Timer set.");
    wait_until("the armed server to abort", RECOVERY, || !alive(armed));
    wait_until("a replacement server", RECOVERY, || {
        game.pid("server").is_some_and(|p| p != armed && alive(p))
    });
    let seen = until_pong(&mut alice, "after");
    assert_eq!(
        count(&seen, "the bell rings"),
        1,
        "the committed firing is told exactly once: {seen:?}"
    );
    assert_eq!(timers_left(&mut alice).trim(), "Test timers: 0");
    let log = std::fs::read_to_string(game.root().join("logs/server.log")).unwrap_or_default();
    assert!(log.contains("failpoint after_commit hit"), "{log}");
    assert_eq!(
        log.matches("@timer fired").count(),
        1,
        "fired once in all the servers: {log}"
    );
}

#[test]
fn a_password_typed_at_a_secret_prompt_or_on_the_line_never_reaches_a_log() {
    let game = Game::with_config(|c| c.logs.filter = "trace".into());
    game.start();
    drop(game.login("Alice"));

    let mut c = game.guest("prompted");
    c.send_line("connect");
    c.expect("Name:");
    c.send_line("Alice");
    c.expect("Password:");
    c.send_line(PASSWORD);
    c.expect("Welcome back, Alice!");
    c.send_line("quit");
    c.expect("Goodbye.");

    let mut c = game.guest("one line, wrong");
    c.send_line("connect Alice hunter2wrong");
    c.expect("Wrong name or password.");
    c.send_line("create Bob");
    c.expect("Password:");
    c.send_line("bobs-password-9");
    c.expect("Welcome, Bob!");

    for entry in std::fs::read_dir(game.root().join("logs")).unwrap() {
        let path = entry.unwrap().path();
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        for secret in [PASSWORD, "hunter2wrong", "bobs-password-9"] {
            assert!(
                !log.contains(secret),
                "{} holds the password {secret:?}",
                path.display()
            );
        }
    }
}

/// Defers `@work` of `ms` with `text`; returns once the game said so.
fn defer_work(alice: &mut Client, ms: u64, text: &str) {
    alice.send_line(&format!("@work {ms} {text}"));
    alice.expect("Work deferred.");
}

/// Waits for the work's result, then checks nothing more of it comes.
fn worked_once(alice: &mut Client, text: &str) {
    let told = format!("Worked: {text}");
    let seen = alice
        .read_all_until(&told, |l| l.contains(&told), REPLY_TIMEOUT + RECOVERY)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut all = seen;
    all.extend(until_pong(alice, "after-work"));
    assert_eq!(count(&all, &told), 1, "{all:?}");
}

#[test]
fn deferred_work_in_flight_at_a_reload_is_run_again_by_the_new_server_and_told_once() {
    let game = Game::with_server_script(|_| {});
    game.start();
    let mut alice = game.login("Alice");
    defer_work(&mut alice, 1500, "sheep counted");
    let out = game.reload();
    assert!(out.status.success(), "{}", crate::util::text(&out));
    worked_once(&mut alice, "sheep counted");
    let log = std::fs::read_to_string(game.root().join("logs/server.log")).unwrap_or_default();
    assert!(
        log.contains("deferred=1"),
        "the new server did not find the work:\n{log}"
    );
}

#[test]
fn deferred_work_in_flight_when_the_server_is_killed_is_told_once_by_the_next() {
    let game = Game::with_server_script(|_| {});
    game.start();
    let mut alice = game.login("Alice");
    let server = game.pid("server").expect("a serving server");
    defer_work(&mut alice, 1500, "stars charted");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("a replacement server", RECOVERY, || {
        game.pid("server").is_some_and(|p| p != server && alive(p))
    });
    worked_once(&mut alice, "stars charted");
}

#[test]
fn deferred_work_whose_result_committed_before_a_crash_is_told_once_and_not_run_again() {
    let game = Game::with_server_script(|_| {});
    game.start();
    let mut alice = game.login("Alice");
    // The second commit with work in it after the reload is the result's:
    // the first is the `@work` input itself.
    let armed_marker = game.tmp().join("armed");
    game.set_server_script(&once_then_plain(
        &armed_marker,
        "EV_FAILPOINT=after_commit:2",
    ));
    let out = game.reload();
    assert!(out.status.success(), "{}", crate::util::text(&out));
    let armed = game.pid("server").expect("a serving server");
    defer_work(&mut alice, 10, "maps drawn");
    wait_until("the armed server to abort", RECOVERY, || !alive(armed));
    wait_until("a replacement server", RECOVERY, || {
        game.pid("server").is_some_and(|p| p != armed && alive(p))
    });
    worked_once(&mut alice, "maps drawn");
    let log = std::fs::read_to_string(game.root().join("logs/server.log")).unwrap_or_default();
    assert_eq!(
        log.matches("@work done").count(),
        1,
        "the result was applied again after its commit:\n{log}"
    );
}
