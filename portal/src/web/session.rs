//! One web session: a task that outlives its socket.
//!
//! The session is the hub's (Opened to Closed, like a telnet connection's),
//! and a socket is only its way to the page for a while. When the socket
//! drops, the session stays for `portal.web_resume_ms`: it holds its place
//! in the connection limits, stops taking output from its queue (which the
//! hub bounds as for any session: past it, the session is cut off), and
//! waits for a socket that brings its resume token. Then it sends a new
//! token, every output the page has not acknowledged and, from then on,
//! what comes.
//!
//! Exactly once, both ways, across a drop:
//! - output: each message to the page carries the next number; the session
//!   keeps those not acknowledged (bounded like the output queue: a page
//!   that never acknowledges is read no further, and the hub cuts it off)
//!   and sends again those after the number the page says it has.
//! - input: the page numbers its inputs and sends again, after a resume,
//!   those the portal did not acknowledge; the session takes a number
//!   once, acknowledges it when taken (from then on it is in the portal's
//!   hands: the hub numbers it again for the server and keeps it until
//!   applied), and drops a number it has.
//!
//! Commands go through the session's [`Throttle`] and input credit and
//! keep its [`Clock`] (login and idle timeouts) as telnet's do.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::protocol::{self, Frame, FromPage, ToPage, Wire};
use super::resume::Rejoin;
use super::{
    CLOSE_INVALID, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_REPLACED, CLOSE_TOO_BIG, CLOSE_UNSUPPORTED,
    Shared, Socket, close,
};
use crate::address::Slot;
use crate::charset::Charset;
use crate::hub::api::{HubEvent, Outbound, pause_notice};
use crate::negotiation::{ClientInfo, MAX_NAME};
use crate::outqueue::{self, OutReceiver};
use crate::throttle::{TOO_FAST, Throttle, Verdict};
use crate::timeout::Clock;
use ev::link::{Capabilities, Oob, PortalSession, SessionId};

const STALLED: &str = "disconnected: output queue full (the client stopped reading)";
/// What the page tells of itself goes to the hub at most this often.
const INFO_EVERY: Duration = Duration::from_millis(100);
/// How many of a session's dropped messages are logged.
const COMPLAINTS_LOGGED: u32 = 5;

/// What the client sent, waiting for its turn to go to the hub.
#[derive(Debug)]
enum Incoming {
    Text(String),
    TooLong,
    Oob(Oob),
}

/// Why the socket is closed and the session ended by what a client sent.
struct Violation {
    code: u16,
    reason: String,
}

fn violation(code: u16, reason: impl Into<String>) -> Violation {
    Violation {
        code,
        reason: reason.into(),
    }
}

/// Opens a session on the hub for a new socket and serves it to the end.
pub async fn start(
    socket: Socket,
    shared: Arc<Shared>,
    peer: String,
    slot: Slot,
    origin: Option<String>,
    wire: Wire,
) {
    let limits = &shared.limits;
    let id = shared.ids.next();
    let (out_tx, out_rx) = outqueue::channel(limits.output_queue, limits.output_queue_bytes);
    let credits = Arc::new(Semaphore::new(limits.input_queue));
    let kill = CancellationToken::new();
    shared.hub.send(HubEvent::Opened {
        portal: PortalSession {
            id,
            protocol: wire.name().into(),
            peer,
            connected_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            client: CLIENT.into(),
            encoding: "utf-8".into(),
            capabilities: Capabilities(CAPABILITIES),
            ..Default::default()
        },
        out: out_tx,
        credits: credits.clone(),
        kill: kill.clone(),
    });
    let now = Instant::now();
    let (rejoin_tx, rejoin_rx) = mpsc::channel(1);
    let session = WebSession {
        id,
        wire,
        origin,
        out: out_rx,
        credits,
        kill,
        throttle: Throttle::new(limits.commands, slot, now),
        clock: Clock::new(limits.timeouts, now),
        rejoin_tx,
        rejoin_rx,
        replay: VecDeque::new(),
        replay_bytes: 0,
        numbered: 0,
        received: 0,
        incoming: VecDeque::new(),
        held_until: None,
        info: None,
        info_next: now,
        complaints: 0,
        shared,
    };
    session.run(Box::new(socket)).await;
}

/// The client name the game sees for the page.
const CLIENT: &str = "ev webclient";
/// What a browser shows: colour of every kind, UTF-8.
const CAPABILITIES: u32 =
    Capabilities::ANSI | Capabilities::UTF8 | Capabilities::COLOURS_256 | Capabilities::TRUECOLOUR;

