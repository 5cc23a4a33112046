//! GMCP (the Generic MUD Communication Protocol, telnet option 201), sans
//! IO. A message is `IAC SB GMCP`, a name ("Char.Vitals"), optionally a
//! space and JSON, `IAC SE`, all in UTF-8.
//!
//! The client's side of the Core package is the portal's own: `Core.Hello`
//! names the client (the session's `client`, which the server sees), and
//! `Core.Supports.Set`, `.Add` and `.Remove` say which modules it wants.
//! Once a client has said that, a game's message goes to it only in a module
//! it named ("Char 1" takes Char.Vitals and Char.Items.List; "Char.Vitals 1"
//! only the first) or in Core; a client that never said gets them all.
//! Every other message from the client is the game's.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::negotiation::MAX_NAME;
use crate::telnet::{IAC, SB, SE};

/// The most modules a client's Core.Supports can name; more are ignored.
pub const MAX_MODULES: usize = 128;

/// The whole subnegotiation for message `name` with JSON `data` ("" for
/// none), or None if `name` could not be read back as one name.
pub fn encode(name: &str, data: &str, out: &mut Vec<u8>) -> Option<()> {
    if !valid_name(name) {
        return None;
    }
    out.extend_from_slice(&[IAC, SB, crate::options::GMCP]);
    out.extend_from_slice(name.as_bytes());
    let data = data.trim();
    if !data.is_empty() {
        out.push(b' ');
        for &b in data.as_bytes() {
            // UTF-8 holds no 255; doubled all the same, as telnet wants.
            if b == IAC {
                out.push(IAC);
            }
            out.push(b);
        }
    }
    out.extend_from_slice(&[IAC, SE]);
    Some(())
}

/// A name is printable and has no space, which would end it.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Why a client's GMCP message was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("a GMCP message that is not UTF-8")]
    NotUtf8,
    #[error("a GMCP message without a valid name")]
    BadName,
    #[error("GMCP {name}: the data is not JSON ({error})")]
    BadJson { name: String, error: String },
}

/// A client's message (the bytes between `IAC SB GMCP` and `IAC SE`): its
/// name and its data as compact JSON ("" for none).
pub fn parse(bytes: &[u8]) -> Result<(String, String), Malformed> {
    let text = std::str::from_utf8(bytes).map_err(|_| Malformed::NotUtf8)?;
    let text = text.trim();
    let (name, data) = text
        .split_once(|c: char| c.is_ascii_whitespace())
        .map_or((text, ""), |(name, data)| (name, data.trim()));
    if !valid_name(name) {
        return Err(Malformed::BadName);
    }
    if data.is_empty() {
        return Ok((name.to_owned(), String::new()));
    }
    match serde_json::from_str::<Value>(data) {
        Ok(value) => Ok((name.to_owned(), value.to_string())),
        Err(e) => Err(Malformed::BadJson {
            name: name.to_owned(),
            error: e.to_string(),
        }),
    }
}

/// What a client's message was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// `Core.Hello`: the client's name and version, if it gave them.
    Hello(Option<String>),
    /// `Core.Supports.*`: kept here.
    Supports,
    /// Anything else: for the game.
    Game { name: String, data: String },
}

/// A session's GMCP state: the modules its client wants.
#[derive(Debug, Clone, Default)]
pub struct Gmcp {
    /// Module (lower case) → version; None until the client names any.
    supports: Option<BTreeMap<String, u32>>,
}

impl Gmcp {
    /// Takes a message the client sent (see [`parse`]).
    pub fn receive(&mut self, name: String, data: String) -> Received {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "core.hello" => Received::Hello(hello(&data)),
            "core.supports.set" => {
                self.supports = Some(BTreeMap::new());
                self.change(&data, true);
                Received::Supports
            }
            "core.supports.add" => {
                self.change(&data, true);
                Received::Supports
            }
            "core.supports.remove" => {
                self.change(&data, false);
                Received::Supports
            }
            _ => Received::Game { name, data },
        }
    }

    /// Adds or removes the modules of a Supports message: `["Char 1",
    /// "Room 1"]` (for a removal the versions may be left out).
    fn change(&mut self, data: &str, add: bool) {
        let supports = self.supports.get_or_insert_with(BTreeMap::new);
        let Ok(Value::Array(items)) = serde_json::from_str::<Value>(data) else {
            return;
        };
        for item in items.iter().filter_map(Value::as_str) {
            let mut parts = item.split_whitespace();
            let Some(module) = parts.next() else { continue };
            if module.len() > MAX_NAME {
                continue;
            }
            let module = module.to_ascii_lowercase();
            if add {
                let version = parts.next().and_then(|v| v.parse().ok()).unwrap_or(1);
                if supports.len() < MAX_MODULES || supports.contains_key(&module) {
                    supports.insert(module, version);
                }
            } else {
                supports.remove(&module);
            }
        }
    }

    /// Whether the client wants the game's message `name`.
    pub fn wants(&self, name: &str) -> bool {
        let Some(supports) = &self.supports else {
            return true;
        };
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("core.") {
            return true;
        }
        // Each package the name is in: "char", then "char.vitals", ...
        lower
            .match_indices('.')
            .map(|(at, _)| &lower[..at])
            .chain(std::iter::once(lower.as_str()))
            .any(|package| supports.contains_key(package))
    }

    /// The modules the client wants, as it named them (lower case), with
    /// their versions; None if it never said.
    #[cfg(test)]
    pub fn supports(&self) -> Option<&BTreeMap<String, u32>> {
        self.supports.as_ref()
    }
}

