//! The game's grammar as options: command templates, reply patterns, tokens.
//!
//! A [`Template`] is a command with `{name}`, `{password}` and `{token}`
//! placeholders. A [`ReplyPattern`] is a reply with exactly one `{token}`
//! (other placeholders already filled in) and finds that token anywhere in a
//! line, so prompts, colour codes or a prefix around the reply do not matter.
//! A [`Token`] names one probe: which session sent it and its number.

use anyhow::{Context, bail};

/// Values for the placeholders of a template.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub token: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    pub fn new(text: &str) -> Template {
        Template(text.to_owned())
    }

    pub fn render(&self, vars: Vars<'_>) -> String {
        self.0
            .replace("{name}", vars.name)
            .replace("{password}", vars.password)
            .replace("{token}", vars.token)
    }

    pub fn has_token(&self) -> bool {
        self.0.contains("{token}")
    }
}

/// `prefix{token}suffix`, found anywhere in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPattern {
    prefix: String,
    suffix: String,
}

impl ReplyPattern {
    /// `text` must hold `{token}` exactly once; `{name}` is filled with `name`.
    pub fn new(text: &str, name: &str) -> anyhow::Result<ReplyPattern> {
        let text = text.replace("{name}", name);
        let Some((prefix, suffix)) = text.split_once("{token}") else {
            bail!("reply pattern {text:?} has no {{token}}");
        };
        if suffix.contains("{token}") {
            bail!("reply pattern {text:?} has {{token}} more than once");
        }
        Ok(ReplyPattern {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The token in `line`, if the line holds the pattern. A token is a
    /// non-empty run without whitespace; the first place that fits wins.
    pub fn extract<'a>(&self, line: &'a str) -> Option<&'a str> {
        let mut from = 0;
        while let Some(at) = line[from..].find(&self.prefix) {
            let begin = from + at;
            let rest = &line[begin + self.prefix.len()..];
            let end = if self.suffix.is_empty() {
                rest.find(char::is_whitespace).unwrap_or(rest.len())
            } else {
                rest.find(&self.suffix).unwrap_or(0)
            };
            let token = &rest[..end];
            if !token.is_empty() && !token.contains(char::is_whitespace) {
                return Some(token);
            }
            // Search again from one character after this occurrence.
            match line[begin..].chars().next() {
                Some(c) => from = begin + c.len_utf8(),
                None => break,
            }
        }
        None
    }
}

/// One probe: session `session` sent its `seq`-th probe. Written `t7x42`: only
/// ASCII letters and digits, so no game mangles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    pub session: u32,
    pub seq: u64,
}

impl Token {
    pub fn encode(&self) -> String {
        format!("t{}x{}", self.session, self.seq)
    }

