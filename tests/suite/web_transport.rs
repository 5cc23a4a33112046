//! The webclient's transport (issue 15): the page and ev's WebSocket over
//! TLS (`portal.web_tls`) to a rustls client that trusts the certificate
//! `evctl init --tls` made, and a certificate renewed on disk served to the
//! next connection; `X-Forwarded-For` believed from a listed proxy
//! (the connection limits count the forwarded addresses) and ignored from
//! anyone else; the `json.mudstandards.org` subprotocol; a third-party
//! client (Python's `websockets`) on `terminal.mudstandards.org`; and
//! `evctl status` naming every address the portal listens on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use super::web::web_addr;
use crate::util::{Game, PASSWORD, run, text};

const WAIT: Duration = Duration::from_secs(15);

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS client that trusts only the game's own certificate (tls/cert.pem,
/// made for `localhost` by `evctl init --tls`), as a player's browser
/// would once told to.
fn tls_config(game: &Game) -> Arc<rustls::ClientConfig> {
    let path = game.root().join("tls/cert.pem");
    trusting(&std::fs::read(&path).unwrap())
}

/// A TLS client that trusts only the certificates in `pem`.
fn trusting(pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection checks the certificate served: a resumed session
    // would skip it.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A TLS connection to `addr`, its handshake done (the certificate checked).
fn tls_connect(config: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> Tls {
    try_tls_connect(config, addr).unwrap_or_else(|e| panic!("{e}"))
}

/// A TLS connection to `addr`, or why its handshake failed.
fn try_tls_connect(config: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> Result<Tls, String> {
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let deadline = Instant::now() + WAIT;
    while tls.conn.is_handshaking() {
        if Instant::now() > deadline {
            return Err(format!("no TLS handshake with {addr} within {WAIT:?}"));
        }
        match tls.conn.complete_io(&mut tls.sock) {
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("TLS handshake with {addr}: {e}")),
        }
    }
    Ok(tls)
}

/// Puts `text` at `path` as a renewal tool does: written beside, renamed in.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Sends one HTTP/1.1 GET of `path` with `headers` on `stream` and reads
/// the answer to the end (the request asks the connection to close).
fn get(mut stream: impl Read + Write, addr: SocketAddr, path: &str, headers: &[&str]) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.flush().unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut chunk = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "no whole answer to GET {path}: {}",
            String::from_utf8_lossy(&out)
        );
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            // A TLS peer that closes without close_notify: what came is all.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading the answer to GET {path}: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A plain HTTP GET with extra headers.
fn http_get(addr: SocketAddr, path: &str, headers: &[&str]) -> String {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    get(stream, addr, path, headers)
}

/// Opens the game's WebSocket over `stream` with `headers` (`Name: value`)
/// and, if given, the subprotocol; Err is the handshake's refusal.
fn open_on<S: Read + Write>(
    stream: S,
    url: &str,
    protocol: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<WebSocket<S>, String> {
    let mut request = url.into_client_request().unwrap();
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    }
    for (name, value) in headers {
        let name: tungstenite::http::HeaderName = name.parse().unwrap();
        request.headers_mut().append(name, value.parse().unwrap());
    }
    match tungstenite::client(request, stream) {
        Ok((ws, response)) => {
            if let Some(protocol) = protocol {
                let chosen = response
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok());
                assert_eq!(chosen, Some(protocol), "the portal chose the subprotocol");
            }
            Ok(ws)
        }
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e.to_string()),
        Err(tungstenite::HandshakeError::Interrupted(_)) => Err("interrupted".into()),
    }
}

/// A plain socket with `headers`, speaking ev's protocol (or `protocol`).
fn open(
    addr: SocketAddr,
    protocol: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<WebSocket<TcpStream>, String> {
    let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    open_on(stream, &format!("ws://{addr}/ws"), protocol, headers)
}

/// The next frame, or None at the deadline; a close or a broken socket is
/// Some(Close).
fn next<S: Read + Write>(ws: &mut WebSocket<S>, deadline: Instant) -> Option<Message> {
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(message) => return Some(message),
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
            Err(_) => return Some(Message::Close(None)),
        }
    }
    None
}

