//! One harness for what a telnet client may send, shared by the seeded
//! property test (`negotiation::tests`), the fuzz target
//! (`portal/fuzz/fuzz_targets/telnet_stream.rs`) and the replay of its
//! corpus in `cargo test` (`portal/tests/fuzz_corpus.rs`).
//!
//! It feeds bytes through the parser, the negotiation and the line
//! assembler as a session does, cut where the input says, and checks what
//! must hold for any input: no panic, subnegotiations within their limit,
//! lines within theirs and free of line ends, names within `MAX_NAME`, and
//! answers in proportion to what came in.
// A broken invariant is what this harness exists to find: it panics, as a
// test does, so the fuzzer reports it.
#![allow(clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ev::link::Oob;

use crate::mssp::Facts;
use crate::negotiation::{MAX_NAME, Negotiation};
use crate::telnet::{Event, Line, LineAssembler, Parser};

/// The subnegotiation limit the harness runs with.
pub const MAX_SUB: usize = 2048;
/// The line limit the harness runs with.
pub const MAX_LINE: usize = 100;

/// Runs `data` through a fresh session's telnet handling. The first byte
/// chooses MCCP2 on or off; each later byte's low bits also choose where the
/// stream is cut (every split of the input must give the same result), and
/// whether the game asks a secret then.
pub fn telnet_stream(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let facts = Arc::new(Facts {
        name: "Fuzz".into(),
        started_at_s: 1,
        port: 4000,
        mccp2: true,
        tls_port: None,
        players: Arc::new(AtomicU64::new(1)),
    });
    let mut parser = Parser::new(MAX_SUB);
    let mut assembler = LineAssembler::new(MAX_LINE);
    let mut lines = Vec::new();
    let mut n = Negotiation::new(first & 1 == 1, facts);
    n.start(&mut Vec::new());
    let vitals = Oob {
        name: "Char.Vitals".into(),
        data: "{\"hp\":1,\"list\":[1,2]}".into(),
    };
    let mut events = Vec::new();
    let mut answered = 0usize;
    let mut to_game = 0usize;
    let mut at = 0;
    while at < stream.len() {
        let cut = (at + 1 + (stream[at] as usize % 61)).min(stream.len());
        events.clear();
        parser.receive(&stream[at..cut], &mut events);
        for event in events.drain(..) {
            let mut reply = Vec::new();
            match event {
                Event::Negotiate(verb, option) => {
                    n.negotiate(verb, option, &mut reply);
                }
                Event::Subnegotiation(option, data) => {
                    assert!(data.len() <= MAX_SUB, "a subnegotiation past its limit");
                    if let Ok(oobs) = n.subnegotiation(option, &data, &mut reply) {
                        to_game += oobs.iter().map(|o| o.name.len()).sum::<usize>();
                    }
                }
                Event::Data(data) => {
                    let before = lines.len();
                    assembler.push(&data, n.charset(), &mut lines);
                    for _ in before..lines.len() {
                        n.answered(&mut reply);
                    }
                    if data.first().is_some_and(|b| b % 8 == 0) {
                        n.secret(&mut reply);
                    }
                    let _ = n.oob(&vitals, &mut Vec::new());
                }
                Event::Overlong(_) | Event::Command(_) => {}
            }
            // The MSSP table is the one long answer.
            answered += reply.len().min(64);
        }
        at = cut;
    }
    for line in &lines {
        if let Line::Text(text) = line {
            // At most MAX_LINE bytes in, each at worst one U+FFFD out.
            assert!(text.chars().count() <= MAX_LINE, "a line past its limit");
            assert!(
                !text.contains(['\r', '\n', '\0']),
                "a line end inside a line"
            );
        }
    }
    let info = n.take_changed().unwrap_or_default();
    assert!(info.client.len() <= MAX_NAME && info.terminal.len() <= MAX_NAME);
    assert!(
        answered <= 8 * stream.len() + 64,
        "{answered} bytes answered to {}",
        stream.len()
    );
    // A byte that is not UTF-8 becomes U+FFFD, three bytes: at most three
    // bytes of names to the game for each byte in (found by the fuzzer).
    assert!(to_game <= 3 * stream.len(), "more OOB than input");
}
