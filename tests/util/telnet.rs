//! A small telnet client for tests: line mode, negotiation refused, every
//! wait bounded by a deadline. It speaks over a TCP socket, or over TLS
//! through a real TLS client (`openssl s_client`, [`Client::connect_tls`]).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for a reply unless it says otherwise.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

pub const IAC: u8 = 255;
pub const DONT: u8 = 254;
pub const DO: u8 = 253;
pub const WONT: u8 = 252;
pub const WILL: u8 = 251;
pub const SB: u8 = 250;
const GA: u8 = 249;
pub const SE: u8 = 240;
const EOR: u8 = 239;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Iac,
    /// After IAC WILL/WONT/DO/DONT, waiting for the option byte.
    Verb(u8),
    Sub,
    SubIac,
}

/// Sans-IO decoder: bytes in, text lines and negotiation replies out.
struct Decoder {
    state: State,
    line: Vec<u8>,
}

impl Decoder {
    fn new() -> Decoder {
        Decoder {
            state: State::Data,
            line: Vec::new(),
        }
    }

    /// Feeds `bytes`; complete lines go to `lines`, refusals to `replies`.
    fn feed(&mut self, bytes: &[u8], lines: &mut VecDeque<String>, replies: &mut Vec<u8>) {
        for &b in bytes {
            self.state = match (self.state, b) {
                (State::Data, IAC) => State::Iac,
                (State::Data, b'\n') => {
                    self.flush(lines, false);
                    State::Data
                }
                (State::Data, 0) => State::Data,
                (State::Data, b) => {
                    self.line.push(b);
                    State::Data
                }
                (State::Iac, IAC) => {
                    self.line.push(IAC);
                    State::Data
                }
                (State::Iac, WILL | WONT | DO | DONT) => State::Verb(b),
                (State::Iac, SB) => State::Sub,
                // A prompt ends with GA or EOR instead of a newline.
                (State::Iac, GA | EOR) => {
                    self.flush(lines, true);
                    State::Data
                }
                (State::Iac, _) => State::Data,
                (State::Verb(verb), option) => {
                    match verb {
                        DO => replies.extend_from_slice(&[IAC, WONT, option]),
                        WILL => replies.extend_from_slice(&[IAC, DONT, option]),
                        _ => {}
                    }
                    State::Data
                }
                (State::Sub, IAC) => State::SubIac,
                (State::Sub, _) => State::Sub,
                (State::SubIac, SE) => State::Data,
                (State::SubIac, _) => State::Sub,
            };
        }
    }

    fn flush(&mut self, lines: &mut VecDeque<String>, prompt: bool) {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let text = strip_ansi(&String::from_utf8_lossy(&line));
        if !(prompt && text.trim().is_empty()) {
            lines.push_back(text);
        }
    }
}

/// Drops ANSI escape sequences (colours), so tests match on plain text.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('\x40'..='\x7e').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// What a [`Client`] speaks over.
enum Wire {
    Tcp(TcpStream),
    /// A TLS client process: telnet bytes in through its stdin, out of its stdout.
    Tls(TlsProcess),
}

