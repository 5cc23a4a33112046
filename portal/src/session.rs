//! One player's telnet connection: socket ⇄ telnet codec ⇄ hub.
//!
//! The socket is any byte stream ([`Transport`]): a TCP connection, or a
//! TLS stream over one (`portal.tls`); the session is the same code.
//!
//! Backpressure both ways, without ever blocking the hub:
//! - input: each line needs one permit of the session's input credit
//!   (`portal.input_queue`); the hub returns permits as the server acks. With
//!   no server attached the credit runs out and this task stops reading the
//!   socket, so the client's own buffers fill; nothing is dropped.
//! - output: the hub `try_send`s into a queue bounded in lines and bytes
//!   (`portal.output_queue`, `portal.output_queue_bytes`); a client that stops
//!   reading fills it and is disconnected by the hub.
//!
//! Commands over the rate limit ([`Throttle`]) wait here, and the socket is
//! not read meanwhile; the login and idle timeouts ([`Clock`]) close the
//! connection with a notice. A client that half-closes its side gets the
//! answers to what it sent before the connection closes.
//!
//! Telnet options are negotiated by [`Negotiation`] (sans IO); this task
//! carries out what it decides: [`Writer`] renders the game's text for the
//! client ([`Screen`]: colours, prompts ended with EOR or GA), sends its
//! out-of-band data as GMCP or MSDP, compresses what follows the client's
//! DO MCCP2 and puts text in the client's character set; what the client
//! tells of its terminal goes to the hub, and so does its out-of-band data,
//! in order with its lines, through the same input credit and command rate;
//! an idle connection gets an IAC NOP every `portal.keepalive_s`, so a dead
//! peer or a NAT that forgot the connection is found.
//!
//! Until what decides how text is shown (TTYPE's answers, CHARSET's) is
//! in, or `portal.negotiation_wait_ms` has passed since the connection
//! opened, the session does not take output from its queue, so the welcome
//! screen is already in the client's colours and character set.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::charset::Charset;
use crate::hub::api::{HubEvent, HubSender, Outbound};
use crate::mccp;
use crate::negotiation::{Compress, Negotiation};
use crate::options::MCCP2;
use crate::outqueue::OutReceiver;
use crate::render::Screen;
use crate::telnet::{Event, IAC, Line, LineAssembler, NOP, Parser, SB, SE};
use crate::throttle::{TOO_FAST, Throttle, Verdict};
use crate::timeout::{Clock, Expired};
use ev::link::{ColourChoice, Form, Oob, SessionId, TextKind};
use ev::markup::Colours;

const READ_BUF: usize = 1024;
const STALLED: &str = "disconnected: output queue full (the client stopped reading)";
/// How long a timed-out client gets to take its goodbye: it may not be reading.
const GOODBYE_DEADLINE: Duration = Duration::from_secs(5);
/// What the client tells of itself goes to the hub at most this often: a
/// window being dragged (or a client flooding NAWS) must not become a
/// stream of Link events and server transactions.
const INFO_EVERY: Duration = Duration::from_millis(100);
/// How many of a connection's dropped messages (malformed out-of-band
/// data, overlong subnegotiations) are logged; the rest are only counted.
const COMPLAINTS_LOGGED: u32 = 5;

/// What the client sent, in order, waiting for its turn to go to the hub.
#[derive(Debug)]
enum Incoming {
    Text(String),
    /// A line over `portal.max_line_bytes`.
    TooLong,
    /// Out-of-band data (GMCP, MSDP) for the game.
    Oob(Oob),
}

/// What a session talks telnet over: plain TCP, or TLS over TCP. Its
/// writes are flushed (a TLS stream may hold a written record until then).
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

