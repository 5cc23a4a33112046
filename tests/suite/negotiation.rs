//! Telnet negotiation through the real binaries, byte for byte: what the
//! portal offers on connect, its answer to each option, TTYPE/MTTS, NAWS
//! and CHARSET reaching the server (its `client` command) and surviving a
//! reload, MSSP's player count, and the idle keepalive. (What the game's
//! text, prompts, secrets and out-of-band data become for each client is
//! tested byte for byte in portal/tests/mud.rs, with a fake server.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::util::telnet::{DO, DONT, IAC, SB, SE, WILL, WONT};
use crate::util::{Game, PASSWORD, REPLY_TIMEOUT, wait_until};

const SGA: u8 = 3;
const TTYPE: u8 = 24;
const EOR: u8 = 25;
const NAWS: u8 = 31;
const CHARSET: u8 = 42;
const MSDP: u8 = 69;
const MSSP: u8 = 70;
const MCCP2: u8 = 86;
const GMCP: u8 = 201;
const NOP: u8 = 241;
const SEND_TTYPE: [u8; 6] = [IAC, SB, TTYPE, 1, IAC, SE];

/// What the portal sends first, before any text.
const OFFERS: [u8; 27] = [
    IAC, WILL, MCCP2, IAC, WILL, SGA, IAC, DO, TTYPE, IAC, DO, NAWS, IAC, WILL, CHARSET, IAC, WILL,
    MSSP, IAC, WILL, EOR, IAC, WILL, GMCP, IAC, WILL, MSDP,
];

/// A client that sees every byte and answers nothing by itself.
struct Raw {
    stream: TcpStream,
    seen: Vec<u8>,
    /// Where the next expectation starts looking.
    cursor: usize,
}

impl Raw {
    fn connect(game: &Game) -> Raw {
        let stream = TcpStream::connect(game.telnet_addr()).expect("connect to the portal");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            seen: Vec::new(),
            cursor: 0,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the portal");
    }

