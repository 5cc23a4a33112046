//! MSDP (the MUD Server Data Protocol, telnet option 69), sans IO: the
//! game's out-of-band data as MSDP variables, and the client's variables
//! back as JSON.
//!
//! A message is `IAC SB MSDP`, one or more variables, `IAC SE`. A variable
//! is `VAR name VAL value`; a value is text, a table (`TABLE_OPEN`, then
//! variables, `TABLE_CLOSE`) or an array (`ARRAY_OPEN`, then `VAL value`
//! for each item, `ARRAY_CLOSE`).
//!
//! To the client, a name (the Oob's) and its JSON: an object is a table,
//! an array an array, a string its text, a number its JSON text, true and
//! false "1" and "0" (MSDP's usual flags), null empty text. From the
//! client, every text is a JSON string (MSDP has no types), and a variable
//! given several values (`VAR name VAL a VAL b`, MSDP's older way of
//! sending a list) is an array.
//!
//! MSDP's commands ([`Msdp`]) are split between the portal and the game.
//! The portal answers `LIST` itself (COMMANDS, LISTS, CONFIGURABLE,
//! REPORTABLE, REPORTED and SENDABLE variables; the variables the game can
//! report or send are those it has sent this session, as the portal knows
//! no others) and keeps what is `REPORT`ed: a client that never reported
//! anything gets every variable, as a GMCP client that never named its
//! modules does; once it reports, only those, and what it asked for with
//! `SEND`. `UNREPORT` and `RESET` are the portal's alone. `REPORT` and
//! `SEND` go on to the game too, as the OOB they always were (name
//! "REPORT" or "SEND", the variables as JSON), since only the game knows a
//! variable's current value, which both ask for. The configurable
//! CLIENT_NAME and CLIENT_VERSION name the client, as GMCP's Core.Hello
//! does; every other variable goes to the game.

use serde_json::{Map, Value};

use crate::telnet::{IAC, SB, SE};

pub const VAR: u8 = 1;
pub const VAL: u8 = 2;
pub const TABLE_OPEN: u8 = 3;
pub const TABLE_CLOSE: u8 = 4;
pub const ARRAY_OPEN: u8 = 5;
pub const ARRAY_CLOSE: u8 = 6;

/// The deepest nesting of tables and arrays taken from a client: the
/// message is bounded in bytes, and this bounds the parser's recursion.
pub const MAX_DEPTH: usize = 32;

/// MSDP's commands, as MSDP names them.
const COMMANDS: [&str; 5] = ["LIST", "REPORT", "RESET", "SEND", "UNREPORT"];
/// The lists `LIST` answers.
const LISTS: [&str; 6] = [
    "COMMANDS",
    "LISTS",
    "CONFIGURABLE_VARIABLES",
    "REPORTABLE_VARIABLES",
    "REPORTED_VARIABLES",
    "SENDABLE_VARIABLES",
];
/// The variables a client may set, which the portal takes.
const CONFIGURABLE: [&str; 3] = ["CLIENT_NAME", "CLIENT_VERSION", "PLUGIN_ID"];
/// The most variable names kept of each kind (reported, seen from the
/// game, asked for once): a client's REPORT flood or a game's endless
/// names cost a bounded amount per session.
pub const MAX_NAMES: usize = 128;
/// Longest variable name kept, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// One session's MSDP command state; see the module's docs.
#[derive(Debug, Default)]
pub struct Msdp {
    /// The client sent REPORT at least once: from then on only what it
    /// reports goes out.
    reporting: bool,
    reported: Vec<String>,
    /// Asked for with SEND and not sent yet: the next one goes out.
    asked: Vec<String>,
    /// The game's variables this session, in the order first sent.
    seen: Vec<String>,
    client_name: String,
}

/// What a client's variable was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// For the game.
    Game { name: String, data: String },
    /// The client's name (and version), from CLIENT_NAME / CLIENT_VERSION.
    ClientName(String),
    /// Answered or kept by the portal: nothing more to do.
    Done,
}

