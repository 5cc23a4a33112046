//! `evctl new`: the author's loop of issue 12, black box. A game crate made
//! by `evctl new` in a temp dir builds, its game starts, a telnet player
//! runs the example command; the test edits the command's text in the
//! generated source and runs `cargo build`, and the same player, still
//! connected, sees the new text after the automatic reload, with every
//! input around it answered exactly once.
//!
//! The crate builds into the workspace's own target directory
//! (`CARGO_TARGET_DIR`), so ev's dependencies are mostly reused: what
//! builds again is what the game's smaller feature set of them changes
//! (tokio, hyper, tonic, ev, ev-server; about a minute on two cores), then
//! the game crate itself. The times are printed (`--nocapture`).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{
    Client, Config, Game, REPLY_TIMEOUT, bin, evctl_command, heavy, text, wait_until,
};

/// The generated crate's name (and its binary's, in the shared target dir).
const NAME: &str = "newgame-test";

/// The longest a build may take: the first one compiles part of ev's
/// dependency tree on a loaded 2-core machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// The example command's greeting as generated, and as the test edits it.
const GREETING: &str = "Hello, {name}!";
const EDITED: &str = "Howdy, {name}!";

/// The workspace's target directory: evctl is in its `debug/`.
fn workspace_target() -> PathBuf {
    let evctl = bin("evctl");
    evctl
        .parent()
        .and_then(Path::parent)
        .expect("evctl is in <target>/debug")
        .to_owned()
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// Runs `cmd` in a process group of its own and kills the whole group (cargo
/// and every rustc under it) if it outlives `timeout`, so a hung build
/// leaves nothing behind.
fn run_group(mut cmd: Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let collect = |mut pipe: Box<dyn Read + Send>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let into = buf.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                into.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        (buf, reader)
    };
    let (stdout, out_reader) = collect(Box::new(child.stdout.take().unwrap()));
    let (stderr, err_reader) = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                use nix::sys::signal::{Signal, killpg};
                let _ = killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    Signal::SIGKILL,
                );
                let _ = child.wait();
                let so = String::from_utf8_lossy(&stdout.lock().unwrap()).into_owned();
                let se = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
                panic!(
                    "{desc} did not finish within {timeout:?}; killed\nstdout: {so}\nstderr: {se}"
                );
            }
        }
    };
    // The group may hold the pipes a moment longer (a rustc exiting).
    let _ = out_reader.join();
    let _ = err_reader.join();
    let stdout = stdout.lock().unwrap().clone();
    let stderr = stderr.lock().unwrap().clone();
    Output {
        status,
        stdout,
        stderr,
    }
}

/// `cargo build` of the game crate into the shared target dir; its wall time.
fn cargo_build(dir: &Path, target: &Path) -> Duration {
    let mut cmd = Command::new(cargo());
    cmd.arg("build")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_TERM_PROGRESS_WHEN", "never");
    let started = Instant::now();
    let out = run_group(cmd, BUILD_TIMEOUT);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "cargo build of the edited game failed: {}",
        text(&out)
    );
    took
}

/// What a player sends and reads in the loop around the reload.
struct Round {
    /// The greeting `hello` answered with.
    greeting: String,
    /// When it arrived.
    at: Instant,
}

/// Sends `ping N` and `hello` and reads until both are answered; every
/// line read goes to `seen`.
fn round(player: &mut Client, n: u32, seen: &mut Vec<String>) -> Round {
    player.send_line(&format!("ping round-{n}"));
    player.send_line("hello");
    let mut greeting = None;
    let mut pong = false;
    let deadline = Instant::now() + REPLY_TIMEOUT;
    while greeting.is_none() || !pong {
        let line = player
            .next_line(deadline)
            .unwrap_or_else(|| panic!("round {n} unanswered{}", player.context()));
        if line.contains("! Welcome to ") {
            greeting = Some(line.clone());
        }
        pong |= line == format!("pong round-{n}");
        seen.push(line);
    }
    Round {
        greeting: greeting.unwrap_or_default(),
        at: Instant::now(),
    }
}

