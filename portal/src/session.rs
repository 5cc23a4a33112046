//! One player's telnet connection: socket ⇄ telnet codec ⇄ hub.
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
//! carries out what it decides: [`Writer`] compresses what follows the
//! client's DO MCCP2 and puts text in the client's character set, what the
//! client tells of its terminal goes to the hub, and an idle connection gets
//! an IAC NOP every `portal.keepalive_s`, so a dead peer or a NAT that forgot
//! the connection is found.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::charset::Charset;
use crate::hub::api::{HubEvent, HubSender, Outbound};
use crate::mccp;
use crate::negotiation::{Compress, Negotiation};
use crate::options::MCCP2;
use crate::outqueue::OutReceiver;
use crate::telnet::{self, Event, IAC, Line, LineAssembler, NOP, Parser, SB, SE};
use crate::throttle::{TOO_FAST, Throttle, Verdict};
use crate::timeout::{Clock, Expired};
use ev::link::SessionId;

const READ_BUF: usize = 1024;
const STALLED: &str = "disconnected: output queue full (the client stopped reading)";
/// How long a timed-out client gets to take its goodbye: it may not be reading.
const GOODBYE_DEADLINE: Duration = Duration::from_secs(5);
/// What the client tells of itself goes to the hub at most this often: a
/// window being dragged (or a client flooding NAWS) must not become a
/// stream of Link events and server transactions.
const INFO_EVERY: Duration = Duration::from_millis(100);

pub struct Connection {
    pub id: SessionId,
    pub stream: TcpStream,
    pub out: OutReceiver,
    pub credits: Arc<Semaphore>,
    pub kill: CancellationToken,
    pub hub: HubSender,
    pub max_line: usize,
    /// Release an idle player's compressor after this long (MCCP2 itself
    /// is offered or not by `negotiation`).
    pub mccp2_idle: Duration,
    /// The client's options and what they told of it.
    pub negotiation: Negotiation,
    /// Send IAC NOP after this long without sending anything.
    pub keepalive: Option<Duration>,
    pub throttle: Throttle,
    pub clock: Clock,
    /// The server's word on whether the session is logged in, via the hub.
    pub logged_in: watch::Receiver<bool>,
}

