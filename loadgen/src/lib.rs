//! ev-loadgen: drives many concurrent telnet sessions through a real login and
//! measures what players feel: round-trip latency, throughput, broadcast
//! delivery, and the dark time and losses across reloads.
//!
//! It is not tied to ev: the address, the login grammar, the probe and its
//! reply, and the reload and kill commands are options with ev's defaults, so
//! the same workloads run against any telnet MUD with a create/connect login
//! screen. It only targets loopback addresses, and every loop in it is
//! bounded in time.
//!
//! # Layout
//! - `cli`: the command line (clap); `game`: what it resolves to.
//! - `telnet`: sans-IO decoder (strips IAC sequences, refuses every option
//!   but MCCP2 when `--mccp2` accepts it) and line splitter.
//! - `inbound`: bytes in → lines out: telnet, and inflating MCCP2's stream.
//! - `pattern`: command templates, reply patterns, probe tokens, account names.
//! - `client`: one session: socket → inbound → lines, and the login dialogue.
//! - `fleet`: logging in many sessions with bounded concurrency, every
//!   session that is in still reading while the others log in.
//! - `probe`: the probe bookkeeping (token → send time → reply) and the open
//!   and closed loops that drive it.
//! - `stats`: percentiles and the per-client gaps of the reload workload.
//! - `workload`: provision, login, latency, throughput, broadcast, reload, hold,
//!   flood (attacks from other loopback addresses while players probe).
//! - `report`: the human line and the JSON object of a run.
//! - `limits`: the open-file limit, raised at start.
//!
//! Data flow of a run: `cli` → `game` → `workload` → `fleet` (logins) →
//! `client`s driven by `probe` loops → `stats` → `report`.
#![forbid(unsafe_code)]

mod cli;
mod client;
mod fleet;
mod game;
mod inbound;
mod limits;
mod pattern;
mod probe;
mod report;
mod stats;
mod telnet;
mod workload;

use std::sync::Arc;

pub use cli::{Cli, Common, FloodArgs, FloodKind, ReloadArgs, Workload};
pub use report::Outcome;

/// Runs the workload `cli` names: raises the open-file limit, resolves the
/// game, builds the runtime and returns the outcome.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let limit = limits::raise_open_files()
        .map_err(|e| anyhow::anyhow!("raising the open-file limit: {e}"))?;
    limits::check_sessions(workload::sessions_needed(&cli.workload), limit)?;
    let game = Arc::new(game::Game::from_common(&cli.common)?);
    let runtime = if cli.common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.common.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(workload::run(game, cli.workload))
}
