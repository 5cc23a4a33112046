//! systemd's side of the readiness protocol and the watchdog (issue 14),
//! played by the test: a `NOTIFY_SOCKET` of its own and `WATCHDOG_USEC`.
//! The pings come while the supervisor and the portal answer, stop when
//! the portal hangs, and keep coming while a hung server is replaced.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::{Game, alive, evctl_command, wait_until};

/// systemd's timeout: pings come every half of it.
const WATCHDOG: Duration = Duration::from_millis(600);

struct Systemd {
    socket: UnixDatagram,
}

impl Systemd {
    /// The next message, if one comes before `deadline`.
    fn next(&self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        self.socket.set_read_timeout(Some(left)).ok()?;
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Waits for a message holding `needle`; returns it.
    fn expect(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(message) = self.next(deadline) {
            if message.contains(needle) {
                return message;
            }
            seen.push(message);
        }
        panic!("no {needle:?} from the supervisor within {within:?}; got {seen:?}");
    }

    /// Pings received in `window`.
    fn pings_in(&self, window: Duration) -> usize {
        let deadline = Instant::now() + window;
        std::iter::from_fn(|| self.next(deadline))
            .filter(|m| m.contains("WATCHDOG=1"))
            .count()
    }
}

/// The foreground supervisor, killed if the test fails before it stops.
struct Foreground(std::process::Child);

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).unwrap_or_else(|e| panic!("{sig} to {pid}: {e}"));
}

#[test]
fn the_watchdog_pings_only_while_supervisor_and_portal_answer() {
    let game = Game::with_config(|c| {
        c.server.heartbeat_ms = 100;
        c.server.heartbeat_timeout_ms = 1_500;
    });
    let path = game.tmp().join("notify.sock");
    let systemd = Systemd {
        socket: UnixDatagram::bind(&path).expect("binding the notify socket"),
    };
    let mut cmd = evctl_command();
    cmd.arg("-g")
        .arg(game.root())
        .args(["start", "--foreground"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut supervisor = Foreground(cmd.spawn().expect("starting the supervisor"));
    systemd.expect("READY=1", Duration::from_secs(30));
    let status = systemd.expect("WATCHDOG=1", WATCHDOG * 4);
    assert!(
        status.contains("STATUS=0 sessions (0 playing); server generation 1"),
        "{status:?}"
    );

    // A hung portal: the pings stop (one may have been on its way).
    let portal = game.pid("portal").expect("a portal pid");
    signal(portal, Signal::SIGSTOP);
    let _ = systemd.pings_in(WATCHDOG);
    let hung = systemd.pings_in(WATCHDOG * 2);
    signal(portal, Signal::SIGCONT);
    assert_eq!(hung, 0, "pings went on while the portal was stopped");
    systemd.expect("WATCHDOG=1", WATCHDOG * 4);

    // A hung server is the supervisor's to replace: the pings go on.
    let server = game.pid("server").expect("a server pid");
    signal(server, Signal::SIGSTOP);
    let during = systemd.pings_in(Duration::from_millis(1_200));
    assert!(during >= 2, "{during} pings while the server hung");
    wait_until(
        "the hung server to be replaced",
        Duration::from_secs(30),
        || !alive(server) && game.pid("server").is_some_and(|p| p != server && alive(p)),
    );
    systemd.expect("WATCHDOG=1", WATCHDOG * 4);

    let out = game.evctl(&["stop"]);
    assert!(out.status.success(), "{}", crate::util::text(&out));
    systemd.expect("STOPPING=1", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while supervisor.0.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the supervisor did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 14: the unit `evctl systemd-unit` prints for this machine passes
/// `systemd-analyze verify` (the shipped one is the same template, checked
/// by a unit test, with paths that exist only once installed).
#[test]
fn the_printed_unit_verifies() {
    let game = Game::new();
    let out = game.evctl(&["systemd-unit"]);
    assert!(out.status.success(), "{}", crate::util::text(&out));
    let path = game.tmp().join("ev-test.service");
    std::fs::write(&path, &out.stdout).expect("writing the unit");
    let unit = String::from_utf8_lossy(&out.stdout);
    assert!(
        unit.contains(&format!(
            "ExecStart={} -g ",
            crate::util::evctl_path().display()
        )),
        "{unit}"
    );
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package; .ci/run installs it)");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
