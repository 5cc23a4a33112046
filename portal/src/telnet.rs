//! Telnet, sans IO: bytes in, events out.
//!
//! [`Parser`] separates IAC sequences from text and keeps an incomplete
//! sequence across calls, so any split of the input gives the same events.
//! [`LineAssembler`] turns the text into lines with a hard length limit: a
//! line over the limit is dropped as it arrives and reported once, so a client
//! can never make the portal buffer without bound.
//!
//! What the options mean is [`crate::options`] (whether each is on) and
//! [`crate::negotiation`] (what follows); this module only frames them.

use crate::charset::Charset;

pub const IAC: u8 = 255;
pub const DONT: u8 = 254;
pub const DO: u8 = 253;
pub const WONT: u8 = 252;
pub const WILL: u8 = 251;
pub const SB: u8 = 250;
pub const SE: u8 = 240;
/// No operation: the idle keepalive.
pub const NOP: u8 = 241;
/// Go ahead: a prompt is complete (unless SGA was agreed).
pub const GA: u8 = 249;
/// End of record (RFC 885): a prompt is complete, once EOR was agreed.
pub const EOR: u8 = 239;

/// The least a [`Parser`] keeps of a subnegotiation: every option's
/// messages but out-of-band data's are far shorter.
pub const MIN_SUBNEG: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Plain text bytes (IAC IAC already unescaped).
    Data(Vec<u8>),
    /// WILL/WONT/DO/DONT and the option.
    Negotiate(u8, u8),
    /// IAC SB option ... IAC SE
    Subnegotiation(u8, Vec<u8>),
    /// A subnegotiation longer than the parser's limit: discarded as it
    /// came, so it was never kept whole.
    Overlong(u8),
    /// Any other IAC command (NOP, GA, AYT, ...).
    Command(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Data,
    Iac,
    Negotiate(u8),
    SubOption,
    Sub(u8),
    SubIac(u8),
}

#[derive(Debug)]
pub struct Parser {
    state: State,
    sub: Vec<u8>,
    /// Longest subnegotiation payload kept.
    max_sub: usize,
    /// The current subnegotiation went past `max_sub`.
    overlong: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new(MIN_SUBNEG)
    }
}

impl Parser {
    /// A parser that discards a subnegotiation longer than `max_sub` bytes
    /// (at least [`MIN_SUBNEG`]), reporting it as [`Event::Overlong`].
    pub fn new(max_sub: usize) -> Parser {
        Parser {
            state: State::Data,
            sub: Vec::new(),
            max_sub: max_sub.max(MIN_SUBNEG),
            overlong: false,
        }
    }

    fn keep(&mut self, b: u8) {
        if self.overlong {
            return;
        }
        if self.sub.len() < self.max_sub {
            self.sub.push(b);
        } else {
            self.overlong = true;
            self.sub = Vec::new();
        }
    }

    /// Parses `bytes`, appending events to `out`. Text runs are merged.
    pub fn receive(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        let mut text = Vec::new();
        for &b in bytes {
            self.state = match (self.state, b) {
                (State::Data, IAC) => State::Iac,
                (State::Data, b) => {
                    text.push(b);
                    State::Data
                }
                (State::Iac, IAC) => {
                    text.push(IAC);
                    State::Data
                }
                (State::Iac, WILL | WONT | DO | DONT) => State::Negotiate(b),
                (State::Iac, SB) => State::SubOption,
                (State::Iac, cmd) => {
                    flush(&mut text, out);
                    out.push(Event::Command(cmd));
                    State::Data
                }
                (State::Negotiate(verb), option) => {
                    flush(&mut text, out);
                    out.push(Event::Negotiate(verb, option));
                    State::Data
                }
                (State::SubOption, option) => {
                    self.sub.clear();
                    self.overlong = false;
                    State::Sub(option)
                }
                (State::Sub(option), IAC) => State::SubIac(option),
                (State::Sub(option), b) => {
                    self.keep(b);
                    State::Sub(option)
                }
                (State::SubIac(option), SE) => {
                    flush(&mut text, out);
                    if std::mem::take(&mut self.overlong) {
                        out.push(Event::Overlong(option));
                    } else {
                        out.push(Event::Subnegotiation(option, std::mem::take(&mut self.sub)));
                    }
                    State::Data
                }
                (State::SubIac(option), b) => {
                    // IAC IAC inside SB is a literal 255; anything else is a
                    // client error we tolerate by keeping the byte.
                    self.keep(b);
                    State::Sub(option)
                }
            };
        }
        flush(&mut text, out);
    }
}

