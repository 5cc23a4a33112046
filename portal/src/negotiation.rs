//! What the portal does with each telnet option it speaks, sans IO: the
//! offers at connect, and what follows each option turning on, off or
//! being subnegotiated. [`crate::options`] decides *whether* an option is
//! on (RFC 1143); this module decides what that means for the session.
//!
//! - SGA: offered (`WILL`), so a client never waits for a Go Ahead.
//! - TTYPE with MTTS: asked (`DO`); once on, `SEND` until a value repeats.
//!   MTTS gives the first answer as the client's name, the second as its
//!   terminal type and the third as `MTTS <bits>`, its capabilities.
//! - NAWS: asked (`DO`); every report is the window's live size.
//! - CHARSET: offered (`WILL`); once on (either side), a `REQUEST` for
//!   UTF-8, Latin-1 or ASCII, and an answer to the client's own request.
//!   See [`crate::charset`] for what a client that agrees on nothing gets.
//! - MSSP: offered (`WILL`); a crawler's `DO` gets the table.
//! - MCCP2: offered (`WILL`) when `portal.mccp2` is on; the caller starts and
//!   ends the stream ([`Compress`]).
//! - EOR: offered (`WILL`); once on, a prompt ends with IAC EOR, else with
//!   IAC GA unless SGA is on ([`Negotiation::prompt_end`], and see
//!   [`crate::render`]).
//! - ECHO: offered (`WILL`) only when a secret is asked for
//!   ([`Negotiation::secret`]): the client stops echoing what is typed; the
//!   answer's arrival turns it off again ([`Negotiation::answered`]). A
//!   client that refuses it once is not asked again. The client's own ECHO
//!   is always refused.
//! - GMCP and MSDP: offered (`WILL`); once on, the game's out-of-band data
//!   goes out as GMCP if the client took it, else as MSDP
//!   ([`Negotiation::oob`]), and what the client sends comes back as
//!   [`Oob`]s for the game ([`crate::gmcp`], [`crate::msdp`]). GMCP's
//!   `Core.Hello` names the client, over what TTYPE said, and so does
//!   MSDP's CLIENT_NAME; MSDP's LIST is answered here, and what a client
//!   REPORTs decides what it is sent ([`Msdp`]).
//!
//! Everything learnt is kept in a [`ClientInfo`] of bounded size, whatever
//! the client sends: names are cut to [`MAX_NAME`] bytes, the TTYPE cycle to
//! [`MAX_TTYPE_ASKS`] requests, GMCP's module list to
//! [`gmcp::MAX_MODULES`].

use std::sync::Arc;

use ev::link::{Capabilities, Oob};
use ev::markup::Colours;

use crate::charset::Charset;
use crate::gmcp::{self, Gmcp};
use crate::msdp::{self, Msdp};
use crate::mssp::Facts;
use crate::options::{
    CHARSET, Change, ECHO, EOR, GMCP, MCCP2, MSDP, MSSP, NAWS, Options, Q, SGA, Side, TTYPE,
};
use crate::render::PromptEnd;

use crate::telnet::{IAC, SB, SE};
/// TTYPE's subcommands (RFC 1091).
const IS: u8 = 0;
const SEND: u8 = 1;
/// CHARSET's subcommands (RFC 2066).
const REQUEST: u8 = 1;
const ACCEPTED: u8 = 2;
const REJECTED: u8 = 3;
/// What a CHARSET request may start with to ask for a translation table,
/// which we never take: the names after it still count.
const TTABLE: &[u8] = b"[TTABLE]";

/// The most TTYPE requests in one cycle: MTTS needs three; a client that
/// cycles through more types is stopped here.
pub const MAX_TTYPE_ASKS: u8 = 6;
/// Longest client name or terminal type kept, in bytes.
pub const MAX_NAME: usize = 64;
/// The sets our CHARSET request offers, best first.
const OFFER: [Charset; 3] = [Charset::Utf8, Charset::Latin1, Charset::Ascii];

/// What negotiation has told of the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub client: String,
    pub terminal: String,
    pub width: u32,
    pub height: u32,
    pub charset: Charset,
    pub capabilities: Capabilities,
}

