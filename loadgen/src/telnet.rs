//! Telnet for a client that wants nothing but text, sans IO.
//!
//! [`Decoder`] strips IAC sequences from what the game sends and answers every
//! option request with a refusal (DO → WONT, WILL → DONT), which RFC 854 allows
//! and which can never loop. The one exception, when asked for, is MCCP2:
//! WILL 86 is accepted, and the decoder stops where the game's compressed
//! stream begins so the caller can inflate the rest. [`Lines`] cuts the text
//! into lines at `\n`, drops the `\r` of telnet's `\r\n`, and bounds a line's
//! length. Both keep an incomplete sequence or line across calls, so any split
//! of the input gives the same result.
//!
//! [`Decoder::everything`] is the other extreme, a client that agrees to every
//! option a MUD offers, to measure what negotiation costs the game: it takes
//! each WILL with DO and each DO with WILL (once: an option already on is not
//! answered again, so it cannot loop), answers TTYPE with an MTTS cycle
//! (256 colours, truecolour, UTF-8), reports a window with NAWS, accepts
//! UTF-8 when CHARSET asks, and greets GMCP with Core.Hello.

pub const IAC: u8 = 255;
pub const DONT: u8 = 254;
pub const DO: u8 = 253;
pub const WONT: u8 = 252;
pub const WILL: u8 = 251;
pub const SB: u8 = 250;
pub const SE: u8 = 240;
/// MCCP version 2: after `IAC SB 86 IAC SE` the game's output is one zlib stream.
pub const MCCP2: u8 = 86;
pub const TTYPE: u8 = 24;
pub const NAWS: u8 = 31;
pub const CHARSET: u8 = 42;
pub const GMCP: u8 = 201;
/// TTYPE's and CHARSET's first subcommand byte: SEND and REQUEST.
const SEND_OR_REQUEST: u8 = 1;
/// What a client of [`Decoder::everything`] says it is, in TTYPE's order:
/// MTTS 271 is ANSI, VT100, UTF-8, 256 colours and truecolour.
const TTYPES: [&str; 3] = ["EV-LOADGEN", "XTERM-256COLOR", "MTTS 271"];

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

/// How far [`Decoder::feed`] read.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// All of the input was telnet.
    All,
    /// `input[..n]` was telnet and ended with the game's `IAC SB 86 IAC SE`:
    /// from `input[n]` on the game sends a zlib stream, left unread.
    CompressedFrom(usize),
}

#[derive(Debug)]
pub struct Decoder {
    state: State,
    sub_len: usize,
    /// The first byte of the current subnegotiation: its option.
    sub_option: u8,
    /// Its second: TTYPE's SEND, CHARSET's REQUEST.
    sub_command: u8,
    accept_mccp2: bool,
    /// Agree to everything ([`Decoder::everything`]).
    everything: bool,
    /// Options on, each side, once agreed to (everything only).
    on_us: [bool; 256],
    on_him: [bool; 256],
    /// TTYPE answers given in this cycle.
    ttypes_sent: usize,
    /// We answered the game's WILL 86 with DO, and it has not said WONT since.
    mccp2_agreed: bool,
}

impl Decoder {
    /// A decoder that refuses every option, or all but MCCP2.
    pub fn new(accept_mccp2: bool) -> Decoder {
        Decoder {
            state: State::Text,
            sub_len: 0,
            sub_option: 0,
            sub_command: 0,
            accept_mccp2,
            everything: false,
            on_us: [false; 256],
            on_him: [false; 256],
            ttypes_sent: 0,
            mccp2_agreed: false,
        }
    }

    /// A decoder that agrees to every option (see the module's docs).
    pub fn everything() -> Decoder {
        Decoder {
            everything: true,
            ..Decoder::new(true)
        }
    }

    /// Appends the text in `input` to `text` and the answers owed to the game
    /// to `replies`, stopping where compression begins.
    pub fn feed(&mut self, input: &[u8], text: &mut Vec<u8>, replies: &mut Vec<u8>) -> Fed {
        for (i, &b) in input.iter().enumerate() {
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
                    self.answer(verb, option, replies);
                    State::Text
                }
                (State::Sub, IAC) => State::SubIac,
                (State::Sub, b) => {
                    match self.sub_len {
                        0 => {
                            self.sub_option = b;
                            self.sub_command = 0;
                        }
                        1 => self.sub_command = b,
                        _ => {}
                    }
                    self.sub_len += 1;
                    if self.sub_len > MAX_SUBNEG {
                        State::Text
                    } else {
                        State::Sub
                    }
                }
                (State::SubIac, SE) => {
                    self.state = State::Text;
                    // Only the bare `SB 86 IAC SE` starts compression, and only
                    // once we agreed: anything else is a subnegotiation to drop.
                    if self.mccp2_agreed && self.sub_option == MCCP2 && self.sub_len == 1 {
                        return Fed::CompressedFrom(i + 1);
                    }
                    if self.everything {
                        self.subnegotiated(replies);
                    }
                    State::Text
                }
                // IAC IAC inside SB is an escaped 255; anything else is malformed
                // and stays inside the subnegotiation.
                (State::SubIac, _) => State::Sub,
            };
        }
        Fed::All
    }

    fn answer(&mut self, verb: u8, option: u8, replies: &mut Vec<u8>) {
        if self.everything && option != MCCP2 {
            return self.agree(verb, option, replies);
        }
        match verb {
            // A game that ended its stream asks again with WILL to restart it
            // and waits for DO, so every WILL 86 is answered. It cannot loop: a
            // game does not answer DO for an option it already has on.
            WILL if option == MCCP2 && self.accept_mccp2 => {
                self.mccp2_agreed = true;
                replies.extend_from_slice(&[IAC, DO, option]);
            }
            WILL => replies.extend_from_slice(&[IAC, DONT, option]),
            DO => replies.extend_from_slice(&[IAC, WONT, option]),
            // The game turned MCCP2 off; telnet wants the change acknowledged.
            WONT if option == MCCP2 && self.mccp2_agreed => {
                self.mccp2_agreed = false;
                replies.extend_from_slice(&[IAC, DONT, option]);
            }
            // WONT/DONT for anything else: we never enabled it, nothing to
            // acknowledge.
            _ => {}
        }
    }
}

