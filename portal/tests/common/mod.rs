//! What the portal's black-box tests share: the portal in process on a
//! real Unix socket and a real TCP port, a fake server speaking the Link's
//! protobuf on it, and raw telnet clients. Every wait has a deadline.

// A test that fails should say where: unwrap, expect and panic are how.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::time::Duration;

use ev::config::Config;
use ev::gamedir::GameDir;
use ev::pb::link as pb;
use pb::portal_event::Kind as P;
use pb::server_event::Kind as S;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

pub const DEADLINE: Duration = Duration::from_secs(10);

pub struct Portal {
    pub game: GameDir,
    _dir: tempfile::TempDir,
    pub stop: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn start_portal(edit: impl FnOnce(&mut Config)) -> Portal {
    let dir = tempfile::Builder::new()
        .prefix("evp")
        .tempdir_in("/tmp")
        .unwrap();
    let game = GameDir::new(dir.path());
    let mut config = Config::default();
    config.portal.telnet = "127.0.0.1:0".parse().unwrap();
    config.portal.web = Some("127.0.0.1:0".parse().unwrap());
    // The fake servers never answer a Drain; do not wait long for one.
    config.server.drain_timeout_ms = 300;
    edit(&mut config);
    std::fs::write(game.config_path(), config.to_toml()).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(ev_portal::run(
        game.clone(),
        config,
        stop.clone().cancelled_owned(),
    ));
    // Ready once both the telnet address and the Link socket exist.
    wait_for(|| game.telnet_addr_path().exists() && game.link_socket().exists()).await;
    Portal {
        game,
        _dir: dir,
        stop,
        task,
    }
}

pub async fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub struct FakeServer {
    pub tx: mpsc::Sender<pb::ToPortal>,
    pub rx: tonic::Streaming<pb::ToServer>,
    /// Events received and not yet looked at.
    queued: std::collections::VecDeque<S>,
}

impl FakeServer {
    pub async fn attach(
        game: &GameDir,
        major: u32,
        generation: u64,
    ) -> (FakeServer, pb::PortalHello) {
        Self::attach_minor(game, major, 0, generation).await
    }

