//! `ev.toml`: every setting and limit of a game, with its default.
//!
//! Every limit a player or the network can push against is named here, so an
//! operator can find and change it. Unknown keys are refused, so a typo is an
//! error naming the file, line and key rather than a silently ignored setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub game: GameConfig,
    pub portal: PortalConfig,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub supervisor: SupervisorConfig,
    pub logs: LogsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GameConfig {
    /// Shown on the welcome screen.
    pub name: String,
    /// A room with more characters than this is a crowd: arrivals and
    /// departures are not announced in it, and `look` and `who` name this
    /// many and count the rest. Bounds what one command can make the game
    /// send (ten thousand players in one room would otherwise hear fifty
    /// million arrivals while they log in).
    pub crowd_size: usize,
}

impl Default for GameConfig {
    fn default() -> Self {
        Self {
            name: "ev demo".into(),
            crowd_size: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// Telnet listener. Port 0 picks a free port (written to run/telnet.addr).
    pub telnet: SocketAddr,
    /// The webclient: the page (`GET /`) and its WebSocket (`/ws`) on this
    /// address; "" for none. Port 0 picks a free port (written to
    /// run/web.addr). Web sessions are portal sessions like telnet's, under
    /// the same connection and command limits.
    #[serde(with = "optional_addr")]
    pub web: Option<SocketAddr>,
    /// Origins (`scheme://host[:port]`) whose pages may open the webclient's
    /// WebSocket, besides the portal's own page (an Origin whose host is the
    /// request's Host); "*" allows any. A browser sends its page's origin,
    /// so this keeps other sites' pages from playing as their visitors.
    pub web_origins: Vec<String>,
    /// Largest WebSocket message taken from a web client, in bytes; a
    /// larger one closes the connection with code 1009 and a reason.
    pub web_max_message_bytes: usize,
    /// How long a web session whose socket dropped is kept for its page to
    /// resume it (its output waits within `output_queue`, and it holds its
    /// place in the connection limits); 0: a dropped socket ends the session.
    pub web_resume_ms: u64,
    /// The webclient speaks HTTPS and secure WebSockets (wss) on `web`,
    /// with the certificate and key of `tls_cert` and `tls_key` (the ones
    /// telnet over TLS uses, renewed the same way, without a restart);
    /// false (the default): plain HTTP and ws, as behind a reverse proxy
    /// that does TLS itself. Read at the portal's start.
    pub web_tls: bool,
    /// Reverse proxies in front of the webclient, as addresses or CIDR
    /// ranges (`"127.0.0.1"`, `"10.0.0.0/8"`). A request whose TCP peer is
    /// one of them is taken to come from the address its
    /// `X-Forwarded-For` header names (the right-most one that is not
    /// itself listed here), and the connection limits and command rates
    /// per address count that address. From any other peer the header is
    /// ignored: a client could write anything in it. Empty (the default):
    /// no proxy is believed.
    pub web_proxies: Vec<crate::cidr::Cidr>,
    /// Telnet over TLS listener; "" (the default): none. Port 0 picks a
    /// free port (written to run/tls.addr). Everything a telnet session
    /// has works the same over it. `evctl init --tls` turns it on with a
    /// self-signed certificate.
    #[serde(with = "optional_addr")]
    pub tls: Option<SocketAddr>,
    /// The TLS listener's certificate chain (PEM, the server's own
    /// certificate first), relative to the game directory. A renewed file
    /// is served to new connections as soon as it is written (and at
    /// each `evctl reload`); one that cannot be used is refused, logged,
    /// and the previous certificate kept.
    pub tls_cert: PathBuf,
    /// The private key of `tls_cert` (PEM: PKCS#8, PKCS#1 or SEC1),
    /// relative to the game directory; keep it mode 0600.
    pub tls_key: PathBuf,
    /// Seconds a TLS connection may take to finish its handshake before
    /// it is closed. Until then it holds its place in
    /// `max_connections_per_ip` and `max_connections`.
    pub tls_handshake_timeout_s: u64,
    /// Days before the TLS certificate's end (its notAfter) from which the
    /// portal warns, in its log and to the game's admins in play, when it
    /// reads the certificate (at the start, a renewal, each `evctl
    /// reload`). Nothing is refused: an expired certificate is still
    /// served. 0: no warning.
    pub tls_expiry_warn_days: u64,
    /// Longest input line in bytes; a longer line is refused with a message.
    pub max_line_bytes: usize,
    /// Inputs per session held while not yet applied by a server (e.g. during a
    /// reload). When full the portal stops reading that socket; input is never dropped.
    pub input_queue: usize,
    /// Output lines queued per session. A client that falls this far behind is
    /// disconnected, so it cannot stall the Link or other players.
    pub output_queue: usize,
    /// Output bytes queued per session; past it the client is disconnected
    /// as for `output_queue`. Bounds what a player who does not read costs
    /// the portal however long the lines sent to them are.
    pub output_queue_bytes: usize,
    /// Commands a session may send per second, on average. Past it (and the
    /// burst) the player is told once and their input waits, unread, until
    /// the rate allows it: input is never dropped.
    pub commands_per_second: u32,
    /// Commands a session may send at once before `commands_per_second`
    /// applies (a client's aliases, a pasted script).
    pub command_burst: u32,
    /// Like `commands_per_second`, for all connections from one IP address
    /// together, so opening more connections does not multiply the rate.
    pub commands_per_second_per_ip: u32,
    /// Like `command_burst`, for all connections from one IP address together.
    pub command_burst_per_ip: u32,
    /// Seconds a connection may take to log in before it is told and closed
    /// (counted again from a logout); 0: no limit.
    pub login_timeout_s: u64,
    /// Seconds a logged-in player may send no command before they are told
    /// and disconnected; 0 (the default): no limit.
    pub idle_timeout_s: u64,
    /// Open connections allowed from one IP address.
    pub max_connections_per_ip: usize,
    /// Open connections in all.
    pub max_connections: usize,
    /// Largest number of sessions in one Sync chunk sent to a new server.
    pub sync_chunk: usize,
    /// Offer MCCP2 (compressed output, telnet option 86) to telnet clients.
    pub mccp2: bool,
    /// A compressing session that has had no output this long gives its
    /// compressor (about 150 KiB resident) back; the stream goes on with a
    /// fresh one.
    pub mccp2_idle_release_ms: u64,
    /// Seconds without sending a connection anything before it is sent a
    /// telnet NOP, so a peer that vanished (or a NAT that forgot the
    /// connection) is found, and a client's own idle timer is kept from
    /// closing it; 0: never.
    pub keepalive_s: u64,
    /// The colours of a telnet client that never says what it shows (it
    /// does not answer TTYPE, or names a terminal that says nothing of
    /// colour): "ansi16" (what nearly every MUD client and terminal
    /// shows), "xterm256", "truecolour", or "plain" (no colour at all). A
    /// client that reports MTTS gets what it reports, a screen reader
    /// plain text.
    pub default_colours: crate::markup::Colours,
    /// Output waits at most this long after a client connects for it to
    /// say what it shows (its terminal type and capabilities, its
    /// character set), so the welcome screen is already in its colours.
    /// A client that answers, or refuses, sooner waits no longer; 0: never
    /// wait.
    pub negotiation_wait_ms: u64,
    /// Longest out-of-band message (a GMCP or MSDP subnegotiation) taken
    /// from a client, in bytes; a longer one is discarded as it arrives,
    /// and logged.
    pub max_oob_bytes: usize,
    /// Players are told of a pause (a reload's hand-over, a crashed server's
    /// restart) only once their input has waited this long, and told when it
    /// is over; 0 tells them at once. A reload takes milliseconds: a line to
    /// every player would cost more than the pause it announces.
    pub pause_notice_ms: u64,
    /// Threads serving connections. One serves tens of thousands of players
    /// and, on few cores, is faster than more; raise it on a many-core
    /// machine with much MCCP2 output.
    pub threads: usize,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            telnet: ([127, 0, 0, 1], 4000).into(),
            web: Some(([127, 0, 0, 1], 4001).into()),
            web_origins: Vec::new(),
            web_max_message_bytes: 64 * 1024,
            web_resume_ms: 60_000,
            web_tls: false,
            web_proxies: Vec::new(),
            tls: None,
            tls_cert: "tls/cert.pem".into(),
            tls_key: "tls/key.pem".into(),
            tls_handshake_timeout_s: 10,
            tls_expiry_warn_days: 14,
            max_line_bytes: 4096,
            input_queue: 256,
            output_queue: 4096,
            output_queue_bytes: 1024 * 1024,
            commands_per_second: 20,
            command_burst: 60,
            commands_per_second_per_ip: 60,
            command_burst_per_ip: 180,
            login_timeout_s: 120,
            idle_timeout_s: 0,
            max_connections_per_ip: 64,
            max_connections: 20_000,
            sync_chunk: 1000,
            mccp2: true,
            mccp2_idle_release_ms: 5000,
            keepalive_s: 60,
            default_colours: crate::markup::Colours::Ansi16,
            negotiation_wait_ms: 1000,
            max_oob_bytes: 8 * 1024,
            pause_notice_ms: 500,
            threads: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The server binary. Empty: `ev-server` beside the supervisor's own binary.
    /// A reload copies it to run/bin/<build-id> and starts the copy.
    pub binary: PathBuf,
    /// Reload by itself when `binary` is rebuilt (watched with inotify).
    pub auto_reload: bool,
    /// With `auto_reload`: how long the binary must stay unchanged after a
    /// change before the reload starts (a build writes it in steps).
    pub auto_reload_settle_ms: u64,
    /// How long a new server may take to start and attach to the portal.
    pub start_timeout_ms: u64,
    /// How long the old server may take to finish its work on a reload or stop.
    pub drain_timeout_ms: u64,
    /// Most commands applied in one transaction (group commit).
    pub max_batch: usize,
    /// The portal sends a heartbeat this often on every Link stream.
    pub heartbeat_ms: u64,
    /// A server that has not answered a heartbeat for this long is hung:
    /// the supervisor kills it and recovers as from a crash.
    pub heartbeat_timeout_ms: u64,
    /// Longest a batch of commands may take; past it the server aborts
    /// itself (and is recovered as from a crash) rather than stall every player.
    pub command_timeout_ms: u64,
    /// Threads running the game's deferred work (`Context::defer`) at once.
    pub deferred_workers: usize,
    /// Most pieces of deferred work waiting or running; past it
    /// `Context::defer` fails (the game's handler is told), so a flood of
    /// requests for slow work costs a bounded amount of memory.
    pub max_deferred: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            binary: PathBuf::new(),
            auto_reload: false,
            auto_reload_settle_ms: 500,
            start_timeout_ms: 10_000,
            drain_timeout_ms: 10_000,
            max_batch: 512,
            heartbeat_ms: 1_000,
            heartbeat_timeout_ms: 10_000,
            command_timeout_ms: 10_000,
            deferred_workers: 2,
            max_deferred: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Survives a crash of any ev process (WAL + synchronous=NORMAL).
    Normal,
    /// Also survives power loss.
    Full,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// SQLite file, relative to the game directory.
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Free space (MiB) the database's filesystem must have for a new server
    /// to start; below it a reload fails and the old server keeps serving.
    /// 0: not checked.
    pub min_free_mb: u64,
    /// A commit that fails on storage (disk full, read-only, I/O error) is
    /// retried after 50 ms, the wait doubling up to this, until it commits;
    /// meanwhile no command is answered.
    pub retry_max_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            path: "data/game.db".into(),
            synchronous: Synchronous::Normal,
            min_free_mb: 64,
            retry_max_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// argon2id memory cost in KiB (OWASP's minimum is 19456).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Failed logins, counted per connection, per account and per address,
    /// before each further attempt on any of them is answered late.
    pub failures_before_delay: u32,
    /// The delay, in milliseconds.
    pub failure_delay_ms: u64,
    /// Failed logins from one address before its attempts are refused
    /// outright (no password is checked) until it has failed none for
    /// `failure_window_s`. An account is never locked: its owner can always
    /// log in from another address, at worst `failure_delay_ms` late.
    pub failures_per_address: u32,
    /// How long a failure is remembered, in seconds, counted from the
    /// latest one.
    pub failure_window_s: u64,
    /// Accounts one address may create per hour (0: nobody may create one).
    pub creates_per_address_per_hour: u32,
    /// Accounts the whole game may create per minute (0: nobody may).
    pub creates_per_minute: u32,
    /// Passwords hashed at once. Each hash holds `argon2_memory_kib`, so the
    /// server's memory under any login flood stays below this many hashes'
    /// worth plus a small constant. 0: one per CPU core.
    pub password_workers: usize,
    /// Logins and account creations waiting for a free worker; when this
    /// many wait, a new one is told to try again in a moment.
    pub password_queue: usize,
    pub min_password_len: usize,
    pub max_name_len: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            failures_before_delay: 3,
            failure_delay_ms: 2_000,
            failures_per_address: 30,
            failure_window_s: 900,
            creates_per_address_per_hour: 10,
            creates_per_minute: 60,
            password_workers: 0,
            password_queue: 64,
            min_password_len: 4,
            max_name_len: 20,
        }
    }
}