struct WebSession {
    id: SessionId,
    shared: Arc<Shared>,
    wire: Wire,
    /// The Origin of the page that opened the session: a resume must come
    /// from the same.
    origin: Option<String>,
    out: OutReceiver,
    credits: Arc<Semaphore>,
    kill: CancellationToken,
    throttle: Throttle,
    clock: Clock,
    rejoin_tx: mpsc::Sender<Rejoin>,
    rejoin_rx: mpsc::Receiver<Rejoin>,
    /// Outputs sent and not acknowledged: their numbers and JSON.
    replay: VecDeque<(u64, String)>,
    replay_bytes: usize,
    /// The last output number given.
    numbered: u64,
    /// The last input number taken from the page.
    received: u64,
    /// Taken from the client, waiting for its credit and its rate.
    incoming: VecDeque<Incoming>,
    /// A command over the rate limit waits until then.
    held_until: Option<Instant>,
    /// What the page last told of itself, not yet passed on.
    info: Option<ClientInfo>,
    info_next: Instant,
    complaints: u32,
}

/// Where the session's socket is.
enum Link {
    Up(Box<Socket>),
    /// Dropped then; waiting for a resume.
    Away(Instant),
}

impl WebSession {
    // Not an `async fn`, and the socket boxed: one that takes `mut self`
    // holds the session twice in its future, and the socket's slot stays
    // after it is moved on, for every player's whole session.
    #[allow(clippy::manual_async_fn)]
    fn run(mut self, socket: Box<Socket>) -> impl Future<Output = ()> {
        async move {
            let reason = self.serve(socket).await;
            tracing::debug!(session = %self.id, "web session closed: {reason}");
            self.shared.resumes.forget(self.id);
            // A socket that came to resume as the session ended is told so.
            self.rejoin_rx.close();
            while let Ok(rejoin) = self.rejoin_rx.try_recv() {
                super::refuse_resume(rejoin.socket).await;
            }
            self.shared.hub.send(HubEvent::Closed {
                session: self.id,
                reason,
            });
        }
    }

    fn resumable(&self) -> bool {
        self.wire == Wire::Ev && !self.shared.limits.resume.is_zero()
    }