/// Reads ev's JSON messages until one matches `pred`; panics with what
/// was read at the deadline or close.
fn expect_json<S: Read + Write>(
    ws: &mut WebSocket<S>,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        match next(ws, deadline) {
            Some(Message::Text(text)) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if pred(&value) {
                    return value;
                }
                seen.push(value);
            }
            Some(Message::Close(frame)) => {
                panic!("closed ({frame:?}) waiting for {what}: {seen:?}")
            }
            Some(other) => panic!("{other:?} on ev's protocol, waiting for {what}"),
            None => panic!("no {what} within {WAIT:?}: {seen:?}"),
        }
    }
}

/// Whether an ev message is a line of text containing `needle`.
fn says(value: &Value, needle: &str) -> bool {
    value["t"] == "text"
        && value["spans"].as_array().is_some_and(|spans| {
            spans
                .iter()
                .map(|s| s["text"].as_str().unwrap_or_default())
                .collect::<String>()
                .contains(needle)
        })
}

/// A session of ev's protocol at the welcome screen.
fn hello<S: Read + Write>(ws: &mut WebSocket<S>) {
    ws.send(Message::text(json!({"t": "hello"}).to_string()))
        .unwrap();
    expect_json(ws, "the welcome", |v| v["t"] == "welcome");
    expect_json(ws, "the welcome screen", |v| says(v, "Welcome to "));
}

/// The session's refusal: ev's `closed` message with its reason.
fn refused<S: Read + Write>(ws: &mut WebSocket<S>) -> String {
    ws.send(Message::text(json!({"t": "hello"}).to_string()))
        .unwrap();
    let closed = expect_json(ws, "a refusal", |v| {
        v["t"] == "closed" || v["t"] == "welcome"
    });
    assert_eq!(closed["t"], "closed", "refused: {closed}");
    closed["reason"].as_str().unwrap().to_owned()
}

/// What a mudstandards.org client was sent: the text of BINARY frames and
/// each TEXT frame, until `done` holds of them.
struct Received {
    text: String,
    texts: Vec<String>,
}

fn read_until<S: Read + Write>(
    ws: &mut WebSocket<S>,
    got: &mut Received,
    what: &str,
    done: impl Fn(&Received) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(got) {
        match next(ws, deadline) {
            Some(Message::Binary(bytes)) => got.text.push_str(&String::from_utf8_lossy(&bytes)),
            Some(Message::Text(text)) => got.texts.push(text.to_string()),
            Some(Message::Close(frame)) => {
                panic!(
                    "closed ({frame:?}) waiting for {what}: {:?} {:?}",
                    got.text, got.texts
                )
            }
            Some(_) => {}
            None => panic!("no {what} within {WAIT:?}: {:?} {:?}", got.text, got.texts),
        }
    }
}

#[test]
fn over_tls_the_page_is_served_and_a_wss_player_plays() {
    let game = Game::with_tls(|c| c.portal.web_tls = true);
    let started = text(&game.start());
    let addr = web_addr(&game);
    assert!(
        started.contains(&format!("web https://{addr}/")),
        "evctl start names the page's https address: {started}"
    );
    let config = tls_config(&game);

    let page = get(tls_connect(&config, addr), addr, "/", &[]);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("role=\"log\""), "the page itself: {page}");
    let script = get(tls_connect(&config, addr), addr, "/app.js", &[]);
    assert!(script.starts_with("HTTP/1.1 200"), "{script}");
    // The port speaks TLS only: plain HTTP gets no page.
    let plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let answer = get(plain, addr, "/", &[]);
    assert!(!answer.contains("HTTP/1.1 200"), "{answer}");

    let mut telly = game.login("Telly");
    let port = addr.port();
    let origin = format!("https://localhost:{port}");
    let mut ws = open_on(
        tls_connect(&config, addr),
        &format!("wss://localhost:{port}/ws"),
        None,
        &[("Origin", &origin)],
    )
    .unwrap();
    hello(&mut ws);
    let create = json!({"t": "in", "n": 1, "text": format!("create Secure {PASSWORD}")});
    ws.send(Message::text(create.to_string())).unwrap();
    expect_json(&mut ws, "the login", |v| says(v, "Welcome, Secure!"));
    ws.send(Message::text(
        json!({"t": "in", "n": 2, "text": "say over wss"}).to_string(),
    ))
    .unwrap();
    telly.expect("Secure says, \"over wss\"");
    telly.send_line("say back over telnet");
    expect_json(&mut ws, "the telnet player's say", |v| {
        says(v, "Telly says, \"back over telnet\"")
    });
}

