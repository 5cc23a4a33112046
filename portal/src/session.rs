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
//! Telnet options are refused, but for MCCP2 when `portal.mccp2` offers it:
//! then [`Writer`] compresses what follows the client's DO.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hub::api::{HubEvent, HubSender, Outbound};
use crate::mccp;
use crate::outqueue::OutReceiver;
use crate::telnet::{self, DO, DONT, Event, IAC, Line, LineAssembler, Parser, SB, SE, WILL, WONT};
use crate::throttle::{TOO_FAST, Throttle, Verdict};
use crate::timeout::{Clock, Expired};
use ev::link::SessionId;

const READ_BUF: usize = 1024;
const STALLED: &str = "disconnected: output queue full (the client stopped reading)";
/// How long a timed-out client gets to take its goodbye: it may not be reading.
const GOODBYE_DEADLINE: Duration = Duration::from_secs(5);

pub struct Connection {
    pub id: SessionId,
    pub stream: TcpStream,
    pub out: OutReceiver,
    pub credits: Arc<Semaphore>,
    pub kill: CancellationToken,
    pub hub: HubSender,
    pub max_line: usize,
    /// Offer MCCP2, and release an idle player's compressor after this long.
    pub mccp2: Option<Duration>,
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
        let mut out = Writer::new(self.mccp2);
        out.flush(&mut wr).await?;
        // A command over the rate limit waits at the front of `lines` until then.
        let mut held_until: Option<Instant> = None;
        // The client half-closed its side (or went): read no more.
        let mut eof = false;
        let mut told_hub_eof = false;
        let mut watching_login = true;