impl Connection {
    /// Serves the connection until either side closes it, then tells the hub.
    pub async fn run(mut self) {
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

    async fn serve(&mut self) -> std::io::Result<String> {
        let (mut rd, mut wr) = self.stream.split();
        let mut parser = Parser::default();
        let mut assembler = LineAssembler::new(self.max_line);
        let mut lines: VecDeque<Line> = VecDeque::new();
        let mut events = Vec::new();
        let mut buf = vec![0u8; READ_BUF];
        let mut out = Writer::new(self.mccp2_idle);
        self.negotiation.start(&mut out.plain);
        out.flush(&mut wr).await?;
        // A command over the rate limit waits at the front of `lines` until then.
        let mut held_until: Option<Instant> = None;
        // The client half-closed its side (or went): read no more.
        let mut eof = false;
        let mut told_hub_eof = false;
        let mut watching_login = true;
        // When the hub may next be told of the client, and whether a change
        // waits for that.
        let mut info_next = Instant::now();
        let mut info_due = false;

        loop {
            if eof && lines.is_empty() && !told_hub_eof {
                told_hub_eof = true;
                self.hub.send(HubEvent::InputEnded { session: self.id });
            }
            let release_at = out.release_at;
            let keepalive_at = self.keepalive.map(|every| out.last_sent + every);
            let info_at = info_due.then_some(info_next);
            let expiry = self.clock.next();
            tokio::select! {
                biased;
                _ = self.kill.cancelled() => return Ok(STALLED.into()),
                msg = self.out.recv() => {
                    let mut close = None;
                    let mut next = msg;
                    // Coalesce what is queued into one write.
                    loop {
                        match next {
                            Some(Outbound::Text(text)) => out.text(&text),
                            Some(Outbound::Close(reason)) => { close = Some(reason); break; }
                            None => { close = Some("the portal is stopping".into()); break; }
                        }
                        if out.plain.len() > 64 * 1024 { break; }
                        next = match self.out.try_recv() {
                            Ok(m) => Some(m),
                            Err(_) => break,
                        };
                    }
                    if close.is_some() {
                        out.end_compression()?;
                    }
                    out.seal()?;
                    tokio::select! {
                        r = wr.write_all(&out.wire) => r?,
                        _ = self.kill.cancelled() => return Ok(STALLED.into()),
                    }
                    out.written();
                    if let Some(reason) = close {
                        let _ = wr.shutdown().await;
                        return Ok(reason);
                    }
                }
                _ = tokio::time::sleep_until(expiry.map_or_else(Instant::now, |(at, _)| at)), if expiry.is_some() => {
                    let Some((_, expired)) = expiry else { continue };
                    goodbye(&mut out, &mut wr, expired.notice()).await;
                    return Ok(expired.reason().into());
                }
                changed = self.logged_in.changed(), if watching_login => {
                    match changed {
                        Ok(()) => {
                            let yes = *self.logged_in.borrow_and_update();
                            self.clock.logged_in(yes, Instant::now());
                        }
                        // The hub forgot the session; the close follows.
                        Err(_) => watching_login = false,
                    }
                }
                _ = tokio::time::sleep_until(release_at.unwrap_or_else(Instant::now)), if release_at.is_some() => {
                    out.release_idle();
                }
                _ = tokio::time::sleep_until(keepalive_at.unwrap_or_else(Instant::now)), if keepalive_at.is_some() => {
                    out.keepalive()?;
                    if let Some(reason) = flush_or_end(&mut out, &mut wr, &self.kill, expiry).await? {
                        return Ok(reason);
                    }
                }
                _ = tokio::time::sleep_until(info_at.unwrap_or_else(Instant::now)), if info_at.is_some() => {
                    info_due = false;
                    info_next = tell_client_info(&mut self.negotiation, &self.hub, self.id, Instant::now());
                }
                _ = tokio::time::sleep_until(held_until.unwrap_or_else(Instant::now)), if held_until.is_some() => {
                    held_until = None;
                }
                permit = self.credits.acquire(), if !lines.is_empty() && held_until.is_none() => {
                    let Ok(permit) = permit else { return Ok("the portal is stopping".into()) };
                    match lines.pop_front() {
                        Some(Line::Text(text)) => {
                            let now = Instant::now();
                            match self.throttle.admit(now) {
                                Verdict::Go => {
                                    permit.forget();
                                    self.clock.command(now);
                                    // A command typed after a resize sees it.
                                    if std::mem::take(&mut info_due) {
                                        info_next = tell_client_info(&mut self.negotiation, &self.hub, self.id, now);
                                    }
                                    self.hub.send(HubEvent::Input { session: self.id, text });
                                }
                                Verdict::Hold { until, tell } => {
                                    lines.push_front(Line::Text(text));
                                    held_until = Some(until);
                                    if tell {
                                        out.text(TOO_FAST);
                                        if let Some(reason) = flush_or_end(&mut out, &mut wr, &self.kill, expiry).await? {
                                            return Ok(reason);
                                        }
                                    }
                                }
                            }
                        }
                        Some(Line::TooLong) => {
                            let note = format!("Line too long (over {} bytes); it was not sent.\r\n", self.max_line);
                            out.plain.extend_from_slice(note.as_bytes());
                            if let Some(reason) = flush_or_end(&mut out, &mut wr, &self.kill, expiry).await? {
                                return Ok(reason);
                            }
                        }
                        None => {}
                    }
                }
                n = rd.read(&mut buf), if lines.is_empty() && !eof => {
                    let n = n?;
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
                                assembler.push(&data, out.charset, &mut lines)
                            }
                            Event::Negotiate(verb, option) => {
                                out.negotiate(&mut self.negotiation, verb, option)?
                            }
                            Event::Subnegotiation(option, data) => {
                                self.negotiation.subnegotiation(option, &data, &mut out.plain);
                                out.charset = self.negotiation.charset();
                            }
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
                    if let Some(reason) = flush_or_end(&mut out, &mut wr, &self.kill, expiry).await? {
                        return Ok(reason);
                    }
                }
            }
        }
    }
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
    let at = expiry.map_or_else(Instant::now, |(at, _)| at);
    tokio::select! {
        r = out.flush(wr) => r.map(|()| None),
        _ = kill.cancelled() => Ok(Some(STALLED.into())),
        _ = tokio::time::sleep_until(at), if expiry.is_some() => {
            Ok(expiry.map(|(_, expired)| expired.reason().into()))
        }
    }
}

/// Tells the player why the connection ends and closes it, giving up on a
/// client that does not take the line within [`GOODBYE_DEADLINE`].
async fn goodbye(out: &mut Writer, wr: &mut (impl AsyncWriteExt + Unpin), text: &str) {
    out.text(text);
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
}

impl Writer {
    fn new(idle: Duration) -> Self {
        Writer {
            plain: Vec::new(),
            wire: Vec::new(),
            mccp: None,
            idle,
            release_at: None,
            charset: Charset::default(),
            last_sent: Instant::now(),
        }
    }

    /// Stages a line of text for the client.
    fn text(&mut self, text: &str) {
        telnet::encode_text(text, self.charset, &mut self.plain);
        self.plain.extend_from_slice(b"\r\n");
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
            wr.write_all(&self.wire).await?;
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
            mccp2,
            players: Arc::new(AtomicU64::new(0)),
        };
        Negotiation::new(mccp2, Arc::new(facts))
    }

    fn offered() -> (Writer, Negotiation) {
        let mut w = Writer::new(Duration::from_secs(5));
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
        let mut w = Writer::new(Duration::from_secs(5));
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
        let mut w = Writer::new(Duration::from_secs(5));
        w.text("café");
        w.charset = Charset::Ascii;
        w.text("café");
        assert_eq!(wire(&mut w), "café\r\ncaf?\r\n".as_bytes());
    }
}
