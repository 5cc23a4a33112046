//! The Link's domain model: what the portal and a server say to each other,
//! as plain Rust types, shared by both sides.
//!
//! One enum per direction, [`ToServer`] and [`ToPortal`], mirrors the
//! protocol's event kinds (protos/link.proto), hellos included: the rule
//! that a hello comes first and only first belongs to each side's stream
//! handling (`portal/src/link.rs`, `server/src/link.rs`), which is all the
//! sides keep. Here are also the Link's limits and the [`Batcher`] that cuts
//! events into messages ([`batch`]), and the one protobuf ↔ domain
//! conversion ([`convert`]). Besides the services, this is the only place
//! that touches `pb` types: game logic and the portal's hub never see one.

pub mod batch;
pub mod convert;

use std::fmt;

pub use batch::{Batcher, MAX_BATCH_BYTES, MAX_EVENTS_PER_MESSAGE, MAX_MESSAGE_BYTES};
pub use convert::Malformed;

/// A player connection, numbered by the portal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a session is in its life, as the server sees it. The portal reads
/// it only to count players and for the login and idle timeouts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stage {
    /// No server has greeted it yet: it is owed the welcome screen.
    #[default]
    New,
    /// At the login screen.
    Login,
    /// Playing a character.
    Playing,
}

/// What the portal knows of a connection. The client's part (`client` to
/// `capabilities`) is what telnet negotiation told the portal; it changes
/// during a session ([`ToServer::SessionInfo`]). Empty or 0: not known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortalSession {
    pub id: SessionId,
    pub protocol: String,
    /// Where the player connects from (`ip:port`).
    pub peer: String,
    /// Unix time in milliseconds.
    pub connected_at_ms: u64,
    /// The client's name (and version), e.g. "MUDLET 4.17.2".
    pub client: String,
    /// Columns and rows of the player's window.
    pub width: u32,
    pub height: u32,
    /// The character set text is sent in (an IANA name, lower case).
    pub encoding: String,
    /// The terminal type the client reports, e.g. "XTERM-256COLOR". Since Link 1.2.
    pub terminal: String,
    /// What the terminal can do. Since Link 1.2.
    pub capabilities: Capabilities,
}

/// What a player's terminal can do: MTTS's bitfield, kept with MTTS's
/// numbering so a client's report passes through unchanged. The server
/// sees capabilities, never telnet options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(pub u32);

impl Capabilities {
    pub const ANSI: u32 = 1;
    pub const VT100: u32 = 2;
    pub const UTF8: u32 = 4;
    pub const COLOURS_256: u32 = 8;
    pub const MOUSE_TRACKING: u32 = 16;
    pub const OSC_COLOUR_PALETTE: u32 = 32;
    pub const SCREEN_READER: u32 = 64;
    pub const PROXY: u32 = 128;
    pub const TRUECOLOUR: u32 = 256;
    pub const MNES: u32 = 512;
    pub const MSLP: u32 = 1024;
    /// Set by the portal exactly when the connection is TLS (`portal.tls`),
    /// whatever the client's own MTTS report says of it.
    pub const SSL: u32 = 2048;

    const NAMES: [(u32, &'static str); 12] = [
        (Self::ANSI, "ANSI"),
        (Self::VT100, "VT100"),
        (Self::UTF8, "UTF-8"),
        (Self::COLOURS_256, "256 colours"),
        (Self::MOUSE_TRACKING, "mouse tracking"),
        (Self::OSC_COLOUR_PALETTE, "OSC colour palette"),
        (Self::SCREEN_READER, "screen reader"),
        (Self::PROXY, "proxy"),
        (Self::TRUECOLOUR, "truecolour"),
        (Self::MNES, "MNES"),
        (Self::MSLP, "MSLP"),
        (Self::SSL, "TLS"),
    ];

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// The name of each capability set, in MTTS's order.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, name)| *name)
            .collect()
    }
}

/// The part of a session the server owns. The portal keeps the latest copy,
/// so a new server (after a reload or a crash) can pick the session up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSession {
    pub stage: Stage,
    /// 0 when not logged in.
    pub account_id: i64,
    /// 0 when not playing.
    pub character_id: i64,
    /// Small opaque state a game wants back after a reload; passed through.
    pub extra: Vec<u8>,
    /// The colours the player chose in game (kept on the account), which
    /// the portal applies over what the client told of itself. Since Link
    /// 1.5; an older server's sessions are all `Auto`.
    pub colours: ColourChoice,
}

/// A player's colour setting. Since Link 1.5.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ColourChoice {
    /// What the client told (MTTS, its terminal type), else the portal's default.
    #[default]
    Auto,
    /// These colours, whatever the client told.
    Fixed(crate::markup::Colours),
}