#[test]
fn a_game_made_by_evctl_new_is_changed_and_rebuilt_under_a_connected_player() {
    // A build uses both cores for a minute: not beside the load tests.
    let _heavy = heavy();
    let game = Game::uninitialised_at("crate/game");
    let dir = game.tmp().join("crate");
    let target = workspace_target();

    // evctl new: the crate, its build, its game directory.
    let mut new = evctl_command();
    new.args(["new", NAME])
        .arg(&dir)
        .args(["--telnet", "127.0.0.1:0", "--web", "127.0.0.1:0"])
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_TERM_PROGRESS_WHEN", "never");
    let started = Instant::now();
    let out = run_group(new, BUILD_TIMEOUT);
    let new_took = started.elapsed();
    eprintln!("evctl new (with its first cargo build) took {new_took:.1?}");
    let said = text(&out);
    assert!(out.status.success(), "evctl new failed: {said}");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "src/lib.rs",
        "src/tests.rs",
        ".gitignore",
    ] {
        assert!(dir.join(file).is_file(), "evctl new made no {file}: {said}");
    }
    assert!(said.contains("created the game directory"), "{said}");
    // Both listeners where the flags said, and the last line says so.
    let config = Config::load(&game.config_path()).expect("the generated ev.toml loads");
    let free_port = "127.0.0.1:0".parse().unwrap();
    assert_eq!(config.portal.telnet, free_port);
    assert_eq!(config.portal.web, Some(free_port));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.contains("listens for telnet on 127.0.0.1:0")
            && last.contains("the webclient on 127.0.0.1:0"),
        "the last line does not say where the game listens: {said}"
    );
    let binary = target.join("debug").join(NAME);
    assert_eq!(
        config.server.binary, binary,
        "server.binary is not where cargo put the build (CARGO_TARGET_DIR)"
    );
    assert!(config.server.auto_reload);
    assert_eq!(config.game.name, NAME);
    // The player below types as fast as it is answered: lift the command
    // rate limits (20 a second by default) so no input waits for them.
    let mut config = config;
    config.portal.commands_per_second = 100_000;
    config.portal.command_burst = 100_000;
    config.portal.commands_per_second_per_ip = 100_000;
    config.portal.command_burst_per_ip = 100_000;
    game.write_config(&config.to_toml());

    // The game runs; a player logs in and runs the example command.
    game.start();
    let mut alice = game.connect("Alice");
    alice.expect(&format!("Welcome to {NAME}!"));
    alice.send_line(&format!("create Alice {}", crate::util::PASSWORD));
    alice.expect("Welcome, Alice!");
    alice.expect("The First Room");
    alice.expect("You are alone here.");
    let mut seen = Vec::new();
    let first = round(&mut alice, 0, &mut seen);
    assert_eq!(first.greeting, format!("Hello, Alice! Welcome to {NAME}."));

    // The author changes the command's text and rebuilds.
    let lib = dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    assert_eq!(
        source.matches(GREETING).count(),
        1,
        "the generated hello no longer holds {GREETING:?}:\n{source}"
    );
    std::fs::write(&lib, source.replace(GREETING, EDITED)).unwrap();
    let serving = game.pid("server").expect("a server pid");
    let build_took = cargo_build(&dir, &target);
    let built = Instant::now();
    eprintln!("cargo build of the one-line change took {build_took:.1?}");

    // The player types on, closed loop, until the new code answers: some
    // input is in flight across the reload. Each is answered exactly once.
    let mut rounds = Vec::new();
    let deadline = built + Duration::from_secs(60);
    loop {
        let n = rounds.len() as u32 + 1;
        let r = round(&mut alice, n, &mut seen);
        let changed = r.greeting.starts_with("Howdy");
        rounds.push(r);
        if changed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reload within 60 s of the build{}",
            game.log_tails()
        );
    }
    let reloaded_after = rounds.last().map(|r| r.at - built).unwrap_or_default();
    eprintln!(
        "end of cargo build to the player seeing the new text: {reloaded_after:.1?} ({} rounds)",
        rounds.len()
    );
    alice.send_line("ping last");
    alice.expect("pong last");
    let greetings: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("! Welcome to "))
        .collect();
    assert_eq!(
        greetings.len(),
        rounds.len() + 1,
        "a hello answered twice or never: {seen:#?}"
    );
    for n in 0..=rounds.len() {
        let pongs = seen
            .iter()
            .filter(|l| **l == format!("pong round-{n}"))
            .count();
        assert_eq!(pongs, 1, "ping round-{n} answered {pongs} times: {seen:#?}");
    }
    let last = rounds.last().expect("at least one round");
    assert_eq!(last.greeting, format!("Howdy, Alice! Welcome to {NAME}."));
    assert!(
        rounds[..rounds.len() - 1]
            .iter()
            .all(|r| r.greeting.starts_with("Hello")),
        "the old text after the new one: {seen:#?}"
    );

    // It was the automatic reload: a new server, the player still in.
    wait_until(
        "the old server to exit and server.pid to name the new one",
        REPLY_TIMEOUT,
        || {
            !crate::util::alive(serving)
                && game
                    .pid("server")
                    .is_some_and(|p| p != serving && crate::util::alive(p))
        },
    );
    let log = std::fs::read_to_string(game.root().join("logs/supervisor.log")).unwrap_or_default();
    assert!(log.contains("auto-reload done"), "{}", game.log_tails());
    alice.send_line("look");
    alice.expect("The First Room");
}
