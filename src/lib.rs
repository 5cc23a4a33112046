//! ev: shared pieces of the portal, the server, the supervisor and evctl.
//!
//! # Layout
//! - [`pb`]: the generated Link and Control protobuf types (protos/). Only
//!   [`link`], the `link` modules of the portal and server, the supervisor's
//!   `control` and evctl use them; game logic never sees a prost struct.
//! - [`link`]: the Link's domain model, shared by the portal and the server:
//!   sessions, hellos, one event enum each way, the limits, the batcher and
//!   the protobuf conversion.
//! - [`config`]: `ev.toml`, its defaults and its error messages; [`cidr`]:
//!   the address ranges it lists (`portal.web_proxies`).
//! - [`gamedir`]: the layout of a game directory (run/, data/, logs/) and the
//!   socket paths in it.
//! - [`uds`]: tonic over Unix sockets, both ends.
//! - [`logging`]: tagged tracing lines to stderr, which whoever spawns the
//!   process points at logs/<process>.log.
//! - [`process`]: whether a pid lives, its command line and age (sysinfo).
//! - [`version`]: the Link protocol version and this build's id.
//! - [`markup`]: the game's text markup (colour, bold) and its rendering per
//!   client: plain, 16, 256 or truecolour.
//! - [`text`]: what of a player's text may reach other players' screens.
//! - [`sys`]: the only module with `unsafe`: detaching a process from its
//!   terminal, pidfds, the allocator's mmap threshold and `malloc_trim`.
#![deny(unsafe_code)]

pub mod cidr;
pub mod config;
pub mod ctl;
pub mod gamedir;
pub mod link;
pub mod logging;
pub mod markup;
pub mod process;
pub mod sys;
pub mod text;
pub mod uds;
pub mod version;

/// Generated protobuf types. Package names carry a version so a breaking
/// schema can live beside the old one.
pub mod pb {
    pub mod link {
        tonic::include_proto!("ev.link.v1");
    }
    pub mod control {
        tonic::include_proto!("ev.control.v1");
    }
}
