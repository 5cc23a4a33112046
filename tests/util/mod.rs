//! The test harness: a temporary game directory driven through the real
//! `evctl`, telnet clients, and process clean-up that survives a failing test.
//!
//! - [`Game`]: `evctl init` in a short temp path, an `ev.toml` with cheap
//!   password hashing and port 0, `start`, `evctl(...)`, and a `Drop` that
//!   stops the game and then SIGKILLs whatever is left of it.
//! - [`telnet::Client`]: line-mode telnet with deadlines.
//! - [`load`]: many clients pinging across reloads, checking every reply.
//!
//! Every wait is on a condition with a deadline; nothing sleeps to synchronise.
#![allow(dead_code)]

pub mod load;
pub mod telnet;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use ev::config::Config;
pub use telnet::{Client, REPLY_TIMEOUT};

/// The password every test account uses.
pub const PASSWORD: &str = "secretpw";

/// The longest any single evctl command may take before the test fails.
const EVCTL_TIMEOUT: Duration = Duration::from_secs(90);

/// Held by tests that put heavy load on the machine, so they run one at a time
/// while the light tests still run in parallel beside them.
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A binary built by `cargo test --workspace`, found beside evctl.
pub fn bin(name: &str) -> PathBuf {
    let evctl = Path::new(env!("CARGO_BIN_EXE_evctl"));
    let path = evctl
        .parent()
        .expect("evctl has a parent directory")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: build every binary first (run `cargo test --workspace`, not only `-p ev`)",
        path.display()
    );
    path
}

pub fn evctl_path() -> PathBuf {
    bin("evctl")
}

/// A command running evctl with a clean environment for ev's own variables.
pub fn evctl_command() -> Command {
    let mut cmd = Command::new(evctl_path());
    cmd.env_remove("EV_GAME_DIR")
        .env_remove("EV_ADMIN_PASSWORD")
        .env_remove("EV_NEW_PASSWORD")
        .env_remove("EV_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd`, failing the test if it takes longer than `timeout`.
///
/// The output is collected by reader threads; if the command leaves a
/// process holding its stdout/stderr (a detached supervisor that did not
/// redirect them), what arrived within two seconds of its exit is returned.
pub fn run(mut cmd: Command, timeout: Duration) -> Output {
    use std::io::Read;
    let desc = format!("{cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let collect = |mut pipe: Box<dyn Read + Send>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, d) = (buf.clone(), done.clone());
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
            d.store(true, Ordering::SeqCst);
        });
        (buf, done)
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let so = String::from_utf8_lossy(&out.0.lock().unwrap()).into_owned();
                let se = String::from_utf8_lossy(&err.0.lock().unwrap()).into_owned();
                panic!("{desc} did not finish within {timeout:?}\nstdout: {so}\nstderr: {se}");
            }
            Err(e) => panic!("waiting for {desc}: {e}"),
        }
    };
    let eof = Instant::now() + Duration::from_secs(2);
    while !(out.1.load(Ordering::SeqCst) && err.1.load(Ordering::SeqCst)) && Instant::now() < eof {
        std::thread::sleep(Duration::from_millis(5));
    }
    if !(out.1.load(Ordering::SeqCst) && err.1.load(Ordering::SeqCst)) {
        eprintln!("warning: a process started by {desc} still holds its stdout/stderr");
    }
    let stdout = out.0.lock().unwrap().clone();
    let stderr = err.0.lock().unwrap().clone();
    Output {
        status,
        stdout,
        stderr,
    }
}

