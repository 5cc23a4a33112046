//! The exactly-once ledger: every session, its inputs not yet acked, and
//! how far its output was delivered.
//!
//! # Exactly-once input
//! Each input gets the next per-session seq and stays in the session's
//! `pending` queue until the server acks it. A server that goes away before
//! acking (crash, drain) leaves the inputs there; the next server gets them
//! again after its Sync and skips those its database says it applied.
//!
//! # Exactly-once output
//! Output, SessionUpdate and Disconnect carry a per-session seq; the hub
//! drops any at or below what it already delivered (a server re-sending its
//! outbox after a crash), and tells the server what was delivered on each
//! tick so it can prune its outbox.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Hub;
use super::api::{ConnId, Outbound};
use super::shutdown::Stopping;
use crate::negotiation::ClientInfo;
use crate::outqueue::{OutSender, Refused};
use ev::link::{Oob, PortalSession, ServerSession, SessionId, Snapshot, ToServer};

pub(super) struct Session {
    pub(super) portal: PortalSession,
    pub(super) server: ServerSession,
    pub(super) last_seq: u64,
    pub(super) acked: u64,
    /// The active server's word that input `working` waits on work off its
    /// game thread: until the ack passes it, the session's waiting inputs
    /// are no sign of a stalled server.
    pub(super) working: u64,
    /// Inputs not yet acked, oldest first.
    pub(super) pending: VecDeque<Pending>,
    /// Highest output seq delivered to the connection.
    pub(super) delivered: u64,
    /// Highest output seq reported to the active server.
    pub(super) reported: u64,
    /// Highest seq handed to the active server.
    pub(super) sent: u64,
    pub(super) out: Option<OutSender>,
    pub(super) credits: Arc<Semaphore>,
    pub(super) kill: CancellationToken,
    /// What the connection was last told of the server's login state.
    pub(super) logged_in: bool,
    /// The client sent its last input; see [`super::api::HubEvent::InputEnded`].
    pub(super) input_ended: bool,
    /// The connection has gone; kept while inputs are still owed to a server.
    pub(super) closed: Option<String>,
    pub(super) closed_sent: bool,
}

pub(super) struct Pending {
    pub(super) seq: u64,
    pub(super) body: Body,
    /// Servers that crashed while this input was in flight.
    pub(super) crashes: u8,
}

/// What the client sent for the server: a line, or out-of-band data, which
/// is numbered, kept, acked and replayed like a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Body {
    Text(String),
    Oob(Oob),
}

impl Body {
    /// Input `seq` of `session` as a server that speaks Link 1.`minor`
    /// reads it: out-of-band data goes to a server older than 1.3 as an
    /// Input with empty text (which it applies as nothing), so its seqs
    /// keep no gap.
    pub(super) fn event(&self, minor: u32, session: SessionId, seq: u64) -> ToServer {
        match self {
            Body::Text(text) => ToServer::Input {
                session,
                seq,
                text: text.clone(),
            },
            Body::Oob(oob) if minor >= 3 => ToServer::Oob {
                session,
                seq,
                oob: oob.clone(),
            },
            Body::Oob(_) => ToServer::Input {
                session,
                seq,
                text: String::new(),
            },
        }
    }

    /// What the player is told it was, should it be quarantined.
    pub(super) fn describe(&self) -> String {
        match self {
            Body::Text(text) => format!("Your command \"{text}\""),
            Body::Oob(oob) => format!("Your client's message \"{}\"", oob.name),
        }
    }
}

impl Hub {
    pub(super) fn opened(
        &mut self,
        portal: PortalSession,
        out: OutSender,
        credits: Arc<Semaphore>,
        kill: CancellationToken,
    ) {
        let id = portal.id;
        if !matches!(self.stopping, Stopping::No) {
            let _ = out.try_send(Outbound::Close("the game is shutting down".into()));
            return;
        }
        self.counters.opened(&portal.protocol);
        self.sessions.insert(
            id,
            Box::new(Session {
                portal: portal.clone(),
                server: ServerSession::default(),
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
                logged_in: false,
                input_ended: false,
                closed: None,
                closed_sent: false,
            }),
        );
        if let Some(active) = self.active {
            self.push(active, ToServer::Opened(portal));
        }
    }

    /// The Link minor version server `conn` speaks.
    pub(super) fn minor(&self, conn: ConnId) -> u32 {
        self.servers.get(&conn).map_or(0, |s| s.hello.minor)
    }

