//! The one protobuf ↔ domain conversion of the Link, both directions, for
//! both sides: each side encodes what it sends and decodes what it receives
//! with the same code, so the two can't drift apart.
//!
//! Decoding is lenient where a default does no harm (a missing version is
//! 0.0, a missing server part is a new session, an unknown stage is `New`
//! and an unknown role `Active`, each logged) and refuses an event it
//! cannot place ([`Malformed`]); the side's stream handling logs and skips
//! it. A snapshot it cannot place is skipped from its Sync alone.

use crate::markup::Colours;
use crate::pb::link as pb;
use pb::portal_event::Kind as FromServerKind;
use pb::server_event::Kind as FromPortalKind;

use super::{
    Capabilities, ColourChoice, Form, Oob, PortalHello, PortalSession, Role, ServerHello,
    ServerSession, SessionId, Snapshot, Stage, TextKind, ToPortal, ToServer,
};

/// Why a protobuf event has no domain meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("event without a kind")]
    Empty,
    #[error("{0} without its session")]
    NoSession(&'static str),
}

// === messages ===

impl From<Vec<ToServer>> for pb::ToServer {
    fn from(events: Vec<ToServer>) -> Self {
        pb::ToServer {
            events: events.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Vec<ToPortal>> for pb::ToPortal {
    fn from(events: Vec<ToPortal>) -> Self {
        pb::ToPortal {
            events: events.into_iter().map(Into::into).collect(),
        }
    }
}

// === small parts ===

fn version(major: u32, minor: u32) -> Option<pb::Version> {
    Some(pb::Version { major, minor })
}

impl From<Stage> for pb::Stage {
    fn from(stage: Stage) -> Self {
        match stage {
            Stage::New => pb::Stage::New,
            Stage::Login => pb::Stage::Login,
            Stage::Playing => pb::Stage::Playing,
        }
    }
}

fn stage_of(stage: i32) -> Stage {
    match pb::Stage::try_from(stage) {
        Ok(pb::Stage::New) => Stage::New,
        Ok(pb::Stage::Login) => Stage::Login,
        Ok(pb::Stage::Playing) => Stage::Playing,
        Err(_) => {
            // Greeting the player again beats leaving them stuck.
            tracing::warn!(stage, "unknown session stage; treating it as new");
            Stage::New
        }
    }
}

impl From<Role> for pb::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::Active => pb::Role::Active,
            Role::Standby => pb::Role::Standby,
        }
    }
}

fn role_of(role: i32) -> Role {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Standby) => Role::Standby,
        Ok(pb::Role::Active) => Role::Active,
        _ => {
            tracing::warn!(role, "portal hello names no role; serving as active");
            Role::Active
        }
    }
}

impl From<PortalSession> for pb::PortalSession {
    fn from(p: PortalSession) -> Self {
        pb::PortalSession {
            id: p.id.0,
            protocol: p.protocol,
            peer: p.peer,
            connected_at_ms: p.connected_at_ms,
            client: p.client,
            width: p.width,
            height: p.height,
            encoding: p.encoding,
            terminal: p.terminal,
            capabilities: p.capabilities.0,
        }
    }
}

impl From<pb::PortalSession> for PortalSession {
    fn from(p: pb::PortalSession) -> Self {
        PortalSession {
            id: SessionId(p.id),
            protocol: p.protocol,
            peer: p.peer,
            connected_at_ms: p.connected_at_ms,
            client: p.client,
            width: p.width,
            height: p.height,
            encoding: p.encoding,
            terminal: p.terminal,
            capabilities: Capabilities(p.capabilities),
        }
    }
}

impl From<ServerSession> for pb::ServerSession {
    fn from(s: ServerSession) -> Self {
        pb::ServerSession {
            stage: pb::Stage::from(s.stage).into(),
            account_id: s.account_id,
            character_id: s.character_id,
            extra: s.extra,
            colours: pb::Colours::from(s.colours).into(),
        }
    }
}

impl From<pb::ServerSession> for ServerSession {
    fn from(s: pb::ServerSession) -> Self {
        ServerSession {
            stage: stage_of(s.stage),
            account_id: s.account_id,
            character_id: s.character_id,
            extra: s.extra,
            colours: colours_of(s.colours),
        }
    }
}

