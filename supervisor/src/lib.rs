//! ev-supervisor: runs one game's portal and server, restarts them when they
//! crash, hands over to a new server on reload, and answers evctl.
//!
//! # Layout
//! - `supervisor`: the shared state and the supervisor's life ([`run`]):
//!   lock, bind the control socket, start the portal, keep going until a
//!   stop, then the graceful stop.
//! - `settings`: ev.toml as read at start and again at each reload, and
//!   which changed keys only a restart applies.
//! - `pidfile`: run/supervisor.pid, flock-ed for the supervisor's whole life.
//! - `child`: spawning one process (own process group, output appended to
//!   logs/<name>.log) and watching it until it exits.
//! - `binary`: server binaries copied to run/bin/<build-id> (content hash),
//!   so a half-written rebuild is never started.
//! - `launch`: starting the portal (ready when `PortalAdmin.Status` answers)
//!   and a server (ready when attached), and the per-child exit monitors that
//!   tell an expected exit from a crash.
//! - `restart`: the keeper task: restarts a crashed portal or server, with
//!   backoff and the crash-loop limit.
//! - `reload`: the hand-over from the serving server to a new one.
//! - `autoreload`: reloads when the server binary is rebuilt
//!   (`server.auto_reload`, inotify through the `notify` crate).
//! - `logrotate`: keeps logs/*.log under `logs.max_file_kib`, with
//!   `logs.keep` numbered copies (copy and truncate).
//! - `logtail`: a failed server's last lines out of the shared server.log.
//! - `status`: the status report, with `sysinfo` figures.
//! - `metrics` (what a scrape reports: the supervisor's counts, the
//!   portal's, the processes' figures; `prometheus-client` encodes them) and
//!   `exporter` (`GET /metrics` over HTTP on `supervisor.metrics`).
//! - `notify`: systemd's READY/RELOADING/STOPPING over `$NOTIFY_SOCKET`.
//! - `sdwatch`: systemd's watchdog (`WATCHDOG=1`, earned through the shared
//!   state and the portal) and the `STATUS=` line.
//! - `control` (the Control service evctl calls) and `portal_client`
//!   (PortalAdmin calls to the portal): the only modules that see pb types.
//!
//! # Flow
//! ```text
//! evctl ──control.sock──► control ──► reload / status / stop
//!                                       │
//! restart (keeper) ──► launch ──► child (spawn, wait) ── binary (copy)
//!                        └──► portal_client ──portal.sock──► portal
//! ```
#![forbid(unsafe_code)]

mod autoreload;
mod binary;
mod child;
mod control;
mod exporter;
mod launch;
mod logrotate;
mod logtail;
mod metrics;
mod notify;
mod pidfile;
mod portal_client;
mod reload;
mod restart;
mod sdwatch;
mod settings;
mod status;
mod supervisor;
mod watchdog;

pub use supervisor::{GOODBYE, Options, run};
