//! Telnet for a client that wants nothing but text, sans IO.
//!
//! [`Decoder`] strips IAC sequences from what the game sends and answers every
//! option request with a refusal (DO → WONT, WILL → DONT), which RFC 854 allows
//! and which can never loop. [`Lines`] cuts the text into lines at `\n`, drops
//! the `\r` of telnet's `\r\n`, and bounds a line's length. Both keep an
//! incomplete sequence or line across calls, so any split of the input gives
//! the same result.

pub const IAC: u8 = 255;
pub const DONT: u8 = 254;
pub const DO: u8 = 253;
pub const WONT: u8 = 252;
pub const WILL: u8 = 251;
pub const SB: u8 = 250;
pub const SE: u8 = 240;

/// A subnegotiation longer than this is taken to be garbage: the decoder goes
/// back to text rather than swallowing everything the game sends after it.
const MAX_SUBNEG: usize = 64 * 1024;

/// Longest line kept; the rest of a longer line becomes further lines.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Text,
    Iac,
    /// After IAC WILL/WONT/DO/DONT, waiting for the option byte.
    Verb(u8),
    Sub,
    SubIac,
}

#[derive(Debug, Default)]
pub struct Decoder {
    state: State,
    sub_len: usize,
}

impl Decoder {
    /// Appends the text in `input` to `text` and the answers owed to the game
    /// (refusals) to `replies`.
    pub fn feed(&mut self, input: &[u8], text: &mut Vec<u8>, replies: &mut Vec<u8>) {
        for &b in input {
            self.state = match (self.state, b) {
                (State::Text, IAC) => State::Iac,
                (State::Text, b) => {
                    text.push(b);
                    State::Text
                }
                (State::Iac, IAC) => {
                    text.push(IAC);
                    State::Text
                }
                (State::Iac, WILL | WONT | DO | DONT) => State::Verb(b),
                (State::Iac, SB) => {
                    self.sub_len = 0;
                    State::Sub
                }
                // NOP, GA, EOR, AYT...: nothing a load generator acts on.
                (State::Iac, _) => State::Text,
                (State::Verb(verb), option) => {
                    match verb {
                        DO => replies.extend_from_slice(&[IAC, WONT, option]),
                        WILL => replies.extend_from_slice(&[IAC, DONT, option]),
                        // WONT/DONT: we never enabled anything, nothing to acknowledge.
                        _ => {}
                    }
                    State::Text
                }
                (State::Sub, IAC) => State::SubIac,
                (State::Sub, _) => {
                    self.sub_len += 1;
                    if self.sub_len > MAX_SUBNEG {
                        State::Text
                    } else {
                        State::Sub
                    }
                }
                (State::SubIac, SE) => State::Text,
                // IAC IAC inside SB is an escaped 255; anything else is malformed
                // and stays inside the subnegotiation.
                (State::SubIac, _) => State::Sub,
            };
        }
    }
}

/// Cuts text into lines. `\r` before `\n` is dropped, and so is a `\0` after
/// `\r` (telnet's bare carriage return).
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Appends every complete line in `text` to `out`, keeping the rest.
    pub fn push(&mut self, text: &[u8], out: &mut impl Extend<String>) {
        for &b in text {
            match b {
                b'\n' => out.extend([self.take()]),
                0 if self.partial.last() == Some(&b'\r') => {}
                _ => {
                    self.partial.push(b);
                    if self.partial.len() >= MAX_LINE {
                        out.extend([self.take()]);
                    }
                }
            }
        }
    }

    fn take(&mut self) -> String {
        let mut line = std::mem::take(&mut self.partial);
        while line.last() == Some(&b'\r') {
            line.pop();
        }
        // A lone \r inside a line is a return to column 0: not text.
        line.retain(|&b| b != b'\r');
        String::from_utf8_lossy(&line).into_owned()
    }
}

/// Encodes one line to send: IAC doubled, `\r\n` at the end.
pub fn encode_line(line: &str, out: &mut Vec<u8>) {
    for &b in line.as_bytes() {
        if b == IAC {
            out.extend_from_slice(&[IAC, IAC]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut text, mut replies) = (Vec::new(), Vec::new());
        Decoder::default().feed(input, &mut text, &mut replies);
        (text, replies)
    }

    const SAMPLE: &[u8] = &[
        b'h', b'i', IAC, WILL, 1, IAC, DO, 24, b' ', IAC, IAC, IAC, SB, 24, 1, IAC, IAC, 2, IAC,
        SE, b'x', IAC, 249, IAC, DONT, 3, IAC, WONT, 5, b'\r', b'\n',
    ];

    #[test]
    fn strips_sequences_and_refuses_options() {
        let (text, replies) = decode(SAMPLE);
        assert_eq!(text, [b'h', b'i', b' ', IAC, b'x', b'\r', b'\n']);
        assert_eq!(replies, [IAC, DONT, 1, IAC, WONT, 24]);
    }

    #[test]
    fn every_split_gives_the_same_result() {
        let whole = decode(SAMPLE);
        for cut in 0..=SAMPLE.len() {
            let mut decoder = Decoder::default();
            let (mut text, mut replies) = (Vec::new(), Vec::new());
            decoder.feed(&SAMPLE[..cut], &mut text, &mut replies);
            decoder.feed(&SAMPLE[cut..], &mut text, &mut replies);
            assert_eq!((text, replies), whole, "split at {cut}");
        }
    }

    #[test]
    fn endless_subnegotiation_gives_the_text_back() {
        let mut input = vec![IAC, SB, 24];
        input.extend(std::iter::repeat_n(b'a', MAX_SUBNEG + 1));
        input.extend_from_slice(b"ok");
        let (text, _) = decode(&input);
        assert!(text.ends_with(b"ok"));
    }

    #[test]
    fn lines_drop_cr_and_keep_partial_lines() {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        lines.push(b"one\r\ntw", &mut out);
        assert_eq!(out, ["one"]);
        lines.push(b"o\r\n\r\nthree\r\0x\n", &mut out);
        assert_eq!(out, ["one", "two", "", "threex"]);
        lines.push(b"\xff\xfe bad utf8\n", &mut out);
        assert_eq!(out[4], "\u{fffd}\u{fffd} bad utf8");
    }

    #[test]
    fn overlong_lines_are_cut() {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        lines.push(&vec![b'a'; MAX_LINE + 10], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), MAX_LINE);
        lines.push(b"\n", &mut out);
        assert_eq!(out[1].len(), 10);
    }

    #[test]
    fn encoding_doubles_iac() {
        let mut out = Vec::new();
        encode_line("a\u{ff}", &mut out);
        // U+00FF is 0xC3 0xBF in UTF-8: no IAC byte appears.
        assert_eq!(out, [b'a', 0xC3, 0xBF, b'\r', b'\n']);
    }
}
