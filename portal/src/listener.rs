//! Accepts telnet connections, enforces the connection limits and starts a
//! session task for each player.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::{HubEvent, HubSender};
use crate::link::PortalPart;
use crate::session::Connection;

pub struct Limits {
    pub max_line: usize,
    pub input_queue: usize,
    pub output_queue: usize,
    pub per_ip: usize,
    pub total: usize,
    /// Offer MCCP2; an idle player's compressor is released after this long.
    pub mccp2: Option<Duration>,
}

/// Counts open connections per address; a slot is released when dropped.
#[derive(Clone, Default)]
struct Counter(Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>);

struct Slot {
    counter: Counter,
    ip: IpAddr,
}

impl Counter {
    fn take(&self, ip: IpAddr, limits: &Limits) -> Result<Slot, &'static str> {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per_ip) = &mut *guard;
        if *total >= limits.total {
            return Err("The game is full; please try again later.");
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= limits.per_ip {
            return Err("Too many connections from your address.");
        }
        *n += 1;
        *total += 1;
        Ok(Slot {
            counter: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut guard = self.counter.0.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per_ip) = &mut *guard;
        *total -= 1;
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Session ids grow across portal restarts: they start from the start time in
/// microseconds, so a server never mistakes a new session for an old one.
fn first_session_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

pub async fn run(
    listener: TcpListener,
    hub: HubSender,
    limits: Limits,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let counter = Counter::default();
    let mut next_id = first_session_id();
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
        let slot = match counter.take(peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(message) => {
                tracker.spawn(refuse(stream, message));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        start_session(next_id, stream, peer, &hub, &limits, &tracker, slot);
    }
}

fn start_session(
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    hub: &HubSender,
    limits: &Limits,
    tracker: &TaskTracker,
    slot: Slot,
) {
    let (out_tx, out_rx) = mpsc::channel(limits.output_queue);
    let credits = Arc::new(Semaphore::new(limits.input_queue));
    let kill = CancellationToken::new();
    hub.send(HubEvent::Opened {
        portal: PortalPart {
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
    });
    let connection = Connection {
        id,
        stream,
        out: out_rx,
        credits,
        kill,
        hub: hub.clone(),
        max_line: limits.max_line,
        mccp2: limits.mccp2,
    };
    tracker.spawn(async move {
        connection.run().await;
        drop(slot);
    });
}

async fn refuse(mut stream: TcpStream, message: &'static str) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(format!("{message}\r\n").as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
