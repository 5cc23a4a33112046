//! The server's view of the Link: what the portal tells the game and what the
//! game answers, as plain Rust types. `link` converts these to and from the
//! protobuf types; nothing else in the crate sees a prost struct.

use std::fmt;

/// A player connection, numbered by the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a session is in its life, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No server has greeted it yet: it is owed the welcome screen.
    New,
    /// At the login screen.
    Login,
    /// Playing a character.
    Playing,
}

/// The part of a session the server owns. The portal keeps the latest copy, so
/// a new server (after a reload or a crash) can pick the session up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub stage: Stage,
    /// 0 when not logged in.
    pub account_id: i64,
    /// 0 when not playing.
    pub character_id: i64,
    /// Small opaque state a game wants back after a reload; passed through.
    pub extra: Vec<u8>,
}

impl SessionState {
    pub fn login() -> SessionState {
        SessionState {
            stage: Stage::Login,
            account_id: 0,
            character_id: 0,
            extra: Vec::new(),
        }
    }
}

/// One session as a Sync restores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub session: SessionId,
    pub state: SessionState,
}

/// An event from the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Opened {
        session: SessionId,
    },
    /// `seq` counts the session's inputs from 1, without gaps.
    Input {
        session: SessionId,
        seq: u64,
        text: String,
    },
    Closed {
        session: SessionId,
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
    /// The portal checks that the server is alive; answer with the nonce.
    Heartbeat {
        nonce: u64,
    },
}

/// An event for the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Output {
        session: SessionId,
        text: String,
    },
    /// Every input of `session` up to `seq` is applied and committed.
    Ack {
        session: SessionId,
        seq: u64,
    },
    Update {
        session: SessionId,
        state: SessionState,
    },
    Disconnect {
        session: SessionId,
        reason: String,
    },
    Ready {
        sessions: u64,
    },
    Heartbeat {
        nonce: u64,
    },
    Drained,
}
