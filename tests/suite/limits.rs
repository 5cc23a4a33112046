//! The portal's limits for a game exposed to the internet (issue 9): output
//! queued for a player bounded in bytes, command rates per connection and
//! per address, login and idle timeouts, clients that half-close, and a
//! server that stops answering. Each game sets small limits in its ev.toml
//! so the tests run fast.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::{Client, Config, Game, REPLY_TIMEOUT};

const TOO_FAST: &str = "You are sending commands too fast";

fn started(tweak: impl FnOnce(&mut Config)) -> Game {
    let game = Game::with_config(tweak);
    game.start();
    game
}

fn portal_log(game: &Game) -> String {
    std::fs::read_to_string(game.root().join("logs/portal.log")).unwrap_or_default()
}

/// Every line up to the one containing `last`.
fn lines_until(client: &mut Client, last: &str) -> Vec<String> {
    client
        .read_all_until(&format!("{last:?}"), |l| l.contains(last), REPLY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `ping <prefix>1` .. `ping <prefix>n` in one write, then checks that
/// every pong came back in order; returns how often the player was told
/// they were too fast.
fn pings(client: &mut Client, prefix: &str, n: usize) -> usize {
    let burst: String = (1..=n).map(|i| format!("ping {prefix}{i}\r\n")).collect();
    client.send_raw(burst.as_bytes());
    let lines = lines_until(client, &format!("pong {prefix}{n}"));
    let pongs: Vec<&String> = lines.iter().filter(|l| l.starts_with("pong")).collect();
    let want: Vec<String> = (1..=n).map(|i| format!("pong {prefix}{i}")).collect();
    assert_eq!(pongs, want.iter().collect::<Vec<_>>(), "{lines:?}");
    lines.iter().filter(|l| l.contains(TOO_FAST)).count()
}

/// A listener who does not read is disconnected once the lines queued for
/// them pass `portal.output_queue_bytes`, long before the line count
/// (`portal.output_queue`) would; the speaker goes on.
#[test]
fn a_player_who_does_not_read_is_cut_off_by_the_bytes_queued() {
    let game = started(|c| {
        c.portal.output_queue = 1_000_000;
        c.portal.output_queue_bytes = 128 * 1024;
    });
    let mut listener = game.login("Listener");
    let mut talker = game.login("Talker");
    let say = format!("say {}", "x".repeat(4000));
    // The listener's socket buffers take a few MB before its queue grows.
    // The talker says ten lines at a time: its own echoes, queued at once,
    // stay well under the limit.
    let most = 5000;
    let mut said = 0;
    while !portal_log(&game).contains("output queue full") {
        assert!(
            said < most,
            "{said} lines of 4000 bytes did not fill a 128 KiB output queue{}",
            game.log_tails()
        );
        for _ in 0..10 {
            talker.send_line(&say);
        }
        for _ in 0..10 {
            talker.expect("You say, ");
        }
        said += 10;
    }
    assert!(
        listener.is_closed(REPLY_TIMEOUT),
        "the listener was not disconnected"
    );
    talker.send_line("ping");
    talker.expect("pong");
}

/// Commands past `portal.command_burst` wait for `commands_per_second`: the
/// player is told once and every command still runs, in order.
#[test]
fn commands_over_the_rate_are_told_once_and_all_run() {
    let game = started(|c| {
        c.portal.commands_per_second = 5;
        c.portal.command_burst = 5;
    });
    let mut player = game.login("Hasty");
    assert_eq!(pings(&mut player, "", 15), 1, "told once");
}

/// Connections from one address share its bucket: two connections that
/// would each be within the address's burst are not, together.
#[test]
fn connections_from_one_address_share_its_command_rate() {
    let game = started(|c| {
        c.portal.commands_per_second_per_ip = 1;
        c.portal.command_burst_per_ip = 3;
    });
    // The login screen answers ping: no account needed.
    let mut first = game.guest("First");
    let mut second = game.guest("Second");
    assert_eq!(pings(&mut first, "a", 2), 0, "within the address's burst");
    assert_eq!(pings(&mut second, "b", 3), 1, "the burst was shared");
}

/// Connections are counted from the accept, before any telnet: ones that
/// never send a byte fill the address's quota too.
#[test]
fn silent_connections_count_against_the_per_address_limit() {
    let game = started(|c| c.portal.max_connections_per_ip = 3);
    let addr = game.telnet_addr();
    let _silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(addr).expect("connecting"))
        .collect();
    let mut fourth = game.connect("Fourth");
    fourth.expect("Too many connections from your address.");
    assert!(fourth.is_closed(REPLY_TIMEOUT));
}

/// A connection that does not log in within `portal.login_timeout_s` is told
/// and closed; a logged-in player is not, across a reload too (the portal
/// keeps the server's word that they are logged in).
#[test]
fn a_connection_that_does_not_log_in_is_told_and_closed() {
    let game = started(|c| c.portal.login_timeout_s = 2);
    let mut player = game.login("Patient");
    game.reload();
    let mut guest = game.guest("Lurker");
    guest.expect("You did not log in in time");
    assert!(guest.is_closed(REPLY_TIMEOUT), "the lurker was not closed");
    // Connected longer than the login timeout, and still here.
    player.send_line("ping");
    player.expect("pong");
}

/// A logged-in player who sends nothing for `portal.idle_timeout_s` is told
/// and disconnected.
#[test]
fn an_idle_player_is_told_and_disconnected() {
    let game = started(|c| c.portal.idle_timeout_s = 1);
    let mut idler = game.login("Idler");
    idler.expect("You were idle too long");
    assert!(idler.is_closed(REPLY_TIMEOUT), "the idler was not closed");
}

/// A client that sends its last commands and shuts down its sending side
/// gets every answer before the portal closes the connection.
#[test]
fn a_client_that_half_closes_gets_its_answers_then_is_closed() {
    let game = started(|_| {});
    let mut player = game.login("Brief");
    player.send_raw(b"ping 1\r\nping 2\r\nping 3\r\n");
    player.shutdown_write();
    for n in 1..=3 {
        player.expect(&format!("pong {n}"));
    }
    assert!(
        player.is_closed(REPLY_TIMEOUT),
        "not closed after the answers"
    );
}

/// Resumes a stopped process when dropped, so a failing test leaves nothing
/// stopped for the teardown to wait on.
struct Stopped(Pid);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        let pid = Pid::from_raw(pid as i32);
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP to the server");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// A server that stops answering (SIGSTOP: the Link stays open) leaves a
/// player's input unanswered: past `portal.pause_notice_ms` they are told the
/// game is paused, and when it answers again that it is back.
#[test]
fn a_silent_server_is_told_as_a_pause_and_so_is_its_return() {
    let game = started(|c| {
        c.portal.pause_notice_ms = 300;
        // The supervisor must not kill the stopped server during the test.
        c.server.heartbeat_timeout_ms = 120_000;
    });
    let mut player = game.login("Waiting");
    let mut bystander = game.login("Bystander");
    let server = game.pid("server").expect("run/server.pid");
    let stopped = Stopped::stop(server);
    let sent = Instant::now();
    player.send_line("ping");
    player.expect("[ev] The game is paused");
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "told too soon"
    );
    drop(stopped);
    let after = lines_until(&mut player, "The game is back.");
    assert!(after.iter().any(|l| l == "pong"), "{after:?}");
    // Who had no input waiting heard nothing of it.
    bystander.send_line("ping");
    let seen = lines_until(&mut bystander, "pong");
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("paused") || l.contains("back")),
        "{seen:?}"
    );
}