impl ColourChoice {
    /// Every setting, in the order a player is shown them.
    pub const ALL: [ColourChoice; 5] = [
        ColourChoice::Auto,
        ColourChoice::Fixed(crate::markup::Colours::None),
        ColourChoice::Fixed(crate::markup::Colours::Ansi16),
        ColourChoice::Fixed(crate::markup::Colours::Xterm256),
        ColourChoice::Fixed(crate::markup::Colours::Truecolour),
    ];

    /// The word a player types for it, and the database keeps.
    pub fn name(self) -> &'static str {
        use crate::markup::Colours;
        match self {
            ColourChoice::Auto => "auto",
            ColourChoice::Fixed(Colours::None) => "plain",
            ColourChoice::Fixed(Colours::Ansi16) => "ansi16",
            ColourChoice::Fixed(Colours::Xterm256) => "xterm256",
            ColourChoice::Fixed(Colours::Truecolour) => "truecolour",
        }
    }

    /// A setting from its name, in any case; the American spelling and a
    /// few obvious words are taken too.
    pub fn parse(word: &str) -> Option<ColourChoice> {
        use crate::markup::Colours;
        let word = word.to_ascii_lowercase();
        Some(match word.as_str() {
            "auto" | "default" => ColourChoice::Auto,
            "plain" | "none" | "off" => ColourChoice::Fixed(Colours::None),
            "ansi16" | "ansi" | "16" => ColourChoice::Fixed(Colours::Ansi16),
            "xterm256" | "256" => ColourChoice::Fixed(Colours::Xterm256),
            "truecolour" | "truecolor" | "24bit" => ColourChoice::Fixed(Colours::Truecolour),
            _ => return None,
        })
    }

    /// The colours to render in, given those the client's own report gives.
    pub fn over(self, client: crate::markup::Colours) -> crate::markup::Colours {
        match self {
            ColourChoice::Auto => client,
            ColourChoice::Fixed(colours) => colours,
        }
    }
}

impl ServerSession {
    /// At the login screen, nobody yet.
    pub fn login() -> ServerSession {
        ServerSession {
            stage: Stage::Login,
            ..ServerSession::default()
        }
    }

    pub fn logged_in(&self) -> bool {
        self.stage == Stage::Playing
    }
}

/// One session as the portal keeps it and a Sync restores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub portal: PortalSession,
    pub server: ServerSession,
    /// The highest input seq a server acked.
    pub acked_seq: u64,
    /// The highest output seq the portal delivered to the player: a server
    /// re-sends its outbox above it and prunes it at and below it.
    pub output_seq: u64,
}

/// What the portal makes of a server that attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serve now: a Sync follows at once.
    Active,
    /// Another server is active; a Sync arrives on promotion.
    Standby,
}

/// A server's first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    pub major: u32,
    pub minor: u32,
    pub build_id: String,
    /// Set by the supervisor (EV_GENERATION); 0 when started by hand.
    pub generation: u64,
    pub pid: u32,
}

/// The portal's first message. If `refused` is not empty the portal closes
/// the stream after it and the server must exit with that reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalHello {
    pub major: u32,
    pub minor: u32,
    pub build_id: String,
    pub role: Role,
    pub refused: String,
}

impl PortalHello {
    /// This build's hello, giving the server `role` or refusing it.
    pub fn ours(role: Role, refused: String) -> PortalHello {
        PortalHello {
            major: crate::version::LINK_MAJOR,
            minor: crate::version::LINK_MINOR,
            build_id: crate::version::PKG_VERSION.to_string(),
            role,
            refused,
        }
    }
}

/// Portal → server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToServer {
    /// The first event of the first message, and only there.
    Hello(PortalHello),
    Opened(PortalSession),
    /// What the portal knows of a session changed (the client told its
    /// window size, name, terminal or character set): the whole of it, as
    /// it now is. Since Link 1.2; a server of 1.1 or older is not sent it.
    SessionInfo(PortalSession),
    /// `seq` counts the session's inputs from 1, without gaps.
    Input {
        session: SessionId,
        seq: u64,
        text: String,
    },
    Closed {
        session: SessionId,
        reason: String,
    },
    /// One chunk of the full session table; `last` ends it.
    Sync {
        sessions: Vec<Snapshot>,
        last: bool,
    },
    /// Finish what was received, answer, then leave.
    Drain {
        reason: String,
    },
    /// The portal checks that the server is alive (`reply` false): answer
    /// with the nonce.
    Heartbeat {
        nonce: u64,
        reply: bool,
    },
    /// Every sequenced event of `session` up to `seq` reached the player:
    /// the server's copies may go.
    Delivered {
        session: SessionId,
        seq: u64,
    },
    /// Out-of-band data from the client: a name and its data as JSON text.
    /// It takes the session's next input seq, like an Input. Since Link
    /// 1.3; a server older than that is sent an Input with empty text.
    Oob {
        session: SessionId,
        seq: u64,
        oob: Oob,
    },
    /// A line for the game's admins in play (the operator's tools say
    /// something, e.g. that an auto-reload failed). Since Link 1.4; a server
    /// older than that is not sent it.
    StaffNotice {
        text: String,
    },
}