impl Msdp {
    /// A variable from the client: a command is carried out (a LIST's
    /// answer goes to `out`), a configurable variable taken, anything else
    /// is the game's.
    pub fn receive(&mut self, name: String, value: Value, out: &mut Vec<u8>) -> Received {
        let names = || names_in(&value);
        match name.as_str() {
            "LIST" => {
                for list in names() {
                    self.list(&list, out);
                }
                Received::Done
            }
            "REPORT" => {
                self.reporting = true;
                for n in names() {
                    add(&mut self.reported, n);
                }
                game(name, &value)
            }
            "SEND" => {
                for n in names() {
                    add(&mut self.asked, n);
                }
                game(name, &value)
            }
            "UNREPORT" => {
                let gone = names();
                self.reported.retain(|n| !gone.contains(n));
                Received::Done
            }
            "RESET" => {
                if names()
                    .iter()
                    .any(|l| l == "REPORTABLE_VARIABLES" || l == "REPORTED_VARIABLES")
                {
                    self.reported.clear();
                }
                Received::Done
            }
            "CLIENT_NAME" | "CLIENT_VERSION" => {
                let text = match &value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if name == "CLIENT_NAME" {
                    self.client_name = text;
                    Received::ClientName(self.client_name.clone())
                } else if self.client_name.is_empty() {
                    Received::Done
                } else {
                    Received::ClientName(format!("{} {text}", self.client_name))
                }
            }
            "PLUGIN_ID" => Received::Done,
            _ => game(name, &value),
        }
    }

    /// Whether the game's variable `name` goes to the client now (and
    /// notes it as one the game has).
    pub fn wants(&mut self, name: &str) -> bool {
        if !self.seen.iter().any(|n| n == name) {
            add(&mut self.seen, name.to_owned());
        }
        if let Some(at) = self.asked.iter().position(|n| n == name) {
            self.asked.remove(at);
            return true;
        }
        !self.reporting || self.reported.iter().any(|n| n == name)
    }

    fn list(&self, list: &str, out: &mut Vec<u8>) {
        let strings = |names: &[&str]| names.iter().map(|n| Value::from(*n)).collect();
        let owned = |names: &[String]| names.iter().map(|n| Value::from(n.as_str())).collect();
        let items: Vec<Value> = match list {
            "COMMANDS" => strings(&COMMANDS),
            "LISTS" => strings(&LISTS),
            "CONFIGURABLE_VARIABLES" => strings(&CONFIGURABLE),
            "REPORTABLE_VARIABLES" | "SENDABLE_VARIABLES" => owned(&self.seen),
            "REPORTED_VARIABLES" => owned(&self.reported),
            // A list we do not have is not answered (MSDP has no error).
            _ => return,
        };
        encode(list, &Value::Array(items), out);
    }
}

/// The variable names a command's value holds: one text, or an array of
/// them (nested or not); other values name nothing.
fn names_in(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(names_in).collect(),
        _ => Vec::new(),
    }
}

fn add(names: &mut Vec<String>, mut name: String) {
    if names.len() >= MAX_NAMES || names.contains(&name) {
        return;
    }
    if name.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    names.push(name);
}

fn game(name: String, value: &Value) -> Received {
    Received::Game {
        name,
        data: value.to_string(),
    }
}

/// The whole subnegotiation for variable `name` holding `value`.
pub fn encode(name: &str, value: &Value, out: &mut Vec<u8>) {
    out.extend_from_slice(&[IAC, SB, crate::options::MSDP, VAR]);
    text(name, out);
    out.push(VAL);
    encode_value(value, out);
    out.extend_from_slice(&[IAC, SE]);
}

fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            out.push(TABLE_OPEN);
            for (key, value) in map {
                out.push(VAR);
                text(key, out);
                out.push(VAL);
                encode_value(value, out);
            }
            out.push(TABLE_CLOSE);
        }
        Value::Array(items) => {
            out.push(ARRAY_OPEN);
            for item in items {
                out.push(VAL);
                encode_value(item, out);
            }
            out.push(ARRAY_CLOSE);
        }
        Value::String(s) => text(s, out),
        Value::Number(n) => text(&n.to_string(), out),
        Value::Bool(b) => out.push(if *b { b'1' } else { b'0' }),
        Value::Null => {}
    }
}

