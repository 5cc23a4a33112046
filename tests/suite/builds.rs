use std::time::Duration;

use crate::util::load::{Load, Spec};
use crate::util::{Game, REPLY_TIMEOUT, alive, exec_test_server, heavy, text, wait_until};

fn version(c: &mut crate::util::Client) -> String {
    c.send_line("version");
    c.expect_line(
        "the `version` answer",
        |l| l.contains("ev-server") || l.contains("build-") || l.contains("Unknown command"),
        REPLY_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A few pinging clients, for the failing-build tests: the old server must
/// keep answering every one of them while the new one fails.
fn light_load(game: &Game) -> Load {
    let load = Load::start(
        game,
        Spec {
            clients: 5,
            sayers: 1,
            creator: false,
            name: "Light",
            ..Spec::default()
        },
    );
    load.wait_progress(5);
    load
}

#[test]
fn a_rebuilt_server_is_picked_up_by_the_next_reload() {
    let game = Game::with_server_script(|_| {});
    game.start();
    let mut alice = game.login("Alice");
    let mut bob = game.login("Bob");
    let first = version(&mut alice);
    assert!(first.contains("ev-server"), "{first:?}");
    let first_copies = installed(&game);
    assert_eq!(first_copies.len(), 1, "{first_copies:?}");
    let first_pid = game.pid("server").expect("a server pid");

    game.set_server_script(&exec_test_server("EV_TEST_VERSION=build-two"));
    let out = game.reload();
    assert!(text(&out).contains("dark for"), "{}", text(&out));
    let second = version(&mut alice);
    assert_eq!(
        second.trim(),
        "build-two",
        "the reload did not run the rebuilt binary"
    );

    // Copies of builds no server runs are removed at the next reload.
    wait_until("the first server to exit", REPLY_TIMEOUT, || {
        !alive(first_pid)
    });
    game.set_server_script(&exec_test_server("EV_TEST_VERSION=build-three"));
    game.reload();
    assert_eq!(version(&mut bob).trim(), "build-three");
    let copies = installed(&game);
    assert!(
        !copies.contains(&first_copies[0]) && copies.len() <= 2,
        "run/bin keeps builds no server runs: {copies:?}"
    );

    for c in [&mut alice, &mut bob] {
        c.look().unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(alice.who(), ["Alice", "Bob"]);
}

/// The server binaries copied into run/bin (named by build id).
fn installed(game: &Game) -> Vec<String> {
    let dir = game.root().join("run/bin");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Runs one failing reload under light load and checks that the game is
/// unharmed. Returns the output of the failed `evctl reload`.
fn failing_reload(game: &Game, script: &str) -> String {
    let _heavy = heavy();
    game.start();
    let mut watcher = game.login("Watcher");
    let server = game.pid("server").unwrap();
    let load = light_load(game);

    game.set_server_script(script);
    let out = game.evctl(&["reload"]);
    let said = text(&out);
    assert!(
        !out.status.success(),
        "a broken server binary reloaded fine: {said}"
    );
    assert!(said.contains("reload failed"), "{said}");

    load.wait_progress(10);
    let report = load.finish();
    report.assert_clean();

    assert_eq!(
        game.pid("server"),
        Some(server),
        "server.pid changed after a failed reload"
    );
    assert!(alive(server), "the old server died in a failed reload");
    watcher.look().unwrap_or_else(|e| panic!("{e}"));
    watcher.send_line("ping still here");
    watcher.expect("pong still here");

    // Fixing the build makes the next reload work.
    game.set_server_script(&exec_test_server("EV_TEST_VERSION=build-fixed"));
    let out = game.evctl(&["reload"]);
    assert!(
        out.status.success(),
        "reload after fixing the build: {}{}",
        text(&out),
        game.log_tails()
    );
    watcher.look().unwrap_or_else(|e| panic!("{e}"));
    watcher.send_line("version");
    watcher.expect("build-fixed");
    said
}

#[test]
fn a_server_that_exits_at_start_fails_the_reload() {
    let game = Game::with_server_script(|_| {});
    let said = failing_reload(&game, "echo 'cannot open the frobnicator' >&2\nexit 1");
    assert!(
        said.contains("cannot open the frobnicator"),
        "the new server's last log lines are not shown: {said}"
    );
}

#[test]
fn a_server_that_never_attaches_fails_the_reload() {
    let game = Game::with_server_script(|c| c.server.start_timeout_ms = 1500);
    let marker = format!("sleep {}", game.marker());
    let said = failing_reload(&game, &format!("exec {marker}"));
    assert!(
        said.contains("1500 ms") || said.to_lowercase().contains("time"),
        "the reason does not say it timed out: {said}"
    );
    // The hung server was killed, not left behind.
    wait_until(
        "the server that never attached to be killed",
        Duration::from_secs(10),
        || !processes_with_arg(game.marker()),
    );
}

#[test]
fn a_server_with_another_link_major_fails_the_reload() {
    let game = Game::with_server_script(|_| {});
    let said = failing_reload(&game, &exec_test_server("EV_TEST_LINK_MAJOR=99"));
    let ours = ev::version::LINK_MAJOR;
    assert!(
        said.contains("99"),
        "the reason does not name the new server's version 99: {said}"
    );
    assert!(
        said.contains(&format!("{ours}.")),
        "the reason does not name the portal's version {ours}.x: {said}"
    );
}

fn processes_with_arg(needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            return false;
        };
        let pid: Option<u32> = e.file_name().to_str().and_then(|s| s.parse().ok());
        pid.is_some_and(alive) && raw.split(|&b| b == 0).any(|a| a == needle.as_bytes())
    })
}

/// `server.auto_reload`: rebuilding the binary reloads the game by itself,
/// players stay in; rewriting it with the same content does not.
#[test]
fn auto_reload_picks_up_a_rebuild_by_itself() {
    let game = Game::with_server_script(|c| {
        c.server.auto_reload = true;
        c.server.auto_reload_settle_ms = 100;
    });
    game.start();
    let mut alice = game.login("Alice");
    let first_server = game.pid("server").expect("a server");

    // The same bytes again (a rebuild that changed nothing): no reload.
    game.set_server_script(&exec_test_server(""));
    wait_until(
        "the supervisor to see the unchanged rebuild",
        REPLY_TIMEOUT,
        || supervisor_log(&game).contains("is the build that serves; not reloading"),
    );
    assert_eq!(game.pid("server"), Some(first_server));

    game.set_server_script(&exec_test_server("EV_TEST_VERSION=build-auto"));
    wait_until("the rebuilt server to serve", REPLY_TIMEOUT, || {
        game.pid("server")
            .is_some_and(|p| p != first_server && alive(p))
    });
    assert_eq!(version(&mut alice).trim(), "build-auto");
    alice.look().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        supervisor_log(&game).contains("was rebuilt; reloading"),
        "the supervisor log does not say why it reloaded{}",
        game.log_tails()
    );
}

