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
    /// Where the player connects from, as the portal wrote it (`ip:port`).
    pub peer: String,
    pub state: SessionState,
    /// The highest output seq the portal delivered to the player: the
    /// outbox is re-sent above it and pruned at and below it.
    pub output_seq: u64,
}

/// An event from the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Opened {
        session: SessionId,
        /// Where the player connects from, as the portal wrote it (`ip:port`).
        peer: String,
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
    /// Every sequenced event of `session` up to `seq` reached the player:
    /// its outbox rows may go.
    Delivered {
        session: SessionId,
        seq: u64,
    },
}

/// An event for the portal. Output, Update and Disconnect are *sequenced*:
/// `seq` is the session's output seq (from 1, one counter for the three
/// kinds), given when the event is written to the outbox in the transaction
/// that produced it; 0 until then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Output {
        session: SessionId,
        seq: u64,
        text: String,
    },
    /// Every input of `session` up to `seq` is applied and committed.
    Ack {
        session: SessionId,
        seq: u64,
    },
    Update {
        session: SessionId,
        seq: u64,
        state: SessionState,
    },
    Disconnect {
        session: SessionId,
        seq: u64,
        reason: String,
    },
    Ready {
        sessions: u64,
    },
    Heartbeat {
        nonce: u64,
    },
    Drained,
    /// Input `seq` of `session` waits on password work: no sign of a stall.
    Working {
        session: SessionId,
        seq: u64,
    },
}

/// One message for the portal. `handed`, if set, is fired once the Link
/// stream has taken the message and asked for the next one (the test
/// build's `after_output` failpoint waits for it).
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Outbound>,
    pub handed: Option<tokio::sync::oneshot::Sender<()>>,
}

impl From<Vec<Outbound>> for Batch {
    fn from(events: Vec<Outbound>) -> Batch {
        Batch {
            events,
            handed: None,
        }
    }
}

/// How a sequenced event is kept in the outbox table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub session: SessionId,
    pub seq: u64,
    pub kind: i64,
    pub payload: Vec<u8>,
}

const ROW_OUTPUT: i64 = 1;
const ROW_UPDATE: i64 = 2;
const ROW_DISCONNECT: i64 = 3;

impl Outbound {
    /// The session and seq of a sequenced event (Output, Update, Disconnect).
    pub fn sequence_mut(&mut self) -> Option<(SessionId, &mut u64)> {
        match self {
            Outbound::Output { session, seq, .. }
            | Outbound::Update { session, seq, .. }
            | Outbound::Disconnect { session, seq, .. } => Some((*session, seq)),
            _ => None,
        }
    }

    /// The outbox row of a sequenced event; None for the others.
    pub fn to_row(&self) -> Option<OutboxRow> {
        let (session, seq, kind, payload) = match self {
            Outbound::Output { session, seq, text } => {
                (*session, *seq, ROW_OUTPUT, text.as_bytes().to_vec())
            }
            Outbound::Disconnect {
                session,
                seq,
                reason,
            } => (*session, *seq, ROW_DISCONNECT, reason.as_bytes().to_vec()),
            Outbound::Update {
                session,
                seq,
                state,
            } => {
                // stage (1 byte), account id, character id (8 bytes each,
                // little-endian), then `extra` as it is.
                let mut payload = Vec::with_capacity(17 + state.extra.len());
                payload.push(match state.stage {
                    Stage::New => 0,
                    Stage::Login => 1,
                    Stage::Playing => 2,
                });
                payload.extend_from_slice(&state.account_id.to_le_bytes());
                payload.extend_from_slice(&state.character_id.to_le_bytes());
                payload.extend_from_slice(&state.extra);
                (*session, *seq, ROW_UPDATE, payload)
            }
            _ => return None,
        };
        Some(OutboxRow {
            session,
            seq,
            kind,
            payload,
        })
    }

    /// The event an outbox row holds; None if the row is not one we wrote.
    pub fn from_row(row: OutboxRow) -> Option<Outbound> {
        let OutboxRow {
            session,
            seq,
            kind,
            payload,
        } = row;
        let text = |payload: Vec<u8>| String::from_utf8(payload).ok();
        Some(match kind {
            ROW_OUTPUT => Outbound::Output {
                session,
                seq,
                text: text(payload)?,
            },
            ROW_DISCONNECT => Outbound::Disconnect {
                session,
                seq,
                reason: text(payload)?,
            },
            ROW_UPDATE => {
                let stage = match payload.first()? {
                    0 => Stage::New,
                    1 => Stage::Login,
                    2 => Stage::Playing,
                    _ => return None,
                };
                let account_id = i64::from_le_bytes(payload.get(1..9)?.try_into().ok()?);
                let character_id = i64::from_le_bytes(payload.get(9..17)?.try_into().ok()?);
                Outbound::Update {
                    session,
                    seq,
                    state: SessionState {
                        stage,
                        account_id,
                        character_id,
                        extra: payload.get(17..)?.to_vec(),
                    },
                }
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequenced_events_round_trip_through_outbox_rows() {
        let events = [
            Outbound::Output {
                session: SessionId(3),
                seq: 9,
                text: "héllo\nthere".into(),
            },
            Outbound::Disconnect {
                session: SessionId(u64::MAX),
                seq: u64::MAX,
                reason: "quit".into(),
            },
            Outbound::Update {
                session: SessionId(1),
                seq: 2,
                state: SessionState {
                    stage: Stage::Playing,
                    account_id: -5,
                    character_id: i64::MAX,
                    extra: vec![0, 255, 7],
                },
            },
            Outbound::Update {
                session: SessionId(1),
                seq: 3,
                state: SessionState::login(),
            },
        ];
        for event in events {
            let row = event.to_row().unwrap();
            assert_eq!(Outbound::from_row(row), Some(event));
        }
        assert_eq!(
            Outbound::Ack {
                session: SessionId(1),
                seq: 1
            }
            .to_row(),
            None
        );
        assert_eq!(Outbound::Ready { sessions: 1 }.to_row(), None);
    }

    #[test]
    fn foreign_rows_are_refused_not_misread() {
        let row = |kind, payload: &[u8]| OutboxRow {
            session: SessionId(1),
            seq: 1,
            kind,
            payload: payload.to_vec(),
        };
        assert_eq!(Outbound::from_row(row(9, b"x")), None);
        assert_eq!(Outbound::from_row(row(ROW_OUTPUT, &[0xff, 0xfe])), None);
        assert_eq!(Outbound::from_row(row(ROW_UPDATE, &[1, 2, 3])), None);
        assert_eq!(Outbound::from_row(row(ROW_UPDATE, &[7; 17])), None);
    }
}
