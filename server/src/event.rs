//! The server's names for the Link's domain model, and the outbox rows it
//! keeps sequenced events in.
//!
//! The model itself (sessions, events, limits, the protobuf conversion) is
//! the shared `ev::link`: what the portal says is an [`Inbound`], what the
//! game answers an [`Outbound`]. Only `link` converts them to protobuf;
//! nothing else in the crate sees a prost struct.

pub use ev::link::{
    PortalSession, ServerSession as SessionState, SessionId, Snapshot, Stage, ToPortal as Outbound,
    ToServer as Inbound,
};

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

impl OutboxRow {
    /// The row of a sequenced event (Output, Update, Disconnect); None for
    /// the others.
    pub fn of(event: &Outbound) -> Option<OutboxRow> {
        let (session, seq, kind, payload) = match event {
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
                server: state,
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

    /// The event this row holds; None if the row is not one we wrote.
    pub fn event(self) -> Option<Outbound> {
        let OutboxRow {
            session,
            seq,
            kind,
            payload,
        } = self;
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
                    server: SessionState {
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
                server: SessionState {
                    stage: Stage::Playing,
                    account_id: -5,
                    character_id: i64::MAX,
                    extra: vec![0, 255, 7],
                },
            },
            Outbound::Update {
                session: SessionId(1),
                seq: 3,
                server: SessionState::login(),
            },
        ];
        for event in events {
            let row = OutboxRow::of(&event).unwrap();
            assert_eq!(row.event(), Some(event));
        }
        assert_eq!(
            OutboxRow::of(&Outbound::Ack {
                session: SessionId(1),
                seq: 1
            }),
            None
        );
        assert_eq!(OutboxRow::of(&Outbound::Ready { sessions: 1 }), None);
    }

    #[test]
    fn foreign_rows_are_refused_not_misread() {
        let row = |kind, payload: &[u8]| OutboxRow {
            session: SessionId(1),
            seq: 1,
            kind,
            payload: payload.to_vec(),
        };
        assert_eq!(OutboxRow::event(row(9, b"x")), None);
        assert_eq!(OutboxRow::event(row(ROW_OUTPUT, &[0xff, 0xfe])), None);
        assert_eq!(OutboxRow::event(row(ROW_UPDATE, &[1, 2, 3])), None);
        assert_eq!(OutboxRow::event(row(ROW_UPDATE, &[7; 17])), None);
    }
}
