//! Telnet over TLS (`portal.tls`) through the real binaries and a real TLS
//! client, `openssl s_client`: a game made by `evctl init --tls` serves
//! its self-signed certificate; a player logs in and plays over it, and the
//! game knows the session is encrypted; a reload leaves them playing; a
//! certificate replaced on disk is served to the next connection while the
//! open one stays, and a bad one is refused, the good one kept; a handshake
//! that never comes holds its place in the per-address limit until
//! `portal.tls_handshake_timeout_s`, then lets go.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Client, Game, REPLY_TIMEOUT, run, text, wait_until};

/// How long a renewed certificate may take to be served.
const RENEWAL: Duration = Duration::from_secs(30);

/// The certificate a new TLS connection to `addr` is served, as PEM.
fn served_certificate(addr: SocketAddr) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-showcerts", "-connect"])
        .arg(addr.to_string())
        .stdin(Stdio::null());
    let out = run(cmd, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    pem_block(&stdout).unwrap_or_else(|| panic!("s_client showed no certificate: {}", text(&out)))
}

/// The first PEM certificate in `text`, without its line breaks.
fn pem_block(text: &str) -> Option<String> {
    let begin = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text[begin..].find("-----END CERTIFICATE-----")? + begin;
    Some(text[begin..end].split_whitespace().collect())
}

fn file_certificate(game: &Game) -> String {
    let path = game.root().join("tls/cert.pem");
    let pem = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    pem_block(&pem).unwrap_or_else(|| panic!("{} holds no certificate", path.display()))
}

/// Puts `text` at `path` as a renewal tool does: written beside, renamed in.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn portal_log(game: &Game) -> String {
    std::fs::read_to_string(game.root().join("logs/portal.log")).unwrap_or_default()
}

fn ping(c: &mut Client, tag: &str) {
    c.send_line(&format!("ping {tag}"));
    c.expect(&format!("pong {tag}"));
}

#[test]
fn a_player_plays_over_tls_on_the_certificate_init_made_and_the_game_knows_it() {
    let game = Game::with_tls(|_| {});
    let started = text(&game.start());
    let addr = game.tls_addr();
    assert!(
        started.contains(&format!(", TLS {addr} ")),
        "evctl start names the TLS address: {started}"
    );
    assert_eq!(served_certificate(addr), file_certificate(&game));

    // The self-signed certificate verifies against itself, for localhost.
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-verify_return_error",
        "-verify_hostname",
        "localhost",
    ])
    .arg("-CAfile")
    .arg(game.root().join("tls/cert.pem"))
    .arg("-connect")
    .arg(addr.to_string())
    .stdin(Stdio::null());
    let out = run(cmd, Duration::from_secs(30));
    assert!(
        text(&out).contains("Verification: OK"),
        "s_client did not verify the certificate: {}",
        text(&out)
    );

    let mut alice = game.login_tls("Alice");
    let mut bob = game.login("Bob");
    alice.send_line("say over TLS");
    bob.expect("over TLS");
    ping(&mut alice, "a1");
    alice.send_line("client");
    let told = alice.expect("Your client:");
    assert!(told.contains("TLS"), "the game is told of TLS: {told}");
    bob.send_line("client");
    let told = bob.expect("Your client:");
    assert!(!told.contains("TLS"), "a plain session is not TLS: {told}");
    let mut who = alice.who();
    who.sort();
    assert_eq!(who, ["Alice", "Bob"]);
    alice.send_line("quit");
    alice.expect("Goodbye.");
    assert!(alice.is_closed(REPLY_TIMEOUT), "{}", alice.context());
}