    async fn serve(&mut self, socket: Box<Socket>) -> String {
        let mut link = Link::Up(socket);
        if self.wire == Wire::Ev {
            if let Link::Up(socket) = &mut link
                && self.welcome(socket, false).await.is_err()
            {
                link = Link::Away(Instant::now());
            }
            if matches!(link, Link::Away(_)) && !self.resumable() {
                return "client closed the connection".into();
            }
        }
        let keepalive = self.shared.limits.keepalive;
        let mut last_sent = Instant::now();
        let mut last_heard = Instant::now();
        loop {
            let expiry = self.clock.next();
            let away_until = match link {
                Link::Away(since) => Some(since + self.shared.limits.resume),
                Link::Up(_) => None,
            };
            let up = matches!(link, Link::Up(_));
            let ping_at = keepalive.filter(|_| up).map(|every| last_sent + every);
            let dead_at = keepalive.filter(|_| up).map(|every| last_heard + every * 3);
            let take_output = up && !self.replay_full();
            let take_input = up && self.incoming.is_empty();
            tokio::select! {
                biased;
                _ = self.kill.cancelled() => {
                    if let Link::Up(socket) = &mut link {
                        close(socket, CLOSE_POLICY, "output queue full").await;
                    }
                    return STALLED.into();
                }
                _ = self.shared.stop.cancelled(), if !up => {
                    return "the portal is stopping".into();
                }
                Some(rejoin) = self.rejoin_rx.recv() => {
                    if let Link::Up(old) = &mut link {
                        close(old, CLOSE_REPLACED, "resumed in another window").await;
                    }
                    let Rejoin { mut socket, seen } = rejoin;
                    self.acknowledged(seen);
                    link = if self.rejoined(&mut socket).await.is_ok() {
                        tracing::debug!(session = %self.id, "web session resumed");
                        last_heard = Instant::now();
                        last_sent = Instant::now();
                        Link::Up(Box::new(socket))
                    } else {
                        Link::Away(Instant::now())
                    };
                }
                _ = sleep_until(away_until) => {
                    return "web client gone: not resumed within portal.web_resume_ms".into();
                }
                _ = sleep_until(expiry.map(|(at, _)| at)) => {
                    let Some((_, expired)) = expiry else { continue };
                    if let Link::Up(socket) = &mut link {
                        let _ = self.send_page(socket, ToPage::Notice(expired.notice().into())).await;
                        let _ = self.send_text(socket, protocol::closed(expired.reason())).await;
                        close(socket, CLOSE_NORMAL, expired.reason()).await;
                    }
                    return expired.reason().into();
                }
                _ = sleep_until(self.held_until) => self.held_until = None,
                permit = self.credits.clone().acquire_owned(),
                    if !self.incoming.is_empty() && self.held_until.is_none() =>
                {
                    let Ok(permit) = permit else { return "the portal is stopping".into() };
                    let item = self.incoming.pop_front();
                    let notice = match item {
                        Some(Incoming::TooLong) => Some(format!(
                            "Line too long (over {} bytes); it was not sent.",
                            self.shared.limits.max_line
                        )),
                        Some(item) => {
                            let now = Instant::now();
                            match self.throttle.admit(now) {
                                Verdict::Go => {
                                    permit.forget();
                                    self.pass_info(now, true);
                                    let session = self.id;
                                    match item {
                                        Incoming::Text(text) => {
                                            self.clock.command(now);
                                            self.shared.hub.send(HubEvent::Input { session, text });
                                        }
                                        Incoming::Oob(oob) => {
                                            self.shared.hub.send(HubEvent::Oob { session, oob })
                                        }
                                        Incoming::TooLong => {}
                                    }
                                    None
                                }
                                Verdict::Hold { until, tell } => {
                                    self.incoming.push_front(item);
                                    self.held_until = Some(until);
                                    tell.then(|| TOO_FAST.to_string())
                                }
                            }
                        }
                        None => None,
                    };
                    if let (Some(text), Link::Up(socket)) = (notice, &mut link) {
                        if self.send_page(socket, ToPage::Notice(text)).await.is_err() {
                            link = self.dropped();
                        } else {
                            last_sent = Instant::now();
                        }
                    }
                }
                message = self.out.recv(), if take_output => {
                    let Link::Up(socket) = &mut link else { continue };
                    let page = match message {
                        None => {
                            close(socket, CLOSE_NORMAL, "the portal is stopping").await;
                            return "the portal is stopping".into();
                        }
                        Some(Outbound::Close(reason)) => {
                            let _ = self.send_text(socket, protocol::closed(&reason)).await;
                            close(socket, CLOSE_NORMAL, &reason).await;
                            return reason;
                        }
                        Some(Outbound::Notice(text)) => match pause_notice(&text) {
                            Some(paused) => ToPage::Pause { paused, text },
                            None => ToPage::Notice(text),
                        },
                        Some(Outbound::Output { text, form }) => ToPage::Text { text, form },
                        Some(Outbound::Oob(oob)) => ToPage::Oob(oob),
                        Some(Outbound::LoggedIn(yes)) => {
                            self.clock.logged_in(yes, Instant::now());
                            continue;
                        }
                    };
                    if self.send_page(socket, page).await.is_err() {
                        link = self.dropped();
                    } else {
                        last_sent = Instant::now();
                    }
                }
                frame = recv(&mut link), if take_input => {
                    last_heard = Instant::now();
                    let Link::Up(socket) = &mut link else { continue };
                    match frame {
                        Some(Ok(message)) => match self.received_frame(socket, message).await {
                            Ok(()) => {}
                            Err(v) => {
                                tracing::info!(session = %self.id, "web client closed: {}", v.reason);
                                close(socket, v.code, &v.reason).await;
                                return format!("protocol error: {}", v.reason);
                            }
                        },
                        Some(Err(e)) => {
                            let text = e.to_string();
                            if text.contains("too long") || text.contains("Space limit") {
                                let reason = format!(
                                    "message over portal.web_max_message_bytes ({} bytes)",
                                    self.shared.limits.max_message
                                );
                                close(socket, CLOSE_TOO_BIG, &reason).await;
                                return format!("protocol error: {reason}");
                            }
                            link = self.dropped();
                        }
                        None => link = self.dropped(),
                    }
                    if matches!(link, Link::Away(_)) && !self.resumable() {
                        return "client closed the connection".into();
                    }
                }
                _ = sleep_until(ping_at) => {
                    if let Link::Up(socket) = &mut link {
                        if self.send(socket, Message::Ping(Default::default())).await.is_err() {
                            link = self.dropped();
                        }
                        last_sent = Instant::now();
                    }
                }
                _ = sleep_until(dead_at) => {
                    // Nothing heard, not even a pong: the network is gone.
                    link = self.dropped();
                    if !self.resumable() {
                        return "client did not answer".into();
                    }
                }
            }
        }
    }

    /// The socket is gone; the session waits for a resume.
    fn dropped(&self) -> Link {
        tracing::debug!(session = %self.id, "web socket dropped");
        Link::Away(Instant::now())
    }