/// stdout and stderr of `out` with its exit status, for assertions and messages.
pub fn text(out: &Output) -> String {
    format!(
        "[{}]\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until `cond` holds, polling every 20 ms; panics naming `what` at the deadline.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A player name from a number: names are letters only, so digits become a-j.
pub fn letters(mut n: usize) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push((b'a' + (n % 10) as u8) as char);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

pub use ev::process::{alive, cmdline};

/// Writes an executable file atomically (temp file, chmod 755, rename), so a
/// supervisor copying it never sees half a file.
pub fn write_executable(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("renaming to {}: {e}", path.display()));
}

/// The settings every test game starts from: port 0, cheap hashing, short
/// delays, and room for many connections, commands and accounts from
/// 127.0.0.1 (load clients ping every 20 ms, all from one address).
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.game.name = "ev test".into();
    c.portal.telnet = "127.0.0.1:0".parse().unwrap();
    c.portal.web = Some("127.0.0.1:0".parse().unwrap());
    c.portal.max_connections_per_ip = 1000;
    c.portal.commands_per_second = 100_000;
    c.portal.command_burst = 100_000;
    c.portal.commands_per_second_per_ip = 1_000_000;
    c.portal.command_burst_per_ip = 1_000_000;
    c.auth.argon2_memory_kib = 8;
    c.auth.argon2_iterations = 1;
    c.auth.argon2_parallelism = 1;
    c.auth.failure_delay_ms = 200;
    // Every test player connects from 127.0.0.1: tests of these limits
    // lower them or connect from other loopback addresses.
    c.auth.creates_per_address_per_hour = 1_000_000;
    c.auth.creates_per_minute = 1_000_000;
    c.supervisor.stop_timeout_ms = 5_000;
    c
}

/// A game directory under a short temp path (Unix socket paths must stay
/// under 107 bytes), initialised with `evctl init`. Not started until
/// [`Game::start`]. Dropping it stops the game and kills what is left.
pub struct Game {
    tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    /// A number unique to this game, for markers in process arguments.
    marker: String,
}

impl Game {
    /// `evctl init` plus the test ev.toml.
    pub fn new() -> Game {
        Game::with_config(|_| {})
    }

    /// Like [`Game::new`] with the test config adjusted by `tweak` first.
    pub fn with_config(tweak: impl FnOnce(&mut Config)) -> Game {
        Game::init_into(Game::uninitialised(), tweak)
    }

    /// A game made by `evctl init --tls` (a self-signed certificate in
    /// GAME/tls), its TLS listener on a free port; then `tweak`.
    pub fn with_tls(tweak: impl FnOnce(&mut Config)) -> Game {
        Game::init_into_with(Game::uninitialised(), &["--tls"], |c| {
            c.portal.tls = Some("127.0.0.1:0".parse().unwrap());
            tweak(c)
        })
    }

    /// A temp directory whose game dir (`root`) does not exist yet.
    pub fn uninitialised() -> Game {
        Game::uninitialised_at("g")
    }

    /// Like [`Game::uninitialised`], with the game dir at `path` in the temp
    /// directory (for a test that makes it some other way, e.g. `evctl new`).
    pub fn uninitialised_at(path: &str) -> Game {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tmp = tempfile::Builder::new()
            .prefix("ev")
            .tempdir_in("/tmp")
            .expect("creating a temp dir in /tmp");
        let root = tmp.path().join(path);
        let marker = format!(
            "{}{:04}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        Game {
            tmp: Some(tmp),
            root,
            marker,
        }
    }

