//! A fake MUD speaking ev's grammar over telnet, on 127.0.0.1:0, in its own
//! thread and runtime (the tool under test builds its own runtime).
//!
//! While `DIR/dark` exists no input is handled (it stays queued, as in a
//! reload); while `DIR/drop` exists `ping` is not answered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const IAC: u8 = 255;

#[derive(Default)]
struct World {
    accounts: HashMap<String, String>,
    /// Connection id → (character name, its output).
    room: HashMap<u64, (String, mpsc::UnboundedSender<String>)>,
}

pub struct FakeMud {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeMud {
    pub fn start() -> FakeMud {
        let dir = tempfile::tempdir().unwrap();
        let flags = dir.path().to_owned();
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
                            tokio::spawn(serve(socket, next_id, world.clone(), flags.clone()));
                        }
                    }
                }
            });
        });
        FakeMud {
            addr: addr_rx.recv().unwrap(),
            dir,
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

async fn serve(socket: TcpStream, id: u64, world: Arc<Mutex<World>>, flags: PathBuf) {
    let (mut read, mut write) = socket.into_split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        // Negotiation the client must refuse, and a subnegotiation to strip.
        let hello = [IAC, 251, 1, IAC, 253, 24, IAC, 250, 24, 1, IAC, 240];
        if write.write_all(&hello).await.is_err() {
            return;
        }
        while let Some(text) = out_rx.recv().await {
            let mut bytes = text.replace('\n', "\r\n").into_bytes();
            bytes.extend_from_slice(b"\r\n");
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let _ = out_tx.send("Welcome to fake!\nType: create NAME PASSWORD".into());
    let mut name: Option<String> = None;
    let mut buf = [0u8; 4096];
    let mut line = Vec::new();
    let mut skip = 0;
    'conn: while let Ok(n) = read.read(&mut buf).await {
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            match b {
                IAC => skip = 2,
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
