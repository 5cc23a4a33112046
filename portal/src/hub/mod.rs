//! The hub: sole owner of the session table and of which server serves.
//!
//! One task, fed by one channel: connections (opened, input, closed), servers
//! (attached, their events, detached) and the supervisor's admin requests. It
//! never awaits anything but its own channel, so a slow server or a slow
//! player can never stall it; everything it sends goes through unbounded
//! channels whose size is bounded elsewhere (input credit per session, output
//! queue per session).
//!
//! # Exactly-once input
//! Each input gets the next per-session seq and stays in the session's
//! `pending` queue until the server acks it. A server that goes away before
//! acking (crash, drain) leaves the inputs there; the next server gets them
//! again after its Sync and skips those its database says it applied.
//!
//! # Hand-over
//! `Promote(B)`: stop sending input (it queues), `Drain` the active server A.
//! On A's `Drained` (or A vanishing) B becomes active: a Sync of every session
//! in chunks, then every pending input in order. B's `Ready` ends the switch;
//! the time from Drain to Ready is the dark time.
//!
//! # Crashes
//! A server that goes away without `Drained` crashed. The inputs it had but
//! never acked are suspects. Most crashes are not caused by an input (a kill,
//! a bug in a timer), so the next server gets the suspects at once with
//! everything else: one group commit, and the game is back. Inputs in flight
//! in a second crash are replayed one at a time, each only after the previous
//! one was acked, before anything else. An input in flight alone when a
//! server crashes, having been in flight in an earlier crash, is the poison:
//! it is quarantined (dropped, the player told), never delivered again.
//!
//! # Exactly-once output
//! Output, SessionUpdate and Disconnect carry a per-session seq; the hub
//! drops any at or below what it already delivered (a server re-sending its
//! outbox after a crash), and tells the server what was delivered on each
//! tick so it can prune its outbox.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::outqueue::{OutSender, Refused};
use crate::unanswered::Unanswered;
use crate::wire::{
    FromServer, Hello, MAX_EVENTS_PER_MESSAGE, MAX_MESSAGE_BYTES, PortalPart, Role, ServerPart,
    SessionId, Snapshot, ToServer,
};

pub type ConnId = u64;

/// Text or a close request for one player's connection task.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    Close(String),
}

pub enum HubEvent {
    Opened {
        portal: PortalPart,
        out: OutSender,
        credits: Arc<Semaphore>,
        kill: CancellationToken,
        /// Whether the server has the session logged in, for its timeouts.
        logged_in: watch::Sender<bool>,
    },
    Input {
        session: SessionId,
        text: String,
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
        hello: Hello,
        tx: mpsc::UnboundedSender<Vec<ToServer>>,
    },
    FromServer {
        conn: ConnId,
        events: Vec<FromServer>,
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
    /// Each server, its role and how long since the portal heard from it.
    pub servers: Vec<(Hello, Role, Duration)>,
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
}

impl HubSender {
    /// Resolves once the hub has ended.
    pub async fn closed(&self) {
        self.0.closed().await
    }
}

pub fn channel() -> (HubSender, mpsc::UnboundedReceiver<HubEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (HubSender(tx), rx)
}

struct Session {
    portal: PortalPart,
    server: ServerPart,
    last_seq: u64,
    acked: u64,
    /// The active server's word that input `working` waits on work off its
    /// game thread: until the ack passes it, the session's waiting inputs
    /// are no sign of a stalled server.
    working: u64,
    /// Inputs not yet acked, oldest first.
    pending: VecDeque<Pending>,
    /// Highest output seq delivered to the connection.
    delivered: u64,
    /// Highest output seq reported to the active server.
    reported: u64,
    /// Highest seq handed to the active server.
    sent: u64,
    out: Option<OutSender>,
    credits: Arc<Semaphore>,
    kill: CancellationToken,
    logged_in: watch::Sender<bool>,
    /// The client sent its last input; see [`HubEvent::InputEnded`].
    input_ended: bool,
    /// The connection has gone; kept while inputs are still owed to a server.
    closed: Option<String>,
    closed_sent: bool,
}

struct Pending {
    seq: u64,
    text: String,
    /// Servers that crashed while this input was in flight.
    crashes: u8,
}

struct Server {
    hello: Hello,
    tx: mpsc::UnboundedSender<Vec<ToServer>>,
    batch: Vec<ToServer>,
    /// Text bytes in `batch`, to keep each message far below tonic's limit.
    batch_bytes: usize,
    last_seen: Instant,
    /// It sent `Drained` and is exiting: never to be made active again.
    drained: bool,
}

/// Knobs of the hub; the rest of `ev.toml` is the listener's.
pub struct HubConfig {
    pub sync_chunk: usize,
    /// How often to report deliveries and send heartbeats; None: never (tests
    /// send `HubEvent::Tick` themselves).
    pub tick: Option<Duration>,
    pub heartbeat: Duration,
    pub telnet_addr: String,
    /// How long a pause lasts before players are told of it (zero: at once).
    pub pause_notice: Duration,
}

/// How often deliveries are reported to the server.
pub const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    /// Waiting for the old server's Drained.
    Draining,
    /// The new server has its Sync; waiting for its Ready.
    Syncing,
}

struct Switch {
    id: u64,
    to: ConnId,
    phase: Phase,
    started: Instant,
    reply: Option<oneshot::Sender<Result<Promoted, String>>>,
}

/// Input waits for a server: a hand-over's drain and restore, a crashed
/// server's restart, or an active server that leaves inputs unanswered (hung,
/// or holding commands while its storage fails). A reload or crash ends when
/// a server reports Ready, unanswered inputs when none has waited
/// `pause_notice` any more. Players hear of it only once it has lasted
/// `pause_notice`: a reload takes milliseconds, and a line to every player
/// costs more than that.
struct Pause {
    id: u64,
    cause: Cause,
    told: Told,
}

/// Who heard that the game is paused, and so hears when it is back.
enum Told {
    Nobody,
    Everyone,
    /// Unanswered inputs: only the players whose input waits hear of it.
    Only(HashSet<SessionId>),
}

impl Told {
    fn anybody(&self) -> bool {
        match self {
            Told::Nobody => false,
            Told::Everyone => true,
            Told::Only(these) => !these.is_empty(),
        }
    }
}

/// Ordered by how much it says: a later, graver cause replaces the notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cause {
    Unanswered,
    Reload,
    Crash,
}

impl Cause {
    fn notice(self) -> &'static str {
        match self {
            Cause::Unanswered => "[ev] The game is paused; your commands will run when it is back.",
            Cause::Reload => "[ev] The game is reloading; your commands will run in a moment.",
            Cause::Crash => {
                "[ev] The game server stopped unexpectedly; it is restarting. Your commands will run when it is back."
            }
        }
    }
}

/// Told at a pause's end, if its start was told.
pub const BACK: &str = "[ev] The game is back.";

enum Stopping {
    No,
    /// Waiting for the server to apply what it was sent.
    Draining(oneshot::Sender<()>),
    Done,
}