pub struct Connection<S> {
    pub id: SessionId,
    pub stream: S,
    pub out: OutReceiver,
    pub credits: Arc<Semaphore>,
    pub kill: CancellationToken,
    pub hub: HubSender,
    pub max_line: usize,
    /// Longest subnegotiation kept (`portal.max_oob_bytes`): a longer one
    /// is discarded as it arrives.
    pub max_oob: usize,
    /// Release an idle player's compressor after this long (MCCP2 itself
    /// is offered or not by `negotiation`).
    pub mccp2_idle: Duration,
    /// The colours of a client that never said what it shows.
    pub default_colours: Colours,
    /// Output waits at most this long from the connection's start for the
    /// client to say how to show it.
    pub negotiation_wait: Duration,
    /// The client's options and what they told of it.
    pub negotiation: Negotiation,
    /// Send IAC NOP after this long without sending anything.
    pub keepalive: Option<Duration>,
    pub throttle: Throttle,
    pub clock: Clock,
}

impl<S: Transport> Connection<S> {
    /// Serves the connection until either side closes it, then tells the hub.
    // Not an `async fn`: one that takes `mut self` holds the connection
    // twice in its future (the argument and the local it is moved to),
    // 672 bytes more for every player.
    #[allow(clippy::manual_async_fn)]
    pub fn run(mut self) -> impl Future<Output = ()> {
        async move {
            let reason = match self.serve().await {
                Ok(reason) => reason,
                Err(e) => format!("connection error: {e}"),
            };
            tracing::debug!(session = %self.id, "closed: {reason}");
            self.hub.send(HubEvent::Closed {
                session: self.id,
                reason,
            });
        }
    }