// === impl ColourChoice ===

impl From<ColourChoice> for pb::Colours {
    fn from(c: ColourChoice) -> Self {
        match c {
            ColourChoice::Auto => pb::Colours::Auto,
            ColourChoice::Fixed(Colours::None) => pb::Colours::Plain,
            ColourChoice::Fixed(Colours::Ansi16) => pb::Colours::Ansi16,
            ColourChoice::Fixed(Colours::Xterm256) => pb::Colours::Xterm256,
            ColourChoice::Fixed(Colours::Truecolour) => pb::Colours::Truecolour,
        }
    }
}

/// A number from a newer peer that this build does not know is `Auto`: the
/// client's own colours, as before the setting existed.
fn colours_of(n: i32) -> ColourChoice {
    match pb::Colours::try_from(n) {
        Ok(pb::Colours::Plain) => ColourChoice::Fixed(Colours::None),
        Ok(pb::Colours::Ansi16) => ColourChoice::Fixed(Colours::Ansi16),
        Ok(pb::Colours::Xterm256) => ColourChoice::Fixed(Colours::Xterm256),
        Ok(pb::Colours::Truecolour) => ColourChoice::Fixed(Colours::Truecolour),
        Ok(pb::Colours::Auto) | Err(_) => ColourChoice::Auto,
    }
}

impl From<Snapshot> for pb::SessionSnapshot {
    fn from(s: Snapshot) -> Self {
        pb::SessionSnapshot {
            portal: Some(s.portal.into()),
            server: Some(s.server.into()),
            acked_seq: s.acked_seq,
            output_seq: s.output_seq,
        }
    }
}

impl TryFrom<pb::SessionSnapshot> for Snapshot {
    type Error = Malformed;

    fn try_from(s: pb::SessionSnapshot) -> Result<Self, Malformed> {
        let portal = s.portal.ok_or(Malformed::NoSession("SessionSnapshot"))?;
        Ok(Snapshot {
            portal: portal.into(),
            server: s.server.map(Into::into).unwrap_or_default(),
            acked_seq: s.acked_seq,
            output_seq: s.output_seq,
        })
    }
}

// === hellos ===

impl From<ServerHello> for pb::ServerHello {
    fn from(h: ServerHello) -> Self {
        pb::ServerHello {
            version: version(h.major, h.minor),
            build_id: h.build_id,
            generation: h.generation,
            pid: h.pid,
        }
    }
}

impl From<pb::ServerHello> for ServerHello {
    fn from(h: pb::ServerHello) -> Self {
        let v = h.version.unwrap_or_default();
        ServerHello {
            major: v.major,
            minor: v.minor,
            build_id: h.build_id,
            generation: h.generation,
            pid: h.pid,
        }
    }
}

impl From<PortalHello> for pb::PortalHello {
    fn from(h: PortalHello) -> Self {
        pb::PortalHello {
            version: version(h.major, h.minor),
            build_id: h.build_id,
            role: pb::Role::from(h.role).into(),
            refused: h.refused,
        }
    }
}

impl From<pb::PortalHello> for PortalHello {
    fn from(h: pb::PortalHello) -> Self {
        let v = h.version.unwrap_or_default();
        // A refusal names no role; only a hello that serves needs one.
        let role = if h.refused.is_empty() {
            role_of(h.role)
        } else {
            Role::Standby
        };
        PortalHello {
            major: v.major,
            minor: v.minor,
            build_id: h.build_id,
            role,
            refused: h.refused,
        }
    }
}

// === portal → server ===

