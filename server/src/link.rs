//! The Link to the portal: the only module that knows the protobuf types.
//!
//! [`Link::attach`] connects to the portal's Unix socket (waiting for it to
//! appear), opens the `Link.Attach` stream, sends our hello first and checks
//! the portal's. After that the stream is two bounded channels of domain
//! batches: a reader task turns each inbound `ToServer` into a
//! `Vec<Inbound>` (a malformed event is logged and skipped), and the outbound
//! side is a stream of [`Batch`]es turned into `ToPortal` on the way out
//! (firing a batch's `handed` once the transport asks for the next one).
//! Dropping the outbound sender ends our side of the stream.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ev::pb::link as pb;
use pb::link_client::LinkClient;
use pb::portal_event::Kind as Out;
use pb::server_event::Kind as In;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt};

use crate::event::{Batch, Inbound, Outbound, SessionId, SessionState, Snapshot, Stage};

/// Batches buffered each way. Each is a whole `ToServer`/`ToPortal`, so a few
/// dozen keep many inputs in flight without letting either side run away.
const CHANNEL_BATCHES: usize = 64;
/// Sync chunks are far below this; a larger message is a broken portal.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Between attempts to reach a portal that is not listening yet.
const RETRY_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the portal refused this server: {reason}")]
    Refused { reason: String },
    #[error("link version mismatch: portal speaks {portal}, this server speaks {ours}")]
    VersionMismatch { portal: String, ours: String },
    #[error(
        "no portal answered on {} within {waited_ms} ms ({last_error}); is the portal running?",
        path.display()
    )]
    NoPortal {
        path: PathBuf,
        waited_ms: u64,
        last_error: String,
    },
    #[error("the portal sent no hello within {0} ms")]
    HelloTimeout(u64),
    #[error("the portal closed the link before its hello")]
    ClosedEarly,
    #[error("the portal's first message was not a hello")]
    NoHello,
    #[error("opening the link: {0}")]
    Status(#[from] tonic::Status),
}

impl LinkError {
    /// The portal will not have this server (or this server cannot speak to
    /// the portal): restarting it unchanged would fail the same way.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            LinkError::Refused { .. } | LinkError::VersionMismatch { .. }
        )
    }
}

/// What this server says of itself in its hello.
#[derive(Debug, Clone)]
pub struct Hello {
    pub major: u32,
    pub minor: u32,
    pub build_id: String,
    pub generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serve now: a Sync follows at once.
    Active,
    /// Another server is active; a Sync arrives on promotion.
    Standby,
}

pub struct Link {
    pub role: Role,
    /// The portal's Link version, `major.minor`.
    pub portal_version: String,
    pub portal_build: String,
    pub inbound: mpsc::Receiver<Vec<Inbound>>,
    pub outbound: mpsc::Sender<Batch>,
    pub closed: Closed,
}

/// Completes when the portal has closed its side of the stream.
pub struct Closed(JoinHandle<()>);

impl Closed {
    /// Waits up to `grace` for the portal to close the stream, so our last
    /// messages are not cut off by the process exiting.
    pub async fn wait(self, grace: Duration) {
        if tokio::time::timeout(grace, self.0).await.is_err() {
            tracing::debug!("portal kept the link open; leaving anyway");
        }
    }
}