impl Decoder {
    /// Everything's answer to a request: yes, once.
    fn agree(&mut self, verb: u8, option: u8, replies: &mut Vec<u8>) {
        let at = usize::from(option);
        match verb {
            WILL if !self.on_him[at] => {
                self.on_him[at] = true;
                replies.extend_from_slice(&[IAC, DO, option]);
                if option == GMCP {
                    sub(
                        GMCP,
                        br#"Core.Hello {"client":"ev-loadgen","version":"1"}"#,
                        replies,
                    );
                }
            }
            DO if !self.on_us[at] => {
                self.on_us[at] = true;
                replies.extend_from_slice(&[IAC, WILL, option]);
                if option == NAWS {
                    sub(NAWS, &[0, 80, 0, 24], replies);
                }
                if option == TTYPE {
                    self.ttypes_sent = 0;
                }
            }
            WONT if self.on_him[at] => {
                self.on_him[at] = false;
                replies.extend_from_slice(&[IAC, DONT, option]);
            }
            DONT if self.on_us[at] => {
                self.on_us[at] = false;
                replies.extend_from_slice(&[IAC, WONT, option]);
            }
            _ => {}
        }
    }

    /// Everything's answer to TTYPE's SEND (the next name of the cycle,
    /// the last again once done) and CHARSET's REQUEST (UTF-8).
    fn subnegotiated(&mut self, replies: &mut Vec<u8>) {
        match (self.sub_option, self.sub_command) {
            (TTYPE, SEND_OR_REQUEST) => {
                let name = TTYPES[self.ttypes_sent.min(TTYPES.len() - 1)];
                self.ttypes_sent += 1;
                sub(TTYPE, &[&[0][..], name.as_bytes()].concat(), replies);
            }
            (CHARSET, SEND_OR_REQUEST) => {
                sub(CHARSET, &[&[2][..], b"UTF-8"].concat(), replies);
            }
            _ => {}
        }
    }
}