impl From<ToServer> for pb::ServerEvent {
    fn from(e: ToServer) -> Self {
        use FromPortalKind as K;
        let kind = match e {
            ToServer::Hello(h) => K::Hello(h.into()),
            ToServer::Opened(p) => K::Opened(pb::SessionOpened {
                session: Some(p.into()),
            }),
            ToServer::SessionInfo(p) => K::Info(pb::SessionInfo {
                session: Some(p.into()),
            }),
            ToServer::Input { session, seq, text } => K::Input(pb::Input {
                session: session.0,
                seq,
                text,
            }),
            ToServer::Closed { session, reason } => K::Closed(pb::SessionClosed {
                session: session.0,
                reason,
            }),
            ToServer::Sync { sessions, last } => K::Sync(pb::SyncChunk {
                sessions: sessions.into_iter().map(Into::into).collect(),
                last,
            }),
            ToServer::Drain { reason } => K::Drain(pb::Drain { reason }),
            ToServer::Heartbeat { nonce, reply } => K::Heartbeat(pb::Heartbeat { nonce, reply }),
            ToServer::Delivered { session, seq } => K::Delivered(pb::Delivered {
                session: session.0,
                seq,
            }),
            ToServer::StaffNotice { text } => K::StaffNotice(pb::StaffNotice { text }),
            ToServer::Oob { session, seq, oob } => K::Oob(pb::ClientOob {
                session: session.0,
                seq,
                name: oob.name,
                data: oob.data,
            }),
        };
        pb::ServerEvent { kind: Some(kind) }
    }
}

impl TryFrom<pb::ServerEvent> for ToServer {
    type Error = Malformed;

    fn try_from(e: pb::ServerEvent) -> Result<Self, Malformed> {
        use FromPortalKind as K;
        Ok(match e.kind.ok_or(Malformed::Empty)? {
            K::Hello(h) => ToServer::Hello(h.into()),
            K::Opened(o) => ToServer::Opened(
                o.session
                    .ok_or(Malformed::NoSession("SessionOpened"))?
                    .into(),
            ),
            K::Info(i) => {
                ToServer::SessionInfo(i.session.ok_or(Malformed::NoSession("SessionInfo"))?.into())
            }
            K::Input(i) => ToServer::Input {
                session: SessionId(i.session),
                seq: i.seq,
                text: i.text,
            },
            K::Closed(c) => ToServer::Closed {
                session: SessionId(c.session),
                reason: c.reason,
            },
            K::Sync(chunk) => ToServer::Sync {
                sessions: chunk
                    .sessions
                    .into_iter()
                    .filter_map(|s| match Snapshot::try_from(s) {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::warn!("skipping a malformed snapshot in a Sync: {e}");
                            None
                        }
                    })
                    .collect(),
                last: chunk.last,
            },
            K::Drain(d) => ToServer::Drain { reason: d.reason },
            K::Heartbeat(h) => ToServer::Heartbeat {
                nonce: h.nonce,
                reply: h.reply,
            },
            K::Delivered(d) => ToServer::Delivered {
                session: SessionId(d.session),
                seq: d.seq,
            },
            K::StaffNotice(n) => ToServer::StaffNotice { text: n.text },
            K::Oob(o) => ToServer::Oob {
                session: SessionId(o.session),
                seq: o.seq,
                oob: Oob {
                    name: o.name,
                    data: o.data,
                },
            },
        })
    }
}

// === server → portal ===

impl From<ToPortal> for pb::PortalEvent {
    fn from(e: ToPortal) -> Self {
        use FromServerKind as K;
        let kind = match e {
            ToPortal::Hello(h) => K::Hello(h.into()),
            ToPortal::Output {
                session,
                seq,
                text,
                form,
            } => K::Output(pb::Output {
                session: session.0,
                text,
                seq,
                markup: form.markup,
                kind: match form.kind {
                    TextKind::Line => pb::TextKind::Line,
                    TextKind::Prompt => pb::TextKind::Prompt,
                    TextKind::Secret => pb::TextKind::Secret,
                }
                .into(),
            }),
            ToPortal::Oob { session, seq, oob } => K::Oob(pb::ServerOob {
                session: session.0,
                seq,
                name: oob.name,
                data: oob.data,
            }),
            ToPortal::Ack { session, seq } => K::Ack(pb::Ack {
                session: session.0,
                seq,
            }),
            ToPortal::Working { session, seq } => K::Working(pb::Working {
                session: session.0,
                seq,
            }),
            ToPortal::Update {
                session,
                seq,
                server,
            } => K::Update(pb::SessionUpdate {
                session: session.0,
                server: Some(server.into()),
                seq,
            }),
            ToPortal::Disconnect {
                session,
                seq,
                reason,
            } => K::Disconnect(pb::Disconnect {
                session: session.0,
                reason,
                seq,
            }),
            ToPortal::Drained => K::Drained(pb::Drained {}),
            ToPortal::Ready { sessions } => K::Ready(pb::Ready { sessions }),
            ToPortal::Heartbeat { nonce, reply } => K::Heartbeat(pb::Heartbeat { nonce, reply }),
        };
        pb::PortalEvent { kind: Some(kind) }
    }
}