impl AuthConfig {
    /// `password_workers`, with 0 resolved to the number of CPU cores.
    pub fn workers(&self) -> usize {
        match self.password_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// A crashed server is restarted at once; from the second crash in a row
    /// the wait doubles from this, up to `restart_backoff_max_ms`.
    pub restart_backoff_ms: u64,
    pub restart_backoff_max_ms: u64,
    /// Crashes in a row before the supervisor stops restarting the server.
    pub crash_loop_limit: u32,
    /// A build that reaches `crash_loop_limit` within this many seconds of
    /// taking over from another build is replaced by that other build (the
    /// last one known to serve), and players and admins are told why. 0:
    /// never fall back.
    pub fallback_window_s: u64,
    /// How long `evctl stop` waits for every process to exit before killing.
    pub stop_timeout_ms: u64,
    /// Where the supervisor serves Prometheus metrics (`GET /metrics`), as
    /// `ADDRESS:PORT` or a bare `PORT` (on 127.0.0.1); empty (the default):
    /// not served. Metrics carry no secrets but are not for the world: keep
    /// them on loopback or a private network. Port 0 picks a free port,
    /// written to run/metrics.addr. Read at start only.
    pub metrics: String,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            restart_backoff_ms: 250,
            restart_backoff_max_ms: 10_000,
            crash_loop_limit: 5,
            fallback_window_s: 300,
            stop_timeout_ms: 15_000,
            metrics: String::new(),
        }
    }
}