    /// A server of Link `major.minor`.
    pub async fn attach_minor(
        game: &GameDir,
        major: u32,
        minor: u32,
        generation: u64,
    ) -> (FakeServer, pb::PortalHello) {
        let channel = ev::uds::connect(&game.link_socket()).await.unwrap();
        let mut client = pb::link_client::LinkClient::new(channel);
        let (tx, rx) = mpsc::channel(16);
        tx.send(pb::ToPortal {
            events: vec![pb::PortalEvent {
                kind: Some(P::Hello(pb::ServerHello {
                    version: Some(pb::Version { major, minor }),
                    build_id: "fake".into(),
                    generation,
                    pid: 1,
                })),
            }],
        })
        .await
        .unwrap();
        let mut rx = client
            .attach(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let first = tokio::time::timeout(DEADLINE, rx.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let mut events = first.events.into_iter().filter_map(|e| e.kind);
        let hello = match events.next() {
            Some(S::Hello(h)) => h,
            other => panic!("expected a hello, got {other:?}"),
        };
        // What came with the hello (a Sync, inputs) is the next to look at.
        let server = FakeServer {
            tx,
            rx,
            queued: events.collect(),
        };
        (server, hello)
    }

    /// The next event `want` takes, skipping others; events after it
    /// (in the same Link message) are kept for the next call.
    pub async fn next_event(&mut self, mut want: impl FnMut(&S) -> bool) -> S {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            while let Some(kind) = self.queued.pop_front() {
                if want(&kind) {
                    return kind;
                }
            }
            let msg = tokio::time::timeout_at(deadline, self.rx.next())
                .await
                .expect("timed out waiting for a Link event")
                .expect("Link closed")
                .expect("Link error");
            self.queued
                .extend(msg.events.into_iter().filter_map(|e| e.kind));
        }
    }

    pub async fn send(&self, events: Vec<P>) {
        let events = events
            .into_iter()
            .map(|k| pb::PortalEvent { kind: Some(k) })
            .collect();
        self.tx.send(pb::ToPortal { events }).await.unwrap();
    }
}

pub async fn telnet(portal: &Portal) -> BufReader<TcpStream> {
    let addr = std::fs::read_to_string(portal.game.telnet_addr_path()).unwrap();
    BufReader::new(TcpStream::connect(addr.trim()).await.unwrap())
}

/// The bytes up to the next LF, as text (the telnet bytes before it lossily).
pub async fn read_line(client: &mut BufReader<TcpStream>) -> String {
    let mut line = Vec::new();
    tokio::time::timeout(DEADLINE, client.read_until(b'\n', &mut line))
        .await
        .expect("timed out reading a line")
        .unwrap();
    String::from_utf8_lossy(&line).into_owned()
}

pub const IAC: u8 = 255;
pub const DONT: u8 = 254;
pub const DO: u8 = 253;
pub const WONT: u8 = 252;
pub const WILL: u8 = 251;
pub const SB: u8 = 250;
pub const GA: u8 = 249;
pub const SE: u8 = 240;
pub const EOR_CMD: u8 = 239;
pub const ECHO: u8 = 1;
pub const SGA: u8 = 3;
pub const TTYPE: u8 = 24;
pub const EOR: u8 = 25;
pub const NAWS: u8 = 31;
pub const CHARSET: u8 = 42;
pub const MSDP: u8 = 69;
pub const MSSP: u8 = 70;
pub const MCCP2: u8 = 86;
pub const GMCP: u8 = 201;

/// A client that sees every byte and answers nothing by itself.
pub struct Raw {
    stream: TcpStream,
    pub seen: Vec<u8>,
    /// Where the next expectation starts looking.
    cursor: usize,
}

impl Raw {
    pub async fn connect(portal: &Portal) -> Raw {
        let addr = std::fs::read_to_string(portal.game.telnet_addr_path()).unwrap();
        let stream = TcpStream::connect(addr.trim()).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            seen: Vec::new(),
            cursor: 0,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads until `needle` appears after the cursor; returns the bytes from
    /// the cursor to the needle's end and moves the cursor there.
    pub async fn until(&mut self, needle: &[u8]) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(at) = find(&self.seen[self.cursor..], needle) {
                let end = self.cursor + at + needle.len();
                let got = self.seen[self.cursor..end].to_vec();
                self.cursor = end;
                return got;
            }
            let mut buf = [0u8; 8192];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => panic!("read failed: {e}"),
                Err(_) => panic!(
                    "waited for {:?}; seen after the cursor: {:?}",
                    String::from_utf8_lossy(needle),
                    &self.seen[self.cursor..]
                ),
            };
            assert!(n > 0, "the portal closed the connection: {:?}", self.seen);
            self.seen.extend_from_slice(&buf[..n]);
        }
    }

    /// Tells the portal what a MUD client would: TTYPE's MTTS cycle (or a
    /// refusal of TTYPE, for `None`), no CHARSET, and the given answers to
    /// the rest (`agree`: the options it takes, by our DO; the others it
    /// refuses).
    pub async fn negotiate(&mut self, mtts: Option<u32>, agree: &[u8]) {
        let mut bytes = Vec::new();
        match mtts {
            Some(bits) => {
                bytes.extend_from_slice(&[IAC, WILL, TTYPE]);
                for name in [
                    "TESTCLIENT 1.0".to_string(),
                    "XTERM".into(),
                    format!("MTTS {bits}"),
                ] {
                    bytes.extend_from_slice(&[IAC, SB, TTYPE, 0]);
                    bytes.extend_from_slice(name.as_bytes());
                    bytes.extend_from_slice(&[IAC, SE]);
                }
            }
            None => bytes.extend_from_slice(&[IAC, WONT, TTYPE]),
        }
        bytes.extend_from_slice(&[IAC, DONT, CHARSET]);
        for option in [MCCP2, SGA, EOR, GMCP, MSDP, MSSP] {
            let verb = if agree.contains(&option) { DO } else { DONT };
            bytes.extend_from_slice(&[IAC, verb, option]);
        }
        self.send(&bytes).await;
    }