/// The caller's part of MCCP2: it owns the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// Start the stream after what is owed so far.
    Start,
    /// End the stream; the bytes this negotiation produced follow it, plain.
    End,
}

/// Why out-of-band data was dropped, either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error(transparent)]
    Gmcp(#[from] gmcp::Malformed),
    #[error(transparent)]
    Msdp(#[from] msdp::Malformed),
    #[error("the game's out-of-band {name:?} is not JSON: {error}")]
    NotJson { name: String, error: String },
    #[error("the game's out-of-band name {0:?} is no GMCP name")]
    BadName(String),
}

/// What became of the game's out-of-band data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OobSent {
    Gmcp,
    Msdp,
    /// The client takes neither, or not this GMCP module.
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Ttype {
    /// Not on, or done.
    #[default]
    Idle,
    /// `asked` SENDs are out.
    Asking { asked: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Agreement {
    #[default]
    Unasked,
    /// Our REQUEST is out.
    Requested,
    Agreed(Charset),
    /// The client wants none of the sets we speak.
    Rejected,
}

pub struct Negotiation {
    options: Options,
    info: ClientInfo,
    changed: bool,
    ttype: Ttype,
    /// The TTYPE cycle's last answer: the same again ends it.
    ttype_last: String,
    /// The client's MTTS bits, once it sent them.
    mtts: Option<u32>,
    /// TTYPE's first answer, to tell a cycle that starts over.
    ttype_first: String,
    /// GMCP's Core.Hello named the client: TTYPE no longer does.
    hello_named: bool,
    agreement: Agreement,
    mssp: Arc<Facts>,
    gmcp: Gmcp,
    /// MSDP's commands: what the client reports and asked for.
    msdp: Msdp,
    /// A secret was asked for and its answer has not come.
    secret: bool,
    /// The client refused our ECHO: it is not asked again.
    echo_refused: bool,
    /// The connection is TLS: MTTS's SSL bit, whatever the client says.
    tls: bool,
}

impl Negotiation {
    /// `mccp2`: whether MCCP2 is offered (and accepted when asked for).
    pub fn new(mccp2: bool, mssp: Arc<Facts>) -> Negotiation {
        let refuse: &[u8] = if mccp2 { &[] } else { &[MCCP2] };
        Negotiation {
            options: Options::new(refuse),
            info: ClientInfo::default(),
            changed: false,
            ttype: Ttype::Idle,
            ttype_last: String::new(),
            mtts: None,
            ttype_first: String::new(),
            hello_named: false,
            agreement: Agreement::Unasked,
            mssp,
            gmcp: Gmcp::default(),
            msdp: Msdp::default(),
            secret: false,
            echo_refused: false,
            tls: false,
        }
    }

    /// Whether the connection is TLS. The game sees it as MTTS's SSL bit
    /// in the capabilities, set from the connection and never from what a
    /// client claims: a plain connection cannot pass for an encrypted one.
    pub fn over_tls(mut self, tls: bool) -> Negotiation {
        self.tls = tls;
        self.info.capabilities = Capabilities(self.ssl_bit());
        self
    }

    fn ssl_bit(&self) -> u32 {
        if self.tls { Capabilities::SSL } else { 0 }
    }

    /// The offers and requests sent on connect.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        for (side, option) in [
            (Side::Us, MCCP2),
            (Side::Us, SGA),
            (Side::Him, TTYPE),
            (Side::Him, NAWS),
            (Side::Us, CHARSET),
            (Side::Us, MSSP),
            (Side::Us, EOR),
            (Side::Us, GMCP),
            (Side::Us, MSDP),
        ] {
            self.options.ask(side, option, out);
        }
    }

    /// Whether what decides how text is shown (the terminal's type and
    /// capabilities, the character set) is still being negotiated: asked
    /// for and not yet answered.
    pub fn settling(&self) -> bool {
        matches!(self.ttype, Ttype::Asking { .. })
            || self.options.state(Side::Him, TTYPE) == Q::WantYes
            || self.options.state(Side::Us, CHARSET) == Q::WantYes
            || self.agreement == Agreement::Requested
    }

    /// The colours the client is sent, `fallback` if it never said (see
    /// [`crate::render::colours`]).
    pub fn colours(&self, fallback: Colours) -> Colours {
        crate::render::colours(self.mtts.map(Capabilities), &self.info.terminal, fallback)
    }

    /// What ends a prompt for this client.
    pub fn prompt_end(&self) -> PromptEnd {
        if self.options.enabled(Side::Us, EOR) {
            PromptEnd::Eor
        } else if self.options.enabled(Side::Us, SGA) {
            PromptEnd::Nothing
        } else {
            PromptEnd::Ga
        }
    }

    /// A secret was asked for: we offer to echo (so the client does not),
    /// unless the client refused before.
    pub fn secret(&mut self, out: &mut Vec<u8>) {
        self.secret = true;
        if !self.echo_refused {
            self.options.accept(Side::Us, ECHO, true);
            self.options.ask(Side::Us, ECHO, out);
        }
    }

    /// A line came from the client; returns whether the client showed it
    /// (it echoes unless our ECHO is on). After a secret, the client echoes
    /// again from now on.
    pub fn answered(&mut self, out: &mut Vec<u8>) -> bool {
        let echoed = !self.options.enabled(Side::Us, ECHO);
        if std::mem::take(&mut self.secret) {
            self.options.stop(Side::Us, ECHO, out);
            self.options.accept(Side::Us, ECHO, false);
        }
        echoed
    }

    /// Stages the game's out-of-band data for the client: GMCP if it took
    /// GMCP (and wants the module), else MSDP if it took MSDP, else nothing.
    pub fn oob(&mut self, oob: &Oob, out: &mut Vec<u8>) -> Result<OobSent, Dropped> {
        let gmcp = self.options.enabled(Side::Us, GMCP);
        if !gmcp && !self.options.enabled(Side::Us, MSDP) {
            return Ok(OobSent::Not);
        }
        let data = oob.data.trim();
        let value = if data.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(data).map_err(|e| Dropped::NotJson {
                name: oob.name.clone(),
                error: e.to_string(),
            })?
        };
        if gmcp {
            if !self.gmcp.wants(&oob.name) {
                return Ok(OobSent::Not);
            }
            gmcp::encode(&oob.name, data, out).ok_or_else(|| Dropped::BadName(oob.name.clone()))?;
            Ok(OobSent::Gmcp)
        } else {
            if !self.msdp.wants(&oob.name) {
                return Ok(OobSent::Not);
            }
            msdp::encode(&oob.name, &value, out);
            Ok(OobSent::Msdp)
        }
    }

    /// The set the client's text is in, as far as we know now.
    pub fn charset(&self) -> Charset {
        self.info.charset
    }

    /// Whether what we know of the client changed since [`take_changed`].
    ///
    /// [`take_changed`]: Negotiation::take_changed
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// What we know of the client, if it changed since the last call.
    pub fn take_changed(&mut self) -> Option<ClientInfo> {
        std::mem::take(&mut self.changed).then(|| self.info.clone())
    }

    /// The client's WILL/WONT/DO/DONT: answers (and what follows an option
    /// turning on) go to `out`.
    pub fn negotiate(&mut self, verb: u8, option: u8, out: &mut Vec<u8>) -> Option<Compress> {
        match self.options.receive(verb, option, out)? {
            Change::On(Side::Us, MCCP2) => return Some(Compress::Start),
            Change::Off(Side::Us, MCCP2) => return Some(Compress::End),
            Change::On(Side::Him, TTYPE) => {
                self.ttype = Ttype::Asking { asked: 1 };
                self.ttype_last.clear();
                out.extend_from_slice(&[IAC, SB, TTYPE, SEND, IAC, SE]);
            }
            Change::Off(Side::Him, TTYPE) => self.end_ttype(),
            Change::On(_, CHARSET) if self.agreement == Agreement::Unasked => {
                self.agreement = Agreement::Requested;
                out.extend_from_slice(&[IAC, SB, CHARSET, REQUEST]);
                for set in OFFER {
                    out.push(b';');
                    out.extend_from_slice(set.name().as_bytes());
                }
                out.extend_from_slice(&[IAC, SE]);
            }
            Change::Off(_, CHARSET) => {
                let on = self.options.enabled(Side::Us, CHARSET)
                    || self.options.enabled(Side::Him, CHARSET);
                if self.agreement == Agreement::Requested && !on {
                    // No answer will come.
                    self.agreement = Agreement::Unasked;
                }
            }
            Change::On(Side::Us, MSSP) => self.mssp.table(out),
            // Refused, or turned off by the client while on: it echoes
            // itself, and is not asked again.
            Change::Off(Side::Us, ECHO) => {
                self.echo_refused = true;
                self.options.accept(Side::Us, ECHO, false);
            }
            _ => {}
        }
        None
    }

    /// `IAC SB option data IAC SE` from the client (IAC IAC already undone):
    /// answers go to `out`; returns the out-of-band data it carried for the
    /// game, or why it was dropped.
    pub fn subnegotiation(
        &mut self,
        option: u8,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Vec<Oob>, Dropped> {
        match option {
            GMCP if self.options.enabled(Side::Us, GMCP) => {
                let (name, data) = gmcp::parse(data)?;
                return Ok(match self.gmcp.receive(name, data) {
                    gmcp::Received::Hello(Some(client)) => {
                        let client = clean_name(client.as_bytes());
                        self.hello_named = true;
                        self.set(|i| i.client = client);
                        Vec::new()
                    }
                    gmcp::Received::Hello(None) | gmcp::Received::Supports => Vec::new(),
                    gmcp::Received::Game { name, data } => vec![Oob { name, data }],
                });
            }
            MSDP if self.options.enabled(Side::Us, MSDP) => {
                let mut game = Vec::new();
                for (name, value) in msdp::decode(data)? {
                    match self.msdp.receive(name, value, out) {
                        msdp::Received::Game { name, data } => game.push(Oob { name, data }),
                        msdp::Received::ClientName(name) if !self.hello_named => {
                            let client = clean_name(name.as_bytes());
                            self.set(|i| i.client = client);
                        }
                        msdp::Received::ClientName(_) | msdp::Received::Done => {}
                    }
                }
                return Ok(game);
            }
            TTYPE if self.options.enabled(Side::Him, TTYPE) => {
                if let Some((&IS, name)) = data.split_first() {
                    self.terminal_type(clean_name(name), out);
                }
            }
            NAWS if self.options.enabled(Side::Him, NAWS) => {
                if let &[w1, w0, h1, h0] = data {
                    let width = u32::from(u16::from_be_bytes([w1, w0]));
                    let height = u32::from(u16::from_be_bytes([h1, h0]));
                    self.set(|i| {
                        i.width = width;
                        i.height = height;
                    });
                }
            }
            CHARSET
                if self.options.enabled(Side::Us, CHARSET)
                    || self.options.enabled(Side::Him, CHARSET) =>
            {
                self.charset_message(data, out)
            }
            _ => {}
        }
        Ok(Vec::new())
    }

    fn terminal_type(&mut self, name: String, out: &mut Vec<u8>) {
        let Ttype::Asking { asked } = self.ttype else {
            // Unasked for: a client may not change its story at will.
            return;
        };
        // The same again (or the cycle starting over) is its end.
        let repeat = asked > 1 && (name == self.ttype_last || name == self.ttype_first);
        if repeat {
            if self.info.terminal.is_empty() {
                // A client that does not cycle has one name for both.
                let name = name.clone();
                self.set(|i| i.terminal = name);
            }
            self.end_ttype();
            return;
        }
        match asked {
            1 => {
                self.ttype_first = name.clone();
                if !self.hello_named {
                    let n = name.clone();
                    self.set(|i| i.client = n);
                }
            }
            2 => {
                let n = name.clone();
                self.set(|i| i.terminal = n);
            }
            _ => {
                if let Some(bits) = name
                    .strip_prefix("MTTS ")
                    .and_then(|n| n.trim().parse::<u32>().ok())
                {
                    self.mtts = Some(bits);
                    let capabilities = Capabilities(bits & !Capabilities::SSL | self.ssl_bit());
                    self.set(|i| i.capabilities = capabilities);
                    self.decide_charset();
                    self.end_ttype();
                    return;
                }
            }
        }
        if asked >= MAX_TTYPE_ASKS {
            self.end_ttype();
            return;
        }
        self.ttype_last = name;
        self.ttype = Ttype::Asking { asked: asked + 1 };
        out.extend_from_slice(&[IAC, SB, TTYPE, SEND, IAC, SE]);
    }

    /// The cycle is over: an idle session keeps no name it no longer needs.
    fn end_ttype(&mut self) {
        self.ttype = Ttype::Idle;
        self.ttype_last = String::new();
        self.ttype_first = String::new();
    }

    fn charset_message(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let Some((&kind, rest)) = data.split_first() else {
            return;
        };
        match kind {
            REQUEST => {
                if self.agreement == Agreement::Requested {
                    // Both asked at once: ours stands (RFC 2066 lets the
                    // server's request win), theirs is declined.
                    out.extend_from_slice(&[IAC, SB, CHARSET, REJECTED, IAC, SE]);
                    return;
                }
                let rest = rest
                    .strip_prefix(TTABLE)
                    .map_or(rest, |r| r.get(1..).unwrap_or_default());
                let Some((&sep, names)) = rest.split_first() else {
                    return;
                };
                let offered: Vec<(&[u8], Charset)> = names
                    .split(|&b| b == sep)
                    .filter_map(|n| Some((n, Charset::from_name(std::str::from_utf8(n).ok()?)?)))
                    .collect();
                let best = OFFER
                    .iter()
                    .find_map(|want| offered.iter().find(|(_, set)| set == want));
                match best {
                    Some(&(name, set)) => {
                        out.extend_from_slice(&[IAC, SB, CHARSET, ACCEPTED]);
                        out.extend(name.iter().filter(|&&b| b != IAC));
                        out.extend_from_slice(&[IAC, SE]);
                        self.agreement = Agreement::Agreed(set);
                    }
                    None => {
                        out.extend_from_slice(&[IAC, SB, CHARSET, REJECTED, IAC, SE]);
                        // A refused request changes nothing already agreed.
                        if !matches!(self.agreement, Agreement::Agreed(_)) {
                            self.agreement = Agreement::Rejected;
                        }
                    }
                }
            }
            ACCEPTED if self.agreement == Agreement::Requested => {
                let name = std::str::from_utf8(rest).ok().and_then(Charset::from_name);
                self.agreement = match name {
                    Some(set) => Agreement::Agreed(set),
                    // Not one we offered: as good as none.
                    None => Agreement::Rejected,
                };
            }
            REJECTED if self.agreement == Agreement::Requested => {
                self.agreement = Agreement::Rejected;
            }
            _ => return,
        }
        self.decide_charset();
    }

    /// CHARSET's answer first; without one, MTTS's word on UTF-8; without
    /// either, UTF-8 (see [`crate::charset`]).
    fn decide_charset(&mut self) {
        let set = match self.agreement {
            Agreement::Agreed(set) => set,
            Agreement::Rejected => Charset::Ascii,
            Agreement::Unasked | Agreement::Requested => match self.mtts {
                Some(bits) if !Capabilities(bits).has(Capabilities::UTF8) => Charset::Ascii,
                _ => Charset::Utf8,
            },
        };
        self.set(|i| i.charset = set);
    }

    fn set(&mut self, change: impl FnOnce(&mut ClientInfo)) {
        let before = self.info.clone();
        change(&mut self.info);
        if self.info != before {
            self.changed = true;
        }
    }
}

/// A name the client gave, as printable ASCII of at most [`MAX_NAME`] bytes.
fn clean_name(bytes: &[u8]) -> String {
    let name: String = bytes
        .iter()
        .take(MAX_NAME)
        .filter(|b| b.is_ascii_graphic() || **b == b' ')
        .map(|&b| char::from(b))
        .collect();
    name.trim().to_owned()
}

#[cfg(test)]
mod tests;