    fn replay_full(&self) -> bool {
        let limits = &self.shared.limits;
        self.replay.len() >= limits.output_queue || self.replay_bytes >= limits.output_queue_bytes
    }

    /// The page has every output up to `seen`.
    fn acknowledged(&mut self, seen: u64) {
        while let Some((n, json)) = self.replay.front() {
            if *n > seen {
                break;
            }
            self.replay_bytes -= json.len();
            self.replay.pop_front();
        }
    }

    /// Tells the page the session is (still) there, with its next token.
    async fn welcome(&mut self, socket: &mut Socket, resumed: bool) -> Result<(), ()> {
        let token = if self.resumable() {
            self.shared
                .resumes
                .issue(self.id, self.origin.as_deref(), &self.rejoin_tx)
        } else {
            None
        };
        let resume_ms = if token.is_some() {
            self.shared.limits.resume.as_millis() as u64
        } else {
            0
        };
        let text = protocol::welcome(
            &self.shared.limits.game,
            token.as_deref().unwrap_or(""),
            resumed,
            self.received,
            resume_ms,
        );
        self.send_text(socket, text).await
    }

    /// A socket resumed the session: a new token, then what the page missed.
    async fn rejoined(&mut self, socket: &mut Socket) -> Result<(), ()> {
        self.welcome(socket, true).await?;
        let missed: Vec<String> = self.replay.iter().map(|(_, json)| json.clone()).collect();
        for json in missed {
            self.send_text(socket, json).await?;
        }
        Ok(())
    }

    /// Numbers `page`, keeps it for a resume and sends it.
    async fn send_page(&mut self, socket: &mut Socket, page: ToPage) -> Result<(), ()> {
        if self.wire != Wire::Ev {
            return match page.terminal(self.wire) {
                Some(Frame::Text(text)) => self.send(socket, Message::text(text)).await,
                Some(Frame::Binary(bytes)) => self.send(socket, Message::binary(bytes)).await,
                None => Ok(()),
            };
        }
        let Some(json) = page.json(self.numbered + 1) else {
            self.complain("the game's out-of-band data is not JSON; dropped");
            return Ok(());
        };
        self.numbered += 1;
        if self.resumable() {
            self.replay_bytes += json.len();
            self.replay.push_back((self.numbered, json.clone()));
        }
        self.send_text(socket, json).await
    }

    async fn send_text(&self, socket: &mut Socket, text: String) -> Result<(), ()> {
        self.send(socket, Message::text(text)).await
    }

    /// Sends, unless the hub cuts the client off first.
    async fn send(&self, socket: &mut Socket, message: Message) -> Result<(), ()> {
        tokio::select! {
            r = socket.send(message) => r.map_err(|_| ()),
            _ = self.kill.cancelled() => Err(()),
        }
    }