    /// A new, started game.
    pub fn started() -> Game {
        let game = Game::new();
        game.start();
        game
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The temp directory around the game dir, for files a test owns.
    pub fn tmp(&self) -> &Path {
        self.tmp.as_ref().unwrap().path()
    }

    pub fn marker(&self) -> &str {
        &self.marker
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("ev.toml")
    }

    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config_path(), toml)
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.config_path().display()));
    }

    /// Runs `evctl -g ROOT ARGS...`.
    pub fn evctl(&self, args: &[&str]) -> Output {
        let mut cmd = evctl_command();
        cmd.arg("-g").arg(&self.root).args(args);
        run(cmd, EVCTL_TIMEOUT)
    }

    /// `evctl start`, asserting it succeeds and says the game is running.
    pub fn start(&self) -> Output {
        let out = self.evctl(&["start"]);
        assert!(
            out.status.success(),
            "evctl start failed: {}{}",
            text(&out),
            self.log_tails()
        );
        assert!(
            text(&out).contains("ev is running"),
            "evctl start did not say `ev is running`: {}",
            text(&out)
        );
        out
    }

    /// `evctl reload`, asserting success; returns its output.
    pub fn reload(&self) -> Output {
        let out = self.evctl(&["reload"]);
        assert!(
            out.status.success(),
            "evctl reload failed: {}{}",
            text(&out),
            self.log_tails()
        );
        out
    }

    /// The telnet address the portal bound (run/telnet.addr).
    pub fn telnet_addr(&self) -> SocketAddr {
        let path = self.root.join("run/telnet.addr");
        let raw = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e} (is the game started?)", path.display()));
        raw.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{} holds {raw:?}, not an address: {e}", path.display()))
    }

    pub fn connect(&self, label: &str) -> Client {
        Client::connect(self.telnet_addr(), label)
    }

    /// The TLS address the portal bound (run/tls.addr).
    pub fn tls_addr(&self) -> SocketAddr {
        let path = self.root.join("run/tls.addr");
        let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "reading {}: {e} (is the game started, with portal.tls?)",
                path.display()
            )
        });
        raw.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{} holds {raw:?}, not an address: {e}", path.display()))
    }

    /// Telnet over TLS through `openssl s_client`, at the welcome screen.
    pub fn guest_tls(&self, label: &str) -> Client {
        let mut c = Client::connect_tls(self.tls_addr(), label);
        c.expect("Welcome to ");
        c
    }

    /// Like [`Game::login`], over TLS.
    pub fn login_tls(&self, name: &str) -> Client {
        Game::create_account(self.guest_tls(name), name)
    }

    /// A connection that has seen the welcome screen.
    pub fn guest(&self, label: &str) -> Client {
        let mut c = self.connect(label);
        c.expect("Welcome to ");
        c
    }

    /// Creates the account `name` and returns its client, logged in, with the
    /// look output after `Welcome, NAME!` consumed.
    pub fn login(&self, name: &str) -> Client {
        Game::create_account(self.guest(name), name)
    }

    fn create_account(mut c: Client, name: &str) -> Client {
        c.send_line(&format!("create {name} {PASSWORD}"));
        c.expect(&format!("Welcome, {name}!"));
        c.expect_line(
            "the look output after creating the account",
            |l| l.contains("Here: ") || l.contains("You are alone here."),
            REPLY_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        c
    }

    /// Logs in to an existing account with `connect`.
    pub fn connect_account(&self, name: &str) -> Result<Client, String> {
        let mut c = Client::try_connect(self.telnet_addr(), name)
            .map_err(|e| format!("{name}: cannot connect: {e}"))?;
        c.expect_line(
            "the welcome screen",
            |l| l.contains("Welcome to "),
            REPLY_TIMEOUT,
        )?;
        c.send_line(&format!("connect {name} {PASSWORD}"));
        let line = c.expect_line(
            &format!("`Welcome back, {name}!`"),
            |l| l.contains("Welcome back, ") || l.contains("Wrong name or password"),
            REPLY_TIMEOUT,
        )?;
        if line.contains(&format!("Welcome back, {name}!")) {
            Ok(c)
        } else {
            Err(format!("{name}: `connect` answered {line:?}"))
        }
    }

    pub fn pid(&self, process: &str) -> Option<u32> {
        std::fs::read_to_string(self.root.join("run").join(format!("{process}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Pids from every pidfile present.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        ["supervisor", "portal", "server"]
            .into_iter()
            .filter_map(|p| self.pid(p).map(|pid| (p, pid)))
            .collect()
    }

    /// A file in the temp dir used as `[server] binary`, holding a shell
    /// script; see [`Game::with_server_script`].
    pub fn server_script_path(&self) -> PathBuf {
        self.tmp().join("server")
    }

    /// A game whose `[server] binary` is a script in the temp dir, first
    /// `exec`ing ev-test-server. Replace it with [`Game::set_server_script`].
    pub fn with_server_script(tweak: impl FnOnce(&mut Config)) -> Game {
        let game = Game::uninitialised();
        let script = game.server_script_path();
        write_executable(&script, &format!("#!/bin/sh\n{}\n", exec_test_server("")));
        Game::init_into(game, |c| {
            c.server.binary = script.clone();
            tweak(c);
        })
    }

    fn init_into(game: Game, tweak: impl FnOnce(&mut Config)) -> Game {
        Game::init_into_with(game, &[], tweak)
    }

    /// `evctl init` with `args` besides the addresses, then the test config.
    fn init_into_with(game: Game, args: &[&str], tweak: impl FnOnce(&mut Config)) -> Game {
        let mut cmd = evctl_command();
        cmd.arg("init")
            .arg(&game.root)
            .args(["--telnet", "127.0.0.1:0", "--web", "127.0.0.1:0"])
            .args(args);
        let out = run(cmd, EVCTL_TIMEOUT);
        assert!(
            out.status.success(),
            "evctl init {} failed: {}",
            game.root.display(),
            text(&out)
        );
        assert!(
            game.config_path().is_file(),
            "evctl init wrote no ev.toml: {}",
            text(&out)
        );
        let mut config = test_config();
        tweak(&mut config);
        game.write_config(&config.to_toml());
        game
    }

    /// Replaces the server script (atomically) with `body` after `#!/bin/sh`.
    pub fn set_server_script(&self, body: &str) {
        write_executable(&self.server_script_path(), &format!("#!/bin/sh\n{body}\n"));
    }

    /// The last lines of every log, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(self.root.join("logs")) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let Ok(content) = std::fs::read_to_string(&path) else {
                continue;
            };
            let lines: Vec<&str> = content.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            out.push_str(&format!(
                "\n--- {} (last {} lines)\n",
                path.display(),
                tail.len()
            ));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Pids of processes that belong to this game: named in a pidfile and
    /// running an ev binary, or carrying the temp dir or marker in argv.
    fn own_processes(&self) -> Vec<u32> {
        let root = self.tmp().to_string_lossy().into_owned();
        let mine = |args: &[String]| {
            args.iter()
                .any(|a| a.contains(&root) || a.contains(&self.marker))
        };
        let mut pids: Vec<u32> = self
            .pids()
            .into_iter()
            .map(|(_, pid)| pid)
            .filter(|&pid| {
                let args = cmdline(pid);
                mine(&args) || args.first().is_some_and(|a| a.contains("ev-"))
            })
            .collect();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                if pid != std::process::id() && mine(&cmdline(pid)) && !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        pids.retain(|&pid| alive(pid));
        pids
    }
}

/// The script line that runs ev-test-server with extra environment `env`
/// (e.g. `EV_TEST_VERSION=next-build`), for [`Game::set_server_script`].
pub fn exec_test_server(env: &str) -> String {
    format!("{env} exec {} \"$@\"", bin("ev-test-server").display())
}

/// A script body that runs ev-test-server with `env` the first time it is
/// started and plainly every time after (the crash restart re-runs the same
/// copy of the script, so a failpoint fires once).
pub fn once_then_plain(marker: &Path, env: &str) -> String {
    let m = marker.display();
    format!(
        "if [ -e {m} ]; then {}; fi\ntouch {m}\n{}",
        exec_test_server(""),
        exec_test_server(env)
    )
}

impl Drop for Game {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "game {} at the failure:{}",
                self.root.display(),
                self.log_tails()
            );
        }
        if self.root.join("run").exists() {
            let mut cmd = evctl_command();
            cmd.arg("-g").arg(&self.root).arg("stop");
            // A hanging stop must not hang the test run: the kill below follows.
            let _ = std::thread::spawn(move || run(cmd, Duration::from_secs(30))).join();
        }
        use nix::sys::signal::{Signal, kill, killpg};
        use nix::unistd::{Pid, getpgid, getpgrp};
        let ours = getpgrp();
        for pid in self.own_processes() {
            let p = Pid::from_raw(pid as i32);
            eprintln!(
                "game {}: killing leftover process {pid} {:?}",
                self.root.display(),
                cmdline(pid)
            );
            if getpgid(Some(p)).is_ok_and(|g| g == p && g != ours) {
                let _ = killpg(p, Signal::SIGKILL);
            }
            let _ = kill(p, Signal::SIGKILL);
        }
        if std::env::var_os("EV_TEST_KEEP").is_some() {
            if let Some(tmp) = self.tmp.take() {
                eprintln!("keeping {}", tmp.keep().display());
            }
        }
    }
}

/// Fails the test, saying how to install it, if Python's `module` is
/// missing (`pip` is what to install: "telnetlib3==5.0.1").
pub fn require_python(module: &str, pip: &str) {
    let probe = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output();
    match probe {
        Err(e) => panic!(
            "python3 is needed for this test and could not run ({e}): install python3 and `python3 -m pip install {pip}`"
        ),
        Ok(out) if !out.status.success() => panic!(
            "the Python package {module} is missing: run `python3 -m pip install {pip}` (.ci/run does)\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => {}
    }
}