/// With no telnet TLS listener, the webclient's alone: a certificate
/// renewed on disk is served to its next connection, as telnet's is.
#[test]
fn over_tls_alone_the_webclient_serves_a_renewed_certificate() {
    let game = Game::with_tls(|c| {
        c.portal.web_tls = true;
        c.portal.tls = None;
    });
    game.start();
    assert!(
        !game.root().join("run/tls.addr").exists(),
        "no telnet TLS listener"
    );
    let addr = web_addr(&game);
    let first = tls_config(&game);
    let page = get(tls_connect(&first, addr), addr, "/", &[]);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");

    let renewed = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    replace(
        &game.root().join("tls/key.pem"),
        &renewed.signing_key.serialize_pem(),
    );
    replace(&game.root().join("tls/cert.pem"), &renewed.cert.pem());
    let second = trusting(renewed.cert.pem().as_bytes());
    crate::util::wait_until(
        "the renewed certificate to be served",
        Duration::from_secs(30),
        || try_tls_connect(&second, addr).is_ok(),
    );
    let page = get(tls_connect(&second, addr), addr, "/", &[]);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let old = try_tls_connect(&first, addr).err().unwrap_or_default();
    assert!(
        old.contains("certificate") || old.contains("Certificate"),
        "the old certificate is served no more: {old:?}"
    );
}

