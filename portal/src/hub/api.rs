//! The hub's API: the events the link, the sessions and the listener send
//! it, the supervisor's admin requests and their answers, and the handle
//! they send through. Nothing here knows the hub's state; the hub's other
//! files are private to it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use super::counters::Counters;
use crate::negotiation::ClientInfo;
use crate::outqueue::OutSender;
use ev::link::{Form, Oob, PortalSession, Role, ServerHello, SessionId, ToPortal, ToServer};

pub type ConnId = u64;

/// What one player's connection task is given to send.
#[derive(Debug)]
pub enum Outbound {
    /// A line of the portal's own (a pause, a refusal): plain text.
    Notice(String),
    /// The game's text, rendered by the connection for its client.
    Output { text: String, form: Form },
    /// The game's out-of-band data, sent as the client takes it.
    Oob(Oob),
    /// Close the connection after what came before.
    Close(String),
    /// The server logged the session in (true) or out: which of the
    /// connection's timeouts runs. Queued with the output, so it is news
    /// exactly where the server said it.
    LoggedIn(bool),
}

pub enum HubEvent {
    Opened {
        portal: PortalSession,
        out: OutSender,
        credits: Arc<Semaphore>,
        kill: CancellationToken,
    },
    Input {
        session: SessionId,
        text: String,
    },
    /// Out-of-band data from the client (GMCP, MSDP): numbered with the
    /// inputs, and kept and replayed like one.
    Oob {
        session: SessionId,
        oob: Oob,
    },
    /// What telnet negotiation told of the client changed.
    ClientInfo {
        session: SessionId,
        info: ClientInfo,
    },
    /// The client half-closed its side after its last input: close the
    /// connection once every input is answered and the answers are queued.
    InputEnded {
        session: SessionId,
    },
    Closed {
        session: SessionId,
        reason: String,
    },
    Attach {
        conn: ConnId,
        hello: ServerHello,
        tx: mpsc::UnboundedSender<Vec<ToServer>>,
    },
    FromServer {
        conn: ConnId,
        events: Vec<ToPortal>,
    },
    Detached {
        conn: ConnId,
        reason: String,
    },
    Admin(AdminRequest),
    SwitchTimeout {
        switch: u64,
    },
    /// A pause has lasted `pause_notice`: time to tell the players.
    PauseNotice {
        pause: u64,
    },
    /// Periodic: report deliveries, send heartbeats.
    Tick,
}

pub struct StatusInfo {
    pub sessions: u64,
    pub logged_in: u64,
    /// Open connections by protocol.
    pub sessions_by_protocol: BTreeMap<String, u64>,
    /// Everything the hub counted since the portal started.
    pub counters: Counters,
    /// Each server, its role and how long since the portal heard from it.
    pub servers: Vec<(ServerHello, Role, Duration)>,
    pub buffered_inputs: u64,
    pub telnet_addr: String,
    pub started_at_ms: u64,
}

pub struct Promoted {
    pub dark: Duration,
    pub sessions: u64,
}

pub enum AdminRequest {
    Status(oneshot::Sender<StatusInfo>),
    WaitAttached {
        generation: u64,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Promote {
        generation: u64,
        timeout: Duration,
        reply: oneshot::Sender<Result<Promoted, String>>,
    },
    Notice {
        text: String,
        /// Only to the game's admins, through the active server.
        admins: bool,
    },
    Shutdown {
        message: String,
        timeout: Duration,
        reply: oneshot::Sender<()>,
    },
}

/// A cloneable handle for sending to the hub; sending never blocks.
#[derive(Clone)]
pub struct HubSender(mpsc::UnboundedSender<HubEvent>);

impl HubSender {
    pub fn send(&self, event: HubEvent) {
        // Fails only once the hub has ended, when nobody is left to tell.
        let _ = self.0.send(event);
    }

    /// Resolves once the hub has ended.
    pub async fn closed(&self) {
        self.0.closed().await
    }

    /// Sends `event` once `delay` has passed: the hub's timers.
    pub(super) fn after(&self, delay: Duration, event: HubEvent) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.send(event);
        });
    }
}

/// Whether a notice tells that the game is paused (Some(true)) or back
/// (Some(false)), for clients that show a pause other than as a line.
pub fn pause_notice(notice: &str) -> Option<bool> {
    super::pause::told(notice)
}

pub fn channel() -> (HubSender, mpsc::UnboundedReceiver<HubEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (HubSender(tx), rx)
}