/// Issue 11, the README's auto-reload recipe: `cargo build` does not write
/// target/debug/ev-server in place nor rename onto it. The linker writes a
/// new file under deps/, then cargo removes the binary and hard-links the
/// new file at its name. Each rebuild written that way reloads the game.
#[test]
fn auto_reload_picks_up_a_build_linked_in_the_way_cargo_does() {
    let game = Game::with_server_script(|c| {
        c.server.auto_reload = true;
        c.server.auto_reload_settle_ms = 100;
    });
    game.start();
    let mut alice = game.login("Alice");
    for build in ["build-linked-1", "build-linked-2"] {
        let serving = game.pid("server").expect("a server");
        cargo_link(&game, build);
        wait_until(&format!("{build} to serve"), REPLY_TIMEOUT, || {
            game.pid("server").is_some_and(|p| p != serving && alive(p))
        });
        assert_eq!(version(&mut alice).trim(), build, "{}", game.log_tails());
    }
    alice.look().unwrap_or_else(|e| panic!("{e}"));
}

/// Issue 14: a failed auto-reload is told to the game's admins in play, not
/// only written to the log; other players are not told.
#[test]
fn a_failed_auto_reload_is_told_to_the_admins_in_the_game() {
    let game = Game::with_server_script(|c| {
        c.server.auto_reload = true;
        c.server.auto_reload_settle_ms = 100;
    });
    let out = crate::util::run(
        {
            let mut cmd = std::process::Command::new(crate::util::bin("ev-test-server"));
            cmd.arg("--game-dir")
                .arg(game.root())
                .args(["create-admin", "Boss"])
                .env("EV_ADMIN_PASSWORD", crate::util::PASSWORD);
            cmd
        },
        REPLY_TIMEOUT,
    );
    assert!(out.status.success(), "create-admin: {}", text(&out));
    game.start();
    let mut boss = game.guest("Boss");
    boss.send_line(&format!("connect Boss {}", crate::util::PASSWORD));
    // Its first login: create-admin's account never played.
    boss.expect("Welcome, Boss!");
    let mut alice = game.login("Alice");
    let serving = game.pid("server").expect("a server");

    // A build that exits at once.
    game.set_server_script("echo 'broken build' >&2; exit 1");
    boss.expect_line(
        "the admin told of the failed auto-reload",
        |l| l.contains("[ev] Auto-reload failed; the game runs the build it ran before."),
        REPLY_TIMEOUT * 3,
    )
    .unwrap_or_else(|e| panic!("{e}{}", game.log_tails()));
    assert_eq!(game.pid("server"), Some(serving), "the old build serves on");
    alice.send_line("ping after");
    let seen = alice
        .read_all_until("pong after", |l| l.contains("pong after"), REPLY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !seen.iter().any(|l| l.contains("Auto-reload")),
        "a player who is not an admin was told: {seen:?}"
    );
}

