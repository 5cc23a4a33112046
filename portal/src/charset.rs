//! The character set a client's bytes are in, both ways.
//!
//! The game speaks Unicode; a telnet client speaks bytes. What they mean is
//! agreed with CHARSET (RFC 2066) or told by MTTS (see `negotiation`), and
//! until then taken as UTF-8, what every modern terminal speaks and what the
//! portal sent before any negotiation existed. A client that says it cannot
//! take UTF-8 never gets a UTF-8 byte: a Latin-1 client gets Latin-1, and
//! one that agreed on nothing we speak gets ASCII with `?` for every
//! character it cannot show. A wrong guess shows as `?`, never as mojibake.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charset {
    #[default]
    Utf8,
    /// ISO-8859-1: one byte per character up to U+00FF.
    Latin1,
    Ascii,
}

/// What stands for a character the client's set cannot show.
const REPLACEMENT: u8 = b'?';

impl Charset {
    /// The IANA name, as offered in CHARSET and given to the server.
    pub fn name(self) -> &'static str {
        match self {
            Charset::Utf8 => "UTF-8",
            Charset::Latin1 => "ISO-8859-1",
            Charset::Ascii => "US-ASCII",
        }
    }

    /// The set a client names, under its common aliases; None for one we
    /// do not speak.
    pub fn from_name(name: &str) -> Option<Charset> {
        let name = name.trim().to_ascii_uppercase();
        match name.as_str() {
            "UTF-8" | "UTF8" => Some(Charset::Utf8),
            "ISO-8859-1" | "ISO8859-1" | "ISO_8859-1" | "LATIN1" | "LATIN-1" | "L1" | "CP819" => {
                Some(Charset::Latin1)
            }
            "US-ASCII" | "ASCII" | "ANSI_X3.4-1968" => Some(Charset::Ascii),
            _ => None,
        }
    }

    /// Appends `c` in this set, or [`REPLACEMENT`] if it has no such character.
    pub fn encode_char(self, c: char, out: &mut Vec<u8>) {
        match self {
            Charset::Utf8 => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            Charset::Latin1 => out.push(u8::try_from(u32::from(c)).unwrap_or(REPLACEMENT)),
            Charset::Ascii if c.is_ascii() => out.push(c as u8),
            Charset::Ascii => out.push(REPLACEMENT),
        }
    }

    /// The text of a line the client typed. Invalid bytes become U+FFFD.
    pub fn decode(self, bytes: &[u8]) -> Cow<'_, str> {
        match self {
            Charset::Latin1 => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
            // An ASCII client's high bytes are nothing we can name.
            Charset::Utf8 | Charset::Ascii => String::from_utf8_lossy(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(charset: Charset, text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for c in text.chars() {
            charset.encode_char(c, &mut out);
        }
        out
    }

    #[test]
    fn each_set_shows_what_it_can_and_replaces_the_rest() {
        let text = "café – ÿ 字";
        assert_eq!(encode(Charset::Utf8, text), text.as_bytes());
        assert_eq!(encode(Charset::Latin1, text), b"caf\xe9 ? \xff ?");
        assert_eq!(encode(Charset::Ascii, text), b"caf? ? ? ?");
    }

    #[test]
    fn names_and_aliases() {
        for (name, set) in [
            ("utf-8", Charset::Utf8),
            ("UTF8", Charset::Utf8),
            (" latin1 ", Charset::Latin1),
            ("ISO-8859-1", Charset::Latin1),
            ("US-ASCII", Charset::Ascii),
        ] {
            assert_eq!(Charset::from_name(name), Some(set), "{name}");
            assert_eq!(Charset::from_name(set.name()), Some(set));
        }
        assert_eq!(Charset::from_name("KOI8-R"), None);
    }

    #[test]
    fn decoding() {
        assert_eq!(Charset::Latin1.decode(b"caf\xe9"), "café");
        assert_eq!(Charset::Utf8.decode("café".as_bytes()), "café");
        assert_eq!(Charset::Ascii.decode(b"caf\xe9"), "caf\u{fffd}");
    }
}