/// Out-of-band data, either way: a name ("Char.Vitals") and its data as
/// JSON text (empty for none). Since Link 1.3.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Oob {
    pub name: String,
    pub data: String,
}

/// How an Output's text is shown. Since Link 1.3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Form {
    /// The text is ev markup ([`crate::markup`]), rendered per client;
    /// false (an older server): plain text, shown as it is.
    pub markup: bool,
    pub kind: TextKind,
}

impl Form {
    /// Plain text, a line: all a server older than Link 1.3 sends.
    pub const PLAIN: Form = Form {
        markup: false,
        kind: TextKind::Line,
    };
    /// A line of markup.
    pub const LINE: Form = Form {
        markup: true,
        kind: TextKind::Line,
    };
}

/// What kind of text an Output is. Since Link 1.3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TextKind {
    /// The portal ends it with a line end.
    #[default]
    Line,
    /// No line end; the client is told the prompt is complete (telnet: IAC
    /// EOR or IAC GA).
    Prompt,
    /// A prompt whose answer is secret: the client hides what is typed
    /// until the answer is in.
    Secret,
}

/// Server → portal. Output, Oob, Update and Disconnect are *sequenced*: `seq` is
/// the session's output seq (from 1, one counter for the three kinds, kept
/// across servers); 0 is unsequenced, always delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToPortal {
    /// The first event of the first message, and only there.
    Hello(ServerHello),
    Output {
        session: SessionId,
        seq: u64,
        text: String,
        form: Form,
    },
    /// Out-of-band data for the client, beside the text. Sequenced like an
    /// Output. Since Link 1.3.
    Oob {
        session: SessionId,
        seq: u64,
        oob: Oob,
    },
    /// Every input of `session` up to `seq` is applied and committed.
    Ack {
        session: SessionId,
        seq: u64,
    },
    /// Input `seq` of `session` waits on work off the server's game thread
    /// (a password hash, a login delay): no sign of a stall. Since Link 1.1.
    Working {
        session: SessionId,
        seq: u64,
    },
    Update {
        session: SessionId,
        seq: u64,
        server: ServerSession,
    },
    /// Close the connection after its pending output.
    Disconnect {
        session: SessionId,
        seq: u64,
        reason: String,
    },
    Drained,
    Ready {
        sessions: u64,
    },
    Heartbeat {
        nonce: u64,
        reply: bool,
    },
}

impl ToPortal {
    /// The session and seq of a sequenced event (Output, Oob, Update,
    /// Disconnect).
    pub fn sequence_mut(&mut self) -> Option<(SessionId, &mut u64)> {
        match self {
            ToPortal::Output { session, seq, .. }
            | ToPortal::Oob { session, seq, .. }
            | ToPortal::Update { session, seq, .. }
            | ToPortal::Disconnect { session, seq, .. } => Some((*session, seq)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_colour_choice_is_parsed_back_from_its_name() {
        for choice in ColourChoice::ALL {
            assert_eq!(ColourChoice::parse(choice.name()), Some(choice));
            assert_eq!(
                ColourChoice::parse(&choice.name().to_uppercase()),
                Some(choice)
            );
        }
        assert_eq!(
            ColourChoice::parse("truecolor"),
            ColourChoice::parse("truecolour")
        );
        assert_eq!(ColourChoice::parse("rainbow"), None);
        assert_eq!(
            ColourChoice::Auto.over(crate::markup::Colours::Xterm256),
            crate::markup::Colours::Xterm256
        );
        assert_eq!(
            ColourChoice::Fixed(crate::markup::Colours::None)
                .over(crate::markup::Colours::Xterm256),
            crate::markup::Colours::None
        );
    }

    #[test]
    fn capabilities_are_named_in_mtts_order() {
        let caps = Capabilities(137);
        assert_eq!(caps.names(), ["ANSI", "256 colours", "proxy"]);
        assert!(caps.has(Capabilities::COLOURS_256));
        assert!(!caps.has(Capabilities::UTF8));
        let all = Capabilities(4095);
        assert_eq!(all.names().len(), 12);
        assert!(
            Capabilities(1 << 20).names().is_empty(),
            "unknown bits are ignored"
        );
    }
}
