//! ev-loadgen against a small fake MUD in the same process.
//!
//! - `fake`: a telnet MUD with ev's grammar; flag files in its directory make
//!   it go dark (input held, as during a reload) or drop probe replies.
//! - `workloads`: every subcommand run through `ev_loadgen::run`, checking the
//!   counts it reports (never timings beyond what the fake forces).

// A test that fails should say where: unwrap, expect and panic are how.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fake;
mod workloads;