pub struct Hub {
    rx: mpsc::UnboundedReceiver<HubEvent>,
    me: HubSender,
    sessions: HashMap<SessionId, Session>,
    servers: HashMap<ConnId, Server>,
    /// The server that gets input. None while none is attached or during a drain.
    active: Option<ConnId>,
    /// The server finishing its last inputs before it exits.
    draining: Option<ConnId>,
    switch: Option<Switch>,
    next_switch: u64,
    refused: HashMap<u64, String>,
    attach_waiters: Vec<(u64, oneshot::Sender<Result<(), String>>)>,
    stopping: Stopping,
    config: HubConfig,
    started_at_ms: u64,
    /// Sessions whose delivered mark moved since the last report.
    undelivered_report: HashSet<SessionId>,
    last_heartbeat: Instant,
    nonce: u64,
    /// After a second crash: suspects are replayed one at a time; this one is in flight.
    careful: Option<(SessionId, u64)>,
    pause: Option<Pause>,
    next_pause: u64,
    /// Inputs the active server has and has not acked, by age.
    unanswered: Unanswered,
    /// Cancelled when the portal should stop accepting connections.
    stop_accepting: CancellationToken,
}

impl Hub {
    pub fn new(
        rx: mpsc::UnboundedReceiver<HubEvent>,
        me: HubSender,
        mut config: HubConfig,
        stop_accepting: CancellationToken,
    ) -> Hub {
        config.sync_chunk = config.sync_chunk.max(1);
        Hub {
            rx,
            me,
            sessions: HashMap::new(),
            servers: HashMap::new(),
            active: None,
            draining: None,
            switch: None,
            next_switch: 1,
            refused: HashMap::new(),
            attach_waiters: Vec::new(),
            stopping: Stopping::No,
            config,
            started_at_ms: now_ms(),
            stop_accepting,
            undelivered_report: HashSet::new(),
            last_heartbeat: Instant::now(),
            nonce: 0,
            careful: None,
            pause: None,
            next_pause: 1,
            unanswered: Unanswered::default(),
        }
    }