    /// A line or out-of-band data from the client: the session's next
    /// input seq, kept until acked, handed to the active server.
    pub(super) fn input(&mut self, session: SessionId, body: Body) {
        let minor = self.active.map_or(0, |active| self.minor(active));
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.last_seq += 1;
        self.counters.inputs_received += 1;
        let seq = s.last_seq;
        let event = body.event(minor, session, seq);
        s.pending.push_back(Pending {
            seq,
            body,
            crashes: 0,
        });
        if let Some(active) = self.active
            && self.careful.is_none()
        {
            s.sent = seq;
            self.unanswered
                .sent(tokio::time::Instant::now(), session, seq);
            self.push(active, event);
        }
    }

    /// See [`super::api::HubEvent::InputEnded`].
    pub(super) fn input_ended(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.input_ended = true;
        }
        self.close_if_answered(session);
    }

    pub(super) fn closed(&mut self, session: SessionId, reason: String) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.out = None;
        s.closed = Some(reason);
        self.players_changed = true;
        self.settle_closed(session);
    }

    /// What the client told of itself: kept in the session (so a Sync
    /// carries it to the next server) and told to the active server.
    pub(super) fn client_info(&mut self, session: SessionId, info: ClientInfo) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let before = s.portal.clone();
        let p = &mut s.portal;
        p.client = info.client;
        p.terminal = info.terminal;
        p.width = info.width;
        p.height = info.height;
        p.encoding = info.charset.name().to_ascii_lowercase();
        p.capabilities = info.capabilities;
        if s.portal == before || s.closed.is_some() {
            return;
        }
        let portal = s.portal.clone();
        // A server older than Link 1.2 would only log it as malformed.
        if let Some(active) = self.active
            && self
                .servers
                .get(&active)
                .is_some_and(|server| server.hello.minor >= 2)
        {
            self.push(active, ToServer::SessionInfo(portal));
        }
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

    pub(super) fn send_to_player(&mut self, session: SessionId, message: Outbound) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let Some(out) = &s.out else { return };
        if let Err(e) = out.try_send(message) {
            if e == Refused::Full {
                tracing::warn!(
                    %session,
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

    /// A line for the game's admins: the active server knows who they are.
    /// With no server, or one older than Link 1.4, it is only logged.
    pub(super) fn notice_staff(&mut self, text: String) {
        match self.active {
            Some(active) if self.minor(active) >= 4 => {
                self.push(active, ToServer::StaffNotice { text })
            }
            _ => tracing::warn!("no server to tell the game's admins: {text}"),
        }
    }

    pub(super) fn notice_all(&mut self, text: &str) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.send_to_player(id, Outbound::Notice(text.to_string()));
        }
    }

    /// Makes `conn` the server that gets input: every session, then every
    /// input not yet acked, in order.
    pub(super) fn activate(&mut self, conn: ConnId) {
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
        if self.replay_suspect_alone(conn) {
            return;
        }
        let minor = self.minor(conn);
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if s.closed_sent {
                continue;
            }
            let sent = s.sent;
            // In flight in a crash: this is its replay.
            self.counters.inputs_replayed += s
                .pending
                .iter()
                .filter(|p| p.seq > sent && p.crashes > 0)
                .count() as u64;
            let inputs: Vec<(u64, ToServer)> = s
                .pending
                .iter()
                .filter(|p| p.seq > sent)
                .map(|p| (p.seq, p.body.event(minor, id, p.seq)))
                .collect();
            s.sent = s.last_seq;
            let now = tokio::time::Instant::now();
            for (seq, input) in inputs {
                self.unanswered.sent(now, id, seq);
                self.push(conn, input);
            }
            self.settle_closed(id);
        }
    }

    /// True if this sequenced event is new; marks it delivered.
    pub(super) fn fresh(&mut self, session: SessionId, seq: u64) -> bool {
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

    /// Hands a sequenced message to the player unless it was delivered before.
    pub(super) fn deliver(&mut self, session: SessionId, seq: u64, message: Outbound) {
        if self.fresh(session, seq) {
            self.send_to_player(session, message)
        }
    }

    /// The server's new state of a session, once.
    pub(super) fn update(&mut self, session: SessionId, seq: u64, server: ServerSession) {
        if !self.fresh(session, seq) {
            return;
        }
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let colours = server.colours;
        let recoloured = colours != s.server.colours;
        s.server = server;
        let now_in = s.server.logged_in();
        if s.logged_in != now_in {
            s.logged_in = now_in;
            self.players_changed = true;
            self.send_to_player(session, Outbound::LoggedIn(now_in));
        }
        // In the output queue, so the lines sent before the change keep
        // the old colours and those after it get the new.
        if recoloured
            && let Some(s) = self.sessions.get_mut(&session)
            && let Some(out) = &s.out
            && out.try_set_colours(colours).is_err()
        {
            s.kill.cancel();
            s.out = None;
        }
    }

    /// The active server's word that input `seq` waits on work off its game
    /// thread: no sign of a stall.
    pub(super) fn working(&mut self, conn: ConnId, session: SessionId, seq: u64) {
        if self.active == Some(conn)
            && let Some(s) = self.sessions.get_mut(&session)
        {
            s.working = s.working.max(seq);
        }
    }

    pub(super) fn ack(&mut self, conn: ConnId, session: SessionId, seq: u64) {
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
        self.counters.inputs_applied += freed as u64;
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

    /// Tells the active server how far each session's output was delivered,
    /// so it can prune its outbox.
    pub(super) fn report_deliveries(&mut self) {
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
    }
}

#[cfg(test)]
mod tests {
    use crate::hub::fixture::*;
    use tokio::time::timeout;

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
            ToServer::Hello(PortalHello {
                role: Role::Active,
                ..
            })
        ));
        assert!(matches!(events[1], ToServer::Sync { last: true, .. }));
        assert_eq!(
            inputs(&events),
            vec![(7, 1, "look".into()), (7, 2, "say hi".into())]
        );
        // The ack frees the credit and the output reaches the player.
        let before = s.credits.available_permits();
        h.from(1, pong(7, 2));
        assert!(
            matches!(s.out.recv().await, Some(Outbound::Output { text, .. }) if text == "pong")
        );
        assert_eq!(h.status().await.buffered_inputs, 0);
        assert_eq!(s.credits.available_permits(), before + 2);
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_closed_session_still_delivers_its_input_then_closes() {
        let h = start();
        let _s = h.open(7, 16);
        h.input(7, "say bye");
        h.tx.send(HubEvent::Closed {
            session: SessionId(7),
            reason: "gone".into(),
        });
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        let events = a.take(4).await;
        assert_eq!(synced(&events), vec![7]);
        assert_eq!(inputs(&events), vec![(7, 1, "say bye".into())]);
        assert!(matches!(
            events.last(),
            Some(ToServer::Closed {
                session: SessionId(7),
                ..
            })
        ));
        h.from(
            1,
            vec![ToPortal::Ack {
                session: SessionId(7),
                seq: 1,
            }],
        );
        assert_eq!(h.status().await.buffered_inputs, 0);
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off() {
        let h = start();
        let s = h.open(7, 2);
        let _a = h.attach(1, 1, ev::version::LINK_MAJOR);
        let flood = (0..3)
            .map(|i| ToPortal::Output {
                session: SessionId(7),
                seq: 0,
                text: format!("line {i}"),
                form: ev::link::Form::PLAIN,
            })
            .collect();
        h.from(1, flood);
        tokio::time::timeout(Duration::from_secs(5), s.kill.cancelled())
            .await
            .expect("the slow client was not disconnected");
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

    #[tokio::test]
    async fn output_already_delivered_is_dropped_and_deliveries_are_reported() {
        let h = start();
        let mut s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        let out = |seq, text: &str| ToPortal::Output {
            session: SessionId(7),
            seq,
            text: text.into(),
            form: ev::link::Form::PLAIN,
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
            assert!(
                matches!(s.out.recv().await, Some(Outbound::Output { text, .. }) if text == want)
            );
        }
        h.tx.send(HubEvent::Tick);
        let events = a.take(1).await;
        assert_eq!(
            events,
            vec![ToServer::Delivered {
                session: SessionId(7),
                seq: 3
            }]
        );
        assert!(
            s.out.try_recv().is_none(),
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
            vec![ToPortal::Output {
                session: SessionId(7),
                seq: 5,
                text: "x".into(),
                form: ev::link::Form::PLAIN,
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

    fn stage(session: u64, seq: u64, playing: bool) -> ToPortal {
        let server = if playing {
            ServerSession {
                stage: ev::link::Stage::Playing,
                ..ServerSession::default()
            }
        } else {
            ServerSession::default()
        };
        ToPortal::Update {
            session: SessionId(session),
            seq,
            server,
        }
    }

    #[tokio::test]
    async fn the_connection_hears_when_the_server_logs_its_session_in_and_out() {
        let h = start();
        let mut s = h.open(7, 16);
        let _a = h.attach(1, 1, ev::version::LINK_MAJOR);
        // Each change once, in the order the server made them: a new
        // snapshot with the same stage is not news.
        h.from(
            1,
            vec![stage(7, 1, true), stage(7, 2, true), stage(7, 3, false)],
        );
        let mut news = Vec::new();
        while news.len() < 2 {
            match timeout(Duration::from_secs(5), s.out.recv()).await {
                Ok(Some(Outbound::LoggedIn(yes))) => news.push(yes),
                Ok(Some(_)) => {}
                other => panic!("the queue ended or stayed quiet: {:?}", other.is_ok()),
            }
        }
        assert_eq!(news, [true, false]);
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_half_closed_connection_closes_after_the_answers_to_its_input() {
        let h = start();
        let mut s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "ping");
        h.tx.send(HubEvent::InputEnded {
            session: SessionId(7),
        });
        a.take(1).await;
        assert!(s.out.try_recv().is_none(), "closed before the answer");
        h.from(1, pong(7, 1));
        assert!(
            matches!(s.out.recv().await, Some(Outbound::Output { text, .. }) if text == "pong")
        );
        assert!(matches!(s.out.recv().await, Some(Outbound::Close(_))));
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_half_closed_connection_with_nothing_owed_closes_at_once() {
        let h = start();
        let mut s = h.open(7, 16);
        h.tx.send(HubEvent::InputEnded {
            session: SessionId(7),
        });
        assert!(matches!(s.out.recv().await, Some(Outbound::Close(_))));
        h.stop.cancel();
    }

    fn info(width: u32) -> crate::negotiation::ClientInfo {
        crate::negotiation::ClientInfo {
            client: "MUDLET 4.17.2".into(),
            width,
            height: 40,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn client_info_reaches_a_1_2_server_and_the_next_sync() {
        let h = start();
        let _s = h.open(7, 16);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut hello = hello(1, ev::version::LINK_MAJOR);
        hello.minor = 2;
        h.tx.send(HubEvent::Attach { conn: 1, hello, tx });
        let mut a = FakeServer { rx };
        a.take(2).await;
        h.tx.send(HubEvent::ClientInfo {
            session: SessionId(7),
            info: info(120),
        });
        let events = a.take(1).await;
        assert!(
            matches!(&events[0], ToServer::SessionInfo(p)
                if p.id == SessionId(7) && p.width == 120 && p.height == 40
                    && p.client == "MUDLET 4.17.2" && p.encoding == "utf-8"),
            "{events:?}"
        );
        // The same again is no news.
        h.tx.send(HubEvent::ClientInfo {
            session: SessionId(7),
            info: info(120),
        });
        h.status().await;
        assert!(
            a.rx.try_recv().is_err(),
            "an unchanged session was sent again"
        );

        // The next server has it from its Sync; being 1.0, it is sent no
        // SessionInfo, which it could not read.
        h.kill(1);
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        let events = b.take(2).await;
        let synced_width = events.iter().find_map(|e| match e {
            ToServer::Sync { sessions, .. } => sessions.first().map(|s| s.portal.width),
            _ => None,
        });
        assert_eq!(synced_width, Some(120));
        h.tx.send(HubEvent::ClientInfo {
            session: SessionId(7),
            info: info(100),
        });
        h.status().await;
        assert!(b.rx.try_recv().is_err());
        h.stop.cancel();
    }

    #[tokio::test]
    async fn players_are_counted_with_or_without_a_server() {
        use std::sync::atomic::Ordering;
        let h = start();
        let _s = h.open(7, 16);
        let _t = h.open(8, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.from(
            1,
            vec![ToPortal::Update {
                session: SessionId(7),
                seq: 1,
                server: ServerSession {
                    stage: ev::link::Stage::Playing,
                    account_id: 1,
                    character_id: 1,
                    extra: Vec::new(),
                    colours: ev::link::ColourChoice::Auto,
                },
            }],
        );
        h.tx.send(HubEvent::Tick);
        h.status().await;
        assert_eq!(h.players.load(Ordering::Relaxed), 1);
        // No server at all (a crash, the dark of a reload): still one.
        h.kill(1);
        h.tx.send(HubEvent::Tick);
        h.status().await;
        assert_eq!(h.players.load(Ordering::Relaxed), 1);
        h.tx.send(HubEvent::Closed {
            session: SessionId(7),
            reason: "gone".into(),
        });
        h.tx.send(HubEvent::Tick);
        h.status().await;
        assert_eq!(h.players.load(Ordering::Relaxed), 0);
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_notice_for_the_admins_goes_to_a_server_of_link_1_4_and_to_no_player() {
        let h = start();
        let mut s = h.open(7, 16);
        let mut a = h.attach_minor(1, 1, ev::version::LINK_MAJOR, 4);
        a.take(2).await;
        h.tx.send(HubEvent::Admin(AdminRequest::Notice {
            text: "auto-reload failed".into(),
            admins: true,
        }));
        h.input(7, "look");
        let got = a.take(2).await;
        assert_eq!(
            got[0],
            ToServer::StaffNotice {
                text: "auto-reload failed".into()
            }
        );
        // An older server is not sent it; players never are.
        h.kill(1);
        let mut b = h.attach_minor(2, 2, ev::version::LINK_MAJOR, 3);
        b.take(2).await;
        h.tx.send(HubEvent::Admin(AdminRequest::Notice {
            text: "again".into(),
            admins: true,
        }));
        h.input(7, "look again");
        let got = b.take(1).await;
        assert!(
            got.iter()
                .all(|e| !matches!(e, ToServer::StaffNotice { .. })),
            "{got:?}"
        );
        assert!(
            !s.texts()
                .iter()
                .any(|t| t.contains("again") || t.contains("auto-reload"))
        );
        h.stop.cancel();
    }

    #[tokio::test]
    async fn client_oob_is_numbered_with_the_inputs_and_replayed_after_a_crash() {
        let h = start();
        let _s = h.open(7, 16);
        let mut a = h.attach_minor(1, 1, ev::version::LINK_MAJOR, 3);
        a.take(2).await;
        h.input(7, "look");
        h.oob(7, "Char.Skills.Get", r#"{"group":"combat"}"#);
        h.input(7, "say hi");
        assert_eq!(
            inputs_and_oob(&a.take(3).await),
            vec![
                (7, 1, "look".into()),
                (7, 2, r#"Char.Skills.Get {"group":"combat"}"#.into()),
                (7, 3, "say hi".into())
            ]
        );
        // Only the line is acked; the server dies.
        h.from(
            1,
            vec![ToPortal::Ack {
                session: SessionId(7),
                seq: 1,
            }],
        );
        h.kill(1);
        let mut b = h.attach_minor(2, 2, ev::version::LINK_MAJOR, 3);
        assert_eq!(
            inputs_and_oob(&b.take(4).await),
            vec![
                (7, 2, r#"Char.Skills.Get {"group":"combat"}"#.into()),
                (7, 3, "say hi".into())
            ]
        );
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_server_older_than_1_3_gets_an_empty_input_for_oob() {
        let h = start();
        let _s = h.open(7, 16);
        h.oob(7, "Char.Skills.Get", "");
        let mut a = h.attach_minor(1, 1, ev::version::LINK_MAJOR, 2);
        let events = a.take(3).await;
        assert_eq!(inputs_and_oob(&events), vec![(7, 1, String::new())]);
        h.input(7, "look");
        assert_eq!(
            inputs_and_oob(&a.take(1).await),
            vec![(7, 2, "look".into())]
        );
        h.stop.cancel();
    }

    #[tokio::test]
    async fn the_games_oob_reaches_the_session_once() {
        let h = start();
        let mut s = h.open(7, 16);
        let mut a = h.attach_minor(1, 1, ev::version::LINK_MAJOR, 3);
        a.take(2).await;
        let vitals = |seq| ToPortal::Oob {
            session: SessionId(7),
            seq,
            oob: Oob {
                name: "Char.Vitals".into(),
                data: r#"{"hp":1}"#.into(),
            },
        };
        h.from(1, vec![vitals(1), vitals(1), vitals(2)]);
        for _ in 0..2 {
            assert!(matches!(
                s.out.recv().await,
                Some(Outbound::Oob(Oob { name, .. })) if name == "Char.Vitals"
            ));
        }
        h.tx.send(HubEvent::Tick);
        assert_eq!(
            a.take(1).await,
            vec![ToServer::Delivered {
                session: SessionId(7),
                seq: 2
            }]
        );
        assert!(
            s.out.try_recv().is_none(),
            "a doubled message reached the player"
        );
        h.stop.cancel();
    }
}