    async fn serve(&mut self) -> std::io::Result<String> {
        // Read and written in turn: a branch's future (the read) is gone
        // before any branch's handler (the writes) runs.
        let io = &mut self.stream;
        let mut parser = Parser::new(self.max_oob);
        let mut assembler = LineAssembler::new(self.max_line);
        let mut lines: VecDeque<Incoming> = VecDeque::new();
        let mut fresh: Vec<Line> = Vec::new();
        let mut events = Vec::new();
        let mut buf = vec![0u8; READ_BUF];
        let mut out = Writer::new(self.mccp2_idle, self.default_colours);
        let mut complaints = Complaints::new(self.id);
        self.negotiation.start(&mut out.plain);
        out.flush(io).await?;
        // Output waits for the client to say how to show it, until then.
        let settle_by = Instant::now() + self.negotiation_wait;
        let mut settled = false;
        // A command over the rate limit waits at the front of `lines` until then.
        let mut held_until: Option<Instant> = None;
        // The client half-closed its side (or went): read no more.
        let mut eof = false;
        let mut told_hub_eof = false;
        // When the hub may next be told of the client, and whether a change
        // waits for that.
        let mut info_next = Instant::now();
        let mut info_due = false;
        // One timer for every deadline below, armed for the nearest. A
        // deadline that moves later (the idle timeout and the keepalive, at
        // each command and write) leaves it alone: it wakes early, finds
        // nothing due, and is armed again. A timer per deadline per turn of
        // the loop cost more than the rest of a command's handling here.
        let mut wake = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
        let mut armed: Option<Instant> = None;
        let kill = self.kill.clone();
        let mut killed = std::pin::pin!(kill.cancelled_owned());

        loop {
            if eof && lines.is_empty() && !told_hub_eof {
                told_hub_eof = true;
                self.hub.send(HubEvent::InputEnded { session: self.id });
            }
            let release_at = out.release_at;
            let keepalive_at = self.keepalive.map(|every| out.last_sent + every);
            let info_at = info_due.then_some(info_next);
            let expiry = self.clock.next();
            if !settled && (!self.negotiation.settling() || Instant::now() >= settle_by) {
                settled = true;
            }
            let next = [
                expiry.map(|(at, _)| at),
                release_at,
                keepalive_at,
                info_at,
                held_until,
                (!settled).then_some(settle_by),
            ]
            .into_iter()
            .flatten()
            .min();
            if let Some(at) = next
                && armed.is_none_or(|armed| at < armed)
            {
                wake.as_mut().reset(at);
                armed = Some(at);
            }
            tokio::select! {
                biased;
                _ = &mut killed => return Ok(STALLED.into()),
                msg = self.out.recv(), if settled => {
                    let mut close = None;
                    let mut next = msg;
                    // Coalesce what is queued into one write.
                    loop {
                        match next {
                            Some(Outbound::Notice(text)) => out.notice(&text),
                            Some(Outbound::Output { text, form }) => {
                                out.output(&mut self.negotiation, &text, form, self.out.colours())
                            }
                            Some(Outbound::Oob(oob)) => {
                                if let Err(e) = out.oob(&mut self.negotiation, &oob) {
                                    complaints.server(&e);
                                }
                            }
                            Some(Outbound::LoggedIn(yes)) => self.clock.logged_in(yes, Instant::now()),
                            Some(Outbound::Close(reason)) => { close = Some(reason); break; }
                            None => { close = Some("the portal is stopping".into()); break; }
                        }
                        if out.plain.len() > 64 * 1024 { break; }
                        next = match self.out.try_recv() {
                            Some(m) => Some(m),
                            None => break,
                        };
                    }
                    if close.is_some() {
                        out.end_compression()?;
                    }
                    out.seal()?;
                    // Out-of-band data a client does not take is nothing
                    // to send (and no reason to put off the keepalive).
                    if !out.wire.is_empty() {
                        tokio::select! {
                            r = write_flushed(io, &out.wire) => r?,
                            _ = &mut killed => return Ok(STALLED.into()),
                        }
                        out.written();
                    }
                    if let Some(reason) = close {
                        let _ = io.shutdown().await;
                        return Ok(reason);
                    }
                }
                _ = &mut wake, if armed.is_some() => {
                    armed = None;
                    let now = Instant::now();
                    if let Some((at, expired)) = expiry
                        && now >= at
                    {
                        Box::pin(goodbye(&mut out, io, expired.notice())).await;
                        return Ok(expired.reason().into());
                    }
                    if release_at.is_some_and(|at| now >= at) {
                        out.release_idle();
                    }
                    if info_at.is_some_and(|at| now >= at) {
                        info_due = false;
                        info_next = tell_client_info(&mut self.negotiation, &self.hub, self.id, now);
                    }
                    if held_until.is_some_and(|at| now >= at) {
                        held_until = None;
                    }
                    if keepalive_at.is_some_and(|at| now >= at) {
                        out.keepalive()?;
                        if let Some(reason) = flush_or_end(&mut out, io, &self.kill, expiry).await? {
                            return Ok(reason);
                        }
                    }
                }
                permit = self.credits.acquire(), if !lines.is_empty() && held_until.is_none() => {
                    let Ok(permit) = permit else { return Ok("the portal is stopping".into()) };
                    match lines.pop_front() {
                        Some(Incoming::TooLong) => {
                            let note = format!("Line too long (over {} bytes); it was not sent.", self.max_line);
                            out.notice(&note);
                            if let Some(reason) = flush_or_end(&mut out, io, &self.kill, expiry).await? {
                                return Ok(reason);
                            }
                        }
                        Some(item) => {
                            let now = Instant::now();
                            match self.throttle.admit(now) {
                                Verdict::Go => {
                                    permit.forget();
                                    // A command typed after a resize sees it.
                                    if std::mem::take(&mut info_due) {
                                        info_next = tell_client_info(&mut self.negotiation, &self.hub, self.id, now);
                                    }
                                    let session = self.id;
                                    match item {
                                        Incoming::Text(text) => {
                                            self.clock.command(now);
                                            self.hub.send(HubEvent::Input { session, text });
                                        }
                                        // A client's own traffic is no sign of a player.
                                        Incoming::Oob(oob) => self.hub.send(HubEvent::Oob { session, oob }),
                                        Incoming::TooLong => {}
                                    }
                                }
                                Verdict::Hold { until, tell } => {
                                    lines.push_front(item);
                                    held_until = Some(until);
                                    if tell {
                                        out.notice(TOO_FAST);
                                        if let Some(reason) = flush_or_end(&mut out, io, &self.kill, expiry).await? {
                                            return Ok(reason);
                                        }
                                    }
                                }
                            }
                        }
                        None => {}
                    }
                }
                n = io.read(&mut buf), if lines.is_empty() && !eof => {
                    let n = match n {
                        // A TLS peer that closed without saying so
                        // (close_notify) is gone all the same.
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                        n => n?,
                    };
                    if n == 0 {
                        // Perhaps only its sending side (shutdown(SHUT_WR)
                        // after a last command): what it sent is answered
                        // and delivered, then the hub closes the connection.
                        eof = true;
                        continue;
                    }
                    events.clear();
                    parser.receive(&buf[..n], &mut events);
                    for event in events.drain(..) {
                        match event {
                            Event::Data(data) => {
                                assembler.push(&data, out.charset, &mut fresh);
                                for line in fresh.drain(..) {
                                    out.answered(&mut self.negotiation);
                                    lines.push_back(match line {
                                        Line::Text(text) => Incoming::Text(text),
                                        Line::TooLong => Incoming::TooLong,
                                    });
                                }
                            }
                            Event::Negotiate(verb, option) => {
                                out.negotiate(&mut self.negotiation, verb, option)?
                            }
                            Event::Subnegotiation(option, data) => {
                                match self.negotiation.subnegotiation(option, &data, &mut out.plain) {
                                    Ok(oobs) => lines.extend(oobs.into_iter().map(Incoming::Oob)),
                                    Err(e) => complaints.client(&e),
                                }
                                out.charset = self.negotiation.charset();
                            }
                            Event::Overlong(option) => complaints.client(&format_args!(
                                "a subnegotiation of option {option} over portal.max_oob_bytes ({} bytes), discarded",
                                self.max_oob
                            )),
                            Event::Command(_) => {}
                        }
                    }
                    if self.negotiation.changed() {
                        let now = Instant::now();
                        if now >= info_next {
                            info_next = tell_client_info(&mut self.negotiation, &self.hub, self.id, now);
                        } else {
                            info_due = true;
                        }
                    }
                    if let Some(reason) = flush_or_end(&mut out, io, &self.kill, expiry).await? {
                        return Ok(reason);
                    }
                }
            }
        }
    }
}