/// A connection to the webclient's TLS port that never says hello holds
/// its place in the per-address limit until
/// `portal.tls_handshake_timeout_s`, then is closed and lets go.
#[test]
fn a_web_tls_handshake_that_never_comes_is_given_up_at_the_timeout() {
    const TIMEOUT_S: u64 = 3;
    let game = Game::with_tls(|c| {
        c.portal.web_tls = true;
        c.portal.max_connections_per_ip = 1;
        c.portal.tls_handshake_timeout_s = TIMEOUT_S;
    });
    game.start();
    let mut silent = TcpStream::connect(web_addr(&game)).unwrap();
    let opened = Instant::now();
    // Its place is taken at the accept: telnet from the address is refused.
    crate::util::wait_until("the silent connection to hold its place", WAIT, || {
        let mut telnet = game.connect("telnet");
        telnet
            .expect_line(
                "a refusal",
                |l| l.contains("Too many connections from your address"),
                Duration::from_secs(2),
            )
            .is_ok()
    });
    silent
        .set_read_timeout(Some(Duration::from_secs(TIMEOUT_S + 20)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = silent.read(&mut buf);
    assert!(
        matches!(n, Ok(0)) || n.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the silent connection was not closed within the handshake timeout"
    );
    assert!(
        opened.elapsed() >= Duration::from_secs(TIMEOUT_S - 1),
        "closed after {:?}, before the timeout",
        opened.elapsed()
    );
    // Its place is free again.
    crate::util::wait_until("the place to be given back", WAIT, || {
        let mut telnet = game.connect("telnet");
        telnet
            .expect_line(
                "the welcome",
                |l| l.contains("Welcome to "),
                Duration::from_secs(2),
            )
            .is_ok()
    });
}

#[test]
fn evctl_status_names_every_listening_address() {
    let game = Game::with_tls(|c| c.portal.web_tls = true);
    game.start();
    let (telnet, tls, web) = (game.telnet_addr(), game.tls_addr(), web_addr(&game));
    let out = game.evctl(&["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    for line in [
        format!("telnet             {telnet}"),
        format!("telnet over TLS    {tls}"),
        format!("webclient          https://{web}/ (socket wss://{web}/ws)"),
    ] {
        assert!(shown.contains(&line), "{line:?} missing: {shown}");
    }
    let out = game.evctl(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["telnet_addr"], telnet.to_string(), "{status}");
    assert_eq!(status["tls_addr"], tls.to_string(), "{status}");
    assert_eq!(status["web_url"], format!("https://{web}/"), "{status}");
    assert_eq!(status["web_socket"], format!("wss://{web}/ws"), "{status}");

    // A plain webclient and no TLS listener: ws, and no TLS line.
    let plain = Game::started();
    let web = web_addr(&plain);
    let shown = text(&plain.evctl(&["status"]));
    assert!(
        shown.contains(&format!(
            "webclient          http://{web}/ (socket ws://{web}/ws)"
        )),
        "{shown}"
    );
    assert!(!shown.contains("over TLS"), "{shown}");
    let status: Value = serde_json::from_slice(&plain.evctl(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["web_socket"], format!("ws://{web}/ws"), "{status}");
    assert_eq!(status["tls_addr"], "", "{status}");
}

#[test]
fn behind_a_listed_proxy_the_limits_count_the_forwarded_addresses() {
    let game = Game::with_config(|c| {
        c.portal.max_connections_per_ip = 2;
        c.portal.web_proxies = vec!["127.0.0.1".parse().unwrap()];
        // The game's own limits per address see the forwarded one too.
        c.auth.creates_per_address_per_hour = 1;
    });
    game.start();
    let addr = web_addr(&game);
    let from = |client: &'static str| [("X-Forwarded-For", client)];
    let mut one = open(addr, None, &from("198.51.100.1")).unwrap();
    hello(&mut one);
    let mut two = open(addr, None, &from("198.51.100.1")).unwrap();
    hello(&mut two);
    // A third from that player is over its limit, even with a made-up
    // address of its own left of what the proxy saw.
    let mut three = open(addr, None, &from("6.6.6.6, 198.51.100.1")).unwrap();
    let reason = refused(&mut three);
    assert!(
        reason.contains("Too many connections from your address"),
        "{reason}"
    );
    let page = http_get(addr, "/", &["X-Forwarded-For: 198.51.100.1"]);
    assert!(page.starts_with("HTTP/1.1 503"), "{page}");
    // Another player through the same proxy: its own limit, not the proxy's.
    let page = http_get(addr, "/", &["X-Forwarded-For: 198.51.100.2"]);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let mut other = open(addr, None, &from("198.51.100.2")).unwrap();
    hello(&mut other);
    // The proxy's own address holds none of those places.
    game.guest("telnet from the proxy's address");
    // The game is told the forwarded address: one account an hour each.
    let created = |ws: &mut WebSocket<TcpStream>, name: &str| {
        let line = format!("create {name} {PASSWORD}");
        ws.send(Message::text(
            json!({"t": "in", "n": 1, "text": line}).to_string(),
        ))
        .unwrap();
        let answer = expect_json(ws, "the answer to create", |v| {
            says(v, "Welcome, ") || says(v, "Too many new accounts")
        });
        says(&answer, &format!("Welcome, {name}!"))
    };
    assert!(created(&mut one, "Firsty"), "the first account from .1");
    assert!(!created(&mut two, "Second"), "a second account from .1");
    assert!(created(&mut other, "Othery"), "the first account from .2");
    // A list the proxy should never write is refused, not guessed at.
    let bad = http_get(addr, "/", &["X-Forwarded-For: somewhere"]);
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert!(bad.contains("somewhere"), "{bad}");
    drop((one, two, other));
}

#[test]
fn from_a_peer_not_listed_as_a_proxy_the_header_is_ignored() {
    let game = Game::with_config(|c| {
        c.portal.max_connections_per_ip = 2;
        c.portal.web_proxies = vec!["192.0.2.1".parse().unwrap()];
    });
    game.start();
    let addr = web_addr(&game);
    let mut one = open(addr, None, &[("X-Forwarded-For", "198.51.100.1")]).unwrap();
    hello(&mut one);
    let mut two = open(addr, None, &[("X-Forwarded-For", "198.51.100.2")]).unwrap();
    hello(&mut two);
    // Both counted as 127.0.0.1, whatever they claimed.
    let mut three = open(addr, None, &[("X-Forwarded-For", "198.51.100.3")]).unwrap();
    let reason = refused(&mut three);
    assert!(
        reason.contains("Too many connections from your address"),
        "{reason}"
    );
    let page = http_get(addr, "/", &["X-Forwarded-For: 198.51.100.4"]);
    assert!(page.starts_with("HTTP/1.1 503"), "{page}");
    // Nor is a header that is no list refused: it is not read at all.
    drop(one);
    let page = http_get(addr, "/", &["X-Forwarded-For: somewhere"]);
    assert!(!page.starts_with("HTTP/1.1 400"), "{page}");
    drop(two);
}

#[test]
fn a_json_subprotocol_client_plays_and_gets_gmcp_in_envelopes() {
    let game = Game::started();
    let addr = web_addr(&game);
    let mut ws = open(addr, Some("json.mudstandards.org"), &[]).unwrap();
    let mut got = Received {
        text: String::new(),
        texts: Vec::new(),
    };
    read_until(&mut ws, &mut got, "the welcome screen", |g| {
        g.text.contains("Welcome to ")
    });
    // Out-of-band data from the client, as the proposal wraps GMCP.
    let hello =
        json!({"proto": "gmcp", "id": "Core.Hello", "data": r#"{"client":"test","version":"1"}"#});
    ws.send(Message::text(hello.to_string())).unwrap();
    // A protocol the portal does not speak is passed over.
    ws.send(Message::text(
        json!({"proto": "msdp", "id": "x", "data": ""}).to_string(),
    ))
    .unwrap();
    ws.send(Message::binary(
        format!("create Jason {PASSWORD}\r\n").into_bytes(),
    ))
    .unwrap();
    read_until(&mut ws, &mut got, "Room.Info", |g| {
        g.text.contains("Welcome, Jason!") && g.texts.iter().any(|t| t.contains("Room.Info"))
    });
    let room = got.texts.iter().find(|t| t.contains("Room.Info")).unwrap();
    let envelope: Value = serde_json::from_str(room).unwrap();
    assert_eq!(envelope["proto"], "gmcp", "{room}");
    assert_eq!(envelope["id"], "Room.Info", "{room}");
    let data: Value = serde_json::from_str(envelope["data"].as_str().unwrap()).unwrap();
    assert!(data["name"].is_string(), "{room}");
    ws.send(Message::binary(b"say in envelopes\n".to_vec()))
        .unwrap();
    read_until(&mut ws, &mut got, "the say", |g| {
        g.text.contains("You say, \"in envelopes\"")
    });
    // A TEXT frame that is no envelope closes the socket with a reason.
    ws.send(Message::text("look")).unwrap();
    let deadline = Instant::now() + WAIT;
    let close = loop {
        match next(&mut ws, deadline) {
            Some(Message::Close(frame)) => break frame,
            Some(_) => {}
            None => panic!("no close within {WAIT:?}"),
        }
    };
    let frame = close.expect("a close frame with a reason");
    assert_eq!(u16::from(frame.code), 1007, "{frame:?}");
    assert!(frame.reason.contains("proto"), "{frame:?}");
}

/// Python's `websockets`, a client ev has no part in, speaks
/// `terminal.mudstandards.org`: it logs in, says something a telnet
/// player hears, and quits.
#[test]
fn a_python_websockets_client_plays_on_the_terminal_subprotocol() {
    crate::util::require_python("websockets", "websockets==15.0.1");
    let game = Game::started();
    let mut telly = game.login("Telly");
    let addr = web_addr(&game);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/websockets_terminal.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string());
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        text(&out)
    );
    telly.expect("Pyws says, \"hello from python\"");
}
