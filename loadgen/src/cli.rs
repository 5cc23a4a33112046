//! The command line. Defaults are ev's grammar; every text the tool sends or
//! looks for is an option, so the workloads run against any telnet MUD with a
//! create/connect login screen.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::pattern::NameStyle;

#[derive(Debug, Parser)]
#[command(
    name = "ev-loadgen",
    version,
    about = "Drives concurrent telnet sessions through a real login and measures",
    after_help = "Exit codes: 0 success, 1 failure (a run error, or reload found lost/doubled \
                  probes or broken sessions), 2 usage error."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub workload: Workload,
}

#[derive(Debug, Args)]
pub struct Common {
    /// The game's telnet address (loopback only).
    #[arg(long, global = true, default_value = "127.0.0.1:4000")]
    pub addr: String,
    /// Read the address from this file instead (ev writes GAME/run/telnet.addr).
    #[arg(long, global = true)]
    pub addr_file: Option<PathBuf>,
    /// Account names are this prefix plus the session index.
    #[arg(long, global = true, default_value = "bench")]
    pub prefix: String,
    /// How the index is written: letters (benchaaaa; ev allows letters only) or digits (bench0).
    #[arg(long, global = true, value_enum, default_value = "letters")]
    pub name_style: NameStyle,
    /// The password of every bench account.
    #[arg(long, global = true, default_value = "benchpass")]
    pub password: String,
    /// Command that creates an account.
    #[arg(long, global = true, default_value = "create {name} {password}")]
    pub create: String,
    /// Command that logs in to an existing account.
    #[arg(long, global = true, default_value = "connect {name} {password}")]
    pub connect: String,
    /// A line holding this marks a successful login ({name} is filled in)...
    #[arg(long, global = true, default_value = "Welcome")]
    pub logged_in: String,
    /// ...unless it holds this: the login screen (also what the reload check
    /// must not see after `--check-cmd`).
    #[arg(long, global = true, default_value = "Welcome to ")]
    pub login_screen: String,
    /// A line holding this after create means the name exists: connect instead.
    #[arg(long, global = true, default_value = "That name is taken")]
    pub taken: String,
    /// A line holding any of these ends the login as refused.
    #[arg(
        long,
        global = true,
        default_values = ["Wrong name or password", "Names are", "Passwords need", "Usage:", "Something went wrong"]
    )]
    pub login_failed: Vec<String>,
    /// Wait for the login screen before sending the login command.
    #[arg(long, global = true)]
    pub wait_banner: bool,
    /// The probe command; {token} is a unique word per probe.
    #[arg(long, global = true, default_value = "ping {token}")]
    pub probe: String,
    /// The probe's reply, found anywhere in a line.
    #[arg(long, global = true, default_value = "pong {token}")]
    pub reply: String,
    /// Logins in flight at once.
    #[arg(long, global = true, default_value_t = 64)]
    pub login_concurrency: usize,
    /// Longest time one login may take.
    #[arg(long, global = true, default_value_t = 30_000)]
    pub login_timeout_ms: u64,
    /// Longest time all the logins of a run may take together.
    #[arg(long, global = true, default_value_t = 120_000)]
    pub login_phase_timeout_ms: u64,
    #[arg(long, global = true, default_value_t = 5_000)]
    pub connect_timeout_ms: u64,
    /// Accept MCCP2 compression (telnet option 86) when the game offers it,
    /// as most MUD clients do; without it every option is refused.
    #[arg(long, global = true)]
    pub mccp2: bool,
    /// Agree to every telnet option the game offers, as a full MUD client
    /// does (MCCP2 included): TTYPE with MTTS, NAWS, CHARSET (UTF-8), GMCP
    /// with Core.Hello, MSDP, MSSP, EOR, SGA, ECHO. What negotiation costs.
    #[arg(long, global = true)]
    pub all_options: bool,
    /// Connect from these source addresses (loopback, comma-separated), in
    /// turn, so a game's per-address limits see several hosts.
    #[arg(long, global = true, value_delimiter = ',')]
    pub bind: Vec<std::net::IpAddr>,
    /// Print one JSON object on stdout (the human line goes to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Worker threads of the tool (1: a single-threaded runtime, leaving the
    /// other cores to the game).
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,
}

