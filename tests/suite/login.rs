//! Logins under attack (issue 9): a flood of password work is bounded and
//! told to wait, also when a crash replays it into the next server; failed
//! logins count per address, not per connection, and never lock the owner
//! out; account creation is limited per address.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::{Client, Config, Game, PASSWORD, REPLY_TIMEOUT, alive, heavy, wait_until};

const BUSY: &str = "The game is busy with other logins; please try again in a moment.";
const TOO_MANY_FAILURES: &str = "Too many failed logins from your address";
const TOO_MANY_CREATES: &str = "Too many new accounts from your address";

/// Sessions that try to create an account at once.
const FLOOD: usize = 12;

/// One password worker and one waiting job, and hashes slow enough (tens of
/// milliseconds) that a flood sent at once finds them all taken.
fn flood_config(c: &mut Config) {
    c.auth.password_workers = 1;
    c.auth.password_queue = 1;
    c.auth.argon2_memory_kib = 32 * 1024;
    c.auth.argon2_iterations = 3;
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// `FLOOD` guests at the login screen.
fn guests(game: &Game, prefix: &str) -> Vec<(String, Client)> {
    (0..FLOOD)
        .map(|i| {
            let name = format!("{prefix}{}", crate::util::letters(i));
            let c = game.guest(&name);
            (name, c)
        })
        .collect()
}

/// Each guest sends `create`, before any answer is read.
fn flood(guests: &mut [(String, Client)]) {
    for (name, c) in guests {
        c.send_line(&format!("create {name} {PASSWORD}"));
    }
}

/// Each guest's one answer to its `create`: true if it got in, false if it
/// was told the game is busy. A `ping` after it must come back next, so an
/// answer given twice would be seen.
fn answers(guests: &mut [(String, Client)]) -> Vec<bool> {
    guests
        .iter_mut()
        .map(|(name, c)| {
            let welcome = format!("Welcome, {name}!");
            let line = c
                .expect_line(
                    "an answer to create",
                    |l| l.contains(&welcome) || l.contains(BUSY),
                    Duration::from_secs(60),
                )
                .unwrap_or_else(|e| panic!("{e}"));
            let got_in = line.contains(&welcome);
            c.send_line("ping once");
            let deadline = Instant::now() + REPLY_TIMEOUT;
            loop {
                let line = c
                    .next_line(deadline)
                    .unwrap_or_else(|| panic!("{name}: no pong{}", c.context()));
                assert!(
                    !line.contains(&welcome) && !line.contains(BUSY),
                    "{name}: a second answer to one create: {line:?}"
                );
                if line.contains("pong once") {
                    break;
                }
            }
            got_in
        })
        .collect()
}

#[test]
fn a_login_flood_is_told_to_wait_while_players_play_on() {
    let _heavy = heavy();
    let game = Game::with_config(flood_config);
    game.start();
    let mut player = game.login("Player");
    let mut guests = guests(&game, "Flood");
    flood(&mut guests);
    player.send_line("ping still here");
    player.expect("pong still here");
    let got_in = answers(&mut guests);
    let busy = got_in.iter().filter(|&&ok| !ok).count();
    assert!(
        busy > 0,
        "{FLOOD} creates at once, with room for 2, were all let in"
    );
    assert!(got_in.iter().any(|&ok| ok), "nobody got in: {got_in:?}");
    // Told to try again, they can.
    let told = got_in.iter().position(|&ok| !ok).unwrap();
    let (name, c) = &mut guests[told];
    c.send_line(&format!("create {name} {PASSWORD}"));
    c.expect(&format!("Welcome, {name}!"));
}

#[test]
fn a_flood_replayed_after_kill_9_is_answered_once_and_still_bounded() {
    let _heavy = heavy();
    let game = Game::with_config(flood_config);
    game.start();
    let server = Pid::from_raw(game.pid("server").expect("a server pid") as i32);
    let mut guests = guests(&game, "Replay");
    // Stopped, the server takes in none of the flood: all of it is replayed.
    kill(server, Signal::SIGSTOP).expect("SIGSTOP to the server");
    flood(&mut guests);
    kill(server, Signal::SIGKILL).expect("kill -9 of the server");
    let server = server.as_raw() as u32;
    wait_until("a restarted server", Duration::from_secs(30), || {
        !alive(server) && game.pid("server").is_some_and(|p| p != server && alive(p))
    });
    let got_in = answers(&mut guests);
    // The new server got the whole flood, with room for two jobs.
    assert!(
        got_in.iter().any(|&ok| !ok),
        "every create of the flood was hashed: {got_in:?}"
    );
}

#[test]
fn failed_logins_count_per_address_and_never_lock_the_owner_out() {
    let game = Game::with_config(|c| c.auth.failures_per_address = 3);
    game.start();
    game.login("Victim");
    let addr = game.telnet_addr();
    for round in 1..=3 {
        // A new connection for every guess starts no count afresh.
        let mut c = Client::connect_from(addr, loopback(2), &format!("guess {round}"));
        c.expect("Welcome to ");
        c.send_line("connect victim wrongpass");
        c.expect("Wrong name or password.");
    }
    let mut c = Client::connect_from(addr, loopback(2), "guess 4");
    c.expect("Welcome to ");
    c.send_line(&format!("connect victim {PASSWORD}"));
    c.expect(TOO_MANY_FAILURES);
    // The owner, at another address, gets in.
    let mut owner = Client::connect_from(addr, loopback(3), "owner");
    owner.expect("Welcome to ");
    owner.send_line(&format!("connect victim {PASSWORD}"));
    owner.expect("Welcome back, Victim!");
}

#[test]
fn account_creation_is_limited_per_address() {
    let game = Game::with_config(|c| c.auth.creates_per_address_per_hour = 2);
    game.start();
    let addr = game.telnet_addr();
    for name in ["Ann", "Bea"] {
        let mut c = Client::connect_from(addr, loopback(4), name);
        c.expect("Welcome to ");
        c.send_line(&format!("create {name} {PASSWORD}"));
        c.expect(&format!("Welcome, {name}!"));
    }
    let mut c = Client::connect_from(addr, loopback(4), "Cat");
    c.expect("Welcome to ");
    c.send_line(&format!("create Cat {PASSWORD}"));
    c.expect(TOO_MANY_CREATES);
    // Another address may.
    game.login("Dee");
}

/// A login answered late on purpose is no pause of the game: the portal
/// tells players of a pause when input waits on a stalled server, not on a
/// password check.
#[test]
fn a_delayed_login_is_not_told_as_a_pause() {
    let game = Game::with_config(|c| {
        c.portal.pause_notice_ms = 50;
        c.auth.failures_before_delay = 0;
        c.auth.failure_delay_ms = 1_000;
    });
    game.start();
    let mut c = game.guest("slow");
    c.send_line("connect nobody wrongpass");
    let line = c
        .expect_line(
            "the login's answer",
            |l| l.contains("Wrong name or password.") || l.contains("[ev]"),
            REPLY_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(line.contains("Wrong name or password."), "told {line:?}");
}