#[test]
fn a_tls_player_keeps_playing_across_a_reload() {
    let game = Game::with_tls(|_| {});
    game.start();
    let mut alice = game.login_tls("Alice");
    ping(&mut alice, "before");
    game.reload();
    ping(&mut alice, "after");
    alice.send_line("client");
    let told = alice.expect("Your client:");
    assert!(told.contains("TLS"), "the new server knows it too: {told}");
    alice
        .look()
        .unwrap_or_else(|e| panic!("still in the game after the reload: {e}"));
    // And the listener still takes new players.
    let mut bob = game.login_tls("Bob");
    ping(&mut bob, "b1");
}

#[test]
fn a_renewed_certificate_is_served_to_the_next_connection_and_a_bad_one_is_refused() {
    let game = Game::with_tls(|_| {});
    game.start();
    let addr = game.tls_addr();
    let mut alice = game.login_tls("Alice");
    let first = served_certificate(addr);

    let renewed = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (
        game.root().join("tls/cert.pem"),
        game.root().join("tls/key.pem"),
    );
    replace(&key, &renewed.signing_key.serialize_pem());
    replace(&cert, &renewed.cert.pem());
    let new = pem_block(&renewed.cert.pem()).unwrap();
    assert_ne!(first, new);
    wait_until("the renewed certificate to be served", RENEWAL, || {
        served_certificate(addr) == new
    });
    assert!(portal_log(&game).contains("renewed (changed on disk)"));
    // The open connection was not dropped, and the next one plays.
    ping(&mut alice, "a1");
    let mut bob = game.login_tls("Bob");
    ping(&mut bob, "b1");

    // A certificate that is not one: refused with a line that says why,
    // and the renewed one still served.
    let refusals = |game: &Game| portal_log(game).matches("TLS certificate refused").count();
    replace(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    );
    wait_until("the portal to refuse the bad certificate", RENEWAL, || {
        refusals(&game) == 1
    });
    let log = portal_log(&game);
    assert!(
        log.contains("refused (changed on disk)") && log.contains("cert.pem"),
        "{log}"
    );
    assert_eq!(served_certificate(addr), new);
    // `evctl reload` reads the files again, and says so.
    game.reload();
    wait_until("the reload to look at the certificate", RENEWAL, || {
        refusals(&game) == 2
    });
    assert!(portal_log(&game).contains("refused (at a reload)"));
    assert_eq!(served_certificate(addr), new);
    ping(&mut alice, "a2");
    ping(&mut bob, "b2");
}

#[test]
fn a_handshake_that_never_comes_holds_its_place_until_the_timeout() {
    const TIMEOUT_S: u64 = 6;
    let game = Game::with_tls(|c| {
        c.portal.max_connections_per_ip = 2;
        c.portal.tls_handshake_timeout_s = TIMEOUT_S;
    });
    game.start();
    let addr = game.tls_addr();
    // Two connections that never say hello fill 127.0.0.1's places.
    let silent: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap())
        .collect();
    let opened = Instant::now();
    // Accepted after them (one listener's queue is first come, first
    // served): refused, closed before a handshake.
    let mut third = Client::connect_tls(addr, "third");
    let refused = third.expect_line(
        "the welcome screen",
        |l| l.contains("Welcome to"),
        REPLY_TIMEOUT,
    );
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("closed")),
        "a third connection from the address got in: {refused:?}"
    );
    // The plain listener counts them too.
    let mut plain = game.connect("plain");
    plain.expect("Too many connections from your address.");
    drop(plain);

    // The portal gives up on the silent ones after the timeout.
    for mut stream in silent {
        use std::io::Read;
        stream
            .set_read_timeout(Some(Duration::from_secs(TIMEOUT_S + 20)))
            .unwrap();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf);
        assert!(
            matches!(n, Ok(0)) || n.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "a silent connection was not closed within the handshake timeout"
        );
    }
    assert!(
        opened.elapsed() >= Duration::from_secs(TIMEOUT_S - 1),
        "closed after {:?}, before the timeout",
        opened.elapsed()
    );
    // Their places are free again.
    let mut alice = game.login_tls("Alice");
    ping(&mut alice, "a1");
}