/// Text as MSDP carries it: UTF-8 without MSDP's own bytes (NUL to
/// ARRAY_CLOSE), which would end it early. UTF-8 never holds an IAC.
fn text(s: &str, out: &mut Vec<u8>) {
    out.extend(s.bytes().filter(|&b| b > ARRAY_CLOSE && b != IAC));
}

/// Why a client's MSDP message was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("MSDP data before the first VAR")]
    NoVariable,
    #[error("an MSDP variable without a name")]
    Unnamed,
    #[error("an MSDP table or array is not closed")]
    Unclosed,
    #[error("an MSDP close without its open")]
    StrayClose,
    #[error("MSDP nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// The variables of a client's message (the bytes between `IAC SB MSDP`
/// and `IAC SE`, IAC IAC already undone), each as a name and its value as
/// JSON.
pub fn decode(data: &[u8]) -> Result<Vec<(String, Value)>, Malformed> {
    let mut r = Reader { data, at: 0 };
    let mut vars = Vec::new();
    while let Some(b) = r.peek() {
        if b != VAR {
            return Err(if b == TABLE_CLOSE || b == ARRAY_CLOSE {
                Malformed::StrayClose
            } else {
                Malformed::NoVariable
            });
        }
        let (name, value) = r.variable(0)?;
        if name.is_empty() {
            return Err(Malformed::Unnamed);
        }
        vars.push((name, value));
    }
    Ok(vars)
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.at).copied()
    }

    /// Text up to the next MSDP byte.
    fn text(&mut self) -> String {
        let start = self.at;
        while self.peek().is_some_and(|b| b > ARRAY_CLOSE || b == 0) {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.data[start..self.at]).replace('\0', "")
    }

    /// `VAR name (VAL value)*`, at a VAR.
    fn variable(&mut self, depth: usize) -> Result<(String, Value), Malformed> {
        self.at += 1;
        let name = self.text();
        let mut values = Vec::new();
        while self.peek() == Some(VAL) {
            self.at += 1;
            values.push(self.value(depth)?);
        }
        let value = match values.len() {
            0 => Value::String(String::new()),
            1 => values.pop().unwrap_or_default(),
            _ => Value::Array(values),
        };
        Ok((name, value))
    }

    /// Text, a table or an array, after a VAL.
    fn value(&mut self, depth: usize) -> Result<Value, Malformed> {
        match self.peek() {
            Some(TABLE_OPEN) => {
                let depth = self.deeper(depth)?;
                self.at += 1;
                let mut table = Map::new();
                loop {
                    match self.peek() {
                        Some(TABLE_CLOSE) => {
                            self.at += 1;
                            return Ok(Value::Object(table));
                        }
                        Some(VAR) => {
                            let (key, value) = self.variable(depth)?;
                            table.insert(key, value);
                        }
                        Some(ARRAY_CLOSE) => return Err(Malformed::StrayClose),
                        Some(_) => return Err(Malformed::NoVariable),
                        None => return Err(Malformed::Unclosed),
                    }
                }
            }
            Some(ARRAY_OPEN) => {
                let depth = self.deeper(depth)?;
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    match self.peek() {
                        Some(ARRAY_CLOSE) => {
                            self.at += 1;
                            return Ok(Value::Array(items));
                        }
                        Some(VAL) => {
                            self.at += 1;
                            items.push(self.value(depth)?);
                        }
                        Some(TABLE_CLOSE) => return Err(Malformed::StrayClose),
                        Some(VAR) => return Err(Malformed::NoVariable),
                        // An item without its VAL (text, a table or an
                        // array straight after the open): an item all the same.
                        Some(_) => items.push(self.value(depth)?),
                        None => return Err(Malformed::Unclosed),
                    }
                }
            }
            _ => Ok(Value::String(self.text())),
        }
    }

    fn deeper(&self, depth: usize) -> Result<usize, Malformed> {
        if depth >= MAX_DEPTH {
            Err(Malformed::TooDeep)
        } else {
            Ok(depth + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// What the portal answered, decoded by this module's own reader (the
    /// test of the wire form against a reader of the test's own is in
    /// portal/tests/mud.rs).
    fn answered(out: &[u8]) -> Vec<(String, Value)> {
        let body = out
            .strip_prefix(&[IAC, SB, crate::options::MSDP][..])
            .and_then(|b| b.strip_suffix(&[IAC, SE][..]))
            .unwrap();
        decode(body).unwrap()
    }

    #[test]
    fn list_is_answered_by_the_portal_and_report_decides_what_goes_out() {
        let mut m = Msdp::default();
        let mut out = Vec::new();
        assert_eq!(
            m.receive("LIST".into(), json!("COMMANDS"), &mut out),
            Received::Done
        );
        assert_eq!(
            answered(&out),
            [(
                "COMMANDS".to_owned(),
                json!(["LIST", "REPORT", "RESET", "SEND", "UNREPORT"])
            )]
        );
        out.clear();
        m.receive("LIST".into(), json!("NO_SUCH_LIST"), &mut out);
        assert!(out.is_empty(), "an unknown list is not answered");

        assert!(
            m.wants("HEALTH") && m.wants("MANA"),
            "nothing reported: everything"
        );
        let report = m.receive("REPORT".into(), json!(["HEALTH", "ROOM"]), &mut out);
        assert_eq!(
            report,
            Received::Game {
                name: "REPORT".into(),
                data: r#"["HEALTH","ROOM"]"#.into()
            },
            "the game is asked for the current values"
        );
        assert!(m.wants("HEALTH") && !m.wants("MANA"));
        m.receive("SEND".into(), json!("MANA"), &mut out);
        assert!(m.wants("MANA"), "asked for once");
        assert!(!m.wants("MANA"), "and only once");

        out.clear();
        m.receive("LIST".into(), json!("REPORTABLE_VARIABLES"), &mut out);
        assert_eq!(
            answered(&out),
            [("REPORTABLE_VARIABLES".to_owned(), json!(["HEALTH", "MANA"]))]
        );
        out.clear();
        m.receive("LIST".into(), json!("REPORTED_VARIABLES"), &mut out);
        assert_eq!(
            answered(&out),
            [("REPORTED_VARIABLES".to_owned(), json!(["HEALTH", "ROOM"]))]
        );

        assert_eq!(
            m.receive("UNREPORT".into(), json!("HEALTH"), &mut out),
            Received::Done
        );
        assert!(!m.wants("HEALTH") && m.wants("ROOM"));
        m.receive("RESET".into(), json!("REPORTED_VARIABLES"), &mut out);
        assert!(!m.wants("ROOM"), "reset: nothing reported");
    }

    #[test]
    fn the_client_names_itself_and_other_variables_are_the_games() {
        let mut m = Msdp::default();
        let mut out = Vec::new();
        assert_eq!(
            m.receive("CLIENT_NAME".into(), json!("TinTin++"), &mut out),
            Received::ClientName("TinTin++".into())
        );
        assert_eq!(
            m.receive("CLIENT_VERSION".into(), json!("2.02"), &mut out),
            Received::ClientName("TinTin++ 2.02".into())
        );
        assert_eq!(
            m.receive("PLUGIN_ID".into(), json!("x"), &mut out),
            Received::Done
        );
        assert!(matches!(
            m.receive("CAST".into(), json!("fireball"), &mut out),
            Received::Game { name, .. } if name == "CAST"
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn names_kept_are_bounded_whatever_is_reported() {
        let mut m = Msdp::default();
        let mut out = Vec::new();
        let flood: Vec<Value> = (0..10_000).map(|i| json!(format!("{i:x<200}"))).collect();
        m.receive("REPORT".into(), Value::Array(flood.clone()), &mut out);
        m.receive("SEND".into(), Value::Array(flood), &mut out);
        for i in 0..10_000 {
            m.wants(&format!("V{i}"));
        }
        assert_eq!(m.reported.len(), MAX_NAMES);
        assert_eq!(m.asked.len(), MAX_NAMES);
        assert_eq!(m.seen.len(), MAX_NAMES);
        assert!(m.reported.iter().all(|n| n.len() <= MAX_NAME_BYTES));
    }

    use super::*;

    fn encoded(name: &str, value: Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(name, &value, &mut out);
        out
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        [&[IAC, SB, 69][..], body, &[IAC, SE]].concat()
    }

    #[test]
    fn scalars_are_text() {
        assert_eq!(encoded("HEALTH", json!(42)), framed(b"\x01HEALTH\x0242"));
        assert_eq!(
            encoded("ROOM_NAME", json!("The Hall")),
            framed(b"\x01ROOM_NAME\x02The Hall")
        );
        assert_eq!(encoded("AFK", json!(true)), framed(b"\x01AFK\x021"));
        assert_eq!(encoded("AFK", json!(false)), framed(b"\x01AFK\x020"));
        assert_eq!(encoded("TARGET", json!(null)), framed(b"\x01TARGET\x02"));
        assert_eq!(encoded("X", json!(-1.5)), framed(b"\x01X\x02-1.5"));
    }

    #[test]
    fn objects_are_tables_and_arrays_arrays_nested() {
        let got = encoded(
            "ROOM",
            json!({"VNUM": 6008, "EXITS": {"n": 6011, "e": 6007}, "TAGS": ["dark", [1]]}),
        );
        // serde_json keeps object keys sorted.
        let mut want = b"\x01ROOM\x02\x03".to_vec();
        want.extend_from_slice(b"\x01EXITS\x02\x03\x01e\x026007\x01n\x026011\x04");
        want.extend_from_slice(b"\x01TAGS\x02\x05\x02dark\x02\x05\x021\x06\x06");
        want.extend_from_slice(b"\x01VNUM\x026008");
        want.push(TABLE_CLOSE);
        assert_eq!(got, framed(&want));
    }

    #[test]
    fn text_never_carries_msdp_bytes() {
        assert_eq!(
            encoded("A\u{1}B", json!("x\u{2}y\u{6}z\u{0}\u{7}")),
            framed(b"\x01AB\x02xyz\x07")
        );
    }

    #[test]
    fn a_clients_variables_decode_to_json() {
        assert_eq!(
            decode(b"\x01REPORT\x02HEALTH\x02MANA\x01SEND\x02ROOM").unwrap(),
            vec![
                ("REPORT".into(), json!(["HEALTH", "MANA"])),
                ("SEND".into(), json!("ROOM")),
            ]
        );
        assert_eq!(
            decode(b"\x01SET\x02\x03\x01a\x02\x05\x021\x022\x06\x01b\x02\x03\x04\x01c\x02\x04")
                .unwrap(),
            vec![("SET".into(), json!({"a": ["1", "2"], "b": {}, "c": ""}))]
        );
        assert_eq!(
            decode(b"\x01LIST").unwrap(),
            vec![("LIST".into(), json!(""))]
        );
        assert_eq!(decode(b"").unwrap(), vec![]);
    }

    #[test]
    fn what_we_send_decodes_to_what_was_meant() {
        let value = json!({"a": ["x", {"b": "y"}], "c": "3"});
        let bytes = encoded("V", value.clone());
        let body = &bytes[3..bytes.len() - 2];
        assert_eq!(decode(body).unwrap(), vec![("V".into(), value)]);
    }

    #[test]
    fn malformed_messages_are_refused_never_panic() {
        assert_eq!(decode(b"junk\x01A\x02b"), Err(Malformed::NoVariable));
        assert_eq!(decode(b"\x01\x02b"), Err(Malformed::Unnamed));
        assert_eq!(decode(b"\x01A\x02\x03\x01b\x02c"), Err(Malformed::Unclosed));
        assert_eq!(decode(b"\x01A\x02\x05\x02c"), Err(Malformed::Unclosed));
        assert_eq!(decode(b"\x04"), Err(Malformed::StrayClose));
        assert_eq!(decode(b"\x01A\x02\x03\x06"), Err(Malformed::StrayClose));
        let deep = [b"\x01A\x02".to_vec(), vec![ARRAY_OPEN; 10_000]].concat();
        assert_eq!(decode(&deep), Err(Malformed::TooDeep));
        let ok_deep = [
            b"\x01A\x02".to_vec(),
            vec![ARRAY_OPEN; MAX_DEPTH],
            vec![ARRAY_CLOSE; MAX_DEPTH],
        ]
        .concat();
        assert!(decode(&ok_deep).is_ok());
        // Every byte sequence: an answer, never a panic.
        let mut seed = 0x2545_f491_u32;
        for _ in 0..20_000 {
            let len = (seed % 24) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    (seed % 9) as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