/// `openssl s_client`, connected; killed when dropped, even by a failing test.
struct TlsProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// What its stdout gave, in chunks, from a reader thread; closed at its end.
    stdout: Receiver<Vec<u8>>,
    /// Its stderr (the handshake, verify results, errors), for failure messages.
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Drop for TlsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Wire {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Wire::Tcp(stream) => stream.write_all(bytes),
            Wire::Tls(tls) => match &mut tls.stdin {
                Some(stdin) => stdin.write_all(bytes).and_then(|()| stdin.flush()),
                None => Err(io::ErrorKind::BrokenPipe.into()),
            },
        }
    }

    /// Bytes that came within `wait`: Ok(None) if none did, Ok(Some(empty)) at the end.
    fn read_within(&mut self, wait: Duration) -> io::Result<Option<Vec<u8>>> {
        match self {
            Wire::Tcp(stream) => {
                stream.set_read_timeout(Some(wait))?;
                let mut buf = [0u8; 16 * 1024];
                match stream.read(&mut buf) {
                    Ok(n) => Ok(Some(buf[..n].to_vec())),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
            Wire::Tls(tls) => match tls.stdout.recv_timeout(wait) {
                Ok(chunk) => Ok(Some(chunk)),
                Err(RecvTimeoutError::Timeout) => Ok(None),
                Err(RecvTimeoutError::Disconnected) => Ok(Some(Vec::new())),
            },
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Wire::Tcp(stream) => stream.shutdown(std::net::Shutdown::Write),
            Wire::Tls(_) => Err(io::Error::other(
                "s_client -quiet keeps the connection open at the end of its input",
            )),
        }
    }
}

/// One telnet connection. `label` names it in every failure message.
pub struct Client {
    label: String,
    stream: Wire,
    decoder: Decoder,
    lines: VecDeque<String>,
    /// The last lines taken, shown when an expectation fails.
    recent: VecDeque<String>,
    closed: bool,
}

impl Client {
    pub fn connect(addr: SocketAddr, label: &str) -> Client {
        Client::try_connect(addr, label)
            .unwrap_or_else(|e| panic!("{label}: cannot connect to telnet {addr}: {e}"))
    }

    /// A connection from another loopback address (any 127.x.y.z is this
    /// host), so per-address limits see a different player.
    pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr, label: &str) -> Client {
        let connect = || -> io::Result<TcpStream> {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )?;
            socket.bind(&SocketAddr::new(source, 0).into())?;
            socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
            Ok(socket.into())
        };
        let stream = connect()
            .unwrap_or_else(|e| panic!("{label}: cannot connect from {source} to {addr}: {e}"));
        Client::from_stream(stream, label)
            .unwrap_or_else(|e| panic!("{label}: setting up the socket: {e}"))
    }

    pub fn try_connect(addr: SocketAddr, label: &str) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        Client::from_stream(stream, label)
    }

    /// Telnet over TLS to `addr`, through `openssl s_client` (which takes
    /// any certificate, as a player accepting a self-signed one does).
    pub fn connect_tls(addr: SocketAddr, label: &str) -> Client {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-connect"])
            .arg(addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{label}: cannot run openssl s_client ({e}): `apt-get install openssl` (.ci/run does)")
            });
        let stdin = child.stdin.take();
        let (tx, stdout) = mpsc::channel();
        let mut out = child.stdout.take().expect("s_client's stdout is piped");
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err = child.stderr.take().expect("s_client's stderr is piped");
        let kept = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Client::over(
            Wire::Tls(TlsProcess {
                child,
                stdin,
                stdout,
                stderr,
            }),
            label,
        )
    }

    fn from_stream(stream: TcpStream, label: &str) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client::over(Wire::Tcp(stream), label))
    }

    fn over(stream: Wire, label: &str) -> Client {
        Client {
            label: label.to_owned(),
            stream,
            decoder: Decoder::new(),
            lines: VecDeque::new(),
            recent: VecDeque::new(),
            closed: false,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn send_line(&mut self, line: &str) {
        if let Err(e) = self.try_send_line(line) {
            panic!(
                "{}: sending {line:?} failed: {e}{}",
                self.label,
                self.context()
            );
        }
    }

    pub fn try_send_line(&mut self, line: &str) -> io::Result<()> {
        self.stream.write_all(format!("{line}\r\n").as_bytes())
    }

    /// Closes the sending side only (`shutdown(SHUT_WR)`); replies still come.
    pub fn shutdown_write(&mut self) {
        if let Err(e) = self.stream.shutdown_write() {
            panic!("{}: shutting down the sending side failed: {e}", self.label);
        }
    }

    /// Sends raw bytes (no line ending added).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            panic!(
                "{}: sending {} raw bytes failed: {e}",
                self.label,
                bytes.len()
            );
        }
    }

    /// Waits up to `wait` for bytes and decodes what came. Sets `closed` on EOF.
    fn fill(&mut self, wait: Duration) {
        if self.closed {
            return;
        }
        let wait = wait.max(Duration::from_millis(1));
        match self.stream.read_within(wait) {
            Ok(None) => {}
            Ok(Some(bytes)) if bytes.is_empty() => self.closed = true,
            Ok(Some(bytes)) => {
                let mut replies = Vec::new();
                self.decoder.feed(&bytes, &mut self.lines, &mut replies);
                if !replies.is_empty() {
                    let _ = self.stream.write_all(&replies);
                }
            }
            Err(_) => self.closed = true,
        }
    }

    /// The next line, waiting until `deadline`; None on timeout or when closed.
    pub fn next_line(&mut self, deadline: Instant) -> Option<String> {
        loop {
            if let Some(line) = self.lines.pop_front() {
                if self.recent.len() == 30 {
                    self.recent.pop_front();
                }
                self.recent.push_back(line.clone());
                return Some(line);
            }
            let now = Instant::now();
            if self.closed || now >= deadline {
                return None;
            }
            self.fill(deadline - now);
        }
    }

    /// Reads for at most `wait` and returns every line that came (possibly none).
    pub fn poll_lines(&mut self, wait: Duration) -> Vec<String> {
        if self.lines.is_empty() {
            self.fill(wait);
        }
        let mut out = Vec::new();
        while let Some(line) = self.next_line(Instant::now()) {
            out.push(line);
        }
        out
    }

    /// Skips lines until one matches `pred`; the error says what was seen.
    pub fn expect_line(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        while let Some(line) = self.next_line(deadline) {
            if pred(&line) {
                return Ok(line);
            }
        }
        let why = if self.closed {
            "the connection was closed".to_owned()
        } else {
            format!("nothing matched within {timeout:?}")
        };
        Err(format!(
            "{}: waiting for {what}: {why}{}",
            self.label,
            self.context()
        ))
    }

    /// Waits for a line containing `needle`, panicking with context if none comes.
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_line(
            &format!("{needle:?}"),
            |l| l.contains(needle),
            REPLY_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every line up to and including the first that matches `pred`.
    pub fn read_all_until(
        &mut self,
        what: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        while let Some(line) = self.next_line(deadline) {
            let done = pred(&line);
            lines.push(line);
            if done {
                return Ok(lines);
            }
        }
        Err(format!(
            "{}: waiting for {what}: {}{}",
            self.label,
            if self.closed { "closed" } else { "timed out" },
            self.context()
        ))
    }

    /// Whether the peer closes the connection within `timeout` (lines are skipped).
    pub fn is_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.next_line(deadline).is_some() {}
        self.closed
    }

    /// Closed as far as seen so far (no waiting).
    pub fn seen_closed(&self) -> bool {
        self.closed
    }

    /// The last lines taken, for failure messages.
    pub fn context(&self) -> String {
        let tls = match &self.stream {
            Wire::Tls(tls) => format!(
                "\n  s_client's stderr: {}",
                String::from_utf8_lossy(&tls.stderr.lock().unwrap())
            ),
            Wire::Tcp(_) => String::new(),
        };
        if self.recent.is_empty() {
            return format!("; no lines received{tls}");
        }
        let lines: Vec<&str> = self.recent.iter().map(String::as_str).collect();
        format!("; last lines received:\n    {}{tls}", lines.join("\n    "))
    }

    /// `who` parsed into names, sorted as the server sends them.
    pub fn who(&mut self) -> Vec<String> {
        self.send_line("who");
        let line = self.expect("Players online (");
        let names = line.split_once("): ").map(|(_, rest)| rest).unwrap_or("");
        names
            .split(',')
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// Sends `look` and returns its lines, from the room name to the `Here:` /
    /// `You are alone here.` line.
    pub fn look(&mut self) -> Result<Vec<String>, String> {
        self.send_line("look");
        let lines = self.read_all_until(
            "the look output (Limbo ... Here:)",
            |l| {
                l.contains("Here: ")
                    || l.contains("You are alone here.")
                    || l.contains("Unknown command")
            },
            REPLY_TIMEOUT,
        )?;
        let start = lines.iter().rposition(|l| l.contains("Limbo"));
        match start {
            Some(i) if !lines.last().is_some_and(|l| l.contains("Unknown command")) => {
                Ok(lines[i..].to_vec())
            }
            _ => Err(format!(
                "{}: `look` did not show the room (logged out?): {:?}",
                self.label, lines
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
        let mut d = Decoder::new();
        let mut lines = VecDeque::new();
        let mut replies = Vec::new();
        for c in chunks {
            d.feed(c, &mut lines, &mut replies);
        }
        (lines.into_iter().collect(), replies)
    }

    #[test]
    fn negotiation_is_stripped_and_refused() {
        let input = b"\xff\xfd\x18Wel\xff\xfb\x01come\xff\xfa\x18\x01\xff\xf0 \xff\xffx\r\n";
        let (lines, replies) = decode(&[input]);
        assert_eq!(lines, vec!["Welcome \u{fffd}x".to_owned()]);
        assert_eq!(replies, vec![IAC, WONT, 0x18, IAC, DONT, 0x01]);
    }

    #[test]
    fn split_at_every_offset_gives_the_same_lines() {
        let input: &[u8] =
            b"a\xff\xfd\x01b\r\n\xff\xfa\x18x\xff\xff\xff\xf0c\x1b[1md\x1b[0m\r\n> \xff\xf9";
        let whole = decode(&[input]);
        for i in 0..input.len() {
            assert_eq!(decode(&[&input[..i], &input[i..]]), whole, "split at {i}");
        }
        assert_eq!(whole.0, vec!["ab", "cd", "> "]);
    }
}