/// Writes `bytes` and flushes them out of any buffer the stream keeps.
async fn write_flushed(io: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await
}

/// Tells the hub what changed of the client, if anything; returns when it
/// may be told again.
fn tell_client_info(
    negotiation: &mut Negotiation,
    hub: &HubSender,
    session: SessionId,
    now: Instant,
) -> Instant {
    if let Some(info) = negotiation.take_changed() {
        hub.send(HubEvent::ClientInfo { session, info });
    }
    now + INFO_EVERY
}

/// Writes what is owed, unless the hub cuts the client off or its timeout
/// comes first (then the reason to close): a client that does not read must
/// not keep its connection by never taking a refusal or a negotiation answer.
async fn flush_or_end(
    out: &mut Writer,
    wr: &mut (impl AsyncWriteExt + Unpin),
    kill: &CancellationToken,
    expiry: Option<(Instant, Expired)>,
) -> std::io::Result<Option<String>> {
    if out.plain.is_empty() && out.wire.is_empty() {
        return Ok(None);
    }
    let at = expiry.map_or_else(Instant::now, |(at, _)| at);
    // Boxed: held only while writing, it would otherwise add its timer and
    // futures to every connection's task for as long as it lives.
    Box::pin(async move {
        tokio::select! {
            r = out.flush(wr) => r.map(|()| None),
            _ = kill.cancelled() => Ok(Some(STALLED.into())),
            _ = tokio::time::sleep_until(at), if expiry.is_some() => {
                Ok(expiry.map(|(_, expired)| expired.reason().into()))
            }
        }
    })
    .await
}

/// Logs what a connection dropped, the first few times: a client (or a
/// game) that keeps sending it must not fill the log.
struct Complaints {
    session: SessionId,
    count: u32,
}

