use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use flate2::{Decompress, FlushDecompress, Status};

use crate::util::{Game, PASSWORD, REPLY_TIMEOUT};

use crate::util::telnet::{DO, DONT, IAC, SB, SE, WILL, WONT};

const MCCP2: u8 = 86;
const START: [u8; 5] = [IAC, SB, MCCP2, IAC, SE];

/// A client that sees the bytes the game meant: what came plain, and what
/// came compressed once inflated, in one buffer.
struct Mccp2Client {
    stream: TcpStream,
    /// Everything received, decompressed where it was compressed.
    seen: Vec<u8>,
    /// Where in `seen` the next expectation starts looking.
    cursor: usize,
    inflate: Option<Decompress>,
    /// Set when the stream ended: its final block and checksum were valid.
    ended: bool,
}

impl Mccp2Client {
    fn connect(game: &Game) -> Self {
        let stream = TcpStream::connect(game.telnet_addr()).expect("connect to the portal");
        stream.set_nodelay(true).expect("nodelay");
        Mccp2Client {
            stream,
            seen: Vec::new(),
            cursor: 0,
            inflate: None,
            ended: false,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the portal");
    }

    /// Takes in what arrives, switching to inflating right after the
    /// `IAC SB 86 IAC SE` that starts compression.
    fn receive(&mut self, deadline: Instant) {
        let wait = deadline.saturating_duration_since(Instant::now());
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .expect("read timeout");
        let mut buf = [0u8; 8192];
        let n = match self.stream.read(&mut buf) {
            Ok(0) => panic!("the portal closed the connection; seen: {}", self.context()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return;
            }
            Err(e) => panic!("read failed: {e}"),
        };
        let mut input = buf[..n].to_vec();
        while !input.is_empty() {
            match &mut self.inflate {
                Some(z) => {
                    let before = z.total_in();
                    let mut out = Vec::with_capacity(64 * 1024);
                    let status = z
                        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
                        .unwrap_or_else(|e| panic!("the compressed stream is corrupt: {e}"));
                    self.seen.extend_from_slice(&out);
                    input.drain(..(z.total_in() - before) as usize);
                    if status == Status::StreamEnd {
                        self.inflate = None;
                        self.ended = true;
                    }
                }
                None => {
                    let from = self.seen.len().saturating_sub(START.len() - 1);
                    self.seen.append(&mut input);
                    let started =
                        find(&self.seen[from..], &START).map(|at| from + at + START.len());
                    if let (Some(at), false) = (started, self.ended) {
                        // The bytes after the start sequence were compressed:
                        // back through the loop, now inflating.
                        input = self.seen.split_off(at);
                        self.inflate = Some(Decompress::new(true));
                    }
                }
            }
        }
    }

    /// Waits until `needle` appears after the last expectation met.
    fn expect(&mut self, needle: &[u8]) {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(at) = find(&self.seen[self.cursor..], needle) {
                self.cursor += at + needle.len();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {:?}; seen: {}",
                String::from_utf8_lossy(needle),
                self.context()
            );
            self.receive(deadline);
        }
    }

    fn expect_text(&mut self, text: &str) {
        self.expect(text.as_bytes());
    }

    fn context(&self) -> String {
        let tail = &self.seen[self.seen.len().saturating_sub(400)..];
        format!("{:?}", String::from_utf8_lossy(tail))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn mccp2_output_decodes_to_the_game_text_and_turns_off_on_dont() {
    // Released after every burst: each reply after the first starts a fresh
    // compressor, and the player's stream must not notice.
    // And told of the reload's pause, to see a notice go through the stream.
    let game = Game::with_config(|c| {
        c.portal.mccp2_idle_release_ms = 0;
        c.portal.pause_notice_ms = 0;
    });
    game.start();
    let mut c = Mccp2Client::connect(&game);
    c.expect(&[IAC, WILL, MCCP2]);
    c.send(&[IAC, DO, MCCP2]);
    c.expect(&START);
    assert!(
        c.inflate.is_some(),
        "compression starts after IAC SB 86 IAC SE"
    );

    c.send(format!("create Zipper {PASSWORD}\r\n").as_bytes());
    c.expect_text("Welcome, Zipper!");
    for i in 0..20 {
        c.send(format!("ping z{i}\r\n").as_bytes());
        c.expect_text(&format!("pong z{i}"));
    }
    // The stream belongs to the portal: a reload goes on inside it.
    game.reload();
    c.expect_text("The game is reloading");
    c.expect_text("The game is back.");
    c.send(b"ping after-reload\r\n");
    c.expect_text("pong after-reload");
    c.send(b"say compressed and clear\r\n");
    c.expect_text("You say, \"compressed and clear\"");
    assert!(c.inflate.is_some(), "still compressing");

    c.send(&[IAC, DONT, MCCP2]);
    c.expect(&[IAC, WONT, MCCP2]);
    assert!(c.ended, "DONT ends the zlib stream with a valid trailer");
    c.send(b"ping plain\r\n");
    c.expect_text("pong plain");
    assert!(c.inflate.is_none(), "output after DONT is plain");
}

#[test]
fn mccp2_off_in_the_config_is_never_offered() {
    let game = Game::with_config(|c| c.portal.mccp2 = false);
    game.start();
    let mut c = Mccp2Client::connect(&game);
    c.expect_text("Welcome to ");
    // Asked anyway, the portal declines and stays plain.
    c.send(&[IAC, DO, MCCP2]);
    c.expect(&[IAC, WONT, MCCP2]);
    c.send(format!("create Plain {PASSWORD}\r\n").as_bytes());
    c.expect_text("Welcome, Plain!");
    assert!(
        find(&c.seen, &[IAC, WILL, MCCP2]).is_none() && c.inflate.is_none(),
        "MCCP2 was offered or started: {}",
        c.context()
    );
}
