//! The webclient (issue 15): the page and its files over HTTP, ev's JSON
//! protocol over the WebSocket spoken by a client in the test (resume,
//! numbered inputs, bad frames, origins, limits, takeover between telnet
//! and the web, the terminal subprotocol), and the page itself in headless
//! Chromium through playwright-core (tests/web/browser.mjs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::util::{Client, Game, PASSWORD, REPLY_TIMEOUT, text, wait_until};

const WAIT: Duration = Duration::from_secs(15);

pub(crate) fn web_addr(game: &Game) -> SocketAddr {
    let path = game.root().join("run/web.addr");
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    raw.trim().parse().unwrap()
}

/// A client of ev's protocol, as the page is.
struct Web {
    ws: WebSocket<TcpStream>,
    label: String,
    /// The Origin it sent, which a resume must send again.
    origin: Option<String>,
    token: String,
    seen: u64,
    next_input: u64,
    /// Every text, notice and pause the session showed, in order.
    shown: Vec<String>,
    closed: Option<(u16, String)>,
}

/// Opens a socket with these headers; Err is the handshake's refusal.
fn open(
    addr: SocketAddr,
    protocol: Option<&str>,
    origin: Option<&str>,
) -> Result<WebSocket<TcpStream>, String> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    }
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    match tungstenite::client(request, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e.to_string()),
        Err(tungstenite::HandshakeError::Interrupted(_)) => Err("interrupted".into()),
    }
}

impl Web {
    /// A new session (Origin as a page of the portal itself would send).
    fn new(game: &Game, label: &str) -> Web {
        let addr = web_addr(game);
        let origin = format!("http://{addr}");
        Web::hello(addr, label, Some(&origin), json!({"t": "hello"}))
    }

    fn hello(addr: SocketAddr, label: &str, origin: Option<&str>, hello: Value) -> Web {
        let ws = open(addr, None, origin).unwrap_or_else(|e| panic!("{label}: {e}"));
        let mut web = Web {
            ws,
            label: label.into(),
            origin: origin.map(str::to_owned),
            token: String::new(),
            seen: 0,
            next_input: 1,
            shown: Vec::new(),
            closed: None,
        };
        web.send(hello);
        web
    }

    /// Resumes `old`'s session on a new socket, from its origin.
    fn resume(game: &Game, old: &Web) -> Web {
        Web::resume_from(game, old, old.origin.clone().as_deref())
    }

    /// Resumes `old`'s session on a new socket, from `origin`.
    fn resume_from(game: &Game, old: &Web, origin: Option<&str>) -> Web {
        let addr = web_addr(game);
        let hello = json!({"t": "hello", "resume": old.token, "seen": old.seen});
        let mut web = Web::hello(addr, &old.label, origin, hello);
        web.seen = old.seen;
        web.next_input = old.next_input;
        web
    }

    fn send(&mut self, value: Value) {
        self.ws.send(Message::text(value.to_string())).unwrap();
    }

    fn input(&mut self, text: &str) -> u64 {
        let n = self.next_input;
        self.next_input += 1;
        self.send(json!({"t": "in", "n": n, "text": text}));
        n
    }