impl Complaints {
    fn new(session: SessionId) -> Self {
        Complaints { session, count: 0 }
    }

    fn next(&mut self) -> Option<&'static str> {
        self.count = self.count.saturating_add(1);
        match self.count {
            n if n < COMPLAINTS_LOGGED => Some(""),
            COMPLAINTS_LOGGED => Some(" (no more of this connection's are logged)"),
            _ => None,
        }
    }

    /// The client sent something that was dropped.
    fn client(&mut self, what: &dyn std::fmt::Display) {
        if let Some(more) = self.next() {
            tracing::info!(session = %self.session, "dropped from the client: {what}{more}");
        }
    }

    /// The game sent something the client could not be given.
    fn server(&mut self, what: &dyn std::fmt::Display) {
        if let Some(more) = self.next() {
            tracing::warn!(session = %self.session, "dropped the game's out-of-band data: {what}{more}");
        }
    }
}

/// Tells the player why the connection ends and closes it, giving up on a
/// client that does not take the line within [`GOODBYE_DEADLINE`].
async fn goodbye(out: &mut Writer, wr: &mut (impl AsyncWriteExt + Unpin), text: &str) {
    out.notice(text);
    let _ = tokio::time::timeout(GOODBYE_DEADLINE, async {
        out.end_compression()?;
        out.flush(wr).await?;
        wr.shutdown().await
    })
    .await;
}

/// Bytes owed to the client: telnet text is staged in `plain`, and [`seal`]
/// moves it to `wire`, compressed once MCCP2 is on.
///
/// [`seal`]: Writer::seal
struct Writer {
    plain: Vec<u8>,
    wire: Vec<u8>,
    /// The zlib stream, from the client's DO MCCP2 to its DONT or the close.
    mccp: Option<mccp::Stream>,
    /// An idle compressor goes back after this long.
    idle: Duration,
    /// When the compressor goes back, unless more output comes first.
    release_at: Option<Instant>,
    /// The client's character set, for text both ways.
    charset: Charset,
    /// When the client was last sent anything, for the keepalive.
    last_sent: Instant,
    /// Where the client's cursor is: how the next text starts.
    screen: Screen,
    /// The colours of a client that never said.
    default_colours: Colours,
}

impl Writer {
    fn new(idle: Duration, default_colours: Colours) -> Self {
        Writer {
            plain: Vec::new(),
            wire: Vec::new(),
            mccp: None,
            idle,
            release_at: None,
            charset: Charset::default(),
            last_sent: Instant::now(),
            screen: Screen::default(),
            default_colours,
        }
    }

    /// Stages a line of the portal's own for the client: plain text.
    fn notice(&mut self, text: &str) {
        self.screen.notice(text, self.charset, &mut self.plain);
    }

    /// Stages the game's text, rendered for this client; a secret prompt
    /// is followed by our offer to echo, so the client hides the answer.
    /// `choice` is the player's colour setting, over what the client said.
    fn output(
        &mut self,
        negotiation: &mut Negotiation,
        text: &str,
        form: Form,
        choice: ColourChoice,
    ) {
        // Only markup has colours to choose.
        let colours = if form.markup {
            choice.over(negotiation.colours(self.default_colours))
        } else {
            Colours::None
        };
        let end = negotiation.prompt_end();
        self.screen
            .show(text, form, colours, self.charset, end, &mut self.plain);
        if form.kind == TextKind::Secret {
            negotiation.secret(&mut self.plain);
        }
    }

    /// Stages the game's out-of-band data as the client takes it, if it does.
    fn oob(
        &mut self,
        negotiation: &mut Negotiation,
        oob: &Oob,
    ) -> Result<(), crate::negotiation::Dropped> {
        negotiation.oob(oob, &mut self.plain).map(|_| ())
    }

    /// A line came from the client: echo back on after a secret.
    fn answered(&mut self, negotiation: &mut Negotiation) {
        let echoed = negotiation.answered(&mut self.plain);
        self.screen.input(echoed);
    }

