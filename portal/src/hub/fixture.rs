//! The hub tests' fixture: a hub on its own task, fake sessions and fake
//! servers driven through its API, and what every hub test imports.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::api::{ConnId, HubSender, Promoted, StatusInfo, channel};
use super::{Hub, HubConfig};
use ev::link::{PortalSession, ServerHello};

pub use super::api::{AdminRequest, HubEvent, Outbound};
pub use ev::link::{Oob, PortalHello, Role, ServerSession, SessionId, ToPortal, ToServer};
pub use std::time::Duration;
pub use tokio::sync::oneshot;

pub struct Harness {
    pub tx: HubSender,
    pub stop: CancellationToken,
    /// The hub's count of logged-in players (MSSP's).
    pub players: Arc<std::sync::atomic::AtomicU64>,
}

pub struct FakeServer {
    pub rx: mpsc::UnboundedReceiver<Vec<ToServer>>,
}

pub struct FakeSession {
    pub out: crate::outqueue::OutReceiver,
    pub credits: Arc<Semaphore>,
    pub kill: CancellationToken,
}

impl FakeSession {
    /// The text lines queued for this player so far, the portal's and the
    /// game's.
    pub fn texts(&mut self) -> Vec<String> {
        let mut texts = Vec::new();
        while let Some(msg) = self.out.try_recv() {
            if let Outbound::Notice(text) | Outbound::Output { text, .. } = msg {
                texts.push(text);
            }
        }
        texts
    }
}

/// A hub that tells players of no pause a test could wait for.
pub fn start() -> Harness {
    start_with(Duration::from_secs(3600))
}

pub fn start_with(pause_notice: Duration) -> Harness {
    start_configured(pause_notice, Duration::from_secs(3600))
}

/// A hub that sends heartbeats on a `Tick` once `heartbeat` has passed.
pub fn start_with_heartbeat(heartbeat: Duration) -> Harness {
    start_configured(Duration::from_secs(3600), heartbeat)
}

fn start_configured(pause_notice: Duration, heartbeat: Duration) -> Harness {
    let (tx, rx) = channel();
    let stop = CancellationToken::new();
    let config = HubConfig {
        sync_chunk: 2,
        tick: None,
        heartbeat,
        telnet_addr: "127.0.0.1:1".into(),
        pause_notice,
    };
    let hub = Hub::new(rx, tx.clone(), config, stop.clone());
    let players = hub.players();
    tokio::spawn(hub.run());
    Harness { tx, stop, players }
}

/// Session 7 on server 1, server 2 standing by, and a promotion of 2
/// that has sent 1 its Drain.
pub struct HandOver {
    pub s: FakeSession,
    pub a: FakeServer,
    pub b: FakeServer,
    pub promoted: oneshot::Receiver<Result<Promoted, String>>,
}

pub async fn hand_over(h: &Harness) -> HandOver {
    let s = h.open(7, 16);
    let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
    a.take(2).await;
    let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
    b.take(1).await;
    let promoted = h.promote(2).await;
    assert!(matches!(a.take(1).await[0], ToServer::Drain { .. }));
    HandOver { s, a, b, promoted }
}

/// Ends a [`hand_over`]: server 1 drains, server 2 gets its Sync and is ready.
pub async fn drained_then_ready(
    h: &Harness,
    b: &mut FakeServer,
    promoted: oneshot::Receiver<Result<Promoted, String>>,
) {
    h.from(1, vec![ToPortal::Drained]);
    b.take(1).await;
    h.from(2, vec![ToPortal::Ready { sessions: 1 }]);
    promoted.await.unwrap().unwrap();
}

pub fn hello(generation: u64, major: u32) -> ServerHello {
    ServerHello {
        major,
        minor: 0,
        build_id: "test".into(),
        generation,
        pid: 1,
    }
}

/// What a server sends for session `session`'s first input, a `ping`:
/// its answer (output seq 1) and an ack up to `acked`.
pub fn pong(session: u64, acked: u64) -> Vec<ToPortal> {
    let session = SessionId(session);
    vec![
        ToPortal::Output {
            session,
            seq: 1,
            text: "pong".into(),
            form: ev::link::Form::PLAIN,
        },
        ToPortal::Ack {
            session,
            seq: acked,
        },
    ]
}