/// `IAC SB option data IAC SE`, IAC in data doubled.
fn sub(option: u8, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[IAC, SB, option]);
    for &b in data {
        out.push(b);
        if b == IAC {
            out.push(IAC);
        }
    }
    out.extend_from_slice(&[IAC, SE]);
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
        assert_eq!(
            Decoder::new(false).feed(input, &mut text, &mut replies),
            Fed::All
        );
        (text, replies)
    }

    /// What a decoder made of `pieces` fed one after the other: text, replies,
    /// and the bytes from where compression began (`None`: it never did).
    fn decode_pieces(mccp2: bool, pieces: &[&[u8]]) -> (Vec<u8>, Vec<u8>, Option<Vec<u8>>) {
        let mut decoder = Decoder::new(mccp2);
        let (mut text, mut replies) = (Vec::new(), Vec::new());
        let mut compressed: Option<Vec<u8>> = None;
        for piece in pieces {
            if let Some(rest) = &mut compressed {
                rest.extend_from_slice(piece);
            } else if let Fed::CompressedFrom(n) = decoder.feed(piece, &mut text, &mut replies) {
                compressed = Some(piece[n..].to_vec());
            }
        }
        (text, replies, compressed)
    }

    const SAMPLE: &[u8] = &[
        b'h', b'i', IAC, WILL, 1, IAC, DO, 24, b' ', IAC, IAC, IAC, SB, 24, 1, IAC, IAC, 2, IAC,
        SE, b'x', IAC, 249, IAC, DONT, 3, IAC, WONT, 5, b'\r', b'\n',
    ];

    /// MCCP2 offered, a stray SB 86 before it was agreed, then the real start.
    const MCCP2_SAMPLE: &[u8] = &[
        b'a', IAC, SB, MCCP2, IAC, SE, b'b', IAC, WILL, MCCP2, IAC, SB, MCCP2, 0, IAC, SE, b'c',
        IAC, DO, 24, IAC, SB, MCCP2, IAC, SE, 0x78, 0x9c, IAC, IAC,
    ];

    #[test]
    fn strips_sequences_and_refuses_options() {
        let (text, replies) = decode(SAMPLE);
        assert_eq!(text, [b'h', b'i', b' ', IAC, b'x', b'\r', b'\n']);
        assert_eq!(replies, [IAC, DONT, 1, IAC, WONT, 24]);
    }

    #[test]
    fn every_split_gives_the_same_result() {
        for (mccp2, sample) in [(false, SAMPLE), (false, MCCP2_SAMPLE), (true, MCCP2_SAMPLE)] {
            let whole = decode_pieces(mccp2, &[sample]);
            for cut in 0..=sample.len() {
                let split = decode_pieces(mccp2, &[&sample[..cut], &sample[cut..]]);
                assert_eq!(split, whole, "mccp2 {mccp2}, split at {cut}");
            }
        }
    }

    #[test]
    fn mccp2_is_refused_unless_asked_for() {
        let (text, replies, compressed) = decode_pieces(false, &[MCCP2_SAMPLE]);
        assert_eq!(replies, [IAC, DONT, MCCP2, IAC, WONT, 24]);
        assert_eq!(compressed, None);
        // Refused, the SB 86 is one more subnegotiation to strip.
        assert_eq!(text, [b'a', b'b', b'c', 0x78, 0x9c, IAC]);
    }

    #[test]
    fn accepted_mccp2_stops_after_the_bare_sb_86() {
        let (text, replies, compressed) = decode_pieces(true, &[MCCP2_SAMPLE]);
        assert_eq!(replies, [IAC, DO, MCCP2, IAC, WONT, 24]);
        assert_eq!(text, b"abc");
        assert_eq!(compressed.as_deref(), Some(&[0x78, 0x9c, IAC, IAC][..]));
        // The offset is into the input of the call that saw the SE.
        let mut decoder = Decoder::new(true);
        let (mut text, mut replies) = (Vec::new(), Vec::new());
        let start = [IAC, WILL, MCCP2, IAC, SB, MCCP2, IAC, SE, 1, 2];
        let fed = decoder.feed(&start, &mut text, &mut replies);
        assert_eq!(fed, Fed::CompressedFrom(8));
    }

    #[test]
    fn wont_86_turns_mccp2_off() {
        let input = [
            IAC, WILL, MCCP2, IAC, WONT, MCCP2, IAC, SB, MCCP2, IAC, SE, b'z',
        ];
        let (text, replies, compressed) = decode_pieces(true, &[&input]);
        assert_eq!(replies, [IAC, DO, MCCP2, IAC, DONT, MCCP2]);
        assert_eq!((text.as_slice(), compressed), (&b"z"[..], None));
    }

    #[test]
    fn everything_agrees_once_and_answers_ttype_naws_charset_and_gmcp() {
        let offers = [
            IAC, WILL, MCCP2, IAC, WILL, 3, IAC, DO, TTYPE, IAC, DO, NAWS, IAC, WILL, CHARSET, IAC,
            WILL, GMCP, IAC, DO, TTYPE, IAC, WILL, 3,
        ];
        let mut d = Decoder::everything();
        let (mut text, mut replies) = (Vec::new(), Vec::new());
        assert_eq!(d.feed(&offers, &mut text, &mut replies), Fed::All);
        let mut want = vec![
            IAC, DO, MCCP2, IAC, DO, 3, IAC, WILL, TTYPE, IAC, WILL, NAWS,
        ];
        want.extend_from_slice(&[IAC, SB, NAWS, 0, 80, 0, 24, IAC, SE]);
        want.extend_from_slice(&[IAC, DO, CHARSET, IAC, DO, GMCP, IAC, SB, GMCP]);
        want.extend_from_slice(br#"Core.Hello {"client":"ev-loadgen","version":"1"}"#);
        want.extend_from_slice(&[IAC, SE]);
        assert_eq!(
            replies, want,
            "and the repeated DO TTYPE, WILL SGA: nothing"
        );

        replies.clear();
        let send = [IAC, SB, TTYPE, 1, IAC, SE];
        for _ in 0..4 {
            assert_eq!(d.feed(&send, &mut text, &mut replies), Fed::All);
        }
        let request = [&[IAC, SB, CHARSET, 1][..], b";UTF-8;ISO-8859-1", &[IAC, SE]].concat();
        assert_eq!(d.feed(&request, &mut text, &mut replies), Fed::All);
        let mut want = Vec::new();
        for name in ["EV-LOADGEN", "XTERM-256COLOR", "MTTS 271", "MTTS 271"] {
            want.extend_from_slice(&[IAC, SB, TTYPE, 0]);
            want.extend_from_slice(name.as_bytes());
            want.extend_from_slice(&[IAC, SE]);
        }
        want.extend_from_slice(&[IAC, SB, CHARSET, 2]);
        want.extend_from_slice(b"UTF-8");
        want.extend_from_slice(&[IAC, SE]);
        assert_eq!(replies, want);
        assert!(text.is_empty());
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
