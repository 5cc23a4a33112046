//! The hub: sole owner of the session table and of which server serves.
//!
//! One task, fed by one channel: connections (opened, input, closed), servers
//! (attached, their events, detached) and the supervisor's admin requests. It
//! never awaits anything but its own channel, so a slow server or a slow
//! player can never stall it; everything it sends goes through unbounded
//! channels whose size is bounded elsewhere (input credit per session, output
//! queue per session).
//!
//! This file holds the actor: the `Hub` struct (the state every concept
//! shares; child modules see its private fields), its loop, and the dispatch
//! of each event to the concept that owns it. Each concept is a file of
//! `impl Hub` blocks:
//! - `api`: what the rest of the portal sends the hub (the only part `link`,
//!   `session` and `listener` import).
//! - `ledger`: exactly-once: the session table, pending inputs and acks,
//!   output delivered once, the replay to a server that becomes active.
//! - `servers`: the attached servers: version check, their events,
//!   heartbeats, batching, and what follows when one goes away.
//! - `handover`: a reload's Promote, Drain, Sync and Ready.
//! - `recovery`: after a crash: suspects, careful replay, quarantine.
//! - `pause`: telling players of a pause, and of its end.
//! - `counters`: what the operator's metrics count (inputs, connections,
//!   the Link's round trips).
//! - `shutdown`: draining the last server, then closing every connection.

pub mod api;
mod counters;
#[cfg(test)]
mod fixture;
mod handover;
mod ledger;
mod pause;
mod recovery;
mod servers;
mod shutdown;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::unanswered::Unanswered;
use api::{AdminRequest, ConnId, HubEvent, HubSender, Outbound, StatusInfo};
use counters::{Counters, Heartbeats};
use ev::link::{Role, SessionId, ToPortal, ToServer};
use handover::Switch;
use ledger::{Body, Session};
use pause::Pause;
use servers::Server;
use shutdown::Stopping;

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

pub struct Hub {
    rx: mpsc::UnboundedReceiver<HubEvent>,
    me: HubSender,
    /// Boxed: a map keeps a slot for every session and a third more on
    /// average, and this struct is 352 bytes.
    sessions: HashMap<SessionId, Box<Session>>,
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
    /// Logged-in players with a connection, for MSSP: counted on a tick
    /// after a change (a session logged in or out, a connection closed),
    /// not per change, so ten thousand logins cost no quadratic work.
    players: Arc<AtomicU64>,
    players_changed: bool,
    /// For the operator's metrics; see `counters`.
    counters: Counters,
    heartbeats: Heartbeats,
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
            players: Arc::new(AtomicU64::new(0)),
            players_changed: false,
            counters: Counters::default(),
            heartbeats: Heartbeats::default(),
        }
    }

    /// The count of logged-in players the hub keeps up to date.
    pub fn players(&self) -> Arc<AtomicU64> {
        self.players.clone()
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
            } => self.opened(portal, out, credits, kill),
            HubEvent::Input { session, text } => self.input(session, Body::Text(text)),
            HubEvent::Oob { session, oob } => self.input(session, Body::Oob(oob)),
            HubEvent::InputEnded { session } => self.input_ended(session),
            HubEvent::ClientInfo { session, info } => self.client_info(session, info),
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

    fn server_event(&mut self, conn: ConnId, event: ToPortal) {
        match event {
            // `link` turns a server's first hello into the Attach and drops
            // any other.
            ToPortal::Hello(_) => {}
            // Rendered by the session, for its client.
            ToPortal::Output {
                session,
                seq,
                text,
                form,
            } => self.deliver(session, seq, Outbound::Output { text, form }),
            // Delivered (and so marked) even to a client that takes no
            // out-of-band data: the session drops it then.
            ToPortal::Oob { session, seq, oob } => self.deliver(session, seq, Outbound::Oob(oob)),
            ToPortal::Ack { session, seq } => self.ack(conn, session, seq),
            ToPortal::Working { session, seq } => self.working(conn, session, seq),
            ToPortal::Update {
                session,
                seq,
                server,
            } => self.update(session, seq, server),
            ToPortal::Disconnect {
                session,
                seq,
                reason,
            } => self.deliver(session, seq, Outbound::Close(reason)),
            ToPortal::Drained => self.drained(conn),
            ToPortal::Ready { sessions } => self.ready(conn, sessions),
            ToPortal::Heartbeat { nonce, reply } => {
                if reply {
                    self.heartbeat_answered(conn, nonce);
                } else {
                    self.push(conn, ToServer::Heartbeat { nonce, reply: true });
                }
            }
        }
    }

    fn admin(&mut self, request: AdminRequest) {
        match request {
            AdminRequest::Status(reply) => {
                let _ = reply.send(self.status());
            }
            AdminRequest::WaitAttached { generation, reply } => {
                self.wait_attached(generation, reply)
            }
            AdminRequest::Promote {
                generation,
                timeout,
                reply,
            } => self.promote(generation, timeout, reply),
            AdminRequest::Notice {
                text,
                admins: false,
            } => self.notice_all(&text),
            AdminRequest::Notice { text, admins: true } => self.notice_staff(text),
            AdminRequest::Shutdown {
                message,
                timeout,
                reply,
            } => self.shutdown(message, timeout, reply),
        }
    }

    fn status(&self) -> StatusInfo {
        let (mut sessions, mut logged_in) = (0, 0);
        let mut sessions_by_protocol: BTreeMap<String, u64> = BTreeMap::new();
        for s in self.sessions.values().filter(|s| s.out.is_some()) {
            sessions += 1;
            logged_in += u64::from(s.server.logged_in());
            match sessions_by_protocol.get_mut(&s.portal.protocol) {
                Some(n) => *n += 1,
                None => {
                    sessions_by_protocol.insert(s.portal.protocol.clone(), 1);
                }
            }
        }
        StatusInfo {
            sessions,
            logged_in,
            sessions_by_protocol,
            counters: self.counters.clone(),
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

    fn tick(&mut self) {
        if std::mem::take(&mut self.players_changed) {
            let players = self
                .sessions
                .values()
                .filter(|s| s.out.is_some() && s.server.logged_in())
                .count();
            self.players.store(players as u64, Ordering::Relaxed);
        }
        self.check_unanswered();
        self.report_deliveries();
        self.heartbeat();
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
