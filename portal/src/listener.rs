//! Accepts telnet connections, plain and over TLS, enforces the connection
//! limits and starts a session task for each player.
//!
//! Both listeners share one accept loop, so they share the per-address and
//! total limits and one sequence of session ids. A TLS connection takes its
//! place at the accept, like a plain one, and does its handshake in a task
//! of its own (bounded by `portal.tls_handshake_timeout_s`); a finished
//! handshake comes back to the loop, which starts its session as it starts
//! a plain one, so the hub hears of sessions in the order of their ids.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::{Addresses, Slot};
use crate::hub::api::{HubEvent, HubSender};
use crate::ids::SessionIds;
use crate::mssp::Facts;
use crate::negotiation::Negotiation;
use crate::outqueue;
use crate::session::{Connection, Transport};
use crate::throttle::{Rate, Throttle};
use crate::timeout::{Clock, Timeouts};
use ev::link::{Capabilities, PortalSession, SessionId};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub struct Limits {
    pub max_line: usize,
    /// Longest GMCP or MSDP message taken from a client.
    pub max_oob: usize,
    /// The colours of a client that never says what it shows.
    pub default_colours: ev::markup::Colours,
    /// How long output waits for a new client to say how to show it.
    pub negotiation_wait: Duration,
    pub input_queue: usize,
    pub output_queue: usize,
    pub output_queue_bytes: usize,
    pub commands: Rate,
    pub timeouts: Timeouts,
    /// Offer MCCP2; an idle player's compressor is released after this long.
    pub mccp2: Option<Duration>,
    /// What an MSSP crawler is told.
    pub mssp: Arc<Facts>,
    /// An idle connection gets IAC NOP after this long (`portal.keepalive_s`).
    pub keepalive: Option<Duration>,
    /// A TLS handshake not done by then is given up (`portal.tls_handshake_timeout_s`).
    pub tls_handshake: Duration,
}

/// The sockets players connect to.
pub struct Listeners {
    pub telnet: TcpListener,
    /// Telnet over TLS, if `portal.tls` is set.
    pub tls: Option<(TcpListener, TlsAcceptor)>,
}

/// A connection admitted, ready for its session: a plain one at once, a
/// TLS one once its handshake is done.
struct Accepted<S> {
    stream: S,
    peer: SocketAddr,
    /// Its place in the per-address and total limits.
    slot: Slot,
    tls: bool,
}

type Handshaken = Accepted<TlsStream<TcpStream>>;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Telnet,
    Tls,
}

/// Accepts until `stop`. `addresses` and `ids` are shared with the
/// webclient's listener: one set of connection limits, one id sequence.
pub async fn run(
    listeners: Listeners,
    hub: HubSender,
    limits: Limits,
    addresses: Addresses,
    ids: SessionIds,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let (handshaken_tx, mut handshaken) = mpsc::unbounded_channel::<Handshaken>();
    let (tls_listener, acceptor) = match listeners.tls {
        Some((listener, acceptor)) => (Some(listener), Some(acceptor)),
        None => (None, None),
    };
    loop {
        let (accepted, via) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listeners.telnet.accept() => (r, Via::Telnet),
            r = accept(tls_listener.as_ref()), if tls_listener.is_some() => (r, Via::Tls),
            Some(done) = handshaken.recv() => {
                start_session(ids.next(), done, &hub, &limits, &tracker);
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off, do not spin.
                tracing::warn!("accept failed: {e}");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        // Counted before the telnet handshake: a connection that never
        // speaks holds its place like any other.
        let slot = match addresses.admit(peer.ip()) {
            Ok(slot) => slot,
            // A refusal over TLS would cost a handshake, which a flood of
            // connections from one address must not buy: it is closed.
            Err(_) if via == Via::Tls => continue,
            Err(message) => {
                tracker.spawn(refuse(stream, message));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match (via, &acceptor) {
            (Via::Tls, Some(acceptor)) => {
                tracker.spawn(handshake(
                    acceptor.clone(),
                    stream,
                    peer,
                    slot,
                    limits.tls_handshake,
                    stop.clone(),
                    handshaken_tx.clone(),
                ));
            }
            _ => {
                let plain = Accepted {
                    stream,
                    peer,
                    slot,
                    tls: false,
                };
                start_session(ids.next(), plain, &hub, &limits, &tracker);
            }
        }
    }
}

/// The TLS listener's next connection (never, without one).
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Does a TLS connection's handshake, within `limit`; a finished one goes
/// back to the accept loop. The slot is held until then, and given back
/// with the connection if the handshake fails or takes too long.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    limit: Duration,
    stop: CancellationToken,
    done: mpsc::UnboundedSender<Handshaken>,
) {
    let result = tokio::select! {
        _ = stop.cancelled() => return,
        r = tokio::time::timeout(limit, acceptor.accept(stream)) => r,
    };
    match result {
        Ok(Ok(stream)) => {
            let _ = done.send(Accepted {
                stream,
                peer,
                slot,
                tls: true,
            });
        }
        // Scanners and clients that refuse the certificate end here:
        // worth a line only when looking for why a player cannot connect.
        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
        Err(_) => tracing::debug!(%peer, "TLS handshake not done within {limit:?}; closed"),
    }
}

fn start_session(
    id: SessionId,
    accepted: Accepted<impl Transport>,
    hub: &HubSender,
    limits: &Limits,
    tracker: &TaskTracker,
) {
    let Accepted {
        stream,
        peer,
        slot,
        tls,
    } = accepted;
    let (out_tx, out_rx) = outqueue::channel(limits.output_queue, limits.output_queue_bytes);
    let credits = Arc::new(Semaphore::new(limits.input_queue));
    let kill = CancellationToken::new();
    hub.send(HubEvent::Opened {
        portal: PortalSession {
            id,
            protocol: "telnet".into(),
            peer: peer.to_string(),
            connected_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            encoding: "utf-8".into(),
            capabilities: Capabilities(if tls { Capabilities::SSL } else { 0 }),
            ..Default::default()
        },
        out: out_tx,
        credits: credits.clone(),
        kill: kill.clone(),
    });
    let now = Instant::now();
    let connection = Connection {
        id,
        stream,
        out: out_rx,
        credits,
        kill,
        hub: hub.clone(),
        max_line: limits.max_line,
        max_oob: limits.max_oob,
        mccp2_idle: limits.mccp2.unwrap_or_default(),
        default_colours: limits.default_colours,
        negotiation_wait: limits.negotiation_wait,
        negotiation: Negotiation::new(limits.mccp2.is_some(), limits.mssp.clone()).over_tls(tls),
        keepalive: limits.keepalive,
        throttle: Throttle::new(limits.commands, slot, now),
        clock: Clock::new(limits.timeouts, now),
    };
    tracker.spawn(connection.run());
}

async fn refuse(mut stream: TcpStream, message: &'static str) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(format!("{message}\r\n").as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
