//! The server's names for the Link's domain model, and the outbox rows it
//! keeps sequenced events in.
//!
//! The model itself (sessions, events, limits, the protobuf conversion) is
//! the shared `ev::link`: what the portal says is an [`Inbound`], what the
//! game answers an [`Outbound`]. Only `link` converts them to protobuf;
//! nothing else in the crate sees a prost struct.

use ev::markup::Colours;

pub use ev::link::{
    ColourChoice, Form, Oob, PortalSession, ServerSession as SessionState, SessionId, Snapshot,
    Stage, TextKind, ToPortal as Outbound, ToServer as Inbound,
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

/// Plain text, a line (what a server before Link 1.3 wrote).
const ROW_OUTPUT: i64 = 1;
const ROW_UPDATE: i64 = 2;
const ROW_DISCONNECT: i64 = 3;
/// Text with its [`Form`]: one byte (bit 0 markup, bits 1-2 the kind),
/// then the text.
const ROW_TEXT: i64 = 4;
/// Out-of-band data: the name's length (4 bytes, little-endian), the name,
/// the data.
const ROW_OOB: i64 = 5;
/// An Update whose player chose colours (Link 1.5): one byte for the
/// choice, then an Update's payload. An Update left `Auto` keeps
/// `ROW_UPDATE`, which a server from before the setting reads too.
const ROW_UPDATE_COLOURS: i64 = 6;

impl OutboxRow {
    /// The row of a sequenced event (Output, Update, Disconnect); None for
    /// the others.
    pub fn of(event: &Outbound) -> Option<OutboxRow> {
        let (session, seq, kind, payload) = match event {
            Outbound::Output {
                session,
                seq,
                text,
                form,
            } if *form == Form::PLAIN => (*session, *seq, ROW_OUTPUT, text.as_bytes().to_vec()),
            Outbound::Output {
                session,
                seq,
                text,
                form,
            } => {
                let kind = match form.kind {
                    TextKind::Line => 0,
                    TextKind::Prompt => 1,
                    TextKind::Secret => 2,
                };
                let mut payload = Vec::with_capacity(1 + text.len());
                payload.push(u8::from(form.markup) | (kind << 1));
                payload.extend_from_slice(text.as_bytes());
                (*session, *seq, ROW_TEXT, payload)
            }
            Outbound::Oob { session, seq, oob } => {
                let mut payload = Vec::with_capacity(4 + oob.name.len() + oob.data.len());
                let len = u32::try_from(oob.name.len()).unwrap_or(u32::MAX);
                payload.extend_from_slice(&len.to_le_bytes());
                payload.extend_from_slice(oob.name.as_bytes());
                payload.extend_from_slice(oob.data.as_bytes());
                (*session, *seq, ROW_OOB, payload)
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
                let mut payload = Vec::with_capacity(18 + state.extra.len());
                let kind = match colour_byte(state.colours) {
                    0 => ROW_UPDATE,
                    byte => {
                        payload.push(byte);
                        ROW_UPDATE_COLOURS
                    }
                };
                payload.push(match state.stage {
                    Stage::New => 0,
                    Stage::Login => 1,
                    Stage::Playing => 2,
                });
                payload.extend_from_slice(&state.account_id.to_le_bytes());
                payload.extend_from_slice(&state.character_id.to_le_bytes());
                payload.extend_from_slice(&state.extra);
                (*session, *seq, kind, payload)
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
                form: Form::PLAIN,
            },
            ROW_TEXT => {
                let (&flags, rest) = payload.split_first()?;
                let kind = match flags >> 1 {
                    0 => TextKind::Line,
                    1 => TextKind::Prompt,
                    2 => TextKind::Secret,
                    _ => return None,
                };
                Outbound::Output {
                    session,
                    seq,
                    text: text(rest.to_vec())?,
                    form: Form {
                        markup: flags & 1 == 1,
                        kind,
                    },
                }
            }
            ROW_OOB => {
                let len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
                let name = payload.get(4..4usize.checked_add(len)?)?;
                let data = payload.get(4 + len..)?;
                Outbound::Oob {
                    session,
                    seq,
                    oob: Oob {
                        name: String::from_utf8(name.to_vec()).ok()?,
                        data: String::from_utf8(data.to_vec()).ok()?,
                    },
                }
            }
            ROW_DISCONNECT => Outbound::Disconnect {
                session,
                seq,
                reason: text(payload)?,
            },
            ROW_UPDATE | ROW_UPDATE_COLOURS => {
                let (colours, payload) = if kind == ROW_UPDATE_COLOURS {
                    let (&byte, rest) = payload.split_first()?;
                    (colour_of_byte(byte)?, rest)
                } else {
                    (ColourChoice::Auto, payload.as_slice())
                };
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
                        colours,
                    },
                }
            }
            _ => return None,
        })
    }
}

fn colour_byte(choice: ColourChoice) -> u8 {
    match choice {
        ColourChoice::Auto => 0,
        ColourChoice::Fixed(Colours::None) => 1,
        ColourChoice::Fixed(Colours::Ansi16) => 2,
        ColourChoice::Fixed(Colours::Xterm256) => 3,
        ColourChoice::Fixed(Colours::Truecolour) => 4,
    }
}

fn colour_of_byte(byte: u8) -> Option<ColourChoice> {
    ColourChoice::ALL
        .into_iter()
        .find(|c| colour_byte(*c) == byte)
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
                form: Form::PLAIN,
            },
            Outbound::Output {
                session: SessionId(3),
                seq: 10,
                text: "{red}Password:{/} ".into(),
                form: Form {
                    markup: true,
                    kind: TextKind::Secret,
                },
            },
            Outbound::Output {
                session: SessionId(3),
                seq: 11,
                text: String::new(),
                form: Form {
                    markup: false,
                    kind: TextKind::Prompt,
                },
            },
            Outbound::Oob {
                session: SessionId(3),
                seq: 12,
                oob: Oob {
                    name: "Room.Info".into(),
                    data: r#"{"name":"Limbo"}"#.into(),
                },
            },
            Outbound::Oob {
                session: SessionId(3),
                seq: 13,
                oob: Oob::default(),
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
                    colours: ColourChoice::Auto,
                },
            },
            Outbound::Update {
                session: SessionId(1),
                seq: 3,
                server: SessionState {
                    stage: Stage::Playing,
                    account_id: 5,
                    character_id: 6,
                    extra: b"{}".to_vec(),
                    colours: ColourChoice::Fixed(Colours::None),
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
        let auto = Outbound::Update {
            session: SessionId(1),
            seq: 4,
            server: SessionState::login(),
        };
        assert_eq!(
            OutboxRow::of(&auto).map(|row| row.kind),
            Some(ROW_UPDATE),
            "without a colour setting, a row a server older than it reads"
        );
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
        assert_eq!(OutboxRow::event(row(ROW_UPDATE_COLOURS, &[9; 18])), None);
        assert_eq!(OutboxRow::event(row(ROW_UPDATE_COLOURS, &[])), None);
        assert_eq!(OutboxRow::event(row(ROW_TEXT, &[])), None);
        assert_eq!(OutboxRow::event(row(ROW_TEXT, &[6, b'x'])), None);
        assert_eq!(OutboxRow::event(row(ROW_OOB, &[9, 0, 0, 0, b'x'])), None);
        assert_eq!(OutboxRow::event(row(ROW_OOB, &[255, 255, 255, 255])), None);
    }
}