fn flush(text: &mut Vec<u8>, out: &mut Vec<Event>) {
    if text.is_empty() {
        return;
    }
    if let Some(Event::Data(prev)) = out.last_mut() {
        prev.append(text);
    } else {
        out.push(Event::Data(std::mem::take(text)));
    }
}

/// Puts outgoing text in the client's character set, escapes IAC and turns
/// `\n` into telnet's `\r\n`.
pub fn encode_text(text: &str, charset: Charset, out: &mut Vec<u8>) {
    if charset == Charset::Utf8 {
        // The common case, byte by byte: UTF-8 never holds a 255 byte, but
        // the escape costs nothing and keeps the rule in one place.
        for &b in text.as_bytes() {
            match b {
                b'\n' => out.extend_from_slice(b"\r\n"),
                b'\r' => {}
                IAC => out.extend_from_slice(&[IAC, IAC]),
                b => out.push(b),
            }
        }
        return;
    }
    for c in text.chars() {
        match c {
            '\n' => out.extend_from_slice(b"\r\n"),
            '\r' => {}
            c => {
                let at = out.len();
                charset.encode_char(c, out);
                // Latin-1's ÿ is byte 255.
                if out[at..] == [IAC] {
                    out.push(IAC);
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(String),
    /// A line went over the limit and was dropped.
    TooLong,
}

/// Splits text into lines and refuses lines over `max` bytes.
///
/// Clients end lines every way there is: CR LF (telnet's own), CR NUL
/// (telnet's bare carriage return), a bare LF (Unix clients), a bare CR
/// (character-mode clients such as telix send `text\r`). Each ends a line,
/// and the LF or NUL after a CR belongs to it: CR LF is one line end.
#[derive(Debug)]
pub struct LineAssembler {
    max: usize,
    buf: Vec<u8>,
    overflowed: bool,
    /// The last byte ended a line with CR: an LF or NUL now is part of it.
    after_cr: bool,
}

impl LineAssembler {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            buf: Vec::new(),
            overflowed: false,
            after_cr: false,
        }
    }

    /// Adds `bytes` in the client's `charset`, appending every line they end.
    pub fn push(&mut self, bytes: &[u8], charset: Charset, out: &mut impl Extend<Line>) {
        for &b in bytes {
            let after_cr = std::mem::take(&mut self.after_cr);
            match b {
                b'\n' | 0 if after_cr => {}
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    if self.overflowed {
                        out.extend([Line::TooLong]);
                    } else {
                        let text = charset.decode(&self.buf);
                        let clean = ev::text::printable(&text);
                        out.extend([Line::Text(clean)]);
                    }
                    self.buf.clear();
                    self.overflowed = false;
                }
                // A NUL is no text (telnet pads with it).
                0 => {}
                _ if self.overflowed => {}
                b => {
                    if self.buf.len() >= self.max {
                        self.overflowed = true;
                        self.buf = Vec::new();
                    } else {
                        self.buf.push(b);
                    }
                }
            }
        }
        if self.buf.capacity() > 4 * 1024 && self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.receive(c, &mut out);
        }
        out
    }

    fn merged(events: Vec<Event>) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for e in events {
            match (out.last_mut(), e) {
                (Some(Event::Data(prev)), Event::Data(d)) => prev.extend(d),
                (_, e) => out.push(e),
            }
        }
        out
    }

    const SAMPLE: &[u8] =
        b"hel\xff\xfb\x18lo\xff\xff!\xff\xfa\x1f\x00\x50\xff\xff\x00\x18\xff\xf0\xff\xf1end\r\n";

    #[test]
    fn iac_sequences_never_reach_text() {
        let events = parse_all(&[SAMPLE]);
        assert_eq!(
            events,
            vec![
                Event::Data(b"hel".to_vec()),
                Event::Negotiate(WILL, 0x18),
                Event::Data(b"lo\xff!".to_vec()),
                Event::Subnegotiation(0x1f, vec![0, 0x50, 0xff, 0, 0x18]),
                Event::Command(0xf1),
                Event::Data(b"end\r\n".to_vec()),
            ]
        );
    }

    #[test]
    fn every_split_gives_the_same_events() {
        let whole = merged(parse_all(&[SAMPLE]));
        for i in 0..SAMPLE.len() {
            for j in i..SAMPLE.len() {
                let got = merged(parse_all(&[&SAMPLE[..i], &SAMPLE[i..j], &SAMPLE[j..]]));
                assert_eq!(got, whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn a_subnegotiation_over_the_limit_is_discarded_and_the_next_one_works() {
        let mut p = Parser::new(2000);
        let mut input = vec![IAC, SB, 201];
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend([IAC, SE, IAC, SB, 201]);
        input.extend(std::iter::repeat_n(b'y', 2000));
        input.extend([IAC, SE]);
        let mut out = Vec::new();
        for chunk in input.chunks(333) {
            p.receive(chunk, &mut out);
            assert!(p.sub.len() <= 2000, "kept {} bytes", p.sub.len());
        }
        match &out[..] {
            [Event::Overlong(201), Event::Subnegotiation(201, data)] => {
                assert_eq!(data.len(), 2000)
            }
            other => panic!("{other:?}"),
        }
        // The default limit is MIN_SUBNEG, and no limit is lower.
        let mut small = Parser::new(1);
        let mut out = Vec::new();
        let mut input = vec![IAC, SB, 24];
        input.extend(std::iter::repeat_n(b'x', MIN_SUBNEG));
        input.extend([IAC, SE]);
        small.receive(&input, &mut out);
        assert!(matches!(&out[..], [Event::Subnegotiation(24, d)] if d.len() == MIN_SUBNEG));
    }

    #[test]
    fn encode_escapes_iac_and_uses_crlf() {
        let mut out = Vec::new();
        encode_text("a\nb\u{ff}", Charset::Utf8, &mut out);
        assert_eq!(out, b"a\r\nb\xc3\xbf");
        let mut out = Vec::new();
        encode_text("x\r\ny", Charset::Utf8, &mut out);
        assert_eq!(out, b"x\r\ny");
    }

    #[test]
    fn encode_in_other_sets_never_sends_utf8() {
        let mut out = Vec::new();
        encode_text("é\u{ff}字\n", Charset::Latin1, &mut out);
        assert_eq!(out, b"\xe9\xff\xff?\r\n", "Latin-1's 255 is escaped");
        let mut out = Vec::new();
        encode_text("é\u{ff}字\n", Charset::Ascii, &mut out);
        assert_eq!(out, b"???\r\n");
    }

    fn lines_in(charset: Charset, max: usize, chunks: &[&[u8]]) -> Vec<Line> {
        let mut a = LineAssembler::new(max);
        let mut out = Vec::new();
        for c in chunks {
            a.push(c, charset, &mut out);
        }
        out
    }

    fn lines(max: usize, chunks: &[&[u8]]) -> Vec<Line> {
        lines_in(Charset::Utf8, max, chunks)
    }

    fn texts(v: &[&str]) -> Vec<Line> {
        v.iter().map(|t| Line::Text((*t).into())).collect()
    }

    #[test]
    fn lines_split_on_lf_and_crlf() {
        assert_eq!(
            lines(100, &[b"look\r\nsay h", b"i\n\r\n"]),
            texts(&["look", "say hi", ""])
        );
    }

    #[test]
    fn every_line_end_counts_once() {
        let input: &[u8] = b"a\r\nb\r\0c\nd\re\r\n\r\nf\n\ng\r";
        let want = texts(&["a", "b", "c", "d", "e", "", "f", "", "g"]);
        assert_eq!(lines(100, &[input]), want);
        // However the bytes are split: CR at the end of one read and LF at
        // the start of the next are still one line end.
        for i in 0..=input.len() {
            assert_eq!(
                lines(100, &[&input[..i], &input[i..]]),
                want,
                "split at {i}"
            );
        }
    }

    #[test]
    fn latin1_input_is_decoded_as_latin1() {
        assert_eq!(
            lines_in(Charset::Latin1, 100, &[b"caf\xe9\r\n"]),
            texts(&["café"])
        );
    }

    #[test]
    fn long_line_is_refused_and_the_next_one_works() {
        let long = vec![b'a'; 50];
        assert_eq!(
            lines(10, &[&long, &long, b"\nok\n"]),
            vec![Line::TooLong, Line::Text("ok".into())]
        );
    }

    #[test]
    fn line_of_exactly_max_is_accepted() {
        assert_eq!(lines(3, &[b"abc\n"]), vec![Line::Text("abc".into())]);
    }

    #[test]
    fn invalid_utf8_and_controls_are_cleaned() {
        assert_eq!(
            lines(100, &[b"a\xffb\x07c\n"]),
            vec![Line::Text("a\u{fffd}bc".into())]
        );
    }
}