    pub fn decode(text: &str) -> Option<Token> {
        let (session, seq) = text.strip_prefix('t')?.split_once('x')?;
        if !session.bytes().all(|b| b.is_ascii_digit()) || !seq.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Some(Token {
            session: session.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// Account names: `prefix` followed by the index. The digits style gives
/// `bench0`; the letters style (the default: ev's names are letters only)
/// writes the index in base 26 with a fixed width of four, `benchaaaa`,
/// `benchaaab`, ..., so the same index always gives the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NameStyle {
    Letters,
    Digits,
}

pub const LETTER_WIDTH: u32 = 4;

pub fn account_name(prefix: &str, index: u32, style: NameStyle) -> anyhow::Result<String> {
    match style {
        NameStyle::Digits => Ok(format!("{prefix}{index}")),
        NameStyle::Letters => {
            let limit = 26u32.pow(LETTER_WIDTH);
            if index >= limit {
                bail!("index {index} is over the {limit} names of the letters style");
            }
            let mut letters = [b'a'; LETTER_WIDTH as usize];
            let mut n = index;
            for slot in letters.iter_mut().rev() {
                *slot = b'a' + (n % 26) as u8;
                n /= 26;
            }
            let letters = std::str::from_utf8(&letters).context("ascii letters")?;
            Ok(format!("{prefix}{letters}"))
        }
    }
}

/// The number after `marker` in `text` (`dark for 12.5 ms` → 12.5).
pub fn number_after(text: &str, marker: &str) -> Option<f64> {
    if marker.is_empty() {
        return None;
    }
    let at = text.find(marker)? + marker.len();
    let rest = text[at..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_placeholders() {
        let t = Template::new("connect {name} {password}");
        let vars = Vars {
            name: "bob",
            password: "pw",
            token: "",
        };
        assert_eq!(t.render(vars), "connect bob pw");
        assert!(!t.has_token());
        assert!(Template::new("ping {token}").has_token());
    }

    #[test]
    fn reply_pattern_finds_token_anywhere() {
        let p = ReplyPattern::new("pong {token}", "").unwrap();
        assert_eq!(p.extract("pong t1x2"), Some("t1x2"));
        assert_eq!(p.extract("> pong t1x2 "), Some("t1x2"));
        assert_eq!(p.extract("pong"), None);
        assert_eq!(p.extract("pong "), None);
        assert_eq!(p.extract("ping t1x2"), None);
        assert_eq!(p.extract("pong  pong t3x4"), Some("t3x4"));
    }

    #[test]
    fn reply_pattern_with_suffix_and_name() {
        let p = ReplyPattern::new("{name} says, \"{token}\"", "Ann").unwrap();
        assert_eq!(p.extract("Ann says, \"t0x9\""), Some("t0x9"));
        assert_eq!(p.extract("Bob says, \"t0x9\""), None);
        let any = ReplyPattern::new("says, \"{token}\"", "").unwrap();
        assert_eq!(any.extract("Bob says, \"t0x9\""), Some("t0x9"));
        assert_eq!(any.extract("Bob says, \"two words\""), None);
        assert_eq!(any.extract("Bob says, \"\""), None);
        assert_eq!(any.extract("é says, \"unterminated"), None);
    }

    #[test]
    fn reply_pattern_needs_one_token() {
        assert!(ReplyPattern::new("pong", "").is_err());
        assert!(ReplyPattern::new("{token} {token}", "").is_err());
    }

    #[test]
    fn tokens_round_trip() {
        let t = Token {
            session: 12,
            seq: 345,
        };
        assert_eq!(t.encode(), "t12x345");
        assert_eq!(Token::decode("t12x345"), Some(t));
        for bad in [
            "",
            "t",
            "tx",
            "t1x",
            "tx1",
            "t1y2",
            "t-1x2",
            "t1x+2",
            "u1x2",
            "t99999999999x1",
        ] {
            assert_eq!(Token::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_in_both_styles() {
        assert_eq!(
            account_name("bench", 0, NameStyle::Digits).unwrap(),
            "bench0"
        );
        assert_eq!(
            account_name("bench", 0, NameStyle::Letters).unwrap(),
            "benchaaaa"
        );
        assert_eq!(
            account_name("bench", 27, NameStyle::Letters).unwrap(),
            "benchaabb"
        );
        assert_eq!(
            account_name("b", 26 * 26 * 26 * 26 - 1, NameStyle::Letters).unwrap(),
            "bzzzz"
        );
        assert!(account_name("b", 26 * 26 * 26 * 26, NameStyle::Letters).is_err());
    }

    #[test]
    fn numbers_after_a_marker() {
        assert_eq!(
            number_after("reloaded: dark for 12.5 ms", "dark for "),
            Some(12.5)
        );
        assert_eq!(number_after("dark for 7ms", "dark for"), Some(7.0));
        assert_eq!(number_after("dark for ? ms", "dark for "), None);
        assert_eq!(number_after("nothing", "dark for "), None);
        assert_eq!(number_after("dark for 3 ms", ""), None);
    }
}