/// "client version" from Core.Hello's `{"client": …, "version": …}` (either
/// key in any case).
fn hello(data: &str) -> Option<String> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(data) else {
        return None;
    };
    let field = |key: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| match v {
                Value::String(s) => Some(s.trim().to_owned()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
    };
    let client = field("client")?;
    Some(match field("version") {
        Some(version) => format!("{client} {version}"),
        None => client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(name: &str, data: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode(name, data, &mut out).unwrap();
        out
    }

    #[test]
    fn encodes_name_then_data() {
        assert_eq!(
            msg("Char.Vitals", r#"{"hp":10}"#),
            b"\xff\xfa\xc9Char.Vitals {\"hp\":10}\xff\xf0"
        );
        assert_eq!(msg("Core.Ping", ""), b"\xff\xfa\xc9Core.Ping\xff\xf0");
        assert_eq!(msg("Core.Ping", "  "), b"\xff\xfa\xc9Core.Ping\xff\xf0");
        for bad in ["", "Two words", "Tab\tbed", "Ctl\u{1b}"] {
            assert_eq!(encode(bad, "1", &mut Vec::new()), None, "{bad:?}");
        }
    }

    #[test]
    fn parses_name_and_data_to_compact_json() {
        assert_eq!(
            parse(b"Char.Skills.Get { \"group\" : \"combat\" }").unwrap(),
            ("Char.Skills.Get".into(), r#"{"group":"combat"}"#.into())
        );
        assert_eq!(
            parse(b"Core.Ping").unwrap(),
            ("Core.Ping".into(), String::new())
        );
        assert_eq!(
            parse(b" Core.Ping 120 ").unwrap(),
            ("Core.Ping".into(), "120".into())
        );
    }

    #[test]
    fn malformed_messages_are_refused_never_panic() {
        assert_eq!(parse(b"Char \xff\xfe"), Err(Malformed::NotUtf8));
        assert_eq!(parse(b""), Err(Malformed::BadName));
        assert_eq!(parse(b"\x07bell 1"), Err(Malformed::BadName));
        assert!(matches!(
            parse(b"Char.Vitals {hp: 1"),
            Err(Malformed::BadJson { name, .. }) if name == "Char.Vitals"
        ));
        let deep = format!("A {}", "[".repeat(100_000));
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(Malformed::BadJson { .. })
        ));
    }

    #[test]
    fn core_hello_names_the_client() {
        let mut g = Gmcp::default();
        assert_eq!(
            g.receive(
                "Core.Hello".into(),
                r#"{"client":"Mudlet","version":"4.17.2"}"#.into()
            ),
            Received::Hello(Some("Mudlet 4.17.2".into()))
        );
        assert_eq!(
            g.receive("core.hello".into(), r#"{"Client":"MMapper"}"#.into()),
            Received::Hello(Some("MMapper".into()))
        );
        assert_eq!(
            g.receive("Core.Hello".into(), "[1]".into()),
            Received::Hello(None)
        );
    }

    #[test]
    fn supports_decide_what_the_client_gets() {
        let mut g = Gmcp::default();
        assert!(g.wants("Room.Info"), "a client that said nothing gets all");
        g.receive(
            "Core.Supports.Set".into(),
            r#"["Char 1","Room.Info 1","Comm.Channel 2"]"#.into(),
        );
        assert!(g.wants("Char.Vitals") && g.wants("char.items.list"));
        assert!(g.wants("Room.Info") && !g.wants("Room.Players"));
        assert!(g.wants("Core.Goodbye"), "Core is always wanted");
        assert!(!g.wants("Charm.Thing") && !g.wants("IRE.Rift"));
        assert_eq!(g.supports().unwrap()["comm.channel"], 2);
        g.receive("Core.Supports.Add".into(), r#"["IRE.Rift 1"]"#.into());
        g.receive("Core.Supports.Remove".into(), r#"["Char"]"#.into());
        assert!(g.wants("IRE.Rift.List") && !g.wants("Char.Vitals"));
        // Set starts over.
        g.receive("Core.Supports.Set".into(), r#"["Room 1"]"#.into());
        assert!(g.wants("Room.Players") && !g.wants("IRE.Rift.List"));
        // A flood of modules is bounded.
        let many: Vec<String> = (0..10_000).map(|i| format!("M{i} 1")).collect();
        g.receive(
            "Core.Supports.Add".into(),
            serde_json::to_string(&many).unwrap(),
        );
        assert_eq!(g.supports().unwrap().len(), MAX_MODULES);
    }

    #[test]
    fn everything_else_is_the_games() {
        let mut g = Gmcp::default();
        assert_eq!(
            g.receive("Char.Skills.Get".into(), "{}".into()),
            Received::Game {
                name: "Char.Skills.Get".into(),
                data: "{}".into()
            }
        );
    }
}
