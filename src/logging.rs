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
        let secs = now.as_secs();
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let t = secs % 86_400;
        write!(
            w,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z {}",
            t / 3600,
            t / 60 % 60,
            t % 60,
            now.subsec_millis(),
            self.0
        )
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

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm), so log lines read as UTC dates
/// without a date crate.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_782), (2026, 11, 25));
    }
}