impl Link {
    /// Connects to the portal on `socket`, retrying until `timeout` while it
    /// is not there yet, and exchanges hellos.
    pub async fn attach(socket: &Path, hello: Hello, timeout: Duration) -> Result<Link, LinkError> {
        let deadline = Instant::now() + timeout;
        let channel = connect(socket, deadline, timeout).await?;

        let (outbound, rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
        let ours = format!("{}.{}", hello.major, hello.minor);
        let first = pb::ToPortal {
            events: vec![pb::PortalEvent {
                kind: Some(Out::Hello(pb::ServerHello {
                    version: Some(pb::Version {
                        major: hello.major,
                        minor: hello.minor,
                    }),
                    build_id: hello.build_id,
                    generation: hello.generation,
                    pid: std::process::id(),
                })),
            }],
        };
        let requests = tokio_stream::once(first).chain(Outgoing {
            rx,
            handed: None,
            rest: Default::default(),
            rest_handed: None,
        });
        let mut client = LinkClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);

        let timeout_ms = timeout.as_millis() as u64;
        let response = tokio::time::timeout_at(deadline, client.attach(requests))
            .await
            .map_err(|_| LinkError::HelloTimeout(timeout_ms))??;
        let mut stream = response.into_inner();
        let first = match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => return Err(LinkError::HelloTimeout(timeout_ms)),
            Ok(Err(status)) => return Err(status.into()),
            Ok(Ok(None)) => return Err(LinkError::ClosedEarly),
            Ok(Ok(Some(batch))) => batch,
        };
        let mut events = first.events.into_iter();
        let Some(pb::ServerEvent {
            kind: Some(In::Hello(portal)),
        }) = events.next()
        else {
            return Err(LinkError::NoHello);
        };
        if !portal.refused.is_empty() {
            return Err(LinkError::Refused {
                reason: portal.refused,
            });
        }
        let version = portal.version.unwrap_or_default();
        let portal_version = format!("{}.{}", version.major, version.minor);
        if version.major != hello.major {
            return Err(LinkError::VersionMismatch {
                portal: portal_version,
                ours,
            });
        }
        let role = match pb::Role::try_from(portal.role) {
            Ok(pb::Role::Standby) => Role::Standby,
            Ok(pb::Role::Active) => Role::Active,
            _ => {
                tracing::warn!(
                    role = portal.role,
                    "portal hello names no role; serving as active"
                );
                Role::Active
            }
        };
        let rest = convert(events);

        let (tx, inbound) = mpsc::channel(CHANNEL_BATCHES);
        let reader = tokio::spawn(read(stream, rest, tx));
        Ok(Link {
            role,
            portal_version,
            portal_build: portal.build_id,
            inbound,
            outbound,
            closed: Closed(reader),
        })
    }
}