    /// Runs until a shutdown completes or every sender is gone.
    pub async fn run(mut self) {
        if let Some(every) = self.config.tick {
            let me = self.me.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = interval.tick() => me.send(HubEvent::Tick),
                        _ = me.closed() => return,
                    }
                }
            });
        }
        while let Some(event) = self.rx.recv().await {
            self.handle(event);
            // Take whatever else is ready, so one Link message carries many events.
            let mut n = 0;
            while n < 4096 {
                match self.rx.try_recv() {
                    Ok(event) => self.handle(event),
                    Err(_) => break,
                }
                n += 1;
            }
            self.flush();
            if matches!(self.stopping, Stopping::Done) {
                break;
            }
        }
    }

    fn handle(&mut self, event: HubEvent) {
        match event {
            HubEvent::Opened {
                portal,
                out,
                credits,
                kill,
                logged_in,
            } => self.opened(portal, out, credits, kill, logged_in),
            HubEvent::Input { session, text } => self.input(session, text),
            HubEvent::InputEnded { session } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.input_ended = true;
                }
                self.close_if_answered(session);
            }
            HubEvent::Closed { session, reason } => self.closed(session, reason),
            HubEvent::Attach { conn, hello, tx } => self.attach(conn, hello, tx),
            HubEvent::FromServer { conn, events } => {
                if let Some(server) = self.servers.get_mut(&conn) {
                    server.last_seen = Instant::now();
                }
                for event in events {
                    self.server_event(conn, event);
                }
            }
            HubEvent::Detached { conn, reason } => self.detached(conn, reason),
            HubEvent::Admin(request) => self.admin(request),
            HubEvent::SwitchTimeout { switch } => self.switch_timeout(switch),
            HubEvent::PauseNotice { pause } => self.tell_pause(pause),
            HubEvent::Tick => self.tick(),
        }
    }

    fn tick(&mut self) {
        self.check_unanswered();
        if let Some(active) = self.active {
            let sessions: Vec<SessionId> = self.undelivered_report.drain().collect();
            for session in sessions {
                let Some(s) = self.sessions.get_mut(&session) else {
                    continue;
                };
                if s.delivered > s.reported {
                    s.reported = s.delivered;
                    let seq = s.delivered;
                    self.push(active, ToServer::Delivered { session, seq });
                }
            }
        }
        if self.last_heartbeat.elapsed() >= self.config.heartbeat {
            self.last_heartbeat = Instant::now();
            self.nonce += 1;
            let nonce = self.nonce;
            let conns: Vec<ConnId> = self.servers.keys().copied().collect();
            for conn in conns {
                self.push(
                    conn,
                    ToServer::Heartbeat {
                        nonce,
                        reply: false,
                    },
                );
            }
        }
    }

    // === connections ===

    fn opened(
        &mut self,
        portal: PortalPart,
        out: OutSender,
        credits: Arc<Semaphore>,
        kill: CancellationToken,
        logged_in: watch::Sender<bool>,
    ) {
        let id = portal.id;
        if !matches!(self.stopping, Stopping::No) {
            let _ = out.try_send(Outbound::Close("the game is shutting down".into()));
            return;
        }
        self.sessions.insert(
            id,
            Session {
                portal: portal.clone(),
                server: ServerPart::default(),
                last_seq: 0,
                acked: 0,
                working: 0,
                pending: VecDeque::new(),
                delivered: 0,
                reported: 0,
                sent: 0,
                out: Some(out),
                credits,
                kill,
                logged_in,
                input_ended: false,
                closed: None,
                closed_sent: false,
            },
        );
        if let Some(active) = self.active {
            self.push(active, ToServer::Opened(portal));
        }
    }

    fn input(&mut self, session: SessionId, text: String) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.last_seq += 1;
        let seq = s.last_seq;
        s.pending.push_back(Pending {
            seq,
            text: text.clone(),
            crashes: 0,
        });
        if let Some(active) = self.active
            && self.careful.is_none()
        {
            s.sent = seq;
            self.unanswered
                .sent(tokio::time::Instant::now(), session, seq);
            self.push(active, ToServer::Input { session, seq, text });
        }
    }

    fn closed(&mut self, session: SessionId, reason: String) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.out = None;
        s.closed = Some(reason);
        self.settle_closed(session);
    }

    /// Tells the server a closed session is gone once every input of it has
    /// been handed over, and forgets the session once they are all acked.
    fn settle_closed(&mut self, session: SessionId) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let Some(reason) = s.closed.clone() else {
            return;
        };
        match self.active {
            Some(active) if !s.closed_sent && s.sent == s.last_seq => {
                s.closed_sent = true;
                self.push(active, ToServer::Closed { session, reason });
            }
            None if s.pending.is_empty() => {
                // No server to tell; the next one is never told of it.
                s.closed_sent = true;
            }
            _ => {}
        }
        let s = &self.sessions[&session];
        if s.closed_sent && s.pending.is_empty() {
            self.sessions.remove(&session);
        }
    }

    fn send_to_player(&mut self, session: SessionId, message: Outbound) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let Some(out) = &s.out else { return };
        if let Err(e) = out.try_send(message) {
            if e == Refused::Full {
                tracing::warn!(
                    session,
                    "output queue full (portal.output_queue or portal.output_queue_bytes): disconnecting a client that stopped reading"
                );
            }
            s.kill.cancel();
            s.out = None;
        }
    }

    /// Closes a half-closed connection once its last input is answered:
    /// the answers are queued before the close, so the client gets them.
    fn close_if_answered(&mut self, session: SessionId) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.input_ended && s.pending.is_empty() {
            s.input_ended = false;
            self.send_to_player(
                session,
                Outbound::Close("client closed the connection".into()),
            );
        }
    }

    fn notice_all(&mut self, text: &str) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.send_to_player(id, Outbound::Text(text.to_string()));
        }
    }

    // === servers ===

    fn attach(&mut self, conn: ConnId, hello: Hello, tx: mpsc::UnboundedSender<Vec<ToServer>>) {
        if hello.major != ev::version::LINK_MAJOR {
            let refused = format!(
                "link version mismatch: server speaks {}.{}, portal speaks {}",
                hello.major,
                hello.minor,
                ev::version::link_version()
            );
            tracing::error!(generation = hello.generation, pid = hello.pid, "{refused}");
            let _ = tx.send(vec![ToServer::Hello {
                role: Role::Standby,
                refused: refused.clone(),
            }]);
            self.resolve_waiters(hello.generation, Err(refused.clone()));
            self.refused.insert(hello.generation, refused);
            return;
        }
        let role = if self.active.is_none()
            && self.draining.is_none()
            && self.switch.is_none()
            && matches!(self.stopping, Stopping::No)
        {
            Role::Active
        } else {
            Role::Standby
        };
        tracing::info!(
            conn,
            generation = hello.generation,
            pid = hello.pid,
            build = %hello.build_id,
            ?role,
            "server attached"
        );
        let generation = hello.generation;
        self.servers.insert(
            conn,
            Server {
                hello,
                tx,
                batch: Vec::new(),
                batch_bytes: 0,
                last_seen: Instant::now(),
                drained: false,
            },
        );
        self.push(
            conn,
            ToServer::Hello {
                role,
                refused: String::new(),
            },
        );
        if role == Role::Active {
            self.activate(conn);
        }
        self.resolve_waiters(generation, Ok(()));
    }

    fn resolve_waiters(&mut self, generation: u64, result: Result<(), String>) {
        let waiters = std::mem::take(&mut self.attach_waiters);
        for (g, reply) in waiters {
            if g == generation {
                let _ = reply.send(result.clone());
            } else if !reply.is_closed() {
                self.attach_waiters.push((g, reply));
            }
        }
    }

    /// Makes `conn` the server that gets input: every session, then every
    /// input not yet acked, in order.
    fn activate(&mut self, conn: ConnId) {
        self.active = Some(conn);
        self.unanswered.clear();
        let chunk = self.config.sync_chunk;
        let mut snapshots: Vec<Snapshot> = Vec::with_capacity(chunk);
        let mut chunks = Vec::new();
        for s in self.sessions.values() {
            if s.closed_sent {
                continue;
            }
            snapshots.push(Snapshot {
                portal: s.portal.clone(),
                server: s.server.clone(),
                acked_seq: s.acked,
                output_seq: s.delivered,
            });
            if snapshots.len() == chunk {
                chunks.push(std::mem::take(&mut snapshots));
            }
        }
        chunks.push(snapshots);
        let n = chunks.len();
        for (i, sessions) in chunks.into_iter().enumerate() {
            self.push(
                conn,
                ToServer::Sync {
                    sessions,
                    last: i + 1 == n,
                },
            );
        }
        for s in self.sessions.values_mut() {
            s.sent = s.acked;
            s.reported = s.delivered;
            // Only the server doing the work can say it is working.
            s.working = 0;
        }
        self.send_pending(conn);
    }

    /// Hands the active server every input it has not been given, or, after
    /// a second crash, the next suspect alone.
    fn send_pending(&mut self, conn: ConnId) {
        let suspect = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.closed_sent)
            .filter_map(|(id, s)| {
                let p = s.pending.iter().find(|p| p.seq > s.sent)?;
                (p.crashes >= 2).then_some((*id, p.seq))
            })
            .min();
        if let Some((session, seq)) = suspect {
            tracing::info!(
                session,
                seq,
                "replaying an input that was in flight during a crash, alone"
            );
            self.careful = Some((session, seq));
            if let Some(s) = self.sessions.get_mut(&session)
                && let Some(p) = s.pending.iter().find(|p| p.seq == seq)
            {
                s.sent = seq;
                let text = p.text.clone();
                self.unanswered
                    .sent(tokio::time::Instant::now(), session, seq);
                self.push(conn, ToServer::Input { session, seq, text });
            }
            return;
        }
        self.careful = None;
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if s.closed_sent {
                continue;
            }
            let sent = s.sent;
            let inputs: Vec<ToServer> = s
                .pending
                .iter()
                .filter(|p| p.seq > sent)
                .map(|p| ToServer::Input {
                    session: id,
                    seq: p.seq,
                    text: p.text.clone(),
                })
                .collect();
            s.sent = s.last_seq;
            let now = tokio::time::Instant::now();
            for input in inputs {
                if let ToServer::Input { session, seq, .. } = &input {
                    self.unanswered.sent(now, *session, *seq);
                }
                self.push(conn, input);
            }
            self.settle_closed(id);
        }
    }

    /// True if this sequenced event is new; marks it delivered.
    fn fresh(&mut self, session: SessionId, seq: u64) -> bool {
        let Some(s) = self.sessions.get_mut(&session) else {
            return false;
        };
        if seq == 0 {
            return true;
        }
        if seq <= s.delivered {
            return false;
        }
        s.delivered = seq;
        self.undelivered_report.insert(session);
        true
    }

    fn server_event(&mut self, conn: ConnId, event: FromServer) {
        match event {
            FromServer::Output { session, seq, text } => {
                if self.fresh(session, seq) {
                    self.send_to_player(session, Outbound::Text(text))
                }
            }
            FromServer::Ack { session, seq } => self.ack(conn, session, seq),
            FromServer::Working { session, seq } => {
                if self.active == Some(conn)
                    && let Some(s) = self.sessions.get_mut(&session)
                {
                    s.working = s.working.max(seq);
                }
            }
            FromServer::Update {
                session,
                seq,
                server,
            } => {
                if self.fresh(session, seq)
                    && let Some(s) = self.sessions.get_mut(&session)
                {
                    s.server = server;
                    let now_in = s.server.logged_in();
                    s.logged_in
                        .send_if_modified(|was| std::mem::replace(was, now_in) != now_in);
                }
            }
            FromServer::Disconnect {
                session,
                seq,
                reason,
            } => {
                if self.fresh(session, seq) {
                    self.send_to_player(session, Outbound::Close(reason))
                }
            }
            FromServer::Drained => self.drained(conn),
            FromServer::Ready { sessions } => self.ready(conn, sessions),
            FromServer::Heartbeat { nonce, reply } => {
                if !reply {
                    self.push(conn, ToServer::Heartbeat { nonce, reply: true });
                }
            }
        }
    }

    fn ack(&mut self, conn: ConnId, session: SessionId, seq: u64) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let mut freed = 0;
        while s.pending.front().is_some_and(|p| p.seq <= seq) {
            s.pending.pop_front();
            freed += 1;
        }
        s.acked = s.acked.max(seq);
        s.credits.add_permits(freed);
        if s.closed.is_some() {
            self.settle_closed(session);
        } else {
            self.close_if_answered(session);
        }
        if let Some((suspect, n)) = self.careful
            && suspect == session
            && n <= seq
            && self.active == Some(conn)
        {
            self.send_pending(conn);
        }
    }

    fn drained(&mut self, conn: ConnId) {
        if self.draining != Some(conn) {
            tracing::warn!(conn, "Drained from a server that was not draining");
            return;
        }
        tracing::info!(conn, "old server drained");
        self.draining = None;
        if let Some(server) = self.servers.get_mut(&conn) {
            server.drained = true;
        }
        self.after_drain();
    }

    /// The old server is done (drained or gone): hand over or finish stopping.
    fn after_drain(&mut self) {
        if let Stopping::Draining(_) = self.stopping {
            self.finish_stop();
            return;
        }
        let Some(switch) = &mut self.switch else {
            return;
        };
        if switch.phase != Phase::Draining {
            return;
        }
        switch.phase = Phase::Syncing;
        let to = switch.to;
        if self.servers.contains_key(&to) {
            self.activate(to);
        } else {
            self.fail_switch("the new server went away before the hand-over".into());
        }
    }

    fn ready(&mut self, conn: ConnId, sessions: u64) {
        if self.active == Some(conn) {
            self.pause_ends();
        }
        let Some(switch) = &mut self.switch else {
            tracing::info!(conn, sessions, "server ready");
            return;
        };
        if switch.to != conn || switch.phase != Phase::Syncing {
            return;
        }
        let dark = switch.started.elapsed();
        tracing::info!(
            conn,
            sessions,
            dark_us = dark.as_micros() as u64,
            "hand-over complete"
        );
        if let Some(reply) = switch.reply.take() {
            let _ = reply.send(Ok(Promoted { dark, sessions }));
        }
        self.switch = None;
    }

    fn fail_switch(&mut self, error: String) {
        let Some(mut switch) = self.switch.take() else {
            return;
        };
        tracing::error!("hand-over failed: {error}");
        if let Some(reply) = switch.reply.take() {
            let _ = reply.send(Err(error));
        }
    }

    fn detached(&mut self, conn: ConnId, reason: String) {
        let Some(server) = self.servers.remove(&conn) else {
            return;
        };
        tracing::info!(
            conn,
            generation = server.hello.generation,
            pid = server.hello.pid,
            "server detached: {reason}"
        );
        if self.active == Some(conn) || self.draining == Some(conn) {
            self.crashed(&reason);
        }
        if self.active == Some(conn) {
            self.active = None;
            if let Some(switch) = &self.switch
                && switch.to == conn
            {
                self.fail_switch(format!(
                    "the new server went away during the hand-over: {reason}"
                ));
            }
        }
        if self.draining == Some(conn) {
            self.draining = None;
            self.after_drain();
        }
        if let Some(switch) = &self.switch
            && switch.to == conn
        {
            self.fail_switch(format!("the new server went away: {reason}"));
        }
        // A standby waiting for a server that just went: serve with it.
        if self.active.is_none()
            && self.draining.is_none()
            && self.switch.is_none()
            && matches!(self.stopping, Stopping::No)
            && let Some((&next, _)) = self
                .servers
                .iter()
                .filter(|(_, s)| !s.drained)
                .max_by_key(|(_, s)| s.hello.generation)
        {
            tracing::info!(
                conn = next,
                "promoting the standby server: no server is active"
            );
            self.activate(next);
        }
    }

    /// The server that had inputs in flight went away without `Drained`.
    /// Its unacked inputs become suspects; one in flight alone that was in
    /// flight in an earlier crash too is quarantined.
    fn crashed(&mut self, reason: &str) {
        self.careful = None;
        self.unanswered.clear();
        let in_flight: usize = self
            .sessions
            .values()
            .map(|s| s.pending.iter().take_while(|p| p.seq <= s.sent).count())
            .sum();
        let mut quarantined = Vec::new();
        for (&id, s) in self.sessions.iter_mut() {
            let sent = s.sent;
            for p in s.pending.iter_mut().filter(|p| p.seq <= sent) {
                p.crashes = p.crashes.saturating_add(1);
            }
            // Acked inputs leave `pending`, so one in flight is at the front.
            if in_flight == 1
                && let Some(p) = s.pending.front()
                && p.seq <= sent
                && p.crashes >= 2
            {
                quarantined.push((id, p.seq, p.text.clone()));
                s.pending.pop_front();
                s.credits.add_permits(1);
            }
            // Whatever it did not ack goes to the next server.
            s.sent = s.acked;
            s.closed_sent = s.closed_sent && s.pending.is_empty();
        }
        for (session, seq, text) in quarantined {
            tracing::error!(
                session,
                seq,
                command = %text,
                "quarantined: this input crashed the server again when replayed alone; it will not be delivered again"
            );
            self.send_to_player(
                session,
                Outbound::Text(format!(
                    "[ev] Your command \"{text}\" crashed the game more than once and was not run again."
                )),
            );
        }
        if matches!(self.stopping, Stopping::No) {
            tracing::error!("the serving server went away without draining: {reason}");
            self.pause_begins(Cause::Crash);
        }
    }

    // === pauses ===

    fn pause_begins(&mut self, cause: Cause) {
        if let Some(pause) = &mut self.pause {
            if cause <= pause.cause {
                return;
            }
            // A crash in a hand-over, or a server that stopped answering and
            // is now replaced: who heard of the pause hears why it lasts.
            let from_silence = pause.cause == Cause::Unanswered;
            pause.cause = cause;
            if pause.told.anybody() {
                pause.told = Told::Everyone;
                self.notice_all(cause.notice());
            } else if from_silence {
                // Nobody was told, so no notice timer runs: start one.
                pause.told = Told::Nobody;
                let id = pause.id;
                self.notice_later(id);
            }
            return;
        }
        let id = self.next_pause;
        self.next_pause += 1;
        self.pause = Some(Pause {
            id,
            cause,
            told: Told::Nobody,
        });
        self.notice_later(id);
    }

    /// Tells everyone of pause `id` if it lasts `pause_notice`.
    fn notice_later(&mut self, id: u64) {
        let after = self.config.pause_notice;
        if after.is_zero() {
            self.tell_pause(id);
            return;
        }
        let me = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            me.send(HubEvent::PauseNotice { pause: id });
        });
    }

    fn tell_pause(&mut self, id: u64) {
        if !matches!(self.stopping, Stopping::No) {
            return;
        }
        let Some(pause) = &mut self.pause else { return };
        if pause.id != id || matches!(pause.told, Told::Everyone) {
            return;
        }
        pause.told = Told::Everyone;
        let text = pause.cause.notice();
        self.notice_all(text);
    }

    fn pause_ends(&mut self) {
        match self.pause.take().map(|p| p.told) {
            Some(Told::Everyone) => self.notice_all(BACK),
            Some(Told::Only(these)) => {
                for session in these {
                    self.send_to_player(session, Outbound::Text(BACK.into()));
                }
            }
            Some(Told::Nobody) | None => {}
        }
    }

    /// An active server that leaves inputs unanswered for `pause_notice` is a
    /// pause like a reload's, told to the players whose input waits; it is
    /// over when no input has waited that long any more.
    fn check_unanswered(&mut self) {
        let silent = matches!(&self.pause, Some(p) if p.cause == Cause::Unanswered);
        if self.active.is_none()
            || self.switch.is_some()
            || !matches!(self.stopping, Stopping::No)
            || (self.pause.is_some() && !silent)
        {
            return;
        }
        let Some(cutoff) = tokio::time::Instant::now().checked_sub(self.config.pause_notice) else {
            return;
        };
        let sessions = &self.sessions;
        let mut overdue = Vec::new();
        let stalled = self.unanswered.check(
            cutoff,
            |session, seq| {
                sessions
                    .get(&session)
                    .is_none_or(|s| s.acked >= seq || s.working > s.acked)
            },
            |session| overdue.push(session),
        );
        if !stalled {
            if silent {
                tracing::info!("the server answers again");
                self.pause_ends();
            }
            return;
        }
        if !silent {
            tracing::warn!(
                "inputs unanswered for {:?}: telling their players the game is paused",
                self.config.pause_notice
            );
            let id = self.next_pause;
            self.next_pause += 1;
            self.pause = Some(Pause {
                id,
                cause: Cause::Unanswered,
                told: Told::Only(HashSet::new()),
            });
        }
        for session in overdue {
            if let Some(Pause {
                told: Told::Only(these),
                ..
            }) = &mut self.pause
                && these.insert(session)
            {
                self.send_to_player(session, Outbound::Text(Cause::Unanswered.notice().into()));
            }
        }
    }

    fn switch_timeout(&mut self, id: u64) {
        let Some(switch) = &self.switch else { return };
        if switch.id != id {
            return;
        }
        match switch.phase {
            Phase::Draining if matches!(self.stopping, Stopping::Draining(_)) => {
                // Stopping: do not wait any longer for a server that hangs.
                if let Some(old) = self.draining.take() {
                    tracing::error!(conn = old, "server did not drain in time; stopping anyway");
                    self.servers.remove(&old);
                }
                self.after_drain();
            }
            Phase::Draining => {
                // The old server may still commit what it has: handing its
                // sessions to the new one now could apply an input twice.
                // It stays draining until it finishes or the supervisor kills
                // it; the hand-over is off.
                self.fail_switch("the old server did not drain in time".into());
            }
            Phase::Syncing => {
                self.fail_switch("the new server did not report ready in time".into())
            }
        }
    }

    // === admin ===

    fn admin(&mut self, request: AdminRequest) {
        match request {
            AdminRequest::Status(reply) => {
                let _ = reply.send(self.status());
            }
            AdminRequest::WaitAttached { generation, reply } => {
                if self
                    .servers
                    .values()
                    .any(|s| s.hello.generation == generation)
                {
                    let _ = reply.send(Ok(()));
                } else if let Some(refused) = self.refused.get(&generation) {
                    let _ = reply.send(Err(refused.clone()));
                } else {
                    self.attach_waiters.push((generation, reply));
                }
            }
            AdminRequest::Promote {
                generation,
                timeout,
                reply,
            } => self.promote(generation, timeout, reply),
            AdminRequest::Notice { text } => self.notice_all(&text),
            AdminRequest::Shutdown {
                message,
                timeout,
                reply,
            } => self.shutdown(message, timeout, reply),
        }
    }

    fn status(&self) -> StatusInfo {
        let live = self.sessions.values().filter(|s| s.out.is_some());
        StatusInfo {
            sessions: live.clone().count() as u64,
            logged_in: live.filter(|s| s.server.logged_in()).count() as u64,
            servers: self
                .servers
                .iter()
                .map(|(conn, s)| {
                    let silent = s.last_seen.elapsed();
                    let role = if self.active == Some(*conn) || self.draining == Some(*conn) {
                        Role::Active
                    } else {
                        Role::Standby
                    };
                    (s.hello.clone(), role, silent)
                })
                .collect(),
            buffered_inputs: self.sessions.values().map(|s| s.pending.len() as u64).sum(),
            telnet_addr: self.config.telnet_addr.clone(),
            started_at_ms: self.started_at_ms,
        }
    }

    fn promote(
        &mut self,
        generation: u64,
        timeout: Duration,
        reply: oneshot::Sender<Result<Promoted, String>>,
    ) {
        if self.switch.is_some() {
            let _ = reply.send(Err("a hand-over is already in progress".into()));
            return;
        }
        if !matches!(self.stopping, Stopping::No) {
            let _ = reply.send(Err("the portal is shutting down".into()));
            return;
        }
        let Some((&to, _)) = self
            .servers
            .iter()
            .find(|(_, s)| s.hello.generation == generation)
        else {
            let _ = reply.send(Err(format!(
                "no server of generation {generation} is attached"
            )));
            return;
        };
        if self.active == Some(to) {
            let _ = reply.send(Ok(Promoted {
                dark: Duration::ZERO,
                sessions: self.sessions.len() as u64,
            }));
            return;
        }
        let id = self.next_switch;
        self.next_switch += 1;
        let timer = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            timer.send(HubEvent::SwitchTimeout { switch: id });
        });
        self.switch = Some(Switch {
            id,
            to,
            phase: Phase::Draining,
            started: Instant::now(),
            reply: Some(reply),
        });
        match self.active.take() {
            Some(old) => {
                tracing::info!(from = old, to, "hand-over: draining the old server");
                self.pause_begins(Cause::Reload);
                self.draining = Some(old);
                self.push(
                    old,
                    ToServer::Drain {
                        reason: "reload".into(),
                    },
                );
            }
            None => self.after_drain(),
        }
    }

    fn shutdown(&mut self, message: String, timeout: Duration, reply: oneshot::Sender<()>) {
        if !matches!(self.stopping, Stopping::No) {
            let _ = reply.send(());
            return;
        }
        tracing::info!("shutting down: {message}");
        self.stop_accepting.cancel();
        self.notice_all(&format!("[ev] {message}"));
        self.fail_switch("the portal is shutting down".into());
        let server = self.active.take().or(self.draining.take());
        match server {
            Some(conn) => {
                self.stopping = Stopping::Draining(reply);
                self.draining = Some(conn);
                self.push(
                    conn,
                    ToServer::Drain {
                        reason: "shutdown".into(),
                    },
                );
                let id = self.next_switch;
                self.next_switch += 1;
                // Reuse the switch timer path: a stop must not wait forever.
                self.switch = Some(Switch {
                    id,
                    to: conn,
                    phase: Phase::Draining,
                    started: Instant::now(),
                    reply: None,
                });
                let timer = self.me.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    timer.send(HubEvent::SwitchTimeout { switch: id });
                });
            }
            None => {
                self.stopping = Stopping::Draining(reply);
                self.finish_stop();
            }
        }
    }

    fn finish_stop(&mut self) {
        let Stopping::Draining(reply) = std::mem::replace(&mut self.stopping, Stopping::Done)
        else {
            return;
        };
        self.switch = None;
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.send_to_player(id, Outbound::Close("shutdown".into()));
        }
        let _ = reply.send(());
    }

    // === batching ===

    fn push(&mut self, conn: ConnId, event: ToServer) {
        if let Some(server) = self.servers.get_mut(&conn) {
            server.batch_bytes += match &event {
                ToServer::Input { text, .. } => text.len() + 32,
                ToServer::Sync { sessions, .. } => sessions.len() * 128,
                _ => 32,
            };
            server.batch.push(event);
            if server.batch.len() >= MAX_EVENTS_PER_MESSAGE
                || server.batch_bytes >= MAX_MESSAGE_BYTES
            {
                server.batch_bytes = 0;
                let batch = std::mem::take(&mut server.batch);
                let _ = server.tx.send(batch);
            }
        }
    }

    fn flush(&mut self) {
        for server in self.servers.values_mut() {
            if !server.batch.is_empty() {
                server.batch_bytes = 0;
                let batch = std::mem::take(&mut server.batch);
                let _ = server.tx.send(batch);
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[cfg(test)]
pub(super) mod tests_support {
    use super::*;

    pub struct Harness {
        pub tx: HubSender,
        pub stop: CancellationToken,
    }

    pub struct FakeServer {
        pub rx: mpsc::UnboundedReceiver<Vec<ToServer>>,
    }

    pub struct FakeSession {
        pub out: crate::outqueue::OutReceiver,
        pub credits: Arc<Semaphore>,
        pub kill: CancellationToken,
        pub logged_in: watch::Receiver<bool>,
    }

    impl FakeSession {
        /// The text lines queued for this player so far.
        pub fn texts(&mut self) -> Vec<String> {
            let mut texts = Vec::new();
            while let Ok(msg) = self.out.try_recv() {
                if let Outbound::Text(t) = msg {
                    texts.push(t);
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
        let (tx, rx) = channel();
        let stop = CancellationToken::new();
        let config = HubConfig {
            sync_chunk: 2,
            tick: None,
            heartbeat: Duration::from_secs(3600),
            telnet_addr: "127.0.0.1:1".into(),
            pause_notice,
        };
        let hub = Hub::new(rx, tx.clone(), config, stop.clone());
        tokio::spawn(hub.run());
        Harness { tx, stop }
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
        h.from(1, vec![FromServer::Drained]);
        b.take(1).await;
        h.from(2, vec![FromServer::Ready { sessions: 1 }]);
        promoted.await.unwrap().unwrap();
    }

    pub fn hello(generation: u64, major: u32) -> Hello {
        Hello {
            major,
            minor: 0,
            build_id: "test".into(),
            generation,
            pid: 1,
        }
    }

    /// What a server sends for session `session`'s first input, a `ping`:
    /// its answer (output seq 1) and an ack up to `acked`.
    pub fn pong(session: SessionId, acked: u64) -> Vec<FromServer> {
        vec![
            FromServer::Output {
                session,
                seq: 1,
                text: "pong".into(),
            },
            FromServer::Ack {
                session,
                seq: acked,
            },
        ]
    }

    impl Harness {
        pub fn open(&self, id: SessionId, output_queue: usize) -> FakeSession {
            let (out, out_rx) = crate::outqueue::channel(output_queue, usize::MAX);
            let credits = Arc::new(Semaphore::new(8));
            let kill = CancellationToken::new();
            let (logged_in, logged_in_rx) = watch::channel(false);
            self.tx.send(HubEvent::Opened {
                portal: PortalPart {
                    id,
                    ..Default::default()
                },
                out,
                credits: credits.clone(),
                kill: kill.clone(),
                logged_in,
            });
            FakeSession {
                out: out_rx,
                credits,
                kill,
                logged_in: logged_in_rx,
            }
        }

        pub fn input(&self, session: SessionId, text: &str) {
            self.tx.send(HubEvent::Input {
                session,
                text: text.into(),
            });
        }

        pub fn attach(&self, conn: ConnId, generation: u64, major: u32) -> FakeServer {
            let (tx, rx) = mpsc::unbounded_channel();
            self.tx.send(HubEvent::Attach {
                conn,
                hello: hello(generation, major),
                tx,
            });
            FakeServer { rx }
        }

        /// Server `conn` goes away without draining, as a kill does.
        pub fn kill(&self, conn: ConnId) {
            self.tx.send(HubEvent::Detached {
                conn,
                reason: "killed".into(),
            });
        }

        pub fn from(&self, conn: ConnId, events: Vec<FromServer>) {
            self.tx.send(HubEvent::FromServer { conn, events });
        }

        pub async fn promote(
            &self,
            generation: u64,
        ) -> oneshot::Receiver<Result<Promoted, String>> {
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
                ToServer::Input { session, seq, text } => Some((*session, *seq, text.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn synced(events: &[ToServer]) -> Vec<SessionId> {
        let mut ids: Vec<SessionId> = events
            .iter()
            .filter_map(|e| match e {
                ToServer::Sync { sessions, .. } => Some(sessions.iter().map(|s| s.portal.id)),
                _ => None,
            })
            .flatten()
            .collect();
        ids.sort();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;

    #[tokio::test]
    async fn input_waits_for_a_server_then_arrives_after_the_sync_in_order() {
        let h = start();
        let mut s = h.open(7, 16);
        h.input(7, "look");
        h.input(7, "say hi");
        assert_eq!(h.status().await.buffered_inputs, 2);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        let events = a.take(4).await;
        assert!(matches!(
            events[0],
            ToServer::Hello {
                role: Role::Active,
                ..
            }
        ));
        assert!(matches!(events[1], ToServer::Sync { last: true, .. }));
        assert_eq!(
            inputs(&events),
            vec![(7, 1, "look".into()), (7, 2, "say hi".into())]
        );
        // The ack frees the credit and the output reaches the player.
        let before = s.credits.available_permits();
        h.from(1, pong(7, 2));
        assert!(matches!(s.out.recv().await, Some(Outbound::Text(t)) if t == "pong"));
        assert_eq!(h.status().await.buffered_inputs, 0);
        assert_eq!(s.credits.available_permits(), before + 2);
        h.stop.cancel();
    }

    #[tokio::test]
    async fn hand_over_buffers_during_drain_and_replays_unacked_input() {
        let h = start();
        let _s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "one");
        a.take(1).await;
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        assert!(matches!(
            b.take(1).await[0],
            ToServer::Hello {
                role: Role::Standby,
                ..
            }
        ));
        let promoted = h.promote(2).await;
        assert!(matches!(a.take(1).await[0], ToServer::Drain { .. }));
        // Typed during the drain: held back from both servers.
        h.input(7, "two");
        // A applies "one" and drains.
        h.from(
            1,
            vec![FromServer::Ack { session: 7, seq: 1 }, FromServer::Drained],
        );
        let events = b.take(2).await;
        assert_eq!(synced(&events), vec![7]);
        assert_eq!(inputs(&events), vec![(7, 2, "two".into())]);
        h.from(2, vec![FromServer::Ready { sessions: 1 }]);
        let done = promoted.await.unwrap().unwrap();
        assert_eq!(done.sessions, 1);
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_quick_hand_over_tells_the_players_nothing() {
        let h = start();
        let HandOver {
            mut s,
            mut b,
            promoted,
            ..
        } = hand_over(&h).await;
        drained_then_ready(&h, &mut b, promoted).await;
        assert_eq!(s.texts(), Vec::<String>::new());
        h.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_hand_over_that_lasts_is_told_and_so_is_its_end() {
        let h = start_with(Duration::from_millis(500));
        let HandOver {
            mut s,
            mut b,
            promoted,
            ..
        } = hand_over(&h).await;
        let drain_began = tokio::time::Instant::now();
        // A takes its time to drain.
        let Some(Outbound::Text(told)) = s.out.recv().await else {
            panic!("the session was closed");
        };
        assert!(told.contains("The game is reloading"), "{told}");
        assert!(drain_began.elapsed() >= Duration::from_millis(500));
        drained_then_ready(&h, &mut b, promoted).await;
        assert_eq!(s.texts(), [BACK]);
        h.stop.cancel();
    }

    /// What a player is told across a kill of the server and the next
    /// one's Ready.
    async fn told_across_a_crash(pause_notice: Duration) -> Vec<String> {
        let h = start_with(pause_notice);
        let mut s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.kill(1);
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        b.take(2).await;
        h.from(2, vec![FromServer::Ready { sessions: 1 }]);
        h.status().await;
        h.stop.cancel();
        s.texts()
    }

    #[tokio::test]
    async fn a_crash_is_told_when_the_pause_notice_is_zero_and_so_is_its_end() {
        let told = told_across_a_crash(Duration::ZERO).await;
        assert_eq!(told.len(), 2, "{told:?}");
        assert!(told[0].contains("stopped unexpectedly"), "{told:?}");
        assert_eq!(told[1], BACK);
    }

    #[tokio::test]
    async fn a_crash_with_a_quick_restart_tells_the_players_nothing() {
        let told = told_across_a_crash(Duration::from_secs(3600)).await;
        assert_eq!(told, Vec::<String>::new());
    }

    #[tokio::test]
    async fn old_server_vanishing_mid_drain_hands_over_its_unacked_input() {
        let h = start();
        let _s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "one");
        a.take(1).await;
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        b.take(1).await;
        let promoted = h.promote(2).await;
        a.take(1).await;
        h.kill(1);
        let events = b.take(2).await;
        assert_eq!(inputs(&events), vec![(7, 1, "one".into())]);
        h.from(2, vec![FromServer::Ready { sessions: 1 }]);
        assert!(promoted.await.unwrap().is_ok());
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_closed_session_still_delivers_its_input_then_closes() {
        let h = start();
        let _s = h.open(7, 16);
        h.input(7, "say bye");
        h.tx.send(HubEvent::Closed {
            session: 7,
            reason: "gone".into(),
        });
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        let events = a.take(4).await;
        assert_eq!(synced(&events), vec![7]);
        assert_eq!(inputs(&events), vec![(7, 1, "say bye".into())]);
        assert!(matches!(
            events.last(),
            Some(ToServer::Closed { session: 7, .. })
        ));
        h.from(1, vec![FromServer::Ack { session: 7, seq: 1 }]);
        assert_eq!(h.status().await.buffered_inputs, 0);
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off() {
        let h = start();
        let s = h.open(7, 2);
        let _a = h.attach(1, 1, ev::version::LINK_MAJOR);
        let flood = (0..3)
            .map(|i| FromServer::Output {
                session: 7,
                seq: 0,
                text: format!("line {i}"),
            })
            .collect();
        h.from(1, flood);
        tokio::time::timeout(Duration::from_secs(5), s.kill.cancelled())
            .await
            .expect("the slow client was not disconnected");
        h.stop.cancel();
    }

    #[tokio::test]
    async fn other_major_version_is_refused_and_reported_to_the_waiter() {
        let h = start();
        let mut a = h.attach(1, 5, 99);
        match &a.take(1).await[0] {
            ToServer::Hello { refused, .. } => {
                assert!(refused.contains("99.0"), "{refused}");
                assert!(refused.contains(&ev::version::link_version()), "{refused}");
            }
            other => panic!("{other:?}"),
        }
        let (reply, rx) = oneshot::channel();
        h.tx.send(HubEvent::Admin(AdminRequest::WaitAttached {
            generation: 5,
            reply,
        }));
        assert!(rx.await.unwrap().unwrap_err().contains("mismatch"));
        h.stop.cancel();
    }

    #[tokio::test]
    async fn large_sync_is_chunked() {
        let h = start();
        let _sessions: Vec<_> = (1..=5).map(|id| h.open(id, 4)).collect();
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        let events = a.take(4).await;
        let chunks: Vec<usize> = events
            .iter()
            .filter_map(|e| match e {
                ToServer::Sync { sessions, .. } => Some(sessions.len()),
                _ => None,
            })
            .collect();
        assert_eq!(chunks, vec![2, 2, 1]);
        assert!(matches!(
            events.last(),
            Some(ToServer::Sync { last: true, .. })
        ));
        h.stop.cancel();
    }
}

#[cfg(test)]
mod crash_tests {
    use super::tests_support::*;
    use super::*;

    #[tokio::test]
    async fn output_already_delivered_is_dropped_and_deliveries_are_reported() {
        let h = start();
        let mut s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        let out = |seq, text: &str| FromServer::Output {
            session: 7,
            seq,
            text: text.into(),
        };
        // A restarted server re-sends seq 1 and 2 from its outbox.
        h.from(
            1,
            vec![
                out(1, "one"),
                out(2, "two"),
                out(1, "one"),
                out(2, "two"),
                out(3, "three"),
            ],
        );
        for want in ["one", "two", "three"] {
            assert!(matches!(s.out.recv().await, Some(Outbound::Text(t)) if t == want));
        }
        h.tx.send(HubEvent::Tick);
        let events = a.take(1).await;
        assert_eq!(events, vec![ToServer::Delivered { session: 7, seq: 3 }]);
        assert!(
            s.out.try_recv().is_err(),
            "a doubled line reached the player"
        );
        h.stop.cancel();
    }

    #[tokio::test]
    async fn the_next_server_learns_what_was_delivered() {
        let h = start();
        let _s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.from(
            1,
            vec![FromServer::Output {
                session: 7,
                seq: 5,
                text: "x".into(),
            }],
        );
        h.kill(1);
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        let events = b.take(2).await;
        match &events[1] {
            ToServer::Sync { sessions, .. } => assert_eq!(sessions[0].output_seq, 5),
            other => panic!("{other:?}"),
        }
        h.stop.cancel();
    }

    #[tokio::test]
    async fn after_a_crash_suspects_go_at_once_then_alone_and_the_poison_is_quarantined() {
        let h = start();
        let mut s = h.open(7, 16);
        let _t = h.open(8, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "@crash");
        h.input(8, "look");
        a.take(2).await;
        h.kill(1);
        h.input(7, "say after");
        // The first crash may have had nothing to do with its inputs: the
        // next server gets them all at once, and the new one too.
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        let mut got = inputs(&b.take(5).await);
        got.sort();
        assert_eq!(
            got,
            vec![
                (7, 1, "@crash".into()),
                (7, 2, "say after".into()),
                (8, 1, "look".into())
            ]
        );
        // A second crash with them in flight: now they go one at a time.
        h.kill(2);
        let mut c = h.attach(3, 3, ev::version::LINK_MAJOR);
        let events = c.take(3).await;
        assert_eq!(inputs(&events), vec![(7, 1, "@crash".into())]);
        // It crashes the server alone: quarantined.
        h.kill(3);
        let mut d = h.attach(4, 4, ev::version::LINK_MAJOR);
        let events = d.take(3).await;
        assert_eq!(inputs(&events), vec![(8, 1, "look".into())]);
        h.from(4, vec![FromServer::Ack { session: 8, seq: 1 }]);
        // Suspects done: the rest flows, and the quarantined seq never again.
        let events = d.take(1).await;
        assert_eq!(inputs(&events), vec![(7, 2, "say after".into())]);
        assert_told_of_quarantine(&mut s);
        h.stop.cancel();
    }

    #[tokio::test]
    async fn an_input_alone_in_two_crashes_is_quarantined_after_the_second() {
        let h = start();
        let mut s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "@crash");
        a.take(1).await;
        h.kill(1);
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        assert_eq!(inputs(&b.take(3).await), vec![(7, 1, "@crash".into())]);
        h.kill(2);
        let mut c = h.attach(3, 3, ev::version::LINK_MAJOR);
        assert_eq!(
            inputs(&c.take(2).await),
            vec![],
            "quarantined, not replayed"
        );
        h.input(7, "ping");
        assert_eq!(inputs(&c.take(1).await), vec![(7, 2, "ping".into())]);
        assert_told_of_quarantine(&mut s);
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_drain_that_times_out_does_not_hand_over() {
        let h = start();
        let _s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        b.take(1).await;
        let (reply, rx) = oneshot::channel();
        h.tx.send(HubEvent::Admin(AdminRequest::Promote {
            generation: 2,
            timeout: Duration::from_millis(1),
            reply,
        }));
        let err = rx.await.unwrap().err().unwrap();
        assert!(err.contains("did not drain"), "{err}");
        // B was never synced: A may still commit what it holds.
        h.input(7, "look");
        let status = h.status().await;
        assert_eq!(status.buffered_inputs, 1);
        assert!(b.rx.try_recv().is_err(), "the new server got a Sync");
        h.stop.cancel();
    }
}

#[cfg(test)]
mod handover_failure_tests {
    use super::tests_support::*;
    use super::*;

    /// Regression (issue 3): the new server dies after the old one drained;
    /// the drained server, which is exiting, must not be made active again.
    #[tokio::test]
    async fn a_drained_server_is_never_reactivated() {
        let h = start();
        let HandOver {
            mut a,
            mut b,
            promoted,
            ..
        } = hand_over(&h).await;
        h.from(1, vec![FromServer::Drained]);
        b.take(1).await;
        h.kill(2);
        assert!(promoted.await.unwrap().is_err());
        h.input(7, "look");
        let status = h.status().await;
        assert_eq!(status.buffered_inputs, 1);
        assert!(
            a.rx.try_recv().is_err(),
            "the drained server got a Sync or input"
        );
        // The next server to attach serves, with the input.
        let mut c = h.attach(3, 3, ev::version::LINK_MAJOR);
        let events = c.take(3).await;
        assert!(matches!(
            events[0],
            ToServer::Hello {
                role: Role::Active,
                ..
            }
        ));
        h.stop.cancel();
    }
}

#[cfg(test)]
mod limits_tests {
    use super::tests_support::*;
    use super::*;

    fn stage(session: SessionId, seq: u64, playing: bool) -> FromServer {
        let server = if playing {
            ServerPart::playing()
        } else {
            ServerPart::default()
        };
        FromServer::Update {
            session,
            seq,
            server,
        }
    }

    #[tokio::test]
    async fn the_connection_hears_when_the_server_logs_its_session_in_and_out() {
        let h = start();
        let mut s = h.open(7, 16);
        let _a = h.attach(1, 1, ev::version::LINK_MAJOR);
        h.from(1, vec![stage(7, 1, true)]);
        s.logged_in.changed().await.unwrap();
        assert!(*s.logged_in.borrow_and_update());
        // A new snapshot with the same stage is not news.
        h.from(1, vec![stage(7, 2, true), stage(7, 3, false)]);
        s.logged_in.changed().await.unwrap();
        assert!(!*s.logged_in.borrow_and_update());
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_half_closed_connection_closes_after_the_answers_to_its_input() {
        let h = start();
        let mut s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "ping");
        h.tx.send(HubEvent::InputEnded { session: 7 });
        a.take(1).await;
        assert!(s.out.try_recv().is_err(), "closed before the answer");
        h.from(1, pong(7, 1));
        assert!(matches!(s.out.recv().await, Some(Outbound::Text(t)) if t == "pong"));
        assert!(matches!(s.out.recv().await, Some(Outbound::Close(_))));
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_half_closed_connection_with_nothing_owed_closes_at_once() {
        let h = start();
        let mut s = h.open(7, 16);
        h.tx.send(HubEvent::InputEnded { session: 7 });
        assert!(matches!(s.out.recv().await, Some(Outbound::Close(_))));
        h.stop.cancel();
    }

    /// Sessions 7 and 8 on server 1; 7's input waits past the pause notice.
    async fn unanswered(h: &Harness) -> (FakeSession, FakeSession, FakeServer) {
        let mut s = h.open(7, 16);
        let t = h.open(8, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "ping");
        a.take(1).await;
        h.tx.send(HubEvent::Tick);
        h.status().await;
        assert_eq!(s.texts(), Vec::<String>::new(), "told too soon");
        tokio::time::advance(Duration::from_millis(600)).await;
        h.tx.send(HubEvent::Tick);
        h.status().await;
        let told = s.texts();
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].contains("The game is paused"), "{told:?}");
        (s, t, a)
    }

    #[tokio::test(start_paused = true)]
    async fn inputs_left_unanswered_are_told_and_so_is_the_answer() {
        let h = start_with(Duration::from_millis(500));
        let (mut s, mut t, _a) = unanswered(&h).await;
        assert_eq!(t.texts(), Vec::<String>::new(), "8 waits for nothing");
        // Told once, however long it lasts.
        tokio::time::advance(Duration::from_secs(5)).await;
        h.tx.send(HubEvent::Tick);
        h.status().await;
        assert_eq!(s.texts(), Vec::<String>::new());
        h.from(1, pong(7, 1));
        h.tx.send(HubEvent::Tick);
        h.status().await;
        assert_eq!(s.texts(), ["pong", BACK]);
        assert_eq!(t.texts(), Vec::<String>::new());
        h.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_input_the_server_works_on_is_no_pause() {
        let h = start_with(Duration::from_millis(500));
        let mut s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "connect alice wrongpw");
        h.input(7, "look");
        a.take(2).await;
        // A delayed login: the server took it and hashes off its thread.
        h.from(1, vec![FromServer::Working { session: 7, seq: 1 }]);
        tokio::time::advance(Duration::from_secs(3)).await;
        h.tx.send(HubEvent::Tick);
        h.status().await;
        assert_eq!(
            s.texts(),
            Vec::<String>::new(),
            "a login's wait read as a pause"
        );
        // Once the work is answered, a new input left waiting is a pause.
        h.from(1, vec![FromServer::Ack { session: 7, seq: 2 }]);
        h.input(7, "look");
        a.take(1).await;
        h.tx.send(HubEvent::Tick);
        h.status().await;
        tokio::time::advance(Duration::from_millis(600)).await;
        h.tx.send(HubEvent::Tick);
        h.status().await;
        let told = s.texts();
        assert!(
            told.len() == 1 && told[0].contains("The game is paused"),
            "{told:?}"
        );
        h.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_that_is_killed_is_told_as_a_crash() {
        let h = start_with(Duration::from_millis(500));
        let (mut s, mut t, _a) = unanswered(&h).await;
        h.kill(1);
        h.status().await;
        let crash = Cause::Crash.notice();
        assert_eq!(s.texts(), [crash]);
        assert_eq!(t.texts(), [crash], "a crash is told to everyone");
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        b.take(3).await;
        h.from(2, vec![FromServer::Ready { sessions: 2 }]);
        h.status().await;
        assert_eq!(s.texts(), [BACK]);
        assert_eq!(t.texts(), [BACK]);
        h.stop.cancel();
    }
}