#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Create accounts PREFIX0..PREFIX(N-1) (an existing one is logged in instead).
    Provision {
        #[arg(long)]
        sessions: u32,
    },
    /// Log in one account, retrying while the game is not up yet; reports the time.
    Login {
        /// Account name (default: the first bench account).
        #[arg(long)]
        name: Option<String>,
        /// Create the account if it does not exist.
        #[arg(long)]
        create_missing: bool,
        /// Keep retrying a refused connection for this long.
        #[arg(long, default_value_t = 10_000)]
        retry_ms: u64,
    },
    /// N sessions each sending R probes a second (open loop, spread evenly).
    Latency {
        #[arg(long)]
        sessions: u32,
        /// Probes per second per session.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// How long to wait for the last replies.
        #[arg(long, default_value_t = 3_000)]
        drain_ms: u64,
    },
    /// N sessions in a closed loop: the next probe when the reply comes.
    Throughput {
        #[arg(long)]
        sessions: u32,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Probes in flight per session.
        #[arg(long, default_value_t = 1)]
        depth: u32,
        #[arg(long, default_value_t = 3_000)]
        drain_ms: u64,
    },
    /// N listeners in one room; one more session (index N) speaks.
    Broadcast {
        #[arg(long)]
        listeners: u32,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// What the speaker sends.
        #[arg(long, default_value = "say {token}")]
        say: String,
        /// What the speaker sees of its own say (closed loop waits for it).
        #[arg(long, default_value = "You say, \"{token}\"")]
        echo: String,
        /// What a listener sees.
        #[arg(long, default_value = "says, \"{token}\"")]
        heard: String,
        /// Says per second; 0 is a closed loop on the echo.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Says in flight in the closed loop.
        #[arg(long, default_value_t = 1)]
        depth: u32,
        #[arg(long, default_value_t = 3_000)]
        drain_ms: u64,
    },
    /// N sessions, P of them probing, across reloads (and kills) of the game;
    /// then every session is checked. Exits 1 on any lost or doubled probe,
    /// closed connection or session no longer logged in.
    Reload(ReloadArgs),
    /// Log in N sessions and hold them (idle) while CMD runs, or for a time.
    Hold {
        #[arg(long)]
        sessions: u32,
        /// Run with `sh -c` once every session is in; its output is reported.
        #[arg(long)]
        then: Option<String>,
        /// Seconds to hold (after CMD, if any).
        #[arg(long, default_value_t = 0.0)]
        duration: f64,
    },
    /// An attack on the game while P logged-in players probe: what the
    /// attacker got and what the players saw. Bounded in count and time.
    Flood(Box<FloodArgs>),
}

/// What a `flood` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloodKind {
    /// Each attempt: connect, send --attempt, close at once.
    Login,
    /// Each attempt: connect, send --create-cmd for a new name, read the answer.
    Create,
    /// Password guesses, a new connection each: --attempt with {token} a
    /// new guess, answer read; --owner logs in meanwhile from --owner-from.
    Brute,
    /// --flooder says --line-chars-long lines as fast as it may to
    /// --listeners sessions that never read.
    Chat,
    /// --count connections that never send a byte, held for --duration.
    Silent,
}