impl SupervisorConfig {
    /// `metrics` as an address: None when it is empty (metrics off), a bare
    /// port on 127.0.0.1. Err names the key and says what it takes.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, String> {
        let text = self.metrics.trim();
        if text.is_empty() {
            return Ok(None);
        }
        if let Ok(port) = text.parse::<u16>() {
            return Ok(Some(([127, 0, 0, 1], port).into()));
        }
        text.parse::<SocketAddr>().map(Some).map_err(|_| {
            format!(
                "key `supervisor.metrics` must be ADDRESS:PORT (e.g. \"127.0.0.1:9100\"), a port, or empty for none; not {text:?}"
            )
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// What is logged, as a tracing filter: `info`, `debug`, or per module
    /// (`info,ev_portal=debug`). The `EV_LOG` variable, if set, wins.
    pub filter: String,
    /// A log (logs/<process>.log) past this size is rotated.
    pub max_file_kib: u64,
    /// Rotated copies kept per log (`<process>.log.1` is the newest). With
    /// the defaults, three logs take at most about 3 × 4 × 16 MiB = 192 MiB.
    pub keep: usize,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            max_file_kib: 16 * 1024,
            keep: 3,
        }
    }
}

impl Config {
    /// Reads `path`. A missing or malformed file is an error naming it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: describe(&e, text),
        })?;
        config.validate().map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("portal.max_line_bytes", self.portal.max_line_bytes),
            ("portal.input_queue", self.portal.input_queue),
            ("portal.output_queue", self.portal.output_queue),
            ("portal.output_queue_bytes", self.portal.output_queue_bytes),
            (
                "portal.commands_per_second",
                self.portal.commands_per_second as usize,
            ),
            ("portal.command_burst", self.portal.command_burst as usize),
            (
                "portal.commands_per_second_per_ip",
                self.portal.commands_per_second_per_ip as usize,
            ),
            (
                "portal.command_burst_per_ip",
                self.portal.command_burst_per_ip as usize,
            ),
            (
                "portal.max_connections_per_ip",
                self.portal.max_connections_per_ip,
            ),
            ("portal.max_connections", self.portal.max_connections),
            ("portal.sync_chunk", self.portal.sync_chunk),
            ("portal.threads", self.portal.threads),
            ("portal.max_oob_bytes", self.portal.max_oob_bytes),
            (
                "portal.web_max_message_bytes",
                self.portal.web_max_message_bytes,
            ),
            (
                "portal.tls_handshake_timeout_s",
                self.portal.tls_handshake_timeout_s as usize,
            ),
            ("server.max_batch", self.server.max_batch),
            ("server.deferred_workers", self.server.deferred_workers),
            ("server.max_deferred", self.server.max_deferred),
            ("logs.max_file_kib", self.logs.max_file_kib as usize),
            ("auth.password_queue", self.auth.password_queue),
            (
                "auth.failures_per_address",
                self.auth.failures_per_address as usize,
            ),
            ("auth.failure_window_s", self.auth.failure_window_s as usize),
            ("game.crowd_size", self.game.crowd_size),
            ("server.heartbeat_ms", self.server.heartbeat_ms as usize),
            (
                "server.heartbeat_timeout_ms",
                self.server.heartbeat_timeout_ms as usize,
            ),
            (
                "server.command_timeout_ms",
                self.server.command_timeout_ms as usize,
            ),
            ("database.retry_max_ms", self.database.retry_max_ms as usize),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("key `{key}` must be greater than 0"));
            }
        }
        // One input is one Link event: it must fit in a Link message.
        let max_line = crate::link::MAX_BATCH_BYTES;
        if self.portal.max_line_bytes > max_line {
            return Err(format!(
                "key `portal.max_line_bytes` must be at most {max_line}"
            ));
        }
        // One message is one Link event, and its JSON may grow in the
        // conversion (an MSDP control byte becomes a six-byte escape).
        let max_oob = crate::link::MAX_BATCH_BYTES / 8;
        if self.portal.max_oob_bytes > max_oob {
            return Err(format!(
                "key `portal.max_oob_bytes` must be at most {max_oob}"
            ));
        }
        if self.portal.negotiation_wait_ms > MAX_NEGOTIATION_WAIT_MS {
            return Err(format!(
                "key `portal.negotiation_wait_ms` must be at most {MAX_NEGOTIATION_WAIT_MS}"
            ));
        }
        if self.portal.sync_chunk > MAX_SYNC_CHUNK {
            return Err(format!(
                "key `portal.sync_chunk` must be at most {MAX_SYNC_CHUNK}"
            ));
        }
        for origin in &self.portal.web_origins {
            if origin != "*" && !is_origin(origin) {
                return Err(format!(
                    "key `portal.web_origins`: {origin:?} is not an origin (scheme://host[:port], or \"*\")"
                ));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.logs.filter) {
            return Err(format!("key `logs.filter` is not a log filter: {e}"));
        }
        if self.portal.threads > MAX_PORTAL_THREADS {
            return Err(format!(
                "key `portal.threads` must be at most {MAX_PORTAL_THREADS}"
            ));
        }
        self.supervisor.metrics_addr()?;
        if self.auth.argon2_memory_kib < 8 * self.auth.argon2_parallelism.max(1) {
            return Err("key `auth.argon2_memory_kib` must be at least 8 × parallelism".into());
        }
        if self.auth.argon2_iterations == 0 || self.auth.argon2_parallelism == 0 {
            return Err("keys `auth.argon2_iterations` and `auth.argon2_parallelism` must be greater than 0".into());
        }
        Ok(())
    }

    /// Every key whose value differs in `other`, as `section.key` with both
    /// values as ev.toml writes them, in file order.
    pub fn differences(&self, other: &Config) -> Vec<Difference> {
        let table = |config: &Config| match toml::Value::try_from(config) {
            Ok(toml::Value::Table(table)) => table,
            _ => toml::Table::new(),
        };
        let (mine, theirs) = (table(self), table(other));
        let mut found = Vec::new();
        for (section, keys) in &mine {
            let (Some(keys), Some(other_keys)) = (
                keys.as_table(),
                theirs.get(section).and_then(toml::Value::as_table),
            ) else {
                continue;
            };
            for (key, was) in keys {
                if let Some(now) = other_keys.get(key).filter(|now| *now != was) {
                    found.push(Difference {
                        key: format!("{section}.{key}"),
                        was: was.to_string(),
                        now: now.to_string(),
                    });
                }
            }
        }
        found
    }

    /// The file `evctl init` writes: every default, with the given addresses.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// An address that may be off: written as "" when it is, so ev.toml names