    /// What came from the client.
    async fn received_frame(
        &mut self,
        socket: &mut Socket,
        message: Message,
    ) -> Result<(), Violation> {
        match (self.wire, message) {
            (_, Message::Ping(_) | Message::Pong(_) | Message::Close(_)) => Ok(()),
            (Wire::Ev, Message::Text(text)) => match FromPage::parse(text.as_str()) {
                Ok(message) => self.page_message(socket, message).await,
                Err(e) => Err(violation(CLOSE_INVALID, format!("not a message: {e}"))),
            },
            (Wire::Ev, Message::Binary(_)) => Err(violation(
                CLOSE_UNSUPPORTED,
                "binary frames are not part of this protocol",
            )),
            (Wire::Gmcp, Message::Text(text)) => {
                match crate::gmcp::parse(text.as_str().as_bytes()) {
                    Ok((name, data)) => self.oob(Oob { name, data }),
                    Err(e) => self.complain(&format!("a GMCP message: {e}")),
                }
                Ok(())
            }
            (Wire::Json, Message::Text(text)) => match protocol::Envelope::parse(text.as_str()) {
                Ok(envelope)
                    if envelope.is_gmcp()
                        && !envelope.data.is_empty()
                        && serde_json::from_str::<serde::de::IgnoredAny>(&envelope.data)
                            .is_err() =>
                {
                    self.complain("a GMCP message whose data is not JSON");
                    Ok(())
                }
                Ok(envelope) if envelope.is_gmcp() => {
                    self.oob(Oob {
                        name: envelope.id,
                        data: envelope.data,
                    });
                    Ok(())
                }
                Ok(envelope) => {
                    self.complain(&format!(
                        "a JSON envelope of protocol {:?}, which the portal does not speak",
                        envelope.proto.chars().take(MAX_NAME).collect::<String>()
                    ));
                    Ok(())
                }
                Err(e) => Err(violation(CLOSE_INVALID, e)),
            },
            (Wire::Terminal, Message::Text(text)) => {
                self.lines(text.as_str());
                Ok(())
            }
            (_, Message::Binary(bytes)) => match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    self.lines(text);
                    Ok(())
                }
                Err(_) => Err(violation(CLOSE_INVALID, "input is not UTF-8")),
            },
        }
    }

    /// Text from a terminal client: one input per line.
    fn lines(&mut self, text: &str) {
        let text = text.strip_suffix('\n').unwrap_or(text);
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            self.line(line);
        }
    }

    fn line(&mut self, text: &str) {
        self.incoming
            .push_back(if text.len() > self.shared.limits.max_line {
                Incoming::TooLong
            } else {
                Incoming::Text(ev::text::printable(text))
            });
    }

    fn oob(&mut self, oob: Oob) {
        if oob.name.len() + oob.data.len() > self.shared.limits.max_oob {
            self.complain(&format!(
                "out-of-band data over portal.max_oob_bytes ({} bytes)",
                self.shared.limits.max_oob
            ));
        } else if oob.name.is_empty()
            || oob.name.len() > MAX_NAME
            || !oob.name.bytes().all(|b| b.is_ascii_graphic())
        {
            self.complain("out-of-band data with a name that is no name");
        } else {
            self.incoming.push_back(Incoming::Oob(oob));
        }
    }

    /// A message of ev's protocol, after the hello.
    async fn page_message(
        &mut self,
        socket: &mut Socket,
        message: FromPage,
    ) -> Result<(), Violation> {
        match message {
            FromPage::Hello { .. } => Err(violation(CLOSE_POLICY, "hello twice")),
            FromPage::In { n, text } => {
                if self.take_number(n)? {
                    self.line(&text);
                }
                self.ack(socket).await;
                Ok(())
            }
            FromPage::Oob { n, name, data } => {
                if self.take_number(n)? {
                    self.oob(Oob {
                        name,
                        data: if data.is_null() {
                            String::new()
                        } else {
                            data.to_string()
                        },
                    });
                }
                self.ack(socket).await;
                Ok(())
            }
            FromPage::Ack { seen } => {
                if seen > self.numbered {
                    return Err(violation(
                        CLOSE_POLICY,
                        format!("acknowledged output {seen}, past {}", self.numbered),
                    ));
                }
                self.acknowledged(seen);
                Ok(())
            }
            FromPage::Info {
                width,
                height,
                screenreader,
            } => {
                let mut capabilities = CAPABILITIES;
                if screenreader {
                    capabilities |= Capabilities::SCREEN_READER;
                }
                self.info = Some(ClientInfo {
                    client: CLIENT.into(),
                    terminal: String::new(),
                    width: width.min(10_000),
                    height: height.min(10_000),
                    charset: Charset::Utf8,
                    capabilities: Capabilities(capabilities),
                });
                self.pass_info(Instant::now(), false);
                Ok(())
            }
        }
    }

    /// Whether input number `n` is new (the next one); one the session has
    /// is not, and one past the next is the page's error.
    fn take_number(&mut self, n: u64) -> Result<bool, Violation> {
        if n <= self.received {
            return Ok(false);
        }
        if n != self.received + 1 {
            return Err(violation(
                CLOSE_POLICY,
                format!("input {n} out of order (expected {})", self.received + 1),
            ));
        }
        self.received = n;
        Ok(true)
    }

    async fn ack(&self, socket: &mut Socket) {
        let _ = self.send_text(socket, protocol::ack(self.received)).await;
    }

    /// Tells the hub what the page said of itself, at most every
    /// [`INFO_EVERY`] (always before a command, when `due`).
    fn pass_info(&mut self, now: Instant, due: bool) {
        if !due && now < self.info_next {
            return;
        }
        if let Some(info) = self.info.take() {
            self.shared.hub.send(HubEvent::ClientInfo {
                session: self.id,
                info,
            });
            self.info_next = now + INFO_EVERY;
        }
    }

    /// Logs what was dropped, the first few times.
    fn complain(&mut self, what: &str) {
        self.complaints = self.complaints.saturating_add(1);
        if self.complaints <= COMPLAINTS_LOGGED {
            tracing::info!(session = %self.id, "web session dropped: {what}");
        }
    }
}

/// The next frame of the socket, if up (never, if not).
async fn recv(link: &mut Link) -> Option<Result<Message, axum::Error>> {
    match link {
        Link::Up(socket) => socket.recv().await,
        Link::Away(_) => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