#[derive(Debug, Args)]
pub struct FloodArgs {
    #[arg(long, value_enum)]
    pub kind: FloodKind,
    /// The attacker's source addresses (loopback, comma-separated), taken
    /// in turn; the players connect from --bind.
    #[arg(long, value_delimiter = ',', required = true)]
    pub from: Vec<std::net::IpAddr>,
    /// Logged-in players probing meanwhile (accounts PREFIX + index; 0: none).
    #[arg(long, default_value_t = 100)]
    pub players: u32,
    /// Probes per second per player.
    #[arg(long, default_value_t = 2.0)]
    pub player_rate: f64,
    /// Attempts (login, create, brute) or connections (silent) in all.
    #[arg(long, default_value_t = 1000)]
    pub count: u32,
    /// Attempts or connections being made at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: u32,
    /// Seconds the flood may last (it also ends at --count); for silent,
    /// how long the connections are held.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds of probing before the flood starts and after it ends.
    #[arg(long, default_value_t = 2.0)]
    pub calm: f64,
    /// How long an attempt waits for its answer.
    #[arg(long, default_value_t = 10_000)]
    pub answer_timeout_ms: u64,
    /// The account attacked (login, brute).
    #[arg(long, default_value = "victim")]
    pub target: String,
    /// What an attempt sends ({name}: --target; {token}: a new word each time).
    #[arg(long, default_value = "connect {name} wrong{token}")]
    pub attempt: String,
    /// Login: wait for each attempt's answer instead of closing at once.
    #[arg(long)]
    pub wait_answer: bool,
    /// Create: accounts CREATE_PREFIX + index, with --password.
    #[arg(long, default_value = "flood")]
    pub create_prefix: String,
    /// Brute: the account's owner, logging in with --password meanwhile.
    #[arg(long)]
    pub owner: Option<String>,
    /// Brute: where the owner connects from.
    #[arg(long)]
    pub owner_from: Option<std::net::IpAddr>,
    /// Brute: the owner logs in this often during the flood (first at once).
    #[arg(long, default_value_t = 5_000)]
    pub owner_every_ms: u64,
    /// Chat: sessions LISTENER_PREFIX + index that log in and never read.
    #[arg(long, default_value_t = 25)]
    pub listeners: u32,
    #[arg(long, default_value = "listen")]
    pub listener_prefix: String,
    /// Chat: the account that floods.
    #[arg(long, default_value = "flooder")]
    pub flooder: String,
    /// Chat: what the flooder sends ({text}: the filler).
    #[arg(long, default_value = "say {text}")]
    pub say: String,
    /// Chat: what the flooder sees of its own say.
    #[arg(long, default_value = "You say")]
    pub echo: String,
    /// Chat: characters in each line sent.
    #[arg(long, default_value_t = 4000)]
    pub line_chars: usize,
    /// Chat: says sent and not yet echoed, at most (enough to stay over
    /// the game's burst, and a bound on what waits in the socket).
    #[arg(long, default_value_t = 100)]
    pub in_flight: u32,
    /// Run this with `sh -c` --kill-after-ms into the flood (e.g. kill -9 of
    /// the server).
    #[arg(long)]
    pub kill_cmd: Option<String>,
    #[arg(long, default_value_t = 5_000)]
    pub kill_after_ms: u64,
    /// How long players wait for their last replies.
    #[arg(long, default_value_t = 10_000)]
    pub drain_ms: u64,
    /// NAME=TEXT: the first line holding TEXT (login screen lines aside)
    /// ends an attempt as NAME; tried in order. Defaults: ev's texts.
    #[arg(
        long = "outcome",
        default_values = [
            "refused_address=Too many failed logins from your address",
            "refused_creates_here=Too many new accounts from your address",
            "refused_creates=Too many new accounts are being made",
            "refused_connections=Too many connections",
            "busy=busy with other logins",
            "wrong=Wrong name or password",
            "taken=That name is taken",
            "login_timeout=did not log in in time",
            "ok=Welcome",
        ]
    )]
    pub outcomes: Vec<String>,
    /// A line holding this is a notice that input is being slowed (counted).
    #[arg(long, default_value = "too fast")]
    pub slow_notice: String,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    #[arg(long)]
    pub sessions: u32,
    /// Sessions that probe (the first P); the rest stay idle.
    #[arg(long, default_value_t = 100)]
    pub probers: u32,
    #[arg(long, default_value_t = 20)]
    pub interval_ms: u64,
    /// How many times to run --reload-cmd.
    #[arg(long, default_value_t = 1)]
    pub reloads: u32,
    /// Run with `sh -c`.
    #[arg(long, default_value = "evctl reload")]
    pub reload_cmd: String,
    /// How many times to run --kill-cmd (after the reloads).
    #[arg(long, default_value_t = 0)]
    pub kills: u32,
    /// Run with `sh -c`, e.g. `kill -9 $(cat GAME/run/server.pid)`.
    #[arg(long)]
    pub kill_cmd: Option<String>,
    /// Time between two commands.
    #[arg(long, default_value_t = 1_000)]
    pub spacing_ms: u64,
    /// Probing before the first command.
    #[arg(long, default_value_t = 1_000)]
    pub warmup_ms: u64,
    /// Probing after the last command.
    #[arg(long, default_value_t = 1_000)]
    pub settle_ms: u64,
    /// Longest time one command may run.
    #[arg(long, default_value_t = 60_000)]
    pub cmd_timeout_ms: u64,
    /// The reload command's own dark time is the number after this.
    #[arg(long, default_value = "dark for ")]
    pub dark_marker: String,
    /// Sent by every session at the end; the reply must hold --check-expect
    /// and not the login screen.
    #[arg(long, default_value = "look")]
    pub check_cmd: String,
    #[arg(long, default_value = "Limbo")]
    pub check_expect: String,
    /// How long to wait for the last replies and for each check.
    #[arg(long, default_value_t = 5_000)]
    pub drain_ms: u64,
}
