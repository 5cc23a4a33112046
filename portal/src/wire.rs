//! The Link's domain model: what the portal and a server say to each other,
//! as plain Rust types, the Link's limits, and the protobuf ↔ domain
//! conversion.
//!
//! The hub speaks these types and `link` carries them over gRPC; this module
//! imports neither, so the dependency runs one way (`link` → `hub` → `wire`).
//! It is the whole of the portal's Link model, kept in one place so it can
//! move wholesale into the shared crate. With `link`, the only module of the
//! portal that sees protobuf types.

use ev::pb::link as pb;

pub type SessionId = u64;

/// What the portal knows of a connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortalPart {
    pub id: SessionId,
    pub protocol: String,
    pub peer: String,
    pub connected_at_ms: u64,
    pub client: String,
    pub width: u32,
    pub height: u32,
    pub encoding: String,
}

/// What the server told the portal to keep for it. The portal reads only
/// `stage`: to count players, and for the login and idle timeouts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerPart {
    pub stage: i32,
    pub account_id: i64,
    pub character_id: i64,
    pub extra: Vec<u8>,
}

impl ServerPart {
    pub fn logged_in(&self) -> bool {
        self.stage == pb::Stage::Playing as i32
    }

    /// A logged-in player's, for tests.
    #[cfg(test)]
    pub fn playing() -> ServerPart {
        ServerPart {
            stage: pb::Stage::Playing as i32,
            ..ServerPart::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub portal: PortalPart,
    pub server: ServerPart,
    pub acked_seq: u64,
    pub output_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Active,
    Standby,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub major: u32,
    pub minor: u32,
    pub build_id: String,
    pub generation: u64,
    pub pid: u32,
}

/// Portal → server.
#[derive(Debug, Clone, PartialEq)]
pub enum ToServer {
    Hello {
        role: Role,
        refused: String,
    },
    Opened(PortalPart),
    Input {
        session: SessionId,
        seq: u64,
        text: String,
    },
    Closed {
        session: SessionId,
        reason: String,
    },
    Sync {
        sessions: Vec<Snapshot>,
        last: bool,
    },
    Drain {
        reason: String,
    },
    Heartbeat {
        nonce: u64,
        reply: bool,
    },
    Delivered {
        session: SessionId,
        seq: u64,
    },
}

/// Server → portal. `seq` is the session's output sequence (0: unsequenced).
#[derive(Debug, Clone, PartialEq)]
pub enum FromServer {
    Output {
        session: SessionId,
        seq: u64,
        text: String,
    },
    Ack {
        session: SessionId,
        seq: u64,
    },
    /// Input `seq` waits on work off the server's game thread.
    Working {
        session: SessionId,
        seq: u64,
    },
    Update {
        session: SessionId,
        seq: u64,
        server: ServerPart,
    },
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

/// Largest number of events in one Link message, so a burst never nears
/// tonic's 4 MiB message limit.
pub const MAX_EVENTS_PER_MESSAGE: usize = 512;
/// Roughly the most text bytes in one Link message (inputs can be up to
/// `portal.max_line_bytes` each).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

// === impl conversions ===

fn version() -> pb::Version {
    pb::Version {
        major: ev::version::LINK_MAJOR,
        minor: ev::version::LINK_MINOR,
    }
}

impl From<PortalPart> for pb::PortalSession {
    fn from(p: PortalPart) -> Self {
        pb::PortalSession {
            id: p.id,
            protocol: p.protocol,
            peer: p.peer,
            connected_at_ms: p.connected_at_ms,
            client: p.client,
            width: p.width,
            height: p.height,
            encoding: p.encoding,
        }
    }
}

impl From<ServerPart> for pb::ServerSession {
    fn from(s: ServerPart) -> Self {
        pb::ServerSession {
            stage: s.stage,
            account_id: s.account_id,
            character_id: s.character_id,
            extra: s.extra,
        }
    }
}

impl From<pb::ServerSession> for ServerPart {
    fn from(s: pb::ServerSession) -> Self {
        ServerPart {
            stage: s.stage,
            account_id: s.account_id,
            character_id: s.character_id,
            extra: s.extra,
        }
    }
}

impl From<ToServer> for pb::ServerEvent {
    fn from(e: ToServer) -> Self {
        use pb::server_event::Kind;
        let kind = match e {
            ToServer::Hello { role, refused } => Kind::Hello(pb::PortalHello {
                version: Some(version()),
                build_id: ev::version::PKG_VERSION.to_string(),
                role: match role {
                    Role::Active => pb::Role::Active,
                    Role::Standby => pb::Role::Standby,
                } as i32,
                refused,
            }),
            ToServer::Opened(p) => Kind::Opened(pb::SessionOpened {
                session: Some(p.into()),
            }),
            ToServer::Input { session, seq, text } => Kind::Input(pb::Input { session, seq, text }),
            ToServer::Closed { session, reason } => {
                Kind::Closed(pb::SessionClosed { session, reason })
            }
            ToServer::Sync { sessions, last } => Kind::Sync(pb::SyncChunk {
                sessions: sessions
                    .into_iter()
                    .map(|s| pb::SessionSnapshot {
                        portal: Some(s.portal.into()),
                        server: Some(s.server.into()),
                        acked_seq: s.acked_seq,
                        output_seq: s.output_seq,
                    })
                    .collect(),
                last,
            }),
            ToServer::Drain { reason } => Kind::Drain(pb::Drain { reason }),
            ToServer::Heartbeat { nonce, reply } => Kind::Heartbeat(pb::Heartbeat { nonce, reply }),
            ToServer::Delivered { session, seq } => Kind::Delivered(pb::Delivered { session, seq }),
        };
        pb::ServerEvent { kind: Some(kind) }
    }
}

impl TryFrom<pb::PortalEvent> for FromServer {
    type Error = &'static str;
    fn try_from(e: pb::PortalEvent) -> Result<Self, Self::Error> {
        use pb::portal_event::Kind;
        Ok(match e.kind.ok_or("event without a kind")? {
            Kind::Hello(_) => return Err("a second hello"),
            Kind::Output(o) => FromServer::Output {
                session: o.session,
                seq: o.seq,
                text: o.text,
            },
            Kind::Ack(a) => FromServer::Ack {
                session: a.session,
                seq: a.seq,
            },
            Kind::Working(w) => FromServer::Working {
                session: w.session,
                seq: w.seq,
            },
            Kind::Update(u) => FromServer::Update {
                session: u.session,
                seq: u.seq,
                server: u.server.unwrap_or_default().into(),
            },
            Kind::Disconnect(d) => FromServer::Disconnect {
                session: d.session,
                seq: d.seq,
                reason: d.reason,
            },
            Kind::Drained(_) => FromServer::Drained,
            Kind::Ready(r) => FromServer::Ready {
                sessions: r.sessions,
            },
            Kind::Heartbeat(h) => FromServer::Heartbeat {
                nonce: h.nonce,
                reply: h.reply,
            },
        })
    }
}
