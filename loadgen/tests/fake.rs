//! A fake MUD speaking ev's grammar over telnet, on 127.0.0.1:0, in its own
//! thread and runtime (the tool under test builds its own runtime).
//!
//! While `DIR/dark` exists no input is handled (it stays queued, as in a
//! reload); while `DIR/drop` exists `ping` is not answered. It offers MCCP2,
//! and compresses everything after a client's DO 86, as ev's portal does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::{Compress, Compression, FlushCompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const IAC: u8 = 255;
const DO: u8 = 253;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;
const MCCP2: u8 = 86;

#[derive(Default)]
struct World {
    accounts: HashMap<String, String>,
    /// Connection id → (character name, its output).
    room: HashMap<u64, (String, mpsc::UnboundedSender<String>)>,
}

pub struct FakeMud {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// Connections that turned MCCP2 on.
    pub compressed: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeMud {
    pub fn start() -> FakeMud {
        let dir = tempfile::tempdir().unwrap();
        let flags = dir.path().to_owned();
        let compressed = Arc::new(AtomicU64::new(0));
        let counter = compressed.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let world = Arc::new(Mutex::new(World::default()));
                let mut next_id = 0;
                tokio::pin!(stop_rx);
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((socket, _)) = accepted else { continue };
                            next_id += 1;
                            tokio::spawn(serve(
                                socket,
                                next_id,
                                world.clone(),
                                flags.clone(),
                                counter.clone(),
                            ));
                        }
                    }
                }
            });
        });
        FakeMud {
            addr: addr_rx.recv().unwrap(),
            dir,
            compressed,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn flag(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for FakeMud {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    socket: TcpStream,
    id: u64,
    world: Arc<Mutex<World>>,
    flags: PathBuf,
    compressed: Arc<AtomicU64>,
) {
    let (mut read, write) = socket.into_split();
    let (out_tx, out_rx) = mpsc::unbounded_channel::<String>();
    let (mccp2_tx, mccp2_rx) = oneshot::channel::<()>();
    let writer = tokio::spawn(write_out(write, out_rx, mccp2_rx, compressed));
    let mut mccp2_tx = Some(mccp2_tx);
    let _ = out_tx.send("Welcome to fake!\nType: create NAME PASSWORD".into());
    let mut name: Option<String> = None;
    let mut buf = [0u8; 4096];
    let mut line = Vec::new();
    // The bytes of a telnet command being read (the client only sends verbs).
    let mut command: Vec<u8> = Vec::new();
    'conn: while let Ok(n) = read.read(&mut buf).await {
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if !command.is_empty() {
                command.push(b);
                if command.len() == 3 {
                    if command[1..] == [DO, MCCP2]
                        && let Some(tx) = mccp2_tx.take()
                    {
                        let _ = tx.send(());
                    }
                    command.clear();
                }
                continue;
            }
            match b {
                IAC => command.push(IAC),
                b'\n' => {
                    let text = String::from_utf8_lossy(&line).trim().to_owned();
                    line.clear();
                    while flags.join("dark").exists() {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    if !handle(&text, id, &mut name, &world, &out_tx, &flags) {
                        break 'conn;
                    }
                }
                _ => line.push(b),
            }
        }
    }
    world.lock().unwrap().room.remove(&id);
    drop(out_tx);
    let _ = writer.await;
}

/// Writes the hello, then every text as lines; once MCCP2 is on, through one
/// zlib stream, sync-flushed per text.
async fn write_out(
    mut write: OwnedWriteHalf,
    mut out_rx: mpsc::UnboundedReceiver<String>,
    mut mccp2_rx: oneshot::Receiver<()>,
    compressed: Arc<AtomicU64>,
) {
    // An offer the client refuses unless told otherwise, negotiation it must
    // refuse, and a subnegotiation to strip.
    let hello = [
        IAC, WILL, MCCP2, IAC, WILL, 1, IAC, DO, 24, IAC, SB, 24, 1, IAC, SE,
    ];
    if write.write_all(&hello).await.is_err() {
        return;
    }
    let mut deflate: Option<Compress> = None;
    loop {
        let text = tokio::select! {
            started = &mut mccp2_rx, if deflate.is_none() => {
                if started.is_ok() {
                    compressed.fetch_add(1, Ordering::Relaxed);
                    deflate = Some(Compress::new(Compression::fast(), true));
                    if write.write_all(&[IAC, SB, MCCP2, IAC, SE]).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            text = out_rx.recv() => match text {
                Some(text) => text,
                None => return,
            },
        };
        let mut bytes = text.replace('\n', "\r\n").into_bytes();
        bytes.extend_from_slice(b"\r\n");
        if let Some(deflate) = &mut deflate {
            let mut out = Vec::with_capacity(bytes.len() * 2 + 64);
            deflate
                .compress_vec(&bytes, &mut out, FlushCompress::Sync)
                .unwrap();
            bytes = out;
        }
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// False to close the connection.
fn handle(
    text: &str,
    id: u64,
    name: &mut Option<String>,
    world: &Mutex<World>,
    out: &mpsc::UnboundedSender<String>,
    flags: &Path,
) -> bool {
    let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut world = world.lock().unwrap();
    let send = |t: String| {
        let _ = out.send(t);
    };
    match (name.is_some(), verb) {
        (_, "ping") => {
            if !flags.join("drop").exists() {
                send(format!("pong {rest}"));
            }
        }
        (_, "quit") => return false,
        (false, "create" | "connect") => {
            let Some((who, password)) = rest.split_once(' ') else {
                send("Usage: create NAME PASSWORD".into());
                return true;
            };
            let greeting = if verb == "create" {
                if world.accounts.contains_key(who) {
                    send("That name is taken.".into());
                    return true;
                }
                world.accounts.insert(who.into(), password.into());
                format!("Welcome, {who}!")
            } else if world.accounts.get(who).map(String::as_str) == Some(password) {
                format!("Welcome back, {who}!")
            } else {
                send("Wrong name or password.".into());
                return true;
            };
            send(greeting);
            send("Limbo\nNothing here.".into());
            for (_, tx) in world.room.values() {
                let _ = tx.send(format!("{who} has arrived."));
            }
            world.room.insert(id, (who.to_owned(), out.clone()));
            *name = Some(who.to_owned());
        }
        (true, "look") => send("Limbo\nNothing here.".into()),
        (true, "say") => {
            send(format!("You say, \"{rest}\""));
            let who = name.as_deref().unwrap_or_default();
            for (other, (_, tx)) in &world.room {
                if *other != id {
                    let _ = tx.send(format!("{who} says, \"{rest}\""));
                }
            }
        }
        _ => send(format!("Unknown command '{verb}'.")),
    }
    true
}
