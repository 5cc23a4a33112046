//! One player's telnet connection: socket ⇄ telnet codec ⇄ hub.
//!
//! Backpressure both ways, without ever blocking the hub:
//! - input: each line needs one permit of the session's input credit
//!   (`portal.input_queue`); the hub returns permits as the server acks. With
//!   no server attached the credit runs out and this task stops reading the
//!   socket, so the client's own buffers fill; nothing is dropped.
//! - output: the hub `try_send`s into a bounded queue (`portal.output_queue`);
//!   a client that stops reading fills it and is disconnected by the hub.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::hub::{HubEvent, HubSender, Outbound};
use crate::link::SessionId;
use crate::telnet::{self, Event, Line, LineAssembler, Parser};

const READ_BUF: usize = 1024;

pub struct Connection {
    pub id: SessionId,
    pub stream: TcpStream,
    pub out: mpsc::Receiver<Outbound>,
    pub credits: Arc<Semaphore>,
    pub kill: CancellationToken,
    pub hub: HubSender,
    pub max_line: usize,
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
        let mut wbuf: Vec<u8> = Vec::new();

        loop {
            tokio::select! {
                biased;
                _ = self.kill.cancelled() => {
                    return Ok("disconnected: output queue full (the client stopped reading)".into());
                }
                msg = self.out.recv() => {
                    let mut close = None;
                    let mut next = msg;
                    // Coalesce what is queued into one write.
                    loop {
                        match next {
                            Some(Outbound::Text(text)) => {
                                telnet::encode_text(&text, &mut wbuf);
                                wbuf.extend_from_slice(b"\r\n");
                            }
                            Some(Outbound::Close(reason)) => { close = Some(reason); break; }
                            None => { close = Some("the portal is stopping".into()); break; }
                        }
                        if wbuf.len() > 64 * 1024 { break; }
                        next = match self.out.try_recv() {
                            Ok(m) => Some(m),
                            Err(_) => break,
                        };
                    }
                    tokio::select! {
                        r = wr.write_all(&wbuf) => r?,
                        _ = self.kill.cancelled() => {
                            return Ok("disconnected: output queue full (the client stopped reading)".into());
                        }
                    }
                    wbuf.clear();
                    // An idle player keeps no buffer: a burst (a crowded room
                    // announcing arrivals) must not leave kilobytes behind in
                    // every session. Allocating per burst is cheap.
                    if wbuf.capacity() > 1024 { wbuf = Vec::new(); }
                    if let Some(reason) = close {
                        let _ = wr.shutdown().await;
                        return Ok(reason);
                    }
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
                            wr.write_all(note.as_bytes()).await?;
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
                            Event::Negotiate(verb, option) => {
                                if let Some(answer) = telnet::refuse(verb, option) {
                                    wr.write_all(&answer).await?;
                                }
                            }
                            Event::Subnegotiation(..) | Event::Command(_) => {}
                        }
                    }
                }
            }
        }
    }
}