    /// The next message, or None at the deadline or the close.
    fn next(&mut self, deadline: Instant) -> Option<Value> {
        while Instant::now() < deadline && self.closed.is_none() {
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    if let Some(n) = value["n"].as_u64() {
                        assert_eq!(n, self.seen + 1, "{}: outputs in order, once", self.label);
                        self.seen = n;
                        self.shown.push(shown(&value));
                    }
                    if value["t"] == "welcome" {
                        self.token = value["token"].as_str().unwrap().into();
                    }
                    return Some(value);
                }
                Ok(Message::Close(frame)) => {
                    self.closed = Some(
                        frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new())),
                    );
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => {
                    self.closed.get_or_insert((1006, e.to_string()));
                }
            }
        }
        None
    }

    /// Reads until a message matches `pred`.
    fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        while let Some(value) = self.next(deadline) {
            if pred(&value) {
                return value;
            }
        }
        panic!(
            "{}: waiting for {what}: {} (closed: {:?}); last shown: {:?}",
            self.label,
            if self.closed.is_some() {
                "closed"
            } else {
                "timed out"
            },
            self.closed,
            self.shown.iter().rev().take(8).collect::<Vec<_>>()
        )
    }

    /// Reads until a text or notice containing `needle` is shown.
    fn expect_text(&mut self, needle: &str) {
        self.expect(&format!("{needle:?}"), |v| {
            v["n"].is_u64() && shown(v).contains(needle)
        });
    }

    /// Sends an ack for everything seen.
    fn ack(&mut self) {
        let seen = self.seen;
        self.send(json!({"t": "ack", "seen": seen}));
    }

    /// Waits for the close frame; its code and reason.
    fn expect_close(&mut self) -> (u16, String) {
        let deadline = Instant::now() + WAIT;
        while self.closed.is_none() && self.next(deadline).is_some() {}
        while self.closed.is_none() && Instant::now() < deadline {
            self.next(deadline);
        }
        self.closed
            .clone()
            .unwrap_or_else(|| panic!("{}: no close within {WAIT:?}", self.label))
    }

    /// Creates account `name` and waits for the look that follows.
    fn create(&mut self, name: &str) {
        self.expect_text("Welcome to ");
        self.input(&format!("create {name} {PASSWORD}"));
        self.expect_text(&format!("Welcome, {name}!"));
    }

    fn count(&self, needle: &str) -> usize {
        self.shown.iter().filter(|s| s.contains(needle)).count()
    }

    /// Drops the socket without a close: the network went away.
    fn cut(self) -> Web {
        let _ = self.ws.get_ref().shutdown(std::net::Shutdown::Both);
        let mut web = Web::detached(
            self.label,
            self.token,
            self.seen,
            self.next_input,
            self.shown,
        );
        web.origin = self.origin;
        web
    }

    fn detached(
        label: String,
        token: String,
        seen: u64,
        next_input: u64,
        shown: Vec<String>,
    ) -> Web {
        // The socket of a Web is only read through `next`; a detached one
        // is never read, so any stream does: a connection to ourselves.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let ws = WebSocket::from_raw_socket(stream, tungstenite::protocol::Role::Client, None);
        Web {
            ws,
            label,
            origin: None,
            token,
            seen,
            next_input,
            shown,
            closed: Some((1006, "cut by the test".into())),
        }
    }
}

