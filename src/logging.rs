//! Logging: every process writes tracing lines to its stderr.
//!
//! Whoever spawns a process points its stderr at `logs/<process>.log`
//! (evctl for the supervisor, the supervisor for the portal and servers), so
//! panics and early failures land in the same file and logging never depends
//! on the parent staying alive. Each line carries a tag such as
//! `server#3/4242` (process, generation, pid), so the supervisor can pick one
//! server's lines out of a log that old and new servers share during a reload.

use std::fmt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// The tag a process of this name, generation and pid puts on its lines.
pub fn tag(process: &str, generation: u64, pid: u32) -> String {
    format!("[{process}#{generation}/{pid}]")
}

struct Tagged(String);

impl FormatTime for Tagged {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        write!(w, "{}.{:03} {}", now.as_secs(), now.subsec_millis(), self.0)
    }
}

/// Installs the subscriber (level from `EV_LOG`, default info) and a panic
/// hook that logs the panic as an error line with the tag.
pub fn init(process: &str, generation: u64) {
    let tag = tag(process, generation, std::process::id());
    let filter = EnvFilter::try_from_env("EV_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_timer(Tagged(tag))
        .try_init();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic: {info}");
        default(info);
    }));
}
