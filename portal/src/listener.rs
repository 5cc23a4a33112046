//! Accepts telnet connections, enforces the connection limits and starts a
//! session task for each player.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::{Addresses, Slot};
use crate::hub::api::{HubEvent, HubSender};
use crate::ids::SessionIds;
use crate::mssp::Facts;
use crate::negotiation::Negotiation;
use crate::outqueue;
use crate::session::Connection;
use crate::throttle::{Rate, Throttle};
use crate::timeout::{Clock, Timeouts};
use ev::link::{PortalSession, SessionId};

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
}

/// Accepts until `stop`. `addresses` and `ids` are shared with the
/// webclient's listener: one set of connection limits, one id sequence.
pub async fn run(
    listener: TcpListener,
    hub: HubSender,
    limits: Limits,
    addresses: Addresses,
    ids: SessionIds,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
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
            Err(message) => {
                tracker.spawn(refuse(stream, message));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        start_session(ids.next(), stream, peer, &hub, &limits, &tracker, slot);
    }
}

fn start_session(
    id: SessionId,
    stream: TcpStream,
    peer: SocketAddr,
    hub: &HubSender,
    limits: &Limits,
    tracker: &TaskTracker,
    slot: Slot,
) {
    let (out_tx, out_rx) = outqueue::channel(limits.output_queue, limits.output_queue_bytes);
    let credits = Arc::new(Semaphore::new(limits.input_queue));
    let kill = CancellationToken::new();
    let (logged_in, logged_in_rx) = watch::channel(false);
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
            ..Default::default()
        },
        out: out_tx,
        credits: credits.clone(),
        kill: kill.clone(),
        logged_in,
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
        negotiation: Negotiation::new(limits.mccp2.is_some(), limits.mssp.clone()),
        keepalive: limits.keepalive,
        throttle: Throttle::new(limits.commands, slot, now),
        clock: Clock::new(limits.timeouts, now),
        logged_in: logged_in_rx,
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
