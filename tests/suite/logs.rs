//! Logs that do not fill the disk (issue 14): rotated past
//! `logs.max_file_kib`, `logs.keep` copies, the newest lines still where
//! `evctl logs` reads them; `evctl logs -f` follows.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{Game, REPLY_TIMEOUT, evctl_command, text, wait_until};

fn logs_size(game: &Game, prefix: &str) -> u64 {
    std::fs::read_dir(game.root().join("logs"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_busy_log_is_rotated_and_the_newest_lines_stay_readable() {
    let game = Game::with_config(|c| {
        c.logs.max_file_kib = 4;
        c.logs.keep = 2;
    });
    game.start();
    // Each account made is a line in server.log: make them until the log
    // has been rotated twice (the supervisor looks once a second).
    let rotated_twice = || game.root().join("logs/server.log.2").exists();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut made = 0;
    let mut last = String::new();
    while !rotated_twice() {
        assert!(
            Instant::now() < deadline,
            "server.log was not rotated twice"
        );
        for _ in 0..20 {
            let name = format!("Logged{}", crate::util::letters(made));
            let mut c = game.guest(&name);
            c.send_line(&format!("create {name} {}", crate::util::PASSWORD));
            c.expect(&format!("Welcome, {name}!"));
            made += 1;
            last = name;
        }
    }
    wait_until("server.log to be under its limit", REPLY_TIMEOUT, || {
        std::fs::metadata(game.root().join("logs/server.log")).map_or(0, |m| m.len()) <= 4 * 1024
    });
    assert!(
        !game.root().join("logs/server.log.3").exists(),
        "more copies than logs.keep"
    );
    // Three files, each of at most the limit plus what was written within
    // one check (this test writes well under 16 KiB a second).
    let total = logs_size(&game, "server.log");
    assert!(
        total <= 3 * (4 + 16) * 1024,
        "server logs take {total} bytes"
    );
    let out = game.evctl(&["logs", "server", "-n", "200"]);
    let said = text(&out);
    let in_copy =
        std::fs::read_to_string(game.root().join("logs/server.log.1")).unwrap_or_default();
    assert!(
        said.contains(&last) || in_copy.contains(&last),
        "the newest line is in neither the log nor its newest copy: {said}"
    );
}

#[test]
fn logs_follow_prints_new_lines() {
    let game = Game::started();
    let mut cmd = evctl_command();
    cmd.arg("-g")
        .arg(game.root())
        .args(["logs", "server", "-n", "1", "-f"])
        .stdout(Stdio::piped());
    let mut child = Killed(cmd.spawn().expect("spawning evctl logs -f"));
    let stdout = child.0.stdout.take().expect("its stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Its one line of tail says it is reading: only then is a new line new.
    let first = rx.recv_timeout(REPLY_TIMEOUT);
    assert!(first.is_ok(), "evctl logs -f printed nothing");
    game.login("Followed");
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) if line.contains("Followed") => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    drop(child);
    assert!(
        found,
        "evctl logs -f did not show the new account: {seen:?}"
    );
}

/// A child killed when dropped, even by a failing test: `logs -f` never
/// ends by itself.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