/// What a numbered output shows: its spans' text, or its notice.
fn shown(value: &Value) -> String {
    match value["t"].as_str() {
        Some("text") => value["spans"]
            .as_array()
            .map(|spans| {
                spans
                    .iter()
                    .map(|s| s["text"].as_str().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default(),
        _ => value["text"].as_str().unwrap_or_default().to_string(),
    }
}

/// The player's say as others hear it.
fn heard(name: &str, text: &str) -> String {
    format!("{name} says, \"{text}\"")
}

/// Reads telnet lines until `marker` comes back (a `say` of it), counting
/// the lines that contain `needle` on the way.
fn count_until_marker(client: &mut Client, needle: &str, marker: &str) -> usize {
    client.send_line(&format!("say {marker}"));
    let lines = client
        .read_all_until(marker, |l| l.contains(marker), REPLY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    lines.iter().filter(|l| l.contains(needle)).count()
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_page_and_its_files_are_served_with_a_strict_policy() {
    let game = Game::started();
    let addr = web_addr(&game);
    let page = http_get(addr, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let head = page.to_ascii_lowercase();
    assert!(head.contains("content-type: text/html"), "{page}");
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{page}"
    );
    assert!(page.contains("role=\"log\""), "{page}");
    let script = http_get(addr, "/app.js");
    assert!(script.starts_with("HTTP/1.1 200"), "{script}");
    assert!(script.to_ascii_lowercase().contains("text/javascript"));
    assert!(http_get(addr, "/style.css").starts_with("HTTP/1.1 200"));
    assert!(http_get(addr, "/../ev.toml").starts_with("HTTP/1.1 404"));
    // A plain GET of the socket's path is no upgrade.
    assert!(!http_get(addr, "/ws").starts_with("HTTP/1.1 2"));
}

#[test]
fn the_webclient_is_off_when_its_address_is_empty() {
    let game = Game::with_config(|c| c.portal.web = None);
    game.start();
    assert!(!game.root().join("run/web.addr").exists());
    game.guest("telnet still works");
}

#[test]
fn a_web_player_and_a_telnet_player_talk_across_a_reload_and_a_dropped_socket() {
    let game = Game::started();
    let mut telly = game.login("Telly");
    let mut web = Web::new(&game, "web");
    let welcome = web.expect("the welcome", |v| v["t"] == "welcome");
    assert_eq!(welcome["resumed"], false);
    assert_eq!(welcome["game"], "ev test");
    assert_eq!(welcome["token"].as_str().unwrap().len(), 64);
    web.create("Webby");

    web.input("say hello from the web");
    telly.expect(&heard("Webby", "hello from the web"));
    telly.send_line("say hello from telnet");
    web.expect_text(&heard("Telly", "hello from telnet"));

    // A reload: the socket stays, the session stays logged in.
    let out = game.reload();
    assert!(text(&out).contains("dark for"), "{}", text(&out));
    web.input("say after the reload");
    telly.expect(&heard("Webby", "after the reload"));
    assert_eq!(
        web.count("Welcome to "),
        1,
        "never back to the login screen"
    );

    // An input the portal takes, then the socket drops before the page
    // reads its ack: the page sends it again on resume, and it runs once.
    web.ack();
    let n = web.input("say once only");
    // The portal has it (its ack came), but the page is to act as if the
    // ack were lost with the socket.
    web.expect("the ack", |v| v["t"] == "ack" && v["input"] == n);
    let web = web.cut();
    telly.expect(&heard("Webby", "once only"));
    telly.send_line("say while you were away");
    telly.expect("You say, \"while you were away\"");

    let mut web = Web::resume(&game, &web);
    let welcome = web.expect("the resume's welcome", |v| v["t"] == "welcome");
    assert_eq!(welcome["resumed"], true, "{welcome}");
    assert_eq!(welcome["input"], n, "the portal has input {n}");
    // The page did not see the ack, so it sends the input again.
    web.send(json!({"t": "in", "n": n, "text": "say once only"}));
    web.expect_text(&heard("Telly", "while you were away"));
    assert_eq!(
        count_until_marker(&mut telly, &heard("Webby", "once only"), "marker one"),
        0,
        "the resent input did not run again"
    );
    web.expect_text(&heard("Telly", "marker one"));
    assert_eq!(web.count("while you were away"), 1, "{:?}", web.shown);
    assert_eq!(web.count("You say, \"once only\""), 1, "{:?}", web.shown);

    // The old token is spent; the new one works.
    let stale = Web::hello(
        web_addr(&game),
        "stale",
        None,
        json!({"t": "hello", "resume": "0".repeat(64), "seen": 0}),
    );
    let mut stale = stale;
    stale.expect("a refusal", |v| v["t"] == "closed");
    assert_eq!(stale.expect_close().0, 4000);

    let status = text(&game.evctl(&["status"]));
    assert!(
        status.contains("sessions           2 (2 logged in)"),
        "{status}"
    );
}

#[test]
fn bad_frames_close_the_socket_with_a_reason_and_the_portal_serves_on() {
    let game = Game::with_config(|c| c.portal.web_max_message_bytes = 1024);
    game.start();
    let addr = web_addr(&game);
    let cases: [(Message, u16, &str); 5] = [
        (Message::binary(vec![1, 2, 3]), 1003, "binary"),
        (Message::text("{not json"), 1007, "not a message"),
        (Message::text(r#"{"t":"rm -rf"}"#), 1007, "not a message"),
        (
            Message::text(json!({"t": "in", "n": 5, "text": "look"}).to_string()),
            1008,
            "out of order",
        ),
        (
            Message::text(json!({"t": "in", "n": 1, "text": "x".repeat(5000)}).to_string()),
            1009,
            "web_max_message_bytes",
        ),
    ];
    for (i, (frame, code, reason)) in cases.into_iter().enumerate() {
        let mut web = Web::hello(addr, &format!("bad {i}"), None, json!({"t": "hello"}));
        web.expect("the welcome", |v| v["t"] == "welcome");
        web.ws.send(frame).unwrap();
        let (got, why) = web.expect_close();
        assert_eq!(got, code, "case {i}: {why}");
        assert!(why.contains(reason), "case {i}: {why}");
    }
    // A first message that is no hello.
    let mut ws = open(addr, None, None).unwrap();
    ws.send(Message::text(r#"{"t":"ack","seen":0}"#)).unwrap();
    let mut web = Web {
        ws,
        label: "no hello".into(),
        origin: None,
        token: String::new(),
        seen: 0,
        next_input: 1,
        shown: Vec::new(),
        closed: None,
    };
    assert_eq!(web.expect_close().0, 1008);
    let mut web = Web::new(&game, "after");
    web.create("Fine");
}

#[test]
fn origins_are_checked_and_a_token_is_bound_to_its_origin() {
    let game =
        Game::with_config(|c| c.portal.web_origins = vec!["https://play.example.org".into()]);
    game.start();
    let addr = web_addr(&game);
    let refused = open(addr, None, Some("http://evil.example")).unwrap_err();
    assert!(refused.contains("403"), "{refused}");
    let mut listed = Web::hello(
        addr,
        "listed",
        Some("https://play.example.org"),
        json!({"t": "hello"}),
    );
    listed.expect("the welcome", |v| v["t"] == "welcome");
    listed.expect_text("Welcome to ");
    // Its token, from the portal's own origin: refused, and spent for nobody.
    let own = format!("http://{addr}");
    let mut thief = Web::resume_from(&game, &listed, Some(&own));
    thief.expect("a refusal", |v| v["t"] == "closed");
    assert_eq!(thief.expect_close().0, 4000);
    // From its own origin it resumes; the old socket is told it was replaced.
    let mut again = Web::resume(&game, &listed);
    let welcome = again.expect("the welcome", |v| v["t"] == "welcome");
    assert_eq!(welcome["resumed"], true);
    assert_eq!(listed.expect_close().0, 4001);
}

#[test]
fn the_newer_login_takes_over_between_telnet_and_the_web() {
    let game = Game::started();
    let mut telly = game.login("Both");
    let mut web = Web::new(&game, "web");
    web.expect_text("Welcome to ");
    web.input(&format!("connect Both {PASSWORD}"));
    web.expect_text("Welcome back, Both!");
    telly.expect("Another connection took over Both.");
    assert!(
        telly.is_closed(REPLY_TIMEOUT),
        "the telnet login was closed"
    );

    // And back: a telnet login takes the character from the page, which is
    // told, closed for good, and cannot resume.
    let mut telly = game.connect_account("Both").unwrap();
    web.expect_text("Another connection took over Both.");
    let closed = web.expect("the end of the session", |v| v["t"] == "closed");
    assert_eq!(closed["reason"], "takeover");
    assert_eq!(web.expect_close().0, 1000);
    let mut late = Web::resume(&game, &web);
    late.expect("a refusal", |v| v["t"] == "closed");
    telly.send_line("say still here");
    telly.expect("You say, \"still here\"");
}

#[test]
fn web_sessions_count_in_the_connection_limits_even_while_away() {
    let game = Game::with_config(|c| {
        c.portal.max_connections_per_ip = 2;
        c.portal.web_resume_ms = 600_000;
    });
    game.start();
    let addr = web_addr(&game);
    let mut one = Web::new(&game, "one");
    one.expect_text("Welcome to ");
    let mut two = Web::new(&game, "two");
    two.expect_text("Welcome to ");
    let full = http_get(addr, "/");
    assert!(full.starts_with("HTTP/1.1 503"), "{full}");
    assert!(
        full.contains("Too many connections from your address"),
        "{full}"
    );
    let mut telnet = game.connect("third");
    telnet.expect("Too many connections from your address");
    // A dropped socket's session waits for its page, in its place.
    let two = two.cut();
    assert!(http_get(addr, "/").starts_with("HTTP/1.1 503"));
    // Its resume takes no second place.
    let mut back = Web::resume(&game, &two);
    assert_eq!(
        back.expect("the welcome", |v| v["t"] == "welcome")["resumed"],
        true
    );
    drop(one);
}

#[test]
fn an_abandoned_web_session_ends_after_the_resume_window() {
    let game = Game::with_config(|c| c.portal.web_resume_ms = 300);
    game.start();
    let mut web = Web::new(&game, "web");
    web.create("Gone");
    let web = web.cut();
    wait_until("the session to end", WAIT, || {
        text(&game.evctl(&["status"])).contains("sessions           0")
    });
    let mut late = Web::resume(&game, &web);
    late.expect("a refusal", |v| v["t"] == "closed");
}

#[test]
fn a_terminal_subprotocol_client_plays_a_command() {
    let game = Game::started();
    let addr = web_addr(&game);
    let mut ws = open(addr, Some("terminal.mudstandards.org"), None).unwrap();
    let mut received = String::new();
    let mut read_until = |ws: &mut WebSocket<TcpStream>, needle: &str| {
        let deadline = Instant::now() + WAIT;
        while !received.contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} in {received:?}");
            match ws.read() {
                Ok(Message::Binary(bytes)) => received.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Message::Text(t)) => panic!("a TEXT frame on the terminal protocol: {t}"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("{e}: {received:?}"),
            }
        }
    };
    read_until(&mut ws, "Welcome to ");
    ws.send(Message::binary(
        format!("create Term {PASSWORD}\r\n").into_bytes(),
    ))
    .unwrap();
    read_until(&mut ws, "Welcome, Term!");
    ws.send(Message::text("say in colour")).unwrap();
    read_until(&mut ws, "You say, \"in colour\"");
    assert!(received.contains("\r\n"), "lines end in CR LF");
    let _ = ws.close(Some(tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }));
}

/// Debian's Chromium and the tests' node_modules, or why they are missing.
fn browser_tools() -> Result<(String, std::path::PathBuf), String> {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or("no /usr/bin/chromium (apt-get install chromium)")?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    if !dir.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "no playwright-core in {} (npm ci there)",
            dir.display()
        ));
    }
    Ok((chromium.to_string(), dir))
}

/// The browser script, driven over its stdin and stdout: it prints
/// `STEP name` and waits for `GO` after the test has done its part.
struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Browser {
    fn step(&mut self, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    eprintln!("browser: {line}");
                    self.seen.push(line.clone());
                    if line == format!("STEP {name}") {
                        return;
                    }
                    if line.starts_with("FAIL") {
                        panic!("the browser test failed: {}", self.seen.join("\n"));
                    }
                }
                Err(_) => panic!(
                    "the browser did not reach {name} within {timeout:?}: {}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn go(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "GO").unwrap();
        stdin.flush().unwrap();
    }
}

impl Browser {
    /// The script's exit status, within `timeout`.
    fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the browser script did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        drop(self.stdin.take());
        // Its stdin closing tells the script to close Chromium (which
        // playwright starts in a process group of its own) and exit;
        // SIGTERM does the same; past a deadline, its group is killed.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[test]
fn the_page_in_chromium_plays_stays_across_a_reload_and_resumes_after_a_drop() {
    let (chromium, dir) = match browser_tools() {
        Ok(tools) => tools,
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: {why}");
            return;
        }
        Err(why) => panic!("{why}"),
    };
    // ev-test-server, for its @markup.
    let game = Game::with_server_script(|_| {});
    game.start();
    let mut telly = game.login("Telly");
    let shots = std::env::var_os("EV_WEB_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| game.tmp().join("shots"));
    std::fs::create_dir_all(&shots).unwrap();
    let mut cmd = Command::new("node");
    use std::os::unix::process::CommandExt;
    cmd.arg(dir.join("browser.mjs"))
        .current_dir(&dir)
        .env("EV_WEB", web_addr(&game).to_string())
        .env("EV_CHROMIUM", chromium)
        .env("EV_SHOTS", &shots)
        .env("EV_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    let mut child = cmd.spawn().expect("running node");
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut browser = Browser {
        child,
        stdin: Some(stdin),
        lines,
        seen: Vec::new(),
    };
    let slow = Duration::from_secs(60);

    browser.step("created", slow);
    telly.expect(&heard("Webby", "hello from the web"));
    telly.send_line("say hello from telnet");
    telly.send_line("say <img src=x onerror=window.pwned=1> <b>not bold</b> {red}");
    telly.expect("not bold");
    browser.go();

    browser.step("reload", slow);
    game.reload();
    browser.go();

    browser.step("cut", slow);
    telly.send_line("say while you were away");
    telly.expect("You say, \"while you were away\"");
    browser.go();

    browser.step("resumed", slow);
    // Typed while the socket was down: run exactly once.
    telly.expect(&heard("Webby", "typed while away"));
    assert_eq!(
        count_until_marker(
            &mut telly,
            &heard("Webby", "typed while away"),
            "marker two"
        ),
        0
    );
    browser.go();

    browser.step("done", slow);
    let status = browser.wait(slow);
    assert!(status.success(), "{}", browser.seen.join("\n"));
    for shot in ["desktop.png", "phone.png"] {
        assert!(
            shots.join(shot).exists(),
            "no {shot} in {}",
            shots.display()
        );
    }
}

#[test]
fn a_pause_reaches_the_page_as_a_pause_not_a_line() {
    // Told at once, so a reload's pause is told.
    let game = Game::with_config(|c| c.portal.pause_notice_ms = 0);
    game.start();
    let mut web = Web::new(&game, "web");
    web.create("Patient");
    game.reload();
    let paused = web.expect("the pause", |v| v["t"] == "pause");
    assert_eq!(paused["paused"], true, "{paused}");
    assert!(
        paused["text"].as_str().unwrap().contains("reloading"),
        "{paused}"
    );
    let back = web.expect("the end of the pause", |v| v["t"] == "pause");
    assert_eq!(back["paused"], false, "{back}");
    assert_eq!(web.count("reloading"), 1);
    web.input("say still here");
    web.expect_text("You say, \"still here\"");
}

#[test]
fn a_gmcp_subprotocol_client_gets_room_info_in_text_frames() {
    let game = Game::started();
    let mut ws = open(web_addr(&game), Some("gmcp.mudstandards.org"), None).unwrap();
    let mut text = String::new();
    let mut gmcp: Vec<String> = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut sent = false;
    while !gmcp.iter().any(|m| m.starts_with("Room.Info {")) {
        assert!(Instant::now() < deadline, "no Room.Info: {gmcp:?} {text:?}");
        if !sent && text.contains("Welcome to ") {
            ws.send(Message::binary(
                format!("create Mapper {PASSWORD}\n").into_bytes(),
            ))
            .unwrap();
            sent = true;
        }
        match ws.read() {
            Ok(Message::Binary(bytes)) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Message::Text(t)) => gmcp.push(t.to_string()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}: {text:?}"),
        }
    }
    assert!(text.contains("Welcome, Mapper!"), "{text:?}");
    let room = gmcp.iter().find(|m| m.starts_with("Room.Info ")).unwrap();
    let data: Value = serde_json::from_str(&room["Room.Info ".len()..]).unwrap();
    assert!(data["name"].is_string(), "{room}");
}

/// The spans of a text message that carry `key` (a link's "send" or
/// "url"), as (text, target).
fn links(value: &Value, key: &str) -> Vec<(String, String)> {
    value["spans"]
        .as_array()
        .map(|spans| {
            spans
                .iter()
                .filter_map(|s| {
                    Some((
                        s["text"].as_str()?.to_string(),
                        s[key].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn links_and_vitals_reach_the_page_as_data_and_a_link_that_breaks_a_rule_as_text() {
    // ev-test-server, for its @markup.
    let game = Game::with_server_script(|_| {});
    game.start();
    let mut telly = game.login("Telly");
    let mut web = Web::new(&game, "web");
    web.expect_text("Welcome to ");
    web.input(&format!("create Linky {PASSWORD}"));
    // The look at login: the demo's exits are send-links.
    let look = web.expect("the exits line", |v| {
        v["t"] == "text" && shown(v).contains("Exits: ")
    });
    assert_eq!(
        links(&look, "send"),
        [("down".to_string(), "down".to_string())],
        "{look}"
    );
    let vitals = web.expect("Char.Vitals", |v| {
        v["t"] == "oob" && v["name"] == "Char.Vitals"
    });
    assert_eq!(vitals["data"], json!({"mv": 20, "maxmv": 20}));
    web.input("down");
    let vitals = web.expect("Char.Vitals after a step", |v| {
        v["t"] == "oob" && v["name"] == "Char.Vitals"
    });
    assert_eq!(vitals["data"], json!({"mv": 19, "maxmv": 20}));

    // Targets no game should write: the page gets them as data (it never
    // parses HTML), and one that breaks the markup's rules as plain text.
    web.input(
        "@markup {send:\"><img src=x onerror=alert(1)>}evil{/} \
         {url:javascript:alert(1)}js{/} {url:https://ev.example/?q=<b>}docs{/}",
    );
    let evil = web.expect("the @markup line", |v| {
        v["t"] == "text" && shown(v).contains("evil")
    });
    assert_eq!(
        links(&evil, "send"),
        [(
            "evil".to_string(),
            "\"><img src=x onerror=alert(1)>".to_string()
        )]
    );
    assert_eq!(
        links(&evil, "url"),
        [("docs".to_string(), "https://ev.example/?q=<b>".to_string())]
    );
    assert!(
        shown(&evil).contains("{url:javascript:alert(1)}js{/}"),
        "{evil}"
    );

    // A telnet client gets the words, and a URL after its link's text.
    telly.send_line("@markup see {url:https://ev.example/docs}the docs{/} or {send:look}look{/}.");
    telly.expect("see the docs <https://ev.example/docs> or look.");
}

#[test]
fn a_message_many_times_the_socket_read_buffer_arrives_whole() {
    // The portal reads a socket 4 KiB at a time, to keep idle sessions
    // small; a page's message five times that must still come whole.
    let game = Game::with_config(|c| c.portal.max_line_bytes = 32 * 1024);
    game.start();
    let mut web = Web::new(&game, "web");
    web.create("Wordy");
    let long = "word ".repeat(4_000);
    web.input(&format!("say {long}"));
    web.expect_text(&format!("You say, \"{}\"", long.trim()));
}