impl TryFrom<pb::PortalEvent> for ToPortal {
    type Error = Malformed;

    fn try_from(e: pb::PortalEvent) -> Result<Self, Malformed> {
        use FromServerKind as K;
        Ok(match e.kind.ok_or(Malformed::Empty)? {
            K::Hello(h) => ToPortal::Hello(h.into()),
            K::Output(o) => ToPortal::Output {
                session: SessionId(o.session),
                seq: o.seq,
                form: Form {
                    markup: o.markup,
                    // A kind this build does not know is shown as a line.
                    kind: match pb::TextKind::try_from(o.kind) {
                        Ok(pb::TextKind::Prompt) => TextKind::Prompt,
                        Ok(pb::TextKind::Secret) => TextKind::Secret,
                        _ => TextKind::Line,
                    },
                },
                text: o.text,
            },
            K::Oob(o) => ToPortal::Oob {
                session: SessionId(o.session),
                seq: o.seq,
                oob: Oob {
                    name: o.name,
                    data: o.data,
                },
            },
            K::Ack(a) => ToPortal::Ack {
                session: SessionId(a.session),
                seq: a.seq,
            },
            K::Working(w) => ToPortal::Working {
                session: SessionId(w.session),
                seq: w.seq,
            },
            K::Update(u) => ToPortal::Update {
                session: SessionId(u.session),
                seq: u.seq,
                server: u.server.map(Into::into).unwrap_or_default(),
            },
            K::Disconnect(d) => ToPortal::Disconnect {
                session: SessionId(d.session),
                seq: d.seq,
                reason: d.reason,
            },
            K::Drained(_) => ToPortal::Drained,
            K::Ready(r) => ToPortal::Ready {
                sessions: r.sessions,
            },
            K::Heartbeat(h) => ToPortal::Heartbeat {
                nonce: h.nonce,
                reply: h.reply,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: u64) -> Snapshot {
        Snapshot {
            portal: PortalSession {
                id: SessionId(id),
                protocol: "telnet".into(),
                peer: "10.1.2.3:555".into(),
                connected_at_ms: 1_700_000_000_000,
                client: "tintin++".into(),
                width: 80,
                height: 24,
                encoding: "utf-8".into(),
                terminal: "XTERM-256COLOR".into(),
                capabilities: Capabilities(Capabilities::ANSI | Capabilities::SCREEN_READER),
            },
            server: ServerSession {
                stage: Stage::Playing,
                account_id: 3,
                character_id: -4,
                extra: vec![1, 2],
                colours: ColourChoice::Fixed(Colours::Ansi16),
            },
            acked_seq: 7,
            output_seq: 12,
        }
    }

    #[test]
    fn every_event_to_a_server_round_trips() {
        let s = SessionId(u64::MAX);
        let events = vec![
            ToServer::Hello(PortalHello::ours(Role::Active, String::new())),
            ToServer::Hello(PortalHello::ours(Role::Standby, String::new())),
            ToServer::Hello(PortalHello {
                major: 9,
                minor: 1,
                build_id: "x".into(),
                role: Role::Standby,
                refused: "version mismatch".into(),
            }),
            ToServer::Opened(snapshot(1).portal),
            ToServer::SessionInfo(snapshot(2).portal),
            ToServer::SessionInfo(PortalSession {
                id: s,
                ..Default::default()
            }),
            ToServer::Input {
                session: s,
                seq: 2,
                text: "héllo".into(),
            },
            ToServer::Closed {
                session: s,
                reason: "quit".into(),
            },
            ToServer::Sync {
                sessions: vec![snapshot(1), snapshot(2), Snapshot::default()],
                last: true,
            },
            ToServer::Drain {
                reason: "reload".into(),
            },
            ToServer::Heartbeat {
                nonce: 5,
                reply: false,
            },
            ToServer::Heartbeat {
                nonce: 6,
                reply: true,
            },
            ToServer::Delivered { session: s, seq: 3 },
            ToServer::StaffNotice {
                text: "auto-reload failed".into(),
            },
            ToServer::Oob {
                session: s,
                seq: 4,
                oob: Oob {
                    name: "Char.Skills.Get".into(),
                    data: r#"{"group":"all"}"#.into(),
                },
            },
        ];
        for event in events {
            let pb = pb::ServerEvent::from(event.clone());
            assert_eq!(ToServer::try_from(pb), Ok(event));
        }
    }

    #[test]
    fn every_event_to_the_portal_round_trips() {
        let s = SessionId(9);
        let mut events = vec![
            ToPortal::Hello(ServerHello {
                major: 1,
                minor: 1,
                build_id: "abc".into(),
                generation: 4,
                pid: 77,
            }),
            ToPortal::Output {
                session: s,
                seq: 1,
                text: "hi".into(),
                form: Form::PLAIN,
            },
            ToPortal::Oob {
                session: s,
                seq: 2,
                oob: Oob {
                    name: "Char.Vitals".into(),
                    data: r#"{"hp":3}"#.into(),
                },
            },
            ToPortal::Ack { session: s, seq: 2 },
            ToPortal::Working { session: s, seq: 3 },
            ToPortal::Disconnect {
                session: s,
                seq: 4,
                reason: "bye".into(),
            },
            ToPortal::Drained,
            ToPortal::Ready { sessions: 10 },
            ToPortal::Heartbeat {
                nonce: 5,
                reply: true,
            },
            ToPortal::Heartbeat {
                nonce: 6,
                reply: false,
            },
        ];
        for kind in [TextKind::Line, TextKind::Prompt, TextKind::Secret] {
            events.push(ToPortal::Output {
                session: s,
                seq: 3,
                text: "{red}Password:{/} ".into(),
                form: Form { markup: true, kind },
            });
        }
        for stage in [Stage::New, Stage::Login, Stage::Playing] {
            events.push(ToPortal::Update {
                session: s,
                seq: 5,
                server: ServerSession {
                    stage,
                    ..snapshot(1).server
                },
            });
        }
        for colours in ColourChoice::ALL {
            events.push(ToPortal::Update {
                session: s,
                seq: 6,
                server: ServerSession {
                    colours,
                    ..snapshot(1).server
                },
            });
        }
        for event in events {
            let pb = pb::PortalEvent::from(event.clone());
            assert_eq!(ToPortal::try_from(pb), Ok(event));
        }
    }

    #[test]
    fn sequenced_events_carry_their_seq_on_the_wire() {
        let event = pb::PortalEvent::from(ToPortal::Output {
            session: SessionId(2),
            seq: 7,
            text: "hi".into(),
            form: Form::PLAIN,
        });
        assert_eq!(
            event.kind,
            Some(FromServerKind::Output(pb::Output {
                session: 2,
                text: "hi".into(),
                seq: 7,
                ..Default::default()
            }))
        );
        let event = pb::PortalEvent::from(ToPortal::Disconnect {
            session: SessionId(2),
            seq: 8,
            reason: "quit".into(),
        });
        assert!(matches!(event.kind, Some(FromServerKind::Disconnect(d)) if d.seq == 8));
        let event = pb::PortalEvent::from(ToPortal::Update {
            session: SessionId(2),
            seq: 9,
            server: ServerSession::login(),
        });
        assert!(matches!(event.kind, Some(FromServerKind::Update(u))
            if u.seq == 9 && u.server.as_ref().is_some_and(|s| s.stage == pb::Stage::Login as i32)));
    }

    #[test]
    fn our_hello_names_this_build() {
        let pb = pb::PortalHello::from(PortalHello::ours(Role::Standby, String::new()));
        let v = pb.version.unwrap_or_default();
        assert_eq!(
            (v.major, v.minor),
            (crate::version::LINK_MAJOR, crate::version::LINK_MINOR)
        );
        assert_eq!(pb.build_id, crate::version::PKG_VERSION);
        assert_eq!(pb.role, pb::Role::Standby as i32);
    }

    #[test]
    fn events_that_cannot_be_placed_are_refused_with_a_reason() {
        assert_eq!(
            ToServer::try_from(pb::ServerEvent { kind: None }),
            Err(Malformed::Empty)
        );
        assert_eq!(
            ToPortal::try_from(pb::PortalEvent { kind: None }),
            Err(Malformed::Empty)
        );
        let opened = pb::ServerEvent {
            kind: Some(FromPortalKind::Opened(pb::SessionOpened { session: None })),
        };
        let err = ToServer::try_from(opened).unwrap_err();
        assert_eq!(err, Malformed::NoSession("SessionOpened"));
        assert_eq!(err.to_string(), "SessionOpened without its session");
        let info = pb::ServerEvent {
            kind: Some(FromPortalKind::Info(pb::SessionInfo { session: None })),
        };
        assert_eq!(
            ToServer::try_from(info),
            Err(Malformed::NoSession("SessionInfo"))
        );
    }

    #[test]
    fn a_sync_keeps_what_it_can_place_and_defaults_the_rest() {
        let sync = pb::ServerEvent {
            kind: Some(FromPortalKind::Sync(pb::SyncChunk {
                sessions: vec![
                    // No portal part: no session to restore.
                    pb::SessionSnapshot::default(),
                    pb::SessionSnapshot {
                        portal: Some(pb::PortalSession {
                            id: 4,
                            peer: "10.1.2.3:555".into(),
                            ..Default::default()
                        }),
                        server: Some(pb::ServerSession {
                            stage: 99,
                            account_id: 5,
                            ..Default::default()
                        }),
                        acked_seq: 0,
                        output_seq: 12,
                    },
                    pb::SessionSnapshot {
                        portal: Some(pb::PortalSession {
                            id: 6,
                            ..Default::default()
                        }),
                        server: None,
                        acked_seq: 1,
                        output_seq: 0,
                    },
                ],
                last: true,
            })),
        };
        let expected = ToServer::Sync {
            sessions: vec![
                Snapshot {
                    portal: PortalSession {
                        id: SessionId(4),
                        peer: "10.1.2.3:555".into(),
                        ..Default::default()
                    },
                    // An unknown stage is a new session.
                    server: ServerSession {
                        stage: Stage::New,
                        account_id: 5,
                        ..Default::default()
                    },
                    acked_seq: 0,
                    output_seq: 12,
                },
                Snapshot {
                    portal: PortalSession {
                        id: SessionId(6),
                        ..Default::default()
                    },
                    server: ServerSession::default(),
                    acked_seq: 1,
                    output_seq: 0,
                },
            ],
            last: true,
        };
        assert_eq!(ToServer::try_from(sync), Ok(expected));
    }

    #[test]
    fn missing_parts_default_harmlessly() {
        let update = pb::PortalEvent {
            kind: Some(FromServerKind::Update(pb::SessionUpdate {
                session: 3,
                server: None,
                seq: 2,
            })),
        };
        assert_eq!(
            ToPortal::try_from(update),
            Ok(ToPortal::Update {
                session: SessionId(3),
                seq: 2,
                server: ServerSession::default()
            })
        );
        let hello = pb::PortalHello {
            version: None,
            build_id: "b".into(),
            role: pb::Role::Unspecified as i32,
            refused: String::new(),
        };
        assert_eq!(
            PortalHello::from(hello),
            PortalHello {
                major: 0,
                minor: 0,
                build_id: "b".into(),
                role: Role::Active,
                refused: String::new(),
            }
        );
    }

    #[test]
    fn a_server_older_than_1_5_leaves_colours_to_the_client() {
        // A 1.4 server's ServerSession has no field 5: it decodes as 0.
        let old = pb::ServerSession {
            stage: pb::Stage::Playing.into(),
            account_id: 1,
            character_id: 2,
            extra: Vec::new(),
            ..Default::default()
        };
        assert_eq!(ServerSession::from(old).colours, ColourChoice::Auto);
        // A number a newer peer may add one day is not misread as a colour.
        let newer = pb::ServerSession {
            colours: 99,
            ..Default::default()
        };
        assert_eq!(ServerSession::from(newer).colours, ColourChoice::Auto);
    }
}
