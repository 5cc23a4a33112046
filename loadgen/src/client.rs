//! One telnet session: a socket, [`Inbound`] (telnet and MCCP2), lines in,
//! lines out, and the login dialogue.
//!
//! [`Client::next_line`] is cancel-safe (its only await is a socket read whose
//! bytes are inflated and decoded before the next await), so workloads put it
//! in a `select!` beside their timers. Telnet refusals owed to the game are written
//! at once when the socket takes them, else before the next line sent.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout_at;

use crate::game::Game;
use crate::inbound::Inbound;
use crate::pattern::Vars;
use crate::telnet::encode_line;

const READ_BUF: usize = 4096;

pub struct Client {
    stream: TcpStream,
    inbound: Inbound,
    ready: VecDeque<String>,
    /// Telnet answers not yet written.
    replies: Vec<u8>,
    buf: Box<[u8]>,
    /// Lines read so far, whatever they were.
    pub lines_read: u64,
}

#[derive(Debug)]
pub enum LoginError {
    Connect(io::Error),
    Io(io::Error),
    Closed,
    Timeout {
        last_line: Option<String>,
    },
    Refused(String),
    /// The time for all the logins of the run was over before this one ended.
    PhaseOver,
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginError::Connect(e) => write!(f, "cannot connect: {e}"),
            LoginError::Io(e) => write!(f, "connection error: {e}"),
            LoginError::Closed => write!(f, "the game closed the connection during login"),
            LoginError::Timeout { last_line: None } => write!(f, "no login reply in time"),
            LoginError::Timeout { last_line: Some(l) } => {
                write!(f, "no login reply in time (last line: {l:?})")
            }
            LoginError::Refused(line) => write!(f, "login refused: {line:?}"),
            LoginError::PhaseOver => write!(
                f,
                "the time for all logins (--login-phase-timeout-ms) ran out"
            ),
        }
    }
}

impl std::error::Error for LoginError {}

/// How to get in: `Create` a new account, `Connect` to an existing one, or
/// try create and connect when the name is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMode {
    Create,
    Connect,
    CreateOrConnect,
}

#[derive(Debug, Clone, Copy)]
pub struct LoggedIn {
    /// True when this login created the account.
    pub created: bool,
    /// From the first login command sent to the success line.
    pub elapsed: Duration,
}

impl Client {
    pub async fn connect(game: &Game) -> Result<Client, LoginError> {
        let stream = dial(game.addr, game.next_source(), game.connect_timeout)
            .await
            .map_err(LoginError::Connect)?;
        // Probes are single small lines: send each at once.
        stream.set_nodelay(true).map_err(LoginError::Io)?;
        Ok(Client {
            stream,
            inbound: Inbound::new(game.mccp2, game.all_options),
            ready: VecDeque::new(),
            replies: Vec::new(),
            buf: vec![0; READ_BUF].into_boxed_slice(),
            lines_read: 0,
        })
    }

    /// The socket, for a workload that reads and writes it apart; lines
    /// already read and not taken are dropped.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// The next line from the game; `None` once it closed the connection.
    pub async fn next_line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                self.lines_read += 1;
                return Ok(Some(line));
            }
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.inbound
                .push(&self.buf[..n], &mut self.ready, &mut self.replies)?;
            if !self.replies.is_empty() {
                match self.stream.try_write(&self.replies) {
                    Ok(written) => {
                        self.replies.drain(..written);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// [`Client::next_line`] with a deadline: `Ok(None)` on close, `Err` on
    /// timeout or error.
    pub async fn line_by(&mut self, deadline: Instant) -> Result<Option<String>, LineError> {
        match timeout_at(deadline.into(), self.next_line()).await {
            Err(_) => Err(LineError::Timeout),
            Ok(Err(e)) => Err(LineError::Io(e)),
            Ok(Ok(line)) => Ok(line),
        }
    }

    pub async fn send(&mut self, line: &str) -> io::Result<()> {
        let mut out = std::mem::take(&mut self.replies);
        encode_line(line, &mut out);
        self.stream.write_all(&out).await
    }

    /// Reads and drops lines until `release` turns true (or its sender is
    /// gone). Err if the game closes the connection first.
    pub async fn drain_until(&mut self, release: &mut watch::Receiver<bool>) -> io::Result<()> {
        loop {
            if *release.borrow_and_update() {
                return Ok(());
            }
            tokio::select! {
                changed = release.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                line = self.next_line() => {
                    if line?.is_none() {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
        }
    }

    /// Logs in as `name` with the game's grammar.
    pub async fn login(
        &mut self,
        game: &Game,
        name: &str,
        mode: LoginMode,
        deadline: Instant,
    ) -> Result<LoggedIn, LoginError> {
        let vars = Vars {
            name,
            password: &game.password,
            token: "",
        };
        let mut last_line = None;
        if game.wait_banner && !game.login_screen.is_empty() {
            loop {
                let line = self.login_line(deadline, &last_line).await?;
                if line.contains(&game.login_screen) {
                    break;
                }
                last_line = Some(line);
            }
        }
        let first = match mode {
            LoginMode::Connect => &game.connect,
            LoginMode::Create | LoginMode::CreateOrConnect => &game.create,
        };
        let started = Instant::now();
        self.send(&first.render(vars))
            .await
            .map_err(LoginError::Io)?;
        let mut creating = mode != LoginMode::Connect;
        let logged_in = game.logged_in.replace("{name}", name);
        loop {
            let line = self.login_line(deadline, &last_line).await?;
            if game.is_logged_in(&line, &logged_in) {
                return Ok(LoggedIn {
                    created: creating,
                    elapsed: started.elapsed(),
                });
            }
            if creating && !game.taken.is_empty() && line.contains(&game.taken) {
                if mode == LoginMode::Create {
                    return Err(LoginError::Refused(line));
                }
                creating = false;
                self.send(&game.connect.render(vars))
                    .await
                    .map_err(LoginError::Io)?;
            } else if game
                .login_failed
                .iter()
                .any(|f| !f.is_empty() && line.contains(f.as_str()))
            {
                return Err(LoginError::Refused(line));
            }
            last_line = Some(line);
        }
    }

    async fn login_line(
        &mut self,
        deadline: Instant,
        last_line: &Option<String>,
    ) -> Result<String, LoginError> {
        match self.line_by(deadline).await {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(LoginError::Closed),
            Err(LineError::Io(e)) => Err(LoginError::Io(e)),
            Err(LineError::Timeout) => Err(LoginError::Timeout {
                last_line: last_line.clone(),
            }),
        }
    }
}

/// Connects to `addr`, from `source` if given (any port), within `limit`.
pub async fn dial(
    addr: SocketAddr,
    source: Option<IpAddr>,
    limit: Duration,
) -> io::Result<TcpStream> {
    let connect = async {
        match source {
            None => TcpStream::connect(addr).await,
            Some(ip) => {
                let socket = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await
            }
        }
    };
    tokio::time::timeout(limit, connect)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

#[derive(Debug)]
pub enum LineError {
    Timeout,
    Io(io::Error),
}