    /// The client's WILL/WONT/DO/DONT, through `negotiation`: its answer is
    /// staged, and MCCP2 starts after it or ends before it.
    fn negotiate(
        &mut self,
        negotiation: &mut Negotiation,
        verb: u8,
        option: u8,
    ) -> std::io::Result<()> {
        let mut reply = Vec::new();
        match negotiation.negotiate(verb, option, &mut reply) {
            Some(Compress::End) => {
                self.end_compression()?;
                self.plain.append(&mut reply);
            }
            Some(Compress::Start) => {
                // An agreement to a DO that came unasked (after a DONT)
                // says WILL first, plain.
                self.plain.append(&mut reply);
                self.begin_compression()?;
            }
            None => self.plain.append(&mut reply),
        }
        self.charset = negotiation.charset();
        Ok(())
    }

    fn begin_compression(&mut self) -> std::io::Result<()> {
        if self.mccp.is_some() {
            return Ok(());
        }
        self.seal()?;
        self.wire.extend_from_slice(&[IAC, SB, MCCP2, IAC, SE]);
        self.mccp = Some(mccp::Stream::start(&mut self.wire));
        Ok(())
    }

    /// Finishes the zlib stream (before a close or on DONT); later output is plain.
    fn end_compression(&mut self) -> std::io::Result<()> {
        self.seal()?;
        if let Some(stream) = self.mccp.take() {
            stream.finish(&mut self.wire);
            self.release_at = None;
        }
        Ok(())
    }

    /// Stages IAC NOP, without waking a released compressor.
    fn keepalive(&mut self) -> std::io::Result<()> {
        self.seal()?;
        match &mut self.mccp {
            Some(stream) => stream.write_small(&[IAC, NOP], &mut self.wire)?,
            None => self.wire.extend_from_slice(&[IAC, NOP]),
        }
        Ok(())
    }

    /// Moves staged text onto the wire.
    fn seal(&mut self) -> std::io::Result<()> {
        if self.plain.is_empty() {
            return Ok(());
        }
        match &mut self.mccp {
            Some(stream) => {
                stream.write(&self.plain, &mut self.wire)?;
                self.plain.clear();
                self.release_at = Some(Instant::now() + self.idle);
            }
            None if self.wire.is_empty() => std::mem::swap(&mut self.plain, &mut self.wire),
            None => self.wire.append(&mut self.plain),
        }
        Ok(())
    }

    /// Seals what is staged and writes whatever is owed, if anything.
    async fn flush(&mut self, wr: &mut (impl AsyncWriteExt + Unpin)) -> std::io::Result<()> {
        self.seal()?;
        if !self.wire.is_empty() {
            write_flushed(wr, &self.wire).await?;
            self.written();
        }
        Ok(())
    }

    /// After `wire` went out.
    fn written(&mut self) {
        self.wire.clear();
        self.last_sent = Instant::now();
        // An idle player keeps no buffer: a burst (a crowded room announcing
        // arrivals) must not leave kilobytes behind in every session.
        // Allocating per burst is cheap.
        for buf in [&mut self.plain, &mut self.wire] {
            if buf.capacity() > 1024 {
                *buf = Vec::new();
            }
        }
    }

