//! ev-loadgen against a small fake MUD in the same process.
//!
//! - `fake`: a telnet MUD with ev's grammar; flag files in its directory make
//!   it go dark (input held, as during a reload) or drop probe replies.
//! - `workloads`: every subcommand run through `ev_loadgen::run`, checking the
//!   counts it reports (never timings beyond what the fake forces).

mod fake;
mod workloads;
