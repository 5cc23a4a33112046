//! MSSP (MUD Server Status Protocol, telnet option 70): the table of facts
//! about the game that MUD listings crawl, answered by the portal alone.
//!
//! The portal knows what a crawler asks for without asking a server: the
//! game's name, how long it has been up (the portal's start: a reload is
//! not a restart for players), and how many players are logged in. That
//! count comes from the hub, which keeps the server's word on every session
//! across a reload, so it stays true while no server is attached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::options::MSSP;

use crate::telnet::{IAC, SB, SE};
const VAR: u8 = 1;
const VAL: u8 = 2;

/// What the table is made of; one per portal, shared by every session.
#[derive(Debug)]
pub struct Facts {
    /// `game.name`.
    pub name: String,
    /// When the portal started, in Unix seconds.
    pub started_at_s: u64,
    /// The telnet port.
    pub port: u16,
    /// The telnet-over-TLS port, if there is one.
    pub tls_port: Option<u16>,
    /// Whether MCCP2 is offered.
    pub mccp2: bool,
    /// Logged-in sessions, kept by the hub.
    pub players: Arc<AtomicU64>,
}

impl Facts {
    /// Appends `IAC SB MSSP (VAR name VAL value)* IAC SE`.
    pub fn table(&self, out: &mut Vec<u8>) {
        let players = self.players.load(Ordering::Relaxed).to_string();
        let uptime = self.started_at_s.to_string();
        let port = self.port.to_string();
        // MSSP's SSL: the TLS port, 0 for none.
        let tls_port = self.tls_port.unwrap_or(0).to_string();
        let codebase = format!("ev {}", ev::version::PKG_VERSION);
        let flag = |on: bool| if on { "1" } else { "0" };
        let vars: [(&str, &str); 19] = [
            ("NAME", &self.name),
            ("PLAYERS", &players),
            ("UPTIME", &uptime),
            ("CODEBASE", &codebase),
            ("PORT", &port),
            ("SSL", &tls_port),
            // -1: crawl as often as the crawler likes.
            ("CRAWL DELAY", "-1"),
            ("FAMILY", "Custom"),
            // What a client gets from this portal (the game's markup in
            // its colours, out-of-band data both ways); the rest is "0".
            ("MCCP", flag(self.mccp2)),
            ("MSSP", "1"),
            ("UTF-8", "1"),
            ("ANSI", "1"),
            ("GMCP", "1"),
            ("MSDP", "1"),
            ("MXP", "0"),
            ("PUEBLO", "0"),
            ("VT100", "0"),
            ("XTERM 256 COLORS", "1"),
            ("XTERM TRUE COLORS", "1"),
        ];
        out.extend_from_slice(&[IAC, SB, MSSP]);
        for (name, value) in vars {
            out.push(VAR);
            push_clean(name, out);
            out.push(VAL);
            push_clean(value, out);
        }
        out.extend_from_slice(&[IAC, SE]);
    }
}

/// A value may not hold the table's own delimiters, NUL or IAC: the game's
/// name is the operator's, but a stray byte must not break the table.
fn push_clean(text: &str, out: &mut Vec<u8>) {
    out.extend(
        text.bytes()
            .filter(|&b| !matches!(b, 0 | VAR | VAL | IAC))
            .map(|b| if b.is_ascii() { b } else { b'?' }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a table back, as a crawler would.
    fn parse(table: &[u8]) -> Vec<(String, String)> {
        let body = &table[3..table.len() - 2];
        let mut vars = Vec::new();
        for var in body.split(|&b| b == VAR).skip(1) {
            let mut parts = var.split(|&b| b == VAL);
            let name = String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
            let value = String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
            vars.push((name, value));
        }
        vars
    }

    #[test]
    fn the_table_names_the_game_and_counts_players() {
        let players = Arc::new(AtomicU64::new(3));
        let facts = Facts {
            name: "Dark\u{1}Realm\u{ff}".into(),
            started_at_s: 1_700_000_000,
            port: 4000,
            tls_port: Some(4003),
            mccp2: true,
            players: players.clone(),
        };
        let mut out = Vec::new();
        facts.table(&mut out);
        assert_eq!(&out[..3], &[IAC, SB, MSSP]);
        assert_eq!(&out[out.len() - 2..], &[IAC, SE]);
        let vars = parse(&out);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("NAME"), Some("DarkRealm??"));
        assert_eq!(get("PLAYERS"), Some("3"));
        assert_eq!(get("UPTIME"), Some("1700000000"));
        assert_eq!(get("MCCP"), Some("1"));
        assert_eq!(get("SSL"), Some("4003"));
        for spoken in [
            "ANSI",
            "GMCP",
            "MSDP",
            "XTERM 256 COLORS",
            "XTERM TRUE COLORS",
        ] {
            assert_eq!(get(spoken), Some("1"), "{spoken}");
        }
        assert_eq!(get("MXP"), Some("0"));
        players.store(7, Ordering::Relaxed);
        let mut again = Vec::new();
        facts.table(&mut again);
        assert!(parse(&again).contains(&("PLAYERS".into(), "7".into())));
    }
}