    /// Every byte after the cursor up to the next `\r\n` after `marker`:
    /// what followed the marker line.
    pub async fn after_line(&mut self, marker: &str) -> Vec<u8> {
        self.until(format!("{marker}\r\n").as_bytes()).await;
        self.until(b"\r\n").await
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Waits for the next session the portal opens; returns its id.
pub async fn opened(server: &mut FakeServer) -> u64 {
    match server.next_event(|k| matches!(k, S::Opened(_))).await {
        S::Opened(o) => o.session.unwrap().id,
        _ => unreachable!(),
    }
}

/// An Output event.
pub fn output(session: u64, seq: u64, text: &str, markup: bool, kind: pb::TextKind) -> P {
    P::Output(pb::Output {
        session,
        text: text.into(),
        seq,
        markup,
        kind: kind as i32,
    })
}

/// A plain line, as a server older than Link 1.3 sends.
pub fn plain(session: u64, seq: u64, text: &str) -> P {
    output(session, seq, text, false, pb::TextKind::Line)
}

pub fn server_oob(session: u64, seq: u64, name: &str, data: &str) -> P {
    P::Oob(pb::ServerOob {
        session,
        seq,
        name: name.into(),
        data: data.into(),
    })
}

/// A GMCP message as a client sends it.
pub fn gmcp(message: &str) -> Vec<u8> {
    [&[IAC, SB, GMCP][..], message.as_bytes(), &[IAC, SE]].concat()
}

/// The test's own MSDP reader (not the portal's): the variables of one
/// `IAC SB MSDP … IAC SE` (framing included) as a JSON object. Tables
/// become objects, arrays arrays, text strings.
pub fn read_msdp(sub: &[u8]) -> serde_json::Value {
    const VAR: u8 = 1;
    const VAL: u8 = 2;
    const TABLE_OPEN: u8 = 3;
    const TABLE_CLOSE: u8 = 4;
    const ARRAY_OPEN: u8 = 5;
    const ARRAY_CLOSE: u8 = 6;
    assert!(
        sub.starts_with(&[IAC, SB, MSDP]) && sub.ends_with(&[IAC, SE]),
        "{sub:?}"
    );
    let body = &sub[3..sub.len() - 2];
    // A stack of open containers: each an object being filled (with the
    // key of the value being read) or an array.
    enum Open {
        Table(serde_json::Map<String, serde_json::Value>, Option<String>),
        Array(Vec<serde_json::Value>),
    }
    let mut stack = vec![Open::Table(serde_json::Map::new(), None)];
    let mut i = 0;
    let text = |i: &mut usize| {
        let start = *i;
        while *i < body.len() && body[*i] > ARRAY_CLOSE {
            *i += 1;
        }
        String::from_utf8(body[start..*i].to_vec()).expect("MSDP text is UTF-8")
    };
    let put = |stack: &mut Vec<Open>, value: serde_json::Value| match stack.last_mut() {
        Some(Open::Table(map, key)) => {
            map.insert(key.take().expect("a value after its VAR"), value);
        }
        Some(Open::Array(items)) => items.push(value),
        None => panic!("a value outside everything"),
    };
    while i < body.len() {
        let b = body[i];
        i += 1;
        match b {
            VAR => {
                let name = text(&mut i);
                match stack.last_mut() {
                    Some(Open::Table(_, key)) => *key = Some(name),
                    _ => panic!("VAR outside a table"),
                }
            }
            VAL => match body.get(i) {
                Some(&TABLE_OPEN) => {
                    i += 1;
                    stack.push(Open::Table(serde_json::Map::new(), None));
                }
                Some(&ARRAY_OPEN) => {
                    i += 1;
                    stack.push(Open::Array(Vec::new()));
                }
                _ => {
                    let value = serde_json::Value::String(text(&mut i));
                    put(&mut stack, value);
                }
            },
            TABLE_CLOSE => match stack.pop() {
                Some(Open::Table(map, _)) => put(&mut stack, serde_json::Value::Object(map)),
                _ => panic!("TABLE_CLOSE without its table"),
            },
            ARRAY_CLOSE => match stack.pop() {
                Some(Open::Array(items)) => put(&mut stack, serde_json::Value::Array(items)),
                _ => panic!("ARRAY_CLOSE without its array"),
            },
            other => panic!("unexpected MSDP byte {other}"),
        }
    }
    assert_eq!(stack.len(), 1, "unclosed MSDP");
    match stack.pop() {
        Some(Open::Table(map, _)) => serde_json::Value::Object(map),
        _ => unreachable!(),
    }
}