    /// Reads until `needle` appears after the cursor; returns the bytes from
    /// the cursor to the needle's end and moves the cursor there.
    fn until(&mut self, needle: &[u8]) -> Vec<u8> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(at) = find(&self.seen[self.cursor..], needle) {
                let end = self.cursor + at + needle.len();
                let got = self.seen[self.cursor..end].to_vec();
                self.cursor = end;
                return got;
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            assert!(
                !wait.is_zero(),
                "waited for {:?}; seen after the cursor: {:?}",
                String::from_utf8_lossy(needle),
                &self.seen[self.cursor..]
            );
            self.stream
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .expect("read timeout");
            let mut buf = [0u8; 8192];
            match self.stream.read(&mut buf) {
                Ok(0) => panic!("the portal closed the connection: {:?}", self.seen),
                Ok(n) => self.seen.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Sends `line` and returns what came back up to and including the
    /// line that contains `reply`.
    fn command(&mut self, line: &str, reply: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        let got = self.until(reply.as_bytes());
        let rest = self.until(b"\r\n");
        String::from_utf8_lossy(&[got, rest].concat()).into_owned()
    }

    /// A plain connection, past the offers and the welcome, MCCP2 refused.
    fn plain(game: &Game) -> Raw {
        let mut c = Raw::connect(game);
        c.until(b"Welcome to");
        c.send(&[IAC, DONT, MCCP2]);
        c.command("ping 0", "pong 0");
        c
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Cuts the MSSP table out of `bytes`: the rest, and the table's variables.
fn take_mssp(bytes: &[u8]) -> (Vec<u8>, Vec<(String, String)>) {
    let start = find(bytes, &[IAC, SB, MSSP]).expect("an MSSP table");
    let len = find(&bytes[start..], &[IAC, SE]).expect("the table's end") + 2;
    let table = &bytes[start + 3..start + len - 2];
    let vars = table
        .split(|&b| b == 1)
        .skip(1)
        .map(|var| {
            let mut parts = var.split(|&b| b == 2);
            let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let value = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            (name, value)
        })
        .collect();
    let rest = [&bytes[..start], &bytes[start + len..]].concat();
    (rest, vars)
}

fn var<'a>(vars: &'a [(String, String)], name: &str) -> &'a str {
    vars.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("MSSP has no {name}: {vars:?}"))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[test]
fn the_portal_offers_and_answers_each_option_exactly() {
    let before = now_s();
    let game = Game::started();
    let mut c = Raw::connect(&game);
    let greeting = c.until(b"Welcome to");
    assert!(
        greeting.starts_with(&OFFERS),
        "the offers come first, in this order: {greeting:?}"
    );
    // A refused offer is not answered.
    c.send(&[IAC, DONT, MCCP2]);
    let quiet = c.command("ping 0", "pong 0");
    assert!(
        !quiet.contains('\u{fffd}') && !quiet.as_bytes().contains(&IAC),
        "{quiet:?}"
    );

    let mut burst = vec![
        IAC, DO, SGA, // our offer taken: nothing to say
        IAC, DO, SGA, // again: ignored
        IAC, WILL, TTYPE, // → SEND
        IAC, WILL, NAWS, // taken
        IAC, SB, NAWS, 0, 100, 0, 30, IAC, SE, // a size
        IAC, DO, CHARSET, // → our REQUEST
        IAC, DO, MSSP, // → the table
        IAC, DO, EOR, // our offer taken: prompts end with IAC EOR
        IAC, DO, GMCP, // taken
        IAC, DONT, MSDP, // refused: nothing to say
        IAC, DO, 1, // ECHO, ours only while a secret is asked → WONT
        IAC, WILL, 200, // unknown → DONT
        IAC, DONT, 200, // already off: nothing
        IAC, WONT, 5, // already off: nothing
        IAC, DO, TTYPE, // the wrong side of TTYPE → WONT
    ];
    burst.extend_from_slice(b"ping 1\r\n");
    c.send(&burst);
    let answers = c.until(b"pong 1\r\n");
    let (rest, vars) = take_mssp(&answers);
    let mut expected = SEND_TTYPE.to_vec();
    expected.extend_from_slice(&[IAC, SB, CHARSET, 1]);
    expected.extend_from_slice(b";UTF-8;ISO-8859-1;US-ASCII");
    expected.extend_from_slice(&[IAC, SE]);
    expected.extend_from_slice(&[IAC, WONT, 1, IAC, DONT, 200, IAC, WONT, TTYPE]);
    expected.extend_from_slice(b"pong 1\r\n");
    assert_eq!(rest, expected, "answers: {answers:?}");
    assert_eq!(var(&vars, "NAME"), "ev test");
    assert_eq!(var(&vars, "PLAYERS"), "0");
    let uptime: u64 = var(&vars, "UPTIME").parse().expect("UPTIME is a number");
    assert!((before..=now_s()).contains(&uptime), "UPTIME {uptime}");
    assert_eq!(var(&vars, "MCCP"), "1");

    // The TTYPE cycle (MTTS: name, terminal, bits) and CHARSET's answer.
    let mut burst = Vec::new();
    for name in ["MUDLET 4.17.2", "XTERM-256COLOR", "MTTS 333"] {
        burst.extend_from_slice(&[IAC, SB, TTYPE, 0]);
        burst.extend_from_slice(name.as_bytes());
        burst.extend_from_slice(&[IAC, SE]);
    }
    burst.extend_from_slice(&[IAC, SB, CHARSET, 2]);
    burst.extend_from_slice(b"UTF-8");
    burst.extend_from_slice(&[IAC, SE]);
    burst.extend_from_slice(b"ping 2\r\n");
    c.send(&burst);
    let answers = c.until(b"pong 2\r\n");
    assert_eq!(
        answers,
        [&SEND_TTYPE[..], &SEND_TTYPE, b"pong 2\r\n"].concat(),
        "SEND after the name and the terminal, not after the MTTS bits"
    );

    // Every option that is on, asked for again: nothing is answered.
    let mut again = vec![
        IAC, DO, SGA, IAC, WILL, TTYPE, IAC, WILL, NAWS, IAC, DO, CHARSET, IAC, DO, MSSP, IAC, DO,
        EOR, IAC, DO, GMCP,
    ];
    again.extend_from_slice(b"ping 3\r\n");
    c.send(&again);
    assert_eq!(c.until(b"pong 3\r\n"), b"pong 3\r\n", "no negotiation loop");
}

#[test]
fn what_the_client_tells_reaches_the_server_and_survives_a_reload() {
    let game = Game::started();
    let mut c = Raw::plain(&game);
    let mut hello = vec![IAC, WILL, TTYPE, IAC, WILL, NAWS, IAC, DO, CHARSET];
    for name in ["MUDLET 4.17.2", "XTERM-256COLOR", "MTTS 333"] {
        hello.extend_from_slice(&[IAC, SB, TTYPE, 0]);
        hello.extend_from_slice(name.as_bytes());
        hello.extend_from_slice(&[IAC, SE]);
    }
    hello.extend_from_slice(&[IAC, SB, NAWS, 0, 100, 0, 30, IAC, SE]);
    hello.extend_from_slice(&[IAC, SB, CHARSET, 2]);
    hello.extend_from_slice(b"UTF-8");
    hello.extend_from_slice(&[IAC, SE]);
    c.send(&hello);
    c.command(
        &format!("create Rawclient {PASSWORD}"),
        "Welcome, Rawclient!",
    );
    let want = "Your client: MUDLET 4.17.2 (XTERM-256COLOR), 100x30, UTF-8; \
                capabilities: ANSI, UTF-8, 256 colours, screen reader, truecolour";
    let shown = c.command("client", "Your client:");
    assert!(shown.contains(want), "{shown:?}");

    // Live: a resize, an IAC 255 doubled in it.
    c.send(&[IAC, SB, NAWS, 0, IAC, IAC, 0, 50, IAC, SE]);
    let shown = c.command("client", "Your client:");
    assert!(shown.contains(", 255x50, "), "{shown:?}");

    // A window dragged: many sizes at once (the hub is told at most ten
    // times a second), and a command after them sees the last.
    let mut drag = Vec::new();
    for width in 60u16..=300 {
        let [w1, w0] = width.to_be_bytes();
        drag.extend_from_slice(&[IAC, SB, NAWS, w1, w0, 0, 50, IAC, SE]);
    }
    c.send(&drag);
    let shown = c.command("client", "Your client:");
    assert!(shown.contains(", 300x50, "), "{shown:?}");
    c.send(&[IAC, SB, NAWS, 0, IAC, IAC, 0, 50, IAC, SE]);

    game.reload();
    let shown = c.command("client", "Your client:");
    assert!(
        shown.contains("MUDLET 4.17.2 (XTERM-256COLOR), 255x50, UTF-8"),
        "the new server got it in the Sync: {shown:?}"
    );
    c.send(&[IAC, SB, NAWS, 0, 132, 0, 43, IAC, SE]);
    let shown = c.command("client", "Your client:");
    assert!(shown.contains(", 132x43, "), "and live after it: {shown:?}");
}

#[test]
fn a_client_that_refuses_utf8_never_gets_a_utf8_byte() {
    let game = Game::started();
    let mut c = Raw::plain(&game);
    c.send(&[IAC, DO, CHARSET]);
    c.until(b";US-ASCII");
    c.send(&[IAC, SB, CHARSET, 3, IAC, SE]);
    c.command(&format!("create Asciian {PASSWORD}"), "Welcome, Asciian!");
    let said = c.command("say café ☕", "You say");
    assert!(said.contains("You say, \"caf? ?\""), "{said:?}");
}

#[test]
fn mssp_counts_logged_in_players_across_a_reload() {
    let game = Game::started();
    let mut player = Raw::plain(&game);
    player.command(&format!("create Counted {PASSWORD}"), "Welcome, Counted!");
    let players = || {
        let mut crawler = Raw::connect(&game);
        crawler.until(&OFFERS);
        crawler.send(&[IAC, DO, MSSP]);
        let table = crawler.until(&[IAC, SE]);
        let (_, vars) = take_mssp(&table);
        var(&vars, "PLAYERS").to_owned()
    };
    // The hub counts on its next tick after a login.
    wait_until("MSSP to count the player", REPLY_TIMEOUT, || {
        players() == "1"
    });
    game.reload();
    assert_eq!(players(), "1", "still counted after a reload");
    player.command("ping 9", "pong 9");
}

#[test]
fn an_idle_connection_gets_a_nop_keepalive() {
    let game = Game::with_config(|c| c.portal.keepalive_s = 1);
    game.start();
    let mut c = Raw::plain(&game);
    let started = Instant::now();
    let idle = c.until(&[IAC, NOP]);
    assert_eq!(idle, [IAC, NOP], "nothing else came meanwhile");
    assert!(started.elapsed() >= Duration::from_millis(500));
    // It keeps coming while idle, and the connection is fine.
    c.until(&[IAC, NOP]);
    c.command("ping k", "pong k");
}

#[test]
fn every_line_end_a_client_may_send_ends_one_line() {
    let game = Game::started();
    let mut c = Raw::plain(&game);
    c.command(&format!("create Lineends {PASSWORD}"), "Welcome, Lineends!");
    // CR LF, CR NUL, bare LF, bare CR (telix in character mode).
    c.send(b"ping a\r\nping b\r\0ping c\nping d\r");
    for p in ["pong a", "pong b", "pong c", "pong d"] {
        c.until(p.as_bytes());
    }
    // A CR and its LF in separate writes (so perhaps separate reads).
    c.send(b"ping e\r");
    c.send(b"\nping f\r\n");
    let tail = c.until(b"pong f\r\n");
    assert_eq!(tail, b"\r\npong e\r\npong f\r\n");
}

/// A GMCP client plays the real game: Core.Hello names it (the `client`
/// command shows the name), and what else it sends reaches the server
/// numbered with its commands, so every command after it is still answered
/// (a gap or a double in the seqs would stall or drop them).
#[test]
fn a_gmcp_client_is_named_by_core_hello_and_its_messages_keep_the_seqs() {
    let game = Game::started();
    let mut c = Raw::plain(&game);
    let gmcp = |message: &str| [&[IAC, SB, GMCP][..], message.as_bytes(), &[IAC, SE]].concat();
    c.send(&[IAC, DO, GMCP]);
    c.send(&gmcp(r#"Core.Hello {"client":"Rawmud","version":"2.1"}"#));
    c.send(&gmcp(r#"Core.Supports.Set ["Char 1"]"#));
    c.send(&gmcp(r#"Char.Skills.Get {"group":"combat"}"#));
    c.command(&format!("create Gmcpian {PASSWORD}"), "Welcome, Gmcpian!");
    c.send(&gmcp("Core.Ping"));
    let shown = c.command("client", "Your client:");
    assert!(shown.contains("Your client: Rawmud 2.1"), "{shown:?}");
    c.send(&gmcp("Char.Skills.Get"));
    let pong = c.command("ping g", "pong g");
    assert!(
        !pong.contains('\u{fffd}'),
        "nothing but the answer: {pong:?}"
    );
    game.reload();
    c.send(&gmcp("Char.Skills.Get"));
    c.command("ping h", "pong h");
}

/// The player's `colour` setting (issue 13): kept on the account, applied by
/// the portal from the command's reply on, kept by a new server after a
/// reload (a later state update from it does not undo it), sent again at
/// the next login, and `auto` goes back to what the client's MTTS said.
#[test]
fn a_players_colour_setting_is_applied_kept_across_a_reload_and_a_login() {
    let game = Game::started();
    // MTTS 9: ANSI and 256 colours, so the client's own colours are xterm's 256.
    let mtts_256 = |c: &mut Raw| {
        let mut hello = vec![IAC, WILL, TTYPE];
        for name in ["MUDLET 4.17.2", "XTERM-256COLOR", "MTTS 9"] {
            hello.extend_from_slice(&[IAC, SB, TTYPE, 0]);
            hello.extend_from_slice(name.as_bytes());
            hello.extend_from_slice(&[IAC, SE]);
        }
        c.send(&hello);
    };
    const XTERM_ORANGE: &str = "\x1b[0;38;5;208morange";
    const TRUE_SKY: &str = "\x1b[0;38;2;51;153;255msky";
    // All the command's output: up to the answer to a ping sent after it.
    let mut pings = 0;
    let mut all = |c: &mut Raw, line: &str| {
        pings += 1;
        c.send(format!("{line}\r\nping colours-{pings}\r\n").as_bytes());
        let got = c.until(format!("pong colours-{pings}\r\n").as_bytes());
        String::from_utf8_lossy(&got).into_owned()
    };
    let mut c = Raw::plain(&game);
    mtts_256(&mut c);
    c.command(&format!("create Painter {PASSWORD}"), "Welcome, Painter!");
    let shown = all(&mut c, "colour");
    assert!(shown.contains("Your colours: auto"), "{shown:?}");
    let looked = all(&mut c, "look");
    assert!(looked.contains('\x1b'), "MTTS said colours: {looked:?}");

    let plain = all(&mut c, "color plain");
    assert!(
        plain.contains("Your colours: plain. red green orange sky") && !plain.contains('\x1b'),
        "the reply is already plain: {plain:?}"
    );
    let looked = all(&mut c, "look");
    assert!(!looked.contains('\x1b'), "{looked:?}");

    game.reload();
    // `brief` makes the new server send the session's whole state: it must
    // carry the setting it got in the Sync, or the portal would drop it.
    all(&mut c, "brief");
    let looked = all(&mut c, "look");
    assert!(!looked.contains('\x1b'), "after a reload: {looked:?}");
    let shown = all(&mut c, "colour");
    assert!(shown.contains("Your colours: plain."), "{shown:?}");

    // A new connection, the same client: the login brings the setting back.
    let mut again = Raw::plain(&game);
    mtts_256(&mut again);
    again.command(
        &format!("connect Painter {PASSWORD}"),
        "Welcome back, Painter!",
    );
    let looked = all(&mut again, "look");
    assert!(!looked.contains('\x1b'), "after a login: {looked:?}");

    let truecolour = all(&mut again, "colour truecolour");
    assert!(truecolour.contains(TRUE_SKY), "{truecolour:?}");
    let auto = all(&mut again, "colour auto");
    assert!(
        auto.contains(XTERM_ORANGE) && !auto.contains("\x1b[0;38;2;"),
        "auto is what MTTS said, 256 colours: {auto:?}"
    );
    let bad = all(&mut again, "colour rainbow");
    assert!(
        bad.contains("Usage: colour auto|plain|ansi16|xterm256|truecolour"),
        "{bad:?}"
    );
}