    fn release_idle(&mut self) {
        self.release_at = None;
        if let Some(stream) = &mut self.mccp {
            stream.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::mssp::Facts;
    use crate::options::{DO, DONT, WILL, WONT};

    const OFFER: [u8; 3] = [IAC, WILL, MCCP2];
    const START: [u8; 5] = [IAC, SB, MCCP2, IAC, SE];

    fn wire(w: &mut Writer) -> Vec<u8> {
        w.seal().unwrap();
        let bytes = w.wire.clone();
        w.written();
        bytes
    }

    fn negotiation(mccp2: bool) -> Negotiation {
        let facts = Facts {
            name: "Test".into(),
            started_at_s: 0,
            port: 4000,
            tls_port: None,
            mccp2,
            players: Arc::new(AtomicU64::new(0)),
        };
        Negotiation::new(mccp2, Arc::new(facts))
    }

    fn offered() -> (Writer, Negotiation) {
        let mut w = Writer::new(Duration::from_secs(5), Colours::Ansi16);
        let mut n = negotiation(true);
        n.start(&mut w.plain);
        assert!(wire(&mut w).starts_with(&OFFER));
        (w, n)
    }

    #[test]
    fn do_starts_compression_once() {
        let (mut w, mut n) = offered();
        w.negotiate(&mut n, DO, MCCP2).unwrap();
        let first = wire(&mut w);
        assert!(first.starts_with(&START), "{first:?}");
        assert_eq!(
            &first[START.len()..],
            &[0x78, 0x9c],
            "the zlib header follows"
        );
        // A repeated DO neither restarts the stream nor answers.
        w.negotiate(&mut n, DO, MCCP2).unwrap();
        assert_eq!(wire(&mut w), Vec::<u8>::new());
        assert!(w.mccp.is_some());
    }

    #[test]
    fn dont_refuses_the_offer_without_an_answer() {
        let (mut w, mut n) = offered();
        w.negotiate(&mut n, DONT, MCCP2).unwrap();
        assert_eq!(wire(&mut w), Vec::<u8>::new());
        assert!(w.mccp.is_none());
        // The client changes its mind: we said we would, so we do.
        w.negotiate(&mut n, DO, MCCP2).unwrap();
        let again = wire(&mut w);
        assert!(again.starts_with(&[IAC, WILL, MCCP2, IAC, SB]), "{again:?}");
    }

    #[test]
    fn not_offered_means_refused() {
        let mut w = Writer::new(Duration::from_secs(5), Colours::Ansi16);
        let mut n = negotiation(false);
        n.start(&mut w.plain);
        assert!(!wire(&mut w).windows(3).any(|x| x == OFFER));
        w.negotiate(&mut n, DO, MCCP2).unwrap();
        assert_eq!(wire(&mut w), [IAC, WONT, MCCP2]);
        w.negotiate(&mut n, WILL, MCCP2).unwrap();
        assert_eq!(wire(&mut w), [IAC, DONT, MCCP2]);
        assert!(w.mccp.is_none());
    }

    #[test]
    fn text_after_dont_is_plain() {
        let (mut w, mut n) = offered();
        w.negotiate(&mut n, DO, MCCP2).unwrap();
        w.plain.extend_from_slice(b"squeezed\r\n");
        let compressed = wire(&mut w);
        assert!(!compressed.windows(8).any(|x| x == b"squeezed"));
        w.negotiate(&mut n, DONT, MCCP2).unwrap();
        let end = wire(&mut w);
        assert!(end.ends_with(&[IAC, WONT, MCCP2]), "{end:?}");
        w.plain.extend_from_slice(b"plain\r\n");
        assert_eq!(wire(&mut w), b"plain\r\n");
        assert_eq!(w.release_at, None, "no compressor left to release");
    }

    #[test]
    fn keepalive_is_a_nop_plain_or_compressed() {
        let (mut w, mut n) = offered();
        w.keepalive().unwrap();
        assert_eq!(wire(&mut w), [IAC, NOP]);
        w.negotiate(&mut n, DO, MCCP2).unwrap();
        wire(&mut w);
        w.release_idle();
        w.keepalive().unwrap();
        // A stored block: no compressor was started for it.
        assert_eq!(wire(&mut w), [0, 2, 0, 0xfd, 0xff, IAC, NOP]);
        assert_eq!(w.release_at, None);
    }

    #[test]
    fn text_goes_in_the_agreed_charset() {
        let mut w = Writer::new(Duration::from_secs(5), Colours::Ansi16);
        w.notice("café");
        w.charset = Charset::Ascii;
        w.notice("café");
        assert_eq!(wire(&mut w), "café\r\ncaf?\r\n".as_bytes());
    }
}