async fn connect(
    socket: &Path,
    deadline: Instant,
    timeout: Duration,
) -> Result<tonic::transport::Channel, LinkError> {
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match ev::uds::connect(socket).await {
            Ok(channel) => return Ok(channel),
            Err(e) if Instant::now() + RETRY_INTERVAL < deadline => {
                if attempts == 1 {
                    tracing::info!("waiting for the portal on {}: {e}", socket.display());
                }
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
            Err(e) => {
                return Err(LinkError::NoPortal {
                    path: socket.to_owned(),
                    waited_ms: timeout.as_millis() as u64,
                    last_error: error_chain(&e),
                });
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The reader task: inbound batches to the engine until the stream ends. If
/// the engine stops listening it keeps reading, so [`Closed`] still sees the
/// portal's end of the stream.
async fn read(
    mut stream: tonic::Streaming<pb::ToServer>,
    first: Vec<Inbound>,
    tx: mpsc::Sender<Vec<Inbound>>,
) {
    let mut tx = Some(tx);
    let mut pending = Some(first);
    loop {
        let events = match pending.take() {
            Some(events) => events,
            None => match stream.message().await {
                Ok(Some(batch)) => convert(batch.events),
                Ok(None) => {
                    tracing::debug!("portal closed the link");
                    return;
                }
                Err(status) => {
                    if tx.is_some() {
                        tracing::warn!("link stream failed: {status}");
                    }
                    return;
                }
            },
        };
        if events.is_empty() {
            continue;
        }
        if let Some(sender) = &tx {
            if sender.send(events).await.is_err() {
                tx = None;
            }
        }
    }
}

fn convert(events: impl IntoIterator<Item = pb::ServerEvent>) -> Vec<Inbound> {
    events
        .into_iter()
        .filter_map(|event| match Inbound::try_from(event) {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::warn!("skipping a malformed event from the portal: {e}");
                None
            }
        })
        .collect()
}

fn to_portal(events: Vec<Outbound>) -> pb::ToPortal {
    pb::ToPortal {
        events: events.into_iter().map(pb::PortalEvent::from).collect(),
    }
}

/// Most events in one Link message.
const MAX_EVENTS_PER_MESSAGE: usize = 512;
/// Roughly the most bytes in one Link message: far below tonic's 4 MiB
/// default limit, so a `say` heard by ten thousand players still goes out.
const MAX_MESSAGE_TEXT: usize = 1024 * 1024;

/// The outbound side of the stream. A batch is sent in one or more messages
/// (see [`MAX_EVENTS_PER_MESSAGE`]); its `handed` fires when the transport
/// polls for the message after its last one: by then the batch is encoded
/// and passed on to be written.
struct Outgoing {
    rx: mpsc::Receiver<Batch>,
    handed: Option<oneshot::Sender<()>>,
    /// What is left of the batch being sent.
    rest: std::collections::VecDeque<Outbound>,
    rest_handed: Option<oneshot::Sender<()>>,
}

fn approximate_size(event: &Outbound) -> usize {
    32 + match event {
        Outbound::Output { text, .. } => text.len(),
        Outbound::Disconnect { reason, .. } => reason.len(),
        _ => 0,
    }
}

/// Takes the next message's worth of events (at least one).
fn next_chunk(rest: &mut std::collections::VecDeque<Outbound>) -> Vec<Outbound> {
    let mut chunk = Vec::new();
    let mut bytes = 0;
    while let Some(event) = rest.front() {
        let size = approximate_size(event);
        if !chunk.is_empty()
            && (chunk.len() >= MAX_EVENTS_PER_MESSAGE || bytes + size > MAX_MESSAGE_TEXT)
        {
            break;
        }
        bytes += size;
        chunk.extend(rest.pop_front());
    }
    chunk
}

impl Stream for Outgoing {
    type Item = pb::ToPortal;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<pb::ToPortal>> {
        if let Some(handed) = self.handed.take() {
            let _ = handed.send(());
        }
        if self.rest.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => {
                    self.rest = batch.events.into();
                    self.rest_handed = batch.handed;
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
        let chunk = next_chunk(&mut self.rest);
        if self.rest.is_empty() {
            self.handed = self.rest_handed.take();
        }
        Poll::Ready(Some(to_portal(chunk)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("event with no kind")]
    Empty,
    #[error("a second hello")]
    Hello,
    #[error("a heartbeat reply, but this server sends no heartbeats")]
    HeartbeatReply,
    #[error("{0} without its session")]
    NoSession(&'static str),
}

// === impl Inbound ===

impl TryFrom<pb::ServerEvent> for Inbound {
    type Error = Malformed;

    fn try_from(event: pb::ServerEvent) -> Result<Inbound, Malformed> {
        Ok(match event.kind.ok_or(Malformed::Empty)? {
            In::Hello(_) => return Err(Malformed::Hello),
            In::Delivered(d) => Inbound::Delivered {
                session: SessionId(d.session),
                seq: d.seq,
            },
            In::Opened(o) => {
                let session = o.session.ok_or(Malformed::NoSession("SessionOpened"))?;
                Inbound::Opened {
                    session: SessionId(session.id),
                    peer: session.peer,
                }
            }
            In::Input(i) => Inbound::Input {
                session: SessionId(i.session),
                seq: i.seq,
                text: i.text,
            },
            In::Closed(c) => Inbound::Closed {
                session: SessionId(c.session),
            },
            In::Sync(chunk) => Inbound::Sync {
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
            In::Drain(d) => Inbound::Drain { reason: d.reason },
            // We send no heartbeats, so there is nothing to match a reply to.
            In::Heartbeat(h) if h.reply => return Err(Malformed::HeartbeatReply),
            In::Heartbeat(h) => Inbound::Heartbeat { nonce: h.nonce },
        })
    }
}

// === impl Snapshot ===

impl TryFrom<pb::SessionSnapshot> for Snapshot {
    type Error = Malformed;

    fn try_from(s: pb::SessionSnapshot) -> Result<Snapshot, Malformed> {
        let portal = s.portal.ok_or(Malformed::NoSession("SessionSnapshot"))?;
        Ok(Snapshot {
            session: SessionId(portal.id),
            peer: portal.peer,
            state: s.server.map(SessionState::from).unwrap_or(SessionState {
                stage: Stage::New,
                account_id: 0,
                character_id: 0,
                extra: Vec::new(),
            }),
            output_seq: s.output_seq,
        })
    }
}

// === impl SessionState ===

impl From<pb::ServerSession> for SessionState {
    fn from(s: pb::ServerSession) -> SessionState {
        let stage = match pb::Stage::try_from(s.stage) {
            Ok(pb::Stage::New) => Stage::New,
            Ok(pb::Stage::Login) => Stage::Login,
            Ok(pb::Stage::Playing) => Stage::Playing,
            Err(_) => {
                // Greeting the player again beats leaving them stuck.
                tracing::warn!(stage = s.stage, "unknown session stage; treating it as new");
                Stage::New
            }
        };
        SessionState {
            stage,
            account_id: s.account_id,
            character_id: s.character_id,
            extra: s.extra,
        }
    }
}

impl From<SessionState> for pb::ServerSession {
    fn from(s: SessionState) -> pb::ServerSession {
        let stage = match s.stage {
            Stage::New => pb::Stage::New,
            Stage::Login => pb::Stage::Login,
            Stage::Playing => pb::Stage::Playing,
        };
        pb::ServerSession {
            stage: stage.into(),
            account_id: s.account_id,
            character_id: s.character_id,
            extra: s.extra,
        }
    }
}

// === impl Outbound ===

impl From<Outbound> for pb::PortalEvent {
    fn from(event: Outbound) -> pb::PortalEvent {
        let kind = match event {
            Outbound::Output { session, seq, text } => Out::Output(pb::Output {
                session: session.0,
                text,
                seq,
            }),
            Outbound::Ack { session, seq } => Out::Ack(pb::Ack {
                session: session.0,
                seq,
            }),
            Outbound::Working { session, seq } => Out::Working(pb::Working {
                session: session.0,
                seq,
            }),
            Outbound::Update {
                session,
                seq,
                state,
            } => Out::Update(pb::SessionUpdate {
                session: session.0,
                server: Some(state.into()),
                seq,
            }),
            Outbound::Disconnect {
                session,
                seq,
                reason,
            } => Out::Disconnect(pb::Disconnect {
                session: session.0,
                reason,
                seq,
            }),
            Outbound::Ready { sessions } => Out::Ready(pb::Ready { sessions }),
            Outbound::Heartbeat { nonce } => Out::Heartbeat(pb::Heartbeat { nonce, reply: true }),
            Outbound::Drained => Out::Drained(pb::Drained {}),
        };
        pb::PortalEvent { kind: Some(kind) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: In) -> pb::ServerEvent {
        pb::ServerEvent { kind: Some(kind) }
    }

    #[test]
    fn malformed_events_are_skipped_not_fatal() {
        let events = vec![
            pb::ServerEvent { kind: None },
            event(In::Opened(pb::SessionOpened { session: None })),
            event(In::Hello(pb::PortalHello::default())),
            event(In::Sync(pb::SyncChunk {
                sessions: vec![
                    pb::SessionSnapshot::default(),
                    pb::SessionSnapshot {
                        portal: Some(pb::PortalSession {
                            id: 4,
                            peer: "10.1.2.3:555".into(),
                            ..Default::default()
                        }),
                        server: Some(pb::ServerSession {
                            stage: 99,
                            ..Default::default()
                        }),
                        acked_seq: 0,
                        output_seq: 12,
                    },
                ],
                last: true,
            })),
            event(In::Heartbeat(pb::Heartbeat {
                nonce: 9,
                reply: false,
            })),
            event(In::Delivered(pb::Delivered { session: 4, seq: 3 })),
        ];
        let got = convert(events);
        assert_eq!(
            got,
            vec![
                Inbound::Sync {
                    sessions: vec![Snapshot {
                        session: SessionId(4),
                        peer: "10.1.2.3:555".into(),
                        state: SessionState {
                            stage: Stage::New,
                            account_id: 0,
                            character_id: 0,
                            extra: vec![]
                        },
                        output_seq: 12,
                    }],
                    last: true
                },
                Inbound::Heartbeat { nonce: 9 },
                Inbound::Delivered {
                    session: SessionId(4),
                    seq: 3
                },
            ]
        );
    }

    #[test]
    fn session_state_round_trips() {
        for stage in [Stage::New, Stage::Login, Stage::Playing] {
            let state = SessionState {
                stage,
                account_id: 3,
                character_id: -4,
                extra: vec![1, 2],
            };
            let pb: pb::ServerSession = state.clone().into();
            assert_eq!(SessionState::from(pb), state);
        }
    }

    #[test]
    fn sequenced_events_carry_their_seq() {
        let event = pb::PortalEvent::from(Outbound::Output {
            session: SessionId(2),
            seq: 7,
            text: "hi".into(),
        });
        assert_eq!(
            event.kind,
            Some(Out::Output(pb::Output {
                session: 2,
                text: "hi".into(),
                seq: 7
            }))
        );
        let event = pb::PortalEvent::from(Outbound::Disconnect {
            session: SessionId(2),
            seq: 8,
            reason: "quit".into(),
        });
        assert!(matches!(event.kind, Some(Out::Disconnect(d)) if d.seq == 8));
        let event = pb::PortalEvent::from(Outbound::Update {
            session: SessionId(2),
            seq: 9,
            state: SessionState::login(),
        });
        assert!(matches!(event.kind, Some(Out::Update(u)) if u.seq == 9));
    }

    #[test]
    fn heartbeat_is_answered_as_a_reply() {
        let event = pb::PortalEvent::from(Outbound::Heartbeat { nonce: 5 });
        assert_eq!(
            event.kind,
            Some(Out::Heartbeat(pb::Heartbeat {
                nonce: 5,
                reply: true
            }))
        );
    }
}

#[cfg(test)]
mod chunk_tests {
    use super::*;

    #[test]
    fn a_broadcast_to_many_goes_out_in_messages_under_the_limits() {
        let mut rest: std::collections::VecDeque<Outbound> = (0..10_000u64)
            .map(|i| Outbound::Output {
                session: SessionId(i),
                seq: 1,
                text: "x".repeat(200),
            })
            .collect();
        let mut total = 0;
        while !rest.is_empty() {
            let chunk = next_chunk(&mut rest);
            assert!(!chunk.is_empty() && chunk.len() <= MAX_EVENTS_PER_MESSAGE);
            let bytes: usize = chunk.iter().map(approximate_size).sum();
            assert!(bytes <= MAX_MESSAGE_TEXT, "{bytes}");
            total += chunk.len();
        }
        assert_eq!(total, 10_000);
    }

    #[test]
    fn one_huge_event_still_goes_alone() {
        let mut rest: std::collections::VecDeque<Outbound> = [Outbound::Output {
            session: SessionId(1),
            seq: 1,
            text: "x".repeat(2 * MAX_MESSAGE_TEXT),
        }]
        .into();
        assert_eq!(next_chunk(&mut rest).len(), 1);
        assert!(rest.is_empty());
    }
}