/// Writes a build of the test server at `server.binary` as cargo does.
fn cargo_link(game: &Game, build: &str) {
    use std::os::unix::fs::PermissionsExt;
    let deps = game.tmp().join("deps");
    std::fs::create_dir_all(&deps).unwrap();
    let linked = deps.join(format!("ev_server-{build}"));
    std::fs::write(
        &linked,
        format!(
            "#!/bin/sh\n{}\n",
            exec_test_server(&format!("EV_TEST_VERSION={build}"))
        ),
    )
    .unwrap();
    std::fs::set_permissions(&linked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = game.server_script_path();
    std::fs::remove_file(&binary).unwrap();
    std::fs::hard_link(&linked, &binary).unwrap();
}

fn supervisor_log(game: &Game) -> String {
    std::fs::read_to_string(game.root().join("logs/supervisor.log")).unwrap_or_default()
}

/// Issue 11: `evctl reload` reads ev.toml again. A `server.binary` changed
/// there is what the reload starts; a key only a restart applies is named;
/// a file that does not load fails the reload and changes nothing.
#[test]
fn a_reload_reads_ev_toml_again() {
    let game = Game::with_server_script(|_| {});
    game.start();
    let mut alice = game.login("Alice");
    let running = std::fs::read_to_string(game.config_path()).expect("reading ev.toml");

    // Another binary, named only in ev.toml.
    let other = game.tmp().join("other-server");
    crate::util::write_executable(
        &other,
        &format!(
            "#!/bin/sh\n{}\n",
            exec_test_server("EV_TEST_VERSION=build-other")
        ),
    );
    let script = game.server_script_path().display().to_string();
    let edited = running
        .replace(&script, &other.display().to_string())
        .replace("max_line_bytes = 4096", "max_line_bytes = 2048");
    assert_ne!(edited, running, "the test's edits found nothing to change");
    game.write_config(&edited);
    let out = game.reload();
    let said = text(&out);
    assert_eq!(version(&mut alice).trim(), "build-other", "{said}");
    assert!(
        said.contains("applied only by a restart")
            && said.contains("portal.max_line_bytes (running 4096, ev.toml 2048)"),
        "{said}"
    );

    // A broken file: the reload fails and the running server goes on.
    game.write_config(&format!("{edited}\n[server\n"));
    let out = game.evctl(&["reload"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("ev.toml"), "{said}");
    assert_eq!(version(&mut alice).trim(), "build-other");
}

/// Issue 14: `evctl start --watch` auto-reloads for one run, with
/// `server.auto_reload` off in ev.toml; a reload of ev.toml keeps it on.
#[test]
fn start_watch_auto_reloads_without_editing_ev_toml() {
    let game = Game::with_server_script(|c| c.server.auto_reload_settle_ms = 100);
    let out = game.evctl(&["start", "--watch"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut alice = game.login("Alice");
    let first = game.pid("server").expect("a server");
    game.set_server_script(&exec_test_server("EV_TEST_VERSION=build-watched"));
    wait_until("the rebuilt server to serve", REPLY_TIMEOUT, || {
        game.pid("server").is_some_and(|p| p != first && alive(p))
    });
    assert_eq!(version(&mut alice).trim(), "build-watched");
    let said = text(&game.reload());
    assert!(
        !said.contains("server.auto_reload"),
        "--watch reads as a change ev.toml needs a restart for: {said}"
    );
}

/// A build that crashes a few seconds after it took over, every time it is
/// restarted: the script of a test server that aborts `after_ms` after it
/// attaches, with `env` besides.
fn crashes_after_taking_over(after_ms: u64, env: &str) -> String {
    exec_test_server(&format!(
        "EV_TEST_VERSION=build-bad EV_TEST_CRASH_AFTER_MS={after_ms} {env}"
    ))
}

/// A game on `build-good` with Alice logged in, then reloaded onto a build
/// made by [`crashes_after_taking_over`].
fn reload_onto_a_crashing_build(env: &str) -> (Game, crate::util::Client) {
    let game = Game::with_server_script(|c| {
        c.supervisor.crash_loop_limit = 3;
        c.supervisor.restart_backoff_ms = 50;
    });
    game.set_server_script(&exec_test_server("EV_TEST_VERSION=build-good"));
    game.start();
    let mut alice = game.login("Alice");
    assert_eq!(version(&mut alice).trim(), "build-good");
    // Long enough after attaching for the hand-over to finish first, even
    // on a loaded machine.
    game.set_server_script(&crashes_after_taking_over(3000, env));
    let out = game.reload();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(version(&mut alice).trim(), "build-bad");
    (game, alice)
}

/// Pings until a line containing `until` came (and one ping after it), each
/// ping answered before the next is sent; returns every line seen.
fn ping_through(alice: &mut crate::util::Client, until: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    let mut after = 0;
    for n in 0.. {
        assert!(
            std::time::Instant::now() < deadline,
            "no {until:?} within 90 s: {seen:?}"
        );
        alice.send_line(&format!("ping n{n}"));
        let lines = alice
            .read_all_until(
                &format!("pong n{n}"),
                |l| l.contains(&format!("pong n{n}")),
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        seen.extend(lines);
        if seen.iter().any(|l| l.contains(until)) {
            after += 1;
            if after == 2 {
                break;
            }
        }
    }
    seen
}

/// Each `pong nN` seen exactly once: nothing lost, nothing run twice.
fn assert_each_pong_once(seen: &[String]) {
    let pongs: Vec<&String> = seen.iter().filter(|l| l.contains("pong n")).collect();
    let mut unique = pongs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(pongs.len(), unique.len(), "a ping ran twice: {seen:?}");
}

/// Issue 14: a build that crash-loops soon after it took over is replaced
/// by the build that served before it. Alice stays connected and logged in
/// throughout, and every command she typed runs exactly once.
#[test]
fn a_build_that_crash_loops_after_taking_over_falls_back_to_the_build_before() {
    let _heavy = heavy();
    let (game, mut alice) = reload_onto_a_crashing_build("");
    let seen = ping_through(&mut alice, "going back to the code that ran before");
    assert_each_pong_once(&seen);
    // Still logged in, on the build that served before.
    assert_eq!(version(&mut alice).trim(), "build-good", "{seen:?}");
    assert_eq!(alice.who(), ["Alice"]);

    let status = text(&game.evctl(&["status"]));
    assert!(status.contains("build note"), "{status}");
    assert!(status.contains("fell back from build"), "{status}");
    let out = game.evctl(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json ({e}): {}", text(&out)));
    assert!(
        json["build_note"]
            .as_str()
            .is_some_and(|n| n.contains("crashed soon after taking over")),
        "{json}"
    );
    assert!(
        supervisor_log(&game).contains("falling back to build"),
        "{}",
        game.log_tails()
    );
    // The fallback stays put: the good build keeps serving.
    alice.send_line("ping after");
    alice.expect("pong after");
}

/// Issue 14: no fallback to a build older than the database. The crashing
/// build migrated it past the build before, which would misread it: the
/// game stays down and says why, and a fixed build brings it back with
/// Alice still logged in.
#[test]
fn no_fallback_to_a_build_the_database_was_migrated_past() {
    let _heavy = heavy();
    let (game, mut alice) = reload_onto_a_crashing_build("EV_TEST_MIGRATE_PAST=9999");
    alice
        .expect_line(
            "the notice that the game is down",
            |l| l.contains("The game is down after repeated crashes"),
            Duration::from_secs(90),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    wait_until("status to show the refused fallback", REPLY_TIMEOUT, || {
        text(&game.evctl(&["status"])).contains("no fallback to build")
    });
    let status = text(&game.evctl(&["status"]));
    assert!(status.contains("crash-loop"), "{status}");
    assert!(
        supervisor_log(&game).contains("cannot fall back to build"),
        "{}",
        game.log_tails()
    );

    // A build that knows that migration serves again.
    game.set_server_script(&exec_test_server(
        "EV_TEST_VERSION=build-fixed EV_TEST_MIGRATE_PAST=9999",
    ));
    let out = game.reload();
    assert!(out.status.success(), "{}", text(&out));
    alice.send_line("ping back");
    alice.expect("pong back");
    assert_eq!(version(&mut alice).trim(), "build-fixed");
}
