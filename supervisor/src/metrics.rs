//! The game's metrics, as Prometheus reads them (`supervisor.metrics`).
//!
//! The supervisor serves them because it lives as long as the game: it
//! outlives every server generation, restarts the portal, and already knows
//! reloads, crashes and each process's figures. What it does not know it
//! asks the portal on each scrape (`PortalAdmin.Status`): the sessions and
//! the counters the portal's hub keeps, which carry on across servers.
//!
//! Nothing is counted twice: the supervisor's own counts are its `State`
//! (reloads, restarts, crashes) and the reloads' dark times below; the
//! portal's are passed through as the portal reported them. A portal
//! restart starts its counters afresh, which Prometheus takes as a counter
//! reset (`ev_portal_start_time_seconds` shows when).
//!
//! Names follow Prometheus's conventions: an `ev_` prefix, base units
//! (seconds, bytes), `_total` on counters (the encoder adds it).

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::portal_client::{self, PortalStatus};
use crate::status::Usage;
use crate::supervisor::{Role, Shared};

/// Which text format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The Prometheus text format, version 0.0.4: what a client that asks
    /// for nothing in particular gets.
    Prometheus,
    /// OpenMetrics 1.0, for a scraper whose `Accept` names it.
    OpenMetrics,
}

impl Format {
    pub fn from_accept(accept: &str) -> Format {
        if accept.contains("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Upper bounds of the dark-time buckets, in seconds: a reload is dark for
/// milliseconds; seconds mean trouble.
const DARK_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every successful reload's dark time (Drain to Ready).
#[derive(Debug, Clone)]
pub(crate) struct DarkTimes(Histogram);

impl Default for DarkTimes {
    fn default() -> DarkTimes {
        DarkTimes(Histogram::new(DARK_BUCKETS))
    }
}

impl DarkTimes {
    pub fn observe(&self, micros: u64) {
        self.0.observe(micros as f64 / 1e6);
    }
}

/// How long a scrape waits for the portal before leaving its figures out.
const PORTAL_TIMEOUT: Duration = Duration::from_secs(2);

/// One scrape: the state, the portal's answer and the processes' figures,
/// taken now and encoded in `format`.
pub(crate) async fn scrape(shared: &Shared, format: Format) -> Result<String, std::fmt::Error> {
    let mut snapshot = shared.read(|s| Snapshot {
        reloads: s.reloads,
        reload_failures: s.reload_failures,
        restarts: s.restarts,
        crashes: s.crashes,
        crash_loops: s.crash_loops,
        crash_looped: s.crash_looped,
        fallbacks: s.fallbacks,
        portal_crashes: s.portal_crashes,
        serving_generation: s.serving().map(|p| p.generation),
        pids: [
            Some(("supervisor", std::process::id())),
            s.portal.as_ref().map(|p| ("portal", p.pid)),
            s.servers
                .values()
                .find(|p| p.role == Role::Serving)
                .map(|p| ("server", p.child.pid)),
        ]
        .into_iter()
        .flatten()
        .collect(),
        ..Snapshot::default()
    });
    let pids: Vec<u32> = snapshot.pids.iter().map(|&(_, pid)| pid).collect();
    let database = shared.game.root().join(&shared.config().database.path);
    let (portal, figures, outbox) = tokio::join!(
        tokio::time::timeout(PORTAL_TIMEOUT, shared.portal.status()),
        tokio::task::spawn_blocking(move || crate::status::usage(&pids)),
        tokio::task::spawn_blocking(move || outbox_rows(&database)),
    );
    snapshot.outbox_rows = outbox.ok().flatten();
    snapshot.portal = match portal {
        Ok(Ok(status)) => Some(status),
        Ok(Err(e)) => {
            tracing::debug!("metrics: {e}");
            None
        }
        Err(_) => {
            tracing::warn!(
                "metrics: the portal did not answer within {} s",
                PORTAL_TIMEOUT.as_secs()
            );
            None
        }
    };
    let figures = figures.unwrap_or_default();
    snapshot.usage = snapshot
        .pids
        .iter()
        .filter_map(|&(name, pid)| figures.get(&pid).map(|u| (name, *u)))
        .collect();

    let mut registry = Registry::default();
    registry.register(
        "ev_reload_dark_seconds",
        "How long each reload kept players' input waiting: from the Drain sent to the old server to Ready from the new one",
        shared.dark_times.0.clone(),
    );
    registry.register_collector(Box::new(snapshot));
    let mut text = String::new();
    match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &registry)?,
    }
    Ok(text)
}

/// The rows in the game database's outbox, read from the database itself so
/// the figure is there while no server runs (when it matters most). Read
/// only, and never waiting on the server's writes for long. None when the
/// database or its outbox is not there (yet).
fn outbox_rows(database: &std::path::Path) -> Option<u64> {
    use rusqlite::{Connection, OpenFlags};
    let conn = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.busy_timeout(Duration::from_millis(200)).ok()?;
    conn.query_row("SELECT count(*) FROM outbox", [], |row| row.get(0))
        .map_err(|e| tracing::debug!("metrics: counting the outbox: {e}"))
        .ok()
}

/// What one scrape reports besides the dark times.
#[derive(Debug, Default)]
struct Snapshot {
    reloads: u64,
    reload_failures: u64,
    restarts: u64,
    crashes: u64,
    crash_loops: u64,
    crash_looped: bool,
    fallbacks: u64,
    /// None when the database could not be read.
    outbox_rows: Option<u64>,
    portal_crashes: u64,
    serving_generation: Option<u64>,
    pids: Vec<(&'static str, u32)>,
    usage: Vec<(&'static str, Usage)>,
    /// None when the portal did not answer.
    portal: Option<PortalStatus>,
}

type Encoder<'a> = DescriptorEncoder<'a>;

fn counter(e: &mut Encoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A sample's value: counts are written as integers, the rest as floats.
#[derive(Debug, Clone, Copy)]
enum Value {
    Count(u64),
    Real(f64),
}

fn gauge(e: &mut Encoder, name: &str, help: &str, value: Value) -> std::fmt::Result {
    let encoder = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    match value {
        Value::Count(n) => ConstGauge::new(n).encode(encoder),
        Value::Real(x) => ConstGauge::new(x).encode(encoder),
    }
}

/// One series per `(label value, value)`, under the label `key`.
fn labelled(
    e: &mut Encoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    key: &str,
    series: &[(&str, Value)],
) -> std::fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, metric_type)?;
    for &(label, value) in series {
        let labels = [(key, label)];
        let encoder = family.encode_family(&labels)?;
        match (metric_type, value) {
            (MetricType::Counter, Value::Count(n)) => ConstCounter::new(n).encode(encoder)?,
            (MetricType::Counter, Value::Real(x)) => ConstCounter::new(x).encode(encoder)?,
            (_, Value::Count(n)) => ConstGauge::new(n).encode(encoder)?,
            (_, Value::Real(x)) => ConstGauge::new(x).encode(encoder)?,
        }
    }
    Ok(())
}

fn flag(on: bool) -> Value {
    Value::Count(u64::from(on))
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut e;
        counter(
            e,
            "ev_reloads",
            "Reloads that handed every session to a new server.",
            self.reloads,
        )?;
        counter(
            e,
            "ev_reload_failures",
            "Reloads that failed; the server that served kept serving.",
            self.reload_failures,
        )?;
        counter(
            e,
            "ev_server_restarts",
            "Server starts after the serving server crashed, hung or was killed.",
            self.restarts,
        )?;
        counter(
            e,
            "ev_server_crashes",
            "Servers that went away without handing over, serving or starting: a crash, a kill, a hang the watchdog ended.",
            self.crashes,
        )?;
        counter(
            e,
            "ev_server_crash_loops",
            "Times the server failed supervisor.crash_loop_limit times in a row and was left down.",
            self.crash_loops,
        )?;
        gauge(
            e,
            "ev_server_crash_looped",
            "1 while the server is left down after a crash loop (until a reload).",
            flag(self.crash_looped),
        )?;
        counter(
            e,
            "ev_server_fallbacks",
            "Times a build that crash-looped soon after taking over was replaced by the build that served before it.",
            self.fallbacks,
        )?;
        if let Some(rows) = self.outbox_rows {
            gauge(
                e,
                "ev_outbox_rows",
                "Output the server committed that the portal has not yet confirmed delivered (rows of the database's outbox); a next server re-sends them.",
                Value::Count(rows),
            )?;
        }
        gauge(
            e,
            "ev_server_serving",
            "1 while a server serves the game.",
            flag(self.serving_generation.is_some()),
        )?;
        if let Some(generation) = self.serving_generation {
            gauge(
                e,
                "ev_server_generation",
                "Generation of the serving server: one more at each server start.",
                Value::Count(generation),
            )?;
        }
        counter(
            e,
            "ev_portal_crashes",
            "Times the portal exited unexpectedly (and was restarted; its players were disconnected).",
            self.portal_crashes,
        )?;
        let rss: Vec<(&str, Value)> = self
            .usage
            .iter()
            .map(|(name, u)| (*name, Value::Count(u.rss_bytes)))
            .collect();
        labelled(
            e,
            "ev_process_resident_memory_bytes",
            "Resident memory of the supervisor, the portal and the serving server.",
            MetricType::Gauge,
            "process",
            &rss,
        )?;
        let cpu: Vec<(&str, Value)> = self
            .usage
            .iter()
            .map(|(name, u)| (*name, Value::Real(u.cpu_ms as f64 / 1000.0)))
            .collect();
        labelled(
            e,
            "ev_process_cpu_seconds",
            "CPU time used by the supervisor, the portal and the serving server (a new server starts from 0).",
            MetricType::Counter,
            "process",
            &cpu,
        )?;
        gauge(
            e,
            "ev_portal_up",
            "1 if the portal answered this scrape; the portal's figures are left out when it did not.",
            flag(self.portal.is_some()),
        )?;
        if let Some(portal) = &self.portal {
            encode_portal(e, portal)?;
        }
        Ok(())
    }
}

/// The portal's figures: its sessions and its hub's counters.
fn encode_portal(e: &mut Encoder, p: &PortalStatus) -> std::fmt::Result {
    let c = &p.counters;
    gauge(
        e,
        "ev_portal_start_time_seconds",
        "When the portal started, in Unix time: its counters count from then.",
        Value::Real(p.started_at_ms as f64 / 1000.0),
    )?;
    // Every protocol seen since the portal started, so a count that falls to
    // none shows as 0 rather than vanishing.
    let mut protocols: Vec<&str> = p
        .sessions_by_protocol
        .keys()
        .chain(c.sessions_opened.keys())
        .map(String::as_str)
        .collect();
    protocols.sort_unstable();
    protocols.dedup();
    let open: Vec<(&str, Value)> = protocols
        .iter()
        .map(|&proto| {
            let n = p.sessions_by_protocol.get(proto).copied().unwrap_or(0);
            (proto, Value::Count(n))
        })
        .collect();
    labelled(
        e,
        "ev_sessions",
        "Open player connections, by protocol.",
        MetricType::Gauge,
        "protocol",
        &open,
    )?;
    let opened: Vec<(&str, Value)> = c
        .sessions_opened
        .iter()
        .map(|(proto, &n)| (proto.as_str(), Value::Count(n)))
        .collect();
    labelled(
        e,
        "ev_sessions_opened",
        "Player connections opened, by protocol.",
        MetricType::Counter,
        "protocol",
        &opened,
    )?;
    gauge(
        e,
        "ev_players",
        "Players logged in: connections the server has logged in to an account.",
        Value::Count(p.logged_in),
    )?;
    counter(
        e,
        "ev_inputs_received",
        "Inputs players sent (command lines, and out-of-band messages such as GMCP), each numbered to be applied exactly once.",
        c.inputs_received,
    )?;
    counter(
        e,
        "ev_inputs_applied",
        "Inputs a server applied, committed and acknowledged.",
        c.inputs_applied,
    )?;
    counter(
        e,
        "ev_inputs_replayed",
        "Inputs handed to a new server again because the one that had them crashed before acknowledging them.",
        c.inputs_replayed,
    )?;
    counter(
        e,
        "ev_inputs_quarantined",
        "Inputs dropped because they crashed the server again when replayed alone (their players were told).",
        c.inputs_quarantined,
    )?;
    gauge(
        e,
        "ev_inputs_pending",
        "Inputs received and not yet acknowledged by a server.",
        Value::Count(p.buffered_inputs),
    )?;
    if let Some(h) = &c.link_round_trip {
        round_trips(e, h)?;
    }
    Ok(())
}

fn round_trips(e: &mut Encoder, h: &portal_client::Histogram) -> std::fmt::Result {
    let mut metric = e.encode_descriptor(
        "ev_link_round_trip_seconds",
        "Heartbeat round trips between the portal and each attached server, over the Link, as the portal's hub times them.",
        None,
        MetricType::Histogram,
    )?;
    metric.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portal_client::PortalCounters;

    fn encode(snapshot: Snapshot, format: Format) -> String {
        let mut registry = Registry::default();
        let dark = DarkTimes::default();
        dark.observe(4_000);
        registry.register("ev_reload_dark_seconds", "Dark time", dark.0.clone());
        registry.register_collector(Box::new(snapshot));
        let mut text = String::new();
        match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &registry),
        }
        .unwrap();
        text
    }

    fn snapshot() -> Snapshot {
        let mut portal = PortalStatus {
            logged_in: 2,
            buffered_inputs: 1,
            started_at_ms: 1_700_000_000_500,
            ..PortalStatus::default()
        };
        portal.sessions_by_protocol.insert("telnet".into(), 3);
        portal.counters = PortalCounters {
            inputs_received: 10,
            inputs_applied: 9,
            inputs_replayed: 2,
            inputs_quarantined: 0,
            sessions_opened: [("telnet".to_owned(), 5), ("websocket".to_owned(), 1)].into(),
            link_round_trip: Some(portal_client::Histogram {
                buckets: vec![(0.001, 4), (f64::INFINITY, 1)],
                sum_seconds: 0.5,
                count: 5,
            }),
        };
        Snapshot {
            reloads: 3,
            restarts: 1,
            crashes: 1,
            fallbacks: 1,
            outbox_rows: Some(4),
            serving_generation: Some(5),
            usage: vec![(
                "portal",
                Usage {
                    rss_bytes: 1024,
                    cpu_ms: 1500,
                },
            )],
            portal: Some(portal),
            ..Snapshot::default()
        }
    }

    #[test]
    fn the_prometheus_text_has_help_type_and_each_series() {
        let text = encode(snapshot(), Format::Prometheus);
        for line in [
            "# HELP ev_reloads_total Reloads that handed every session to a new server.",
            "# TYPE ev_reloads_total counter",
            "ev_reloads_total 3",
            "ev_server_restarts_total 1",
            "ev_server_generation 5",
            "ev_server_crash_looped 0",
            "ev_server_fallbacks_total 1",
            "ev_outbox_rows 4",
            "ev_portal_up 1",
            "ev_portal_start_time_seconds 1700000000.5",
            "ev_sessions{protocol=\"telnet\"} 3",
            "ev_sessions{protocol=\"websocket\"} 0",
            "ev_sessions_opened_total{protocol=\"telnet\"} 5",
            "ev_players 2",
            "ev_inputs_received_total 10",
            "ev_inputs_applied_total 9",
            "ev_inputs_replayed_total 2",
            "ev_inputs_quarantined_total 0",
            "ev_inputs_pending 1",
            "ev_process_resident_memory_bytes{process=\"portal\"} 1024",
            "ev_process_cpu_seconds_total{process=\"portal\"} 1.5",
            "# TYPE ev_link_round_trip_seconds histogram",
            "ev_link_round_trip_seconds_bucket{le=\"0.001\"} 4",
            "ev_link_round_trip_seconds_bucket{le=\"+Inf\"} 5",
            "ev_link_round_trip_seconds_count 5",
            "# TYPE ev_reload_dark_seconds histogram",
            "ev_reload_dark_seconds_bucket{le=\"0.005\"} 1",
            "ev_reload_dark_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
        // Every family has its HELP, and it is not the OpenMetrics format.
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps, "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn the_outbox_is_counted_from_the_database_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("game.db");
        // No database yet: no figure, and none is created.
        assert_eq!(outbox_rows(&path), None);
        assert!(!path.exists());
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE outbox (session_id INTEGER, seq INTEGER);
             INSERT INTO outbox VALUES (1, 1), (1, 2), (2, 1);",
        )
        .unwrap();
        assert_eq!(outbox_rows(&path), Some(3));
    }

    #[test]
    fn without_the_portal_its_figures_are_left_out() {
        let text = encode(
            Snapshot {
                portal: None,
                ..snapshot()
            },
            Format::Prometheus,
        );
        assert!(text.lines().any(|l| l == "ev_portal_up 0"), "{text}");
        assert!(!text.contains("ev_inputs_received"), "{text}");
        assert!(text.contains("ev_reloads_total 3"), "{text}");
    }

    #[test]
    fn openmetrics_when_asked_for() {
        let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(Format::from_accept(accept), Format::OpenMetrics);
        assert_eq!(Format::from_accept("*/*"), Format::Prometheus);
        let text = encode(snapshot(), Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE ev_reloads counter"), "{text}");
    }
}