/// the key either way (TOML has no null).
mod optional_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim() {
            "" => Ok(None),
            addr => addr.parse().map(Some).map_err(|_| {
                serde::de::Error::custom(format!(
                    "{addr:?} is not an address: HOST:PORT with HOST an IP address, or \"\" for none"
                ))
            }),
        }
    }
}

/// Whether `text` is a web origin as a browser sends it: `http` or
/// `https`, `://`, a host and perhaps a port, and nothing after.
pub fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// One key that differs between two configs (see [`Config::differences`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `section.key`, as in ev.toml.
    pub key: String,
    pub was: String,
    pub now: String,
}

/// More threads than this would be a typo, not a tuning.
const MAX_PORTAL_THREADS: usize = 256;

/// A longer wait would leave every new player staring at nothing.
const MAX_NEGOTIATION_WAIT_MS: u64 = 10_000;

/// Sessions in one Sync chunk, at most: a chunk is one Link message, and
/// each snapshot takes a few hundred bytes with its `extra`.
const MAX_SYNC_CHUNK: usize = 5_000;

/// toml's message, reworded to lead with the line number.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let message = e.message().trim_end_matches('.');
    let snippet = line
        .and_then(|l| text.lines().nth(l - 1))
        .map(|s| format!(" (`{}`)", s.trim()))
        .unwrap_or_default();
    match line {
        Some(line) => format!("line {line}: {message}{snippet}"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/g/ev.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn written_defaults_read_back() {
        let c = Config::default();
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn the_webclient_is_on_unless_its_address_is_empty() {
        let c = Config::default();
        assert_eq!(c.portal.web, Some("127.0.0.1:4001".parse().unwrap()));
        let c = parse("[portal]\nweb = \"\"\n").unwrap();
        assert_eq!(c.portal.web, None);
        assert!(c.to_toml().contains("web = \"\""), "{}", c.to_toml());
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        let err = parse("[portal]\nweb = \"localhost\"\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("web"), "{err}");
        let c = parse("[portal]\nweb_origins = [\"https://play.example.org\", \"*\"]\n").unwrap();
        assert_eq!(c.portal.web_origins.len(), 2);
        let err = parse("[portal]\nweb_origins = [\"play.example.org\"]\n").unwrap_err();
        assert!(err.contains("portal.web_origins"), "{err}");
        let err = parse("[portal]\nweb_max_message_bytes = 0\n").unwrap_err();
        assert!(err.contains("portal.web_max_message_bytes"), "{err}");
    }

    #[test]
    fn web_proxies_are_addresses_or_ranges_and_a_bad_one_names_its_line() {
        let c = parse("[portal]\nweb_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"fd00::/8\"]\n")
            .unwrap();
        assert_eq!(c.portal.web_proxies.len(), 3);
        assert!(c.portal.web_proxies[1].contains("10.9.8.7".parse().unwrap()));
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        let err = parse("[portal]\nweb_tls = true\nweb_proxies = [\"proxy.local\"]\n").unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("proxy.local") && err.contains("CIDR"),
            "{err}"
        );
        assert!(!Config::default().portal.web_tls);
        assert!(parse("[portal]\nweb_tls = true\n").unwrap().portal.web_tls);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("[portal]\nmax_line_bytes = 10\ntelnett = \"x\"\n").unwrap_err();
        assert!(err.starts_with("/g/ev.toml: line 3"), "{err}");
        assert!(err.contains("telnett"), "{err}");
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let err = parse("[auth]\nargon2_iterations = \"two\"\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("argon2_iterations"), "{err}");
    }

    #[test]
    fn zero_limit_refused() {
        let err = parse("[portal]\ninput_queue = 0\n").unwrap_err();
        assert!(err.contains("portal.input_queue"), "{err}");
    }

    #[test]
    fn command_rates_must_be_positive_and_timeouts_may_be_off() {
        for key in [
            "output_queue_bytes",
            "commands_per_second",
            "command_burst",
            "commands_per_second_per_ip",
            "command_burst_per_ip",
        ] {
            let err = parse(&format!("[portal]\n{key} = 0\n")).unwrap_err();
            assert!(err.contains(&format!("portal.{key}")), "{err}");
        }
        let c = parse("[portal]\nlogin_timeout_s = 0\nidle_timeout_s = 0\n").unwrap();
        assert_eq!((c.portal.login_timeout_s, c.portal.idle_timeout_s), (0, 0));
    }

    #[test]
    fn limits_that_must_fit_a_link_message_are_bounded() {
        for (key, value) in [("max_line_bytes", "10000000"), ("sync_chunk", "1000000")] {
            let err = parse(&format!("[portal]\n{key} = {value}\n")).unwrap_err();
            assert!(err.contains(&format!("portal.{key}")), "{err}");
        }
    }

    #[test]
    fn telnet_rendering_settings() {
        let c = parse("[portal]\ndefault_colours = \"plain\"\n").unwrap();
        assert_eq!(c.portal.default_colours, crate::markup::Colours::None);
        for (name, colours) in [
            ("ansi16", crate::markup::Colours::Ansi16),
            ("xterm256", crate::markup::Colours::Xterm256),
            ("truecolour", crate::markup::Colours::Truecolour),
        ] {
            let c = parse(&format!("[portal]\ndefault_colours = \"{name}\"\n")).unwrap();
            assert_eq!(c.portal.default_colours, colours);
        }
        let err = parse("[portal]\ndefault_colours = \"rainbow\"\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("plain"), "{err}");
        assert!(
            Config::default()
                .to_toml()
                .contains("default_colours = \"ansi16\"")
        );
        for bad in ["max_oob_bytes = 0", "max_oob_bytes = 10000000"] {
            let err = parse(&format!("[portal]\n{bad}\n")).unwrap_err();
            assert!(err.contains("portal.max_oob_bytes"), "{err}");
        }
        let err = parse("[portal]\nnegotiation_wait_ms = 60000\n").unwrap_err();
        assert!(err.contains("portal.negotiation_wait_ms"), "{err}");
        assert_eq!(
            parse("[portal]\nnegotiation_wait_ms = 0\n")
                .unwrap()
                .portal
                .negotiation_wait_ms,
            0
        );
    }

    #[test]
    fn tls_is_off_unless_an_address_is_given() {
        let c = Config::default();
        assert_eq!(c.portal.tls, None);
        assert!(c.to_toml().contains("tls = \"\""), "{}", c.to_toml());
        let c = parse("[portal]\ntls = \"0.0.0.0:4003\"\n").unwrap();
        assert_eq!(c.portal.tls, Some("0.0.0.0:4003".parse().unwrap()));
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        let err = parse("[portal]\ntls = \"localhost\"\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("tls"), "{err}");
        let err = parse("[portal]\ntls_handshake_timeout_s = 0\n").unwrap_err();
        assert!(err.contains("portal.tls_handshake_timeout_s"), "{err}");
        assert_eq!(c.portal.tls_expiry_warn_days, 14);
        let c = parse("[portal]\ntls_expiry_warn_days = 0\n").unwrap();
        assert_eq!(c.portal.tls_expiry_warn_days, 0, "0 turns the warning off");
    }

    #[test]
    fn portal_threads_must_be_a_sane_count() {
        assert_eq!(parse("[portal]\nthreads = 4\n").unwrap().portal.threads, 4);
        for bad in ["0", "100000"] {
            let err = parse(&format!("[portal]\nthreads = {bad}\n")).unwrap_err();
            assert!(err.contains("portal.threads"), "{err}");
        }
    }

    #[test]
    fn metrics_are_off_by_default_and_a_bare_port_is_loopback() {
        let off = parse("").unwrap();
        assert_eq!(off.supervisor.metrics_addr(), Ok(None));
        let port = parse("[supervisor]\nmetrics = \"9100\"\n").unwrap();
        assert_eq!(
            port.supervisor.metrics_addr(),
            Ok(Some("127.0.0.1:9100".parse().unwrap()))
        );
        let v6 = parse("[supervisor]\nmetrics = \"[::1]:0\"\n").unwrap();
        assert_eq!(
            v6.supervisor.metrics_addr(),
            Ok(Some("[::1]:0".parse().unwrap()))
        );
        let err = parse("[supervisor]\nmetrics = \"localhost:9100\"\n").unwrap_err();
        assert!(err.contains("supervisor.metrics"), "{err}");
    }

    #[test]
    fn missing_file_names_it() {
        let err = Config::load(Path::new("/nonexistent/ev.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ev.toml"));
    }
}