impl Harness {
    pub fn open(&self, id: u64, output_queue: usize) -> FakeSession {
        let (out, out_rx) = crate::outqueue::channel(output_queue, usize::MAX);
        let credits = Arc::new(Semaphore::new(8));
        let kill = CancellationToken::new();
        self.tx.send(HubEvent::Opened {
            portal: PortalSession {
                id: SessionId(id),
                ..Default::default()
            },
            out,
            credits: credits.clone(),
            kill: kill.clone(),
        });
        FakeSession {
            out: out_rx,
            credits,
            kill,
        }
    }

    pub fn input(&self, session: u64, text: &str) {
        self.tx.send(HubEvent::Input {
            session: SessionId(session),
            text: text.into(),
        });
    }

    pub fn attach(&self, conn: ConnId, generation: u64, major: u32) -> FakeServer {
        self.attach_minor(conn, generation, major, 0)
    }

    /// A server of Link `major.minor`.
    pub fn attach_minor(
        &self,
        conn: ConnId,
        generation: u64,
        major: u32,
        minor: u32,
    ) -> FakeServer {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut hello = hello(generation, major);
        hello.minor = minor;
        self.tx.send(HubEvent::Attach { conn, hello, tx });
        FakeServer { rx }
    }

    /// Out-of-band data from the client of `session`.
    pub fn oob(&self, session: u64, name: &str, data: &str) {
        self.tx.send(HubEvent::Oob {
            session: SessionId(session),
            oob: Oob {
                name: name.into(),
                data: data.into(),
            },
        });
    }

    /// Server `conn` goes away without draining, as a kill does.
    pub fn kill(&self, conn: ConnId) {
        self.tx.send(HubEvent::Detached {
            conn,
            reason: "killed".into(),
        });
    }

    pub fn from(&self, conn: ConnId, events: Vec<ToPortal>) {
        self.tx.send(HubEvent::FromServer { conn, events });
    }

    pub async fn promote(&self, generation: u64) -> oneshot::Receiver<Result<Promoted, String>> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(HubEvent::Admin(AdminRequest::Promote {
            generation,
            timeout: Duration::from_secs(30),
            reply,
        }));
        rx
    }

    pub async fn status(&self) -> StatusInfo {
        let (tx, rx) = oneshot::channel();
        self.tx.send(HubEvent::Admin(AdminRequest::Status(tx)));
        rx.await.unwrap()
    }
}

impl FakeServer {
    /// Everything sent so far, waiting until at least `n` events came.
    pub async fn take(&mut self, n: usize) -> Vec<ToServer> {
        let mut got = Vec::new();
        while got.len() < n {
            let batch = tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
                .await
                .expect("timed out waiting for Link events")
                .expect("link closed");
            got.extend(batch);
        }
        got
    }
}

pub fn assert_told_of_quarantine(s: &mut FakeSession) {
    let told = s.texts();
    assert!(
        told.iter()
            .any(|t| t.contains("crashed the game more than once")),
        "the player was not told their command was dropped: {told:?}"
    );
}

pub fn inputs(events: &[ToServer]) -> Vec<(u64, u64, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            ToServer::Input { session, seq, text } => Some((session.0, *seq, text.clone())),
            _ => None,
        })
        .collect()
}

/// Each Input and Oob, as (session, seq, what): an Oob's `name data`.
pub fn inputs_and_oob(events: &[ToServer]) -> Vec<(u64, u64, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            ToServer::Input { session, seq, text } => Some((session.0, *seq, text.clone())),
            ToServer::Oob { session, seq, oob } => {
                Some((session.0, *seq, format!("{} {}", oob.name, oob.data)))
            }
            _ => None,
        })
        .collect()
}

pub fn synced(events: &[ToServer]) -> Vec<u64> {
    let mut ids: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            ToServer::Sync { sessions, .. } => Some(sessions.iter().map(|s| s.portal.id.0)),
            _ => None,
        })
        .flatten()
        .collect();
    ids.sort();
    ids
}
