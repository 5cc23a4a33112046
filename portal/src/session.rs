//! One player's telnet connection: socket ⇄ telnet codec ⇄ hub.
//!
//! Backpressure both ways, without ever blocking the hub:
//! - input: each line needs one permit of the session's input credit
//!   (`portal.input_queue`); the hub returns permits as the server acks. With
//!   no server attached the credit runs out and this task stops reading the
//!   socket, so the client's own buffers fill; nothing is dropped.
//! - output: the hub `try_send`s into a bounded queue (`portal.output_queue`);
//!   a client that stops reading fills it and is disconnected by the hub.
//!
//! Telnet options are refused, but for MCCP2 when `portal.mccp2` offers it:
//! then [`Writer`] compresses what follows the client's DO.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hub::{HubEvent, HubSender, Outbound};
use crate::link::SessionId;
use crate::mccp;
use crate::telnet::{self, DO, DONT, Event, IAC, Line, LineAssembler, Parser, SB, SE, WILL, WONT};

const READ_BUF: usize = 1024;
const STALLED: &str = "disconnected: output queue full (the client stopped reading)";

pub struct Connection {
    pub id: SessionId,
    pub stream: TcpStream,
    pub out: mpsc::Receiver<Outbound>,
    pub credits: Arc<Semaphore>,
    pub kill: CancellationToken,
    pub hub: HubSender,
    pub max_line: usize,
    /// Offer MCCP2, and release an idle player's compressor after this long.
    pub mccp2: Option<Duration>,
}

impl Connection {
    /// Serves the connection until either side closes it, then tells the hub.
    pub async fn run(mut self) {
        let reason = match self.serve().await {
            Ok(reason) => reason,
            Err(e) => format!("connection error: {e}"),
        };
        tracing::debug!(session = self.id, "closed: {reason}");
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
        if !out.wire.is_empty() {
            wr.write_all(&out.wire).await?;
            out.written();
        }

        loop {
            let release_at = out.release_at;
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
                _ = tokio::time::sleep_until(release_at.unwrap_or_else(Instant::now)), if release_at.is_some() => {
                    out.release_idle();
                }
                permit = self.credits.acquire(), if !lines.is_empty() => {
                    let Ok(permit) = permit else { return Ok("the portal is stopping".into()) };
                    match lines.pop_front() {
                        Some(Line::Text(text)) => {
                            permit.forget();
                            self.hub.send(HubEvent::Input { session: self.id, text });
                        }
                        Some(Line::TooLong) => {
                            let note = format!("Line too long (over {} bytes); it was not sent.\r\n", self.max_line);
                            out.plain.extend_from_slice(note.as_bytes());
                            out.seal()?;
                            wr.write_all(&out.wire).await?;
                            out.written();
                        }
                        None => {}
                    }
                }
                n = rd.read(&mut buf), if lines.is_empty() => {
                    let n = n?;
                    if n == 0 {
                        // Inputs already read still go to the server; the
                        // hub keeps them until they are applied.
                        return Ok("client closed the connection".into());
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
                    out.seal()?;
                    if !out.wire.is_empty() {
                        wr.write_all(&out.wire).await?;
                        out.written();
                    }
                }
            }
        }
    }
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
    offer: bool,
    idle: Duration,
    /// When the compressor goes back, unless more output comes first.
    release_at: Option<Instant>,
}

impl Writer {
    fn new(mccp2: Option<Duration>) -> Self {
        let mut writer = Writer {
            plain: Vec::new(),
            wire: Vec::new(),
            mccp: Mccp::Off,
            offer: mccp2.is_some(),
            idle: mccp2.unwrap_or_default(),
            release_at: None,
        };
        if writer.offer {
            writer.wire.extend_from_slice(&[IAC, WILL, mccp::OPTION]);
            writer.mccp = Mccp::Offered;
        }
        writer
    }

    fn negotiate(&mut self, verb: u8, option: u8) -> std::io::Result<()> {
        if option != mccp::OPTION {
            if let Some(answer) = telnet::refuse(verb, option) {
                self.plain.extend_from_slice(&answer);
            }
            return Ok(());
        }
        match (verb, &self.mccp) {
            (DO, Mccp::Offered) => self.begin_compression(false)?,
            // Asked without our offer: agree if we would have offered.
            (DO, Mccp::Off) if self.offer => self.begin_compression(true)?,
            (DO, Mccp::Off) => self.plain.extend_from_slice(&[IAC, WONT, mccp::OPTION]),
            (DONT, Mccp::Offered) => self.mccp = Mccp::Off,
            (DONT, Mccp::On(_)) => {
                self.end_compression()?;
                self.plain.extend_from_slice(&[IAC, WONT, mccp::OPTION]);
            }
            // WILL/WONT are about the client's side, where MCCP2 has no
            // meaning; a repeated DO or DONT needs no answer.
            (WILL, _) => self.plain.extend_from_slice(&[IAC, DONT, mccp::OPTION]),
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
                self.release_at = Some(Instant::now() + self.idle);
            }
            _ if self.wire.is_empty() => std::mem::swap(&mut self.plain, &mut self.wire),
            _ => self.wire.append(&mut self.plain),
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
