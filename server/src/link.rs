//! The Link to the portal: the server's side of the stream.
//!
//! [`Link::attach`] connects to the portal's Unix socket (waiting for it to
//! appear), opens the `Link.Attach` stream, sends our hello first and checks
//! the portal's. After that the stream is two bounded channels of domain
//! batches: a reader task turns each inbound `ToServer` into a
//! `Vec<Inbound>` (a malformed event is logged and skipped), and the outbound
//! side is a stream of [`Batch`]es cut into messages by `ev::link`'s batcher
//! on the way out (firing a batch's `handed` once the transport asks for the
//! next one). Dropping the outbound sender ends our side of the stream. The
//! model and its protobuf conversion are `ev::link`'s; with it, this is the
//! only module of the server that sees protobuf types.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ev::link::{Batcher, MAX_MESSAGE_BYTES, PortalHello, Role, ServerHello};
use ev::pb::link as pb;
use pb::link_client::LinkClient;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt};

use crate::event::{Batch, Inbound, Outbound};

/// Batches buffered each way. Each is a whole `ToServer`/`ToPortal`, so a few
/// dozen keep many inputs in flight without letting either side run away.
const CHANNEL_BATCHES: usize = 64;
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
    pub async fn attach(
        socket: &Path,
        hello: ServerHello,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        let deadline = Instant::now() + timeout;
        let channel = connect(socket, deadline, timeout).await?;

        let (outbound, rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
        let ours = format!("{}.{}", hello.major, hello.minor);
        let major = hello.major;
        let first = pb::ToPortal::from(vec![Outbound::Hello(hello)]);
        let requests = tokio_stream::once(first).chain(Outgoing {
            rx,
            handed: None,
            rest: VecDeque::new(),
            rest_handed: None,
        });
        let mut client = LinkClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);

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
        let Some(Ok(Inbound::Hello(portal))) = events.next().map(Inbound::try_from) else {
            return Err(LinkError::NoHello);
        };
        let PortalHello {
            major: portal_major,
            minor: portal_minor,
            build_id: portal_build,
            role,
            refused,
        } = portal;
        if !refused.is_empty() {
            return Err(LinkError::Refused { reason: refused });
        }
        let portal_version = format!("{portal_major}.{portal_minor}");
        if portal_major != major {
            return Err(LinkError::VersionMismatch {
                portal: portal_version,
                ours,
            });
        }
        let rest = convert(events);

        let (tx, inbound) = mpsc::channel(CHANNEL_BATCHES);
        let reader = tokio::spawn(read(stream, rest, tx));
        Ok(Link {
            role,
            portal_version,
            portal_build,
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

/// The events of an inbound message the engine should see. A malformed
/// one is skipped, as is a hello (only the first message has one) and a
/// heartbeat reply: this server sends no heartbeats to match one to.
fn convert(events: impl IntoIterator<Item = pb::ServerEvent>) -> Vec<Inbound> {
    events
        .into_iter()
        .filter_map(|event| match Inbound::try_from(event) {
            Ok(Inbound::Hello(_)) => {
                tracing::warn!("skipping a malformed event from the portal: a second hello");
                None
            }
            Ok(Inbound::Heartbeat { reply: true, .. }) => {
                tracing::warn!(
                    "skipping a malformed event from the portal: a heartbeat reply, \
                     but this server sends no heartbeats"
                );
                None
            }
            Ok(event) => Some(event),
            Err(e) => {
                tracing::warn!("skipping a malformed event from the portal: {e}");
                None
            }
        })
        .collect()
}

/// The outbound side of the stream. A batch is sent in one or more messages
/// (cut by [`Batcher`]); its `handed` fires when the transport polls for the
/// message after its last one: by then the batch is encoded and passed on to
/// be written.
struct Outgoing {
    rx: mpsc::Receiver<Batch>,
    handed: Option<oneshot::Sender<()>>,
    /// The messages left of the batch being sent.
    rest: VecDeque<Vec<Outbound>>,
    rest_handed: Option<oneshot::Sender<()>>,
}

impl Stream for Outgoing {
    type Item = pb::ToPortal;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<pb::ToPortal>> {
        if let Some(handed) = self.handed.take() {
            let _ = handed.send(());
        }
        // A batch without events still goes out (as an empty message), so
        // its `handed` fires as before.
        let message = match self.rest.pop_front() {
            Some(message) => message,
            None => match self.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => {
                    self.rest = Batcher::split(batch.events).into();
                    self.rest_handed = batch.handed;
                    self.rest.pop_front().unwrap_or_default()
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            },
        };
        if self.rest.is_empty() {
            self.handed = self.rest_handed.take();
        }
        Poll::Ready(Some(pb::ToPortal::from(message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{SessionId, SessionState, Snapshot, Stage};
    use ev::link::PortalSession;
    use pb::server_event::Kind as In;

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
                nonce: 8,
                reply: true,
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
                        portal: PortalSession {
                            id: SessionId(4),
                            peer: "10.1.2.3:555".into(),
                            ..Default::default()
                        },
                        server: SessionState {
                            stage: Stage::New,
                            account_id: 0,
                            character_id: 0,
                            extra: vec![],
                            colours: ev::link::ColourChoice::Auto,
                        },
                        acked_seq: 0,
                        output_seq: 12,
                    }],
                    last: true
                },
                Inbound::Heartbeat {
                    nonce: 9,
                    reply: false
                },
                Inbound::Delivered {
                    session: SessionId(4),
                    seq: 3
                },
            ]
        );
    }
}