        loop {
            if eof && lines.is_empty() && !told_hub_eof {
                told_hub_eof = true;
                self.hub.send(HubEvent::InputEnded { session: self.id });
            }
            let release_at = out.release_at;
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
                            Some(Outbound::Text(text)) => {
                                telnet::encode_text(&text, &mut out.plain);
                                out.plain.extend_from_slice(b"\r\n");
                            }
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
                                    self.hub.send(HubEvent::Input { session: self.id, text });
                                }
                                Verdict::Hold { until, tell } => {
                                    lines.push_front(Line::Text(text));
                                    held_until = Some(until);
                                    if tell {
                                        telnet::encode_text(TOO_FAST, &mut out.plain);
                                        out.plain.extend_from_slice(b"\r\n");
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
                            Event::Data(data) => assembler.push(&data, &mut lines),
                            Event::Negotiate(verb, option) => out.negotiate(verb, option)?,
                            Event::Subnegotiation(..) | Event::Command(_) => {}
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
    telnet::encode_text(text, &mut out.plain);
    out.plain.extend_from_slice(b"\r\n");
    let _ = tokio::time::timeout(GOODBYE_DEADLINE, async {
        out.end_compression()?;
        out.flush(wr).await?;
        wr.shutdown().await
    })
    .await;
}

/// Where MCCP2 stands with this client (RFC 1143's states, for our side of
/// the one option we offer).
enum Mccp {
    /// Not offered (`portal.mccp2` off) or refused by the client.
    Off,
    /// We sent WILL and wait for the client's DO or DONT.
    Offered,
    On(mccp::Stream),
}

/// Bytes owed to the client: telnet text is staged in `plain`, and [`seal`]
/// moves it to `wire`, compressed once MCCP2 is on.
///
/// [`seal`]: Writer::seal
struct Writer {
    plain: Vec<u8>,
    wire: Vec<u8>,
    mccp: Mccp,
    /// MCCP2 is offered, and an idle compressor goes back after this long.
    idle: Option<Duration>,
    /// When the compressor goes back, unless more output comes first.
    release_at: Option<Instant>,
}

impl Writer {
    fn new(mccp2: Option<Duration>) -> Self {
        let mut writer = Writer {
            plain: Vec::new(),
            wire: Vec::new(),
            mccp: Mccp::Off,
            idle: mccp2,
            release_at: None,
        };
        if writer.idle.is_some() {
            writer.wire.extend_from_slice(&[IAC, WILL, mccp::OPTION]);
            writer.mccp = Mccp::Offered;
        }
        writer
    }

    fn negotiate(&mut self, verb: u8, option: u8) -> std::io::Result<()> {
        // WILL/WONT 86 are about the client's side, where MCCP2 has no
        // meaning: refused like any option we do not offer.
        let ours = option == mccp::OPTION && self.idle.is_some() && matches!(verb, DO | DONT);
        if !ours {
            if let Some(answer) = telnet::refuse(verb, option) {
                self.plain.extend_from_slice(&answer);
            }
            return Ok(());
        }
        match (verb, &self.mccp) {
            (DO, Mccp::Offered) => self.begin_compression(false)?,
            // Asked after a DONT: we offer it, so we agree.
            (DO, Mccp::Off) => self.begin_compression(true)?,
            (DONT, Mccp::Offered) => self.mccp = Mccp::Off,
            (DONT, Mccp::On(_)) => {
                self.end_compression()?;
                self.plain.extend_from_slice(&[IAC, WONT, mccp::OPTION]);
            }
            // A repeated DO or DONT needs no answer.
            _ => {}
        }
        Ok(())
    }

    fn begin_compression(&mut self, announce: bool) -> std::io::Result<()> {
        self.seal()?;
        if announce {
            self.wire.extend_from_slice(&[IAC, WILL, mccp::OPTION]);
        }
        self.wire
            .extend_from_slice(&[IAC, SB, mccp::OPTION, IAC, SE]);
        self.mccp = Mccp::On(mccp::Stream::start(&mut self.wire));
        Ok(())
    }

    /// Finishes the zlib stream (before a close or on DONT); later output is plain.
    fn end_compression(&mut self) -> std::io::Result<()> {
        self.seal()?;
        if let Mccp::On(stream) = std::mem::replace(&mut self.mccp, Mccp::Off) {
            stream.finish(&mut self.wire);
            self.release_at = None;
        }
        Ok(())
    }

    /// Moves staged text onto the wire.
    fn seal(&mut self) -> std::io::Result<()> {
        if self.plain.is_empty() {
            return Ok(());
        }
        match &mut self.mccp {
            Mccp::On(stream) => {
                stream.write(&self.plain, &mut self.wire)?;
                self.plain.clear();
                self.release_at = Some(Instant::now() + self.idle.unwrap_or_default());
            }
            _ if self.wire.is_empty() => std::mem::swap(&mut self.plain, &mut self.wire),
            _ => self.wire.append(&mut self.plain),
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
        if let Mccp::On(stream) = &mut self.mccp {
            stream.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: [u8; 3] = [IAC, WILL, mccp::OPTION];
    const START: [u8; 5] = [IAC, SB, mccp::OPTION, IAC, SE];

    fn wire(w: &mut Writer) -> Vec<u8> {
        w.seal().unwrap();
        let bytes = w.wire.clone();
        w.written();
        bytes
    }

    fn offered() -> Writer {
        let mut w = Writer::new(Some(Duration::from_secs(5)));
        assert_eq!(wire(&mut w), OFFER);
        w
    }

    #[test]
    fn do_starts_compression_once() {
        let mut w = offered();
        w.negotiate(DO, mccp::OPTION).unwrap();
        let first = wire(&mut w);
        assert!(first.starts_with(&START), "{first:?}");
        assert_eq!(
            &first[START.len()..],
            &[0x78, 0x9c],
            "the zlib header follows"
        );
        // A repeated DO neither restarts the stream nor answers.
        w.negotiate(DO, mccp::OPTION).unwrap();
        assert_eq!(wire(&mut w), Vec::<u8>::new());
        assert!(matches!(w.mccp, Mccp::On(_)));
    }

    #[test]
    fn dont_refuses_the_offer_without_an_answer() {
        let mut w = offered();
        w.negotiate(DONT, mccp::OPTION).unwrap();
        assert_eq!(wire(&mut w), Vec::<u8>::new());
        assert!(matches!(w.mccp, Mccp::Off));
        // The client changes its mind: we said we would, so we do.
        w.negotiate(DO, mccp::OPTION).unwrap();
        let again = wire(&mut w);
        assert!(
            again.starts_with(&[IAC, WILL, mccp::OPTION, IAC, SB]),
            "{again:?}"
        );
    }

    #[test]
    fn not_offered_means_refused() {
        let mut w = Writer::new(None);
        assert_eq!(wire(&mut w), Vec::<u8>::new());
        w.negotiate(DO, mccp::OPTION).unwrap();
        assert_eq!(wire(&mut w), [IAC, WONT, mccp::OPTION]);
        w.negotiate(WILL, mccp::OPTION).unwrap();
        assert_eq!(wire(&mut w), [IAC, DONT, mccp::OPTION]);
        assert!(matches!(w.mccp, Mccp::Off));
    }

    #[test]
    fn text_after_dont_is_plain() {
        let mut w = offered();
        w.negotiate(DO, mccp::OPTION).unwrap();
        w.plain.extend_from_slice(b"squeezed\r\n");
        let compressed = wire(&mut w);
        assert!(!compressed.windows(8).any(|x| x == b"squeezed"));
        w.negotiate(DONT, mccp::OPTION).unwrap();
        let end = wire(&mut w);
        assert!(end.ends_with(&[IAC, WONT, mccp::OPTION]), "{end:?}");
        w.plain.extend_from_slice(b"plain\r\n");
        assert_eq!(wire(&mut w), b"plain\r\n");
        assert_eq!(w.release_at, None, "no compressor left to release");
    }
}
