//! ev-portal: the long-lived process that holds every player connection.
//!
//! # Layout
//! - `listener`: accepts telnet connections, plain and over TLS, enforces
//!   the connection limits.
//! - `tls`: the TLS listener's certificate, renewed without a restart.
//! - `address`: per IP address, for every protocol: open connections and
//!   the command bucket they share (`bucket`).
//! - `session`: one task per connection: socket ⇄ `telnet` ⇄ hub, with
//!   bounded input credit and a bounded output queue (`outqueue`), its
//!   command rate limit (`throttle`) and login and idle timeouts (`timeout`).
//! - `telnet`: the sans-IO telnet parser and line assembler.
//! - `options`: every telnet option's state (RFC 1143's Q method), sans IO;
//!   `negotiation`: what each option the portal speaks means (SGA, TTYPE
//!   and MTTS, NAWS, CHARSET, MSSP, MCCP2, EOR, ECHO, GMCP, MSDP), sans
//!   IO; `render`: the game's text on the client's screen (colours from
//!   MTTS, prompts ended with EOR or GA); `gmcp` and `msdp`: out-of-band
//!   data both ways; `charset`: the client's character set both ways;
//!   `mssp`: the MSSP table; `mccp`: the compressed half of a connection.
//! - `hub`: the one owner of the session table; routes input to the active
//!   server, output to players, and runs the reload hand-over; tells players
//!   of pauses, including inputs left unanswered (`unanswered`). A directory
//!   of one file per concept; `link`, `session`, `listener` and `outqueue`
//!   import only its `api`.
//! - `web`: the webclient on `portal.web`: the page and its WebSocket
//!   (over TLS with `portal.web_tls`, on `tls`'s certificate), web sessions
//!   that outlive a dropped socket and resume, clients' addresses from
//!   `X-Forwarded-For` behind `portal.web_proxies`; `ids`: the session ids
//!   every listener takes from.
//! - `trim`: gives memory back to the system after large frees.
//! - `link`: the Link and PortalAdmin gRPC services on run/portal.sock: the
//!   portal's side of the stream. The Link's domain model (sessions, events,
//!   limits, batching, the protobuf conversion) is the shared `ev::link`,
//!   which the hub speaks; `link` is the only module here that sees
//!   protobuf types.
//!
//! Data flows one way: connection → session → hub → Link → server, and
//! server → Link → hub → session → connection.
#![forbid(unsafe_code)]

mod address;
mod bucket;
mod charset;
mod expiry;
#[doc(hidden)]
pub mod fuzzing;
mod gmcp;
mod hub;
mod ids;
mod link;
mod listener;
mod mccp;
mod msdp;
mod mssp;
mod negotiation;
mod options;
mod outqueue;
mod render;
mod session;
pub mod telnet;
mod throttle;
mod timeout;
mod tls;
mod trim;
mod unanswered;
mod web;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use ev::config::Config;
use ev::gamedir::GameDir;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long connection tasks get to flush their last output at exit.
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// Runs the portal until `shutdown` resolves or PortalAdmin.Shutdown completes.
pub async fn run(
    game: GameDir,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    game.check_socket_paths()?;
    game.create_dirs()?;
    let listener = tokio::net::TcpListener::bind(config.portal.telnet)
        .await
        .with_context(|| {
            format!(
                "binding the telnet listener on {} (portal.telnet in ev.toml)",
                config.portal.telnet
            )
        })?;
    let addr = listener.local_addr()?;
    write_addr(&game.telnet_addr_path(), addr)?;
    tracing::info!(%addr, "telnet listening");
    // One certificate for every listener that speaks TLS, renewed by one watch.
    let certificate = if config.portal.tls.is_some() || config.portal.web_tls {
        Some(load_certificate(&game, &config)?)
    } else {
        None
    };
    let web_listener = listen_web(&game, &config, certificate.as_ref()).await?;
    let tls = match (config.portal.tls, &certificate) {
        (Some(tls_addr), Some((_, acceptor))) => {
            Some(listen_tls(&game, tls_addr, acceptor.clone()).await?)
        }
        _ => {
            let _ = std::fs::remove_file(game.tls_addr_path());
            None
        }
    };
    let certificate = certificate.map(|(certificate, _)| certificate);

    let stop_accepting = CancellationToken::new();
    let stop_link = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (hub_tx, hub_rx) = hub::api::channel();
    if let Some(certificate) = &certificate {
        certificate.tell_staff_through(hub_tx.clone());
    }
    let hub = hub::Hub::new(
        hub_rx,
        hub_tx.clone(),
        hub::HubConfig {
            sync_chunk: config.portal.sync_chunk,
            tick: Some(hub::TICK),
            heartbeat: Duration::from_millis(config.server.heartbeat_ms),
            telnet_addr: addr.to_string(),
            pause_notice: Duration::from_millis(config.portal.pause_notice_ms),
        },
        stop_accepting.clone(),
    );

    let link_stop = stop_link.clone();
    let link = tokio::spawn({
        let socket = game.link_socket();
        let hub_tx = hub_tx.clone();
        let certificate = certificate.clone();
        async move { link::serve(&socket, hub_tx, certificate, link_stop.cancelled_owned()).await }
    });
    let limits = listener::Limits {
        max_line: config.portal.max_line_bytes,
        max_oob: config.portal.max_oob_bytes,
        default_colours: config.portal.default_colours,
        negotiation_wait: Duration::from_millis(config.portal.negotiation_wait_ms),
        input_queue: config.portal.input_queue,
        output_queue: config.portal.output_queue,
        output_queue_bytes: config.portal.output_queue_bytes,
        commands: throttle::Rate {
            per_second: config.portal.commands_per_second,
            burst: config.portal.command_burst,
        },
        timeouts: timeout::Timeouts::from_secs(
            config.portal.login_timeout_s,
            config.portal.idle_timeout_s,
        ),
        mccp2: config
            .portal
            .mccp2
            .then(|| Duration::from_millis(config.portal.mccp2_idle_release_ms)),
        mssp: std::sync::Arc::new(mssp::Facts {
            name: config.game.name.clone(),
            started_at_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            port: addr.port(),
            tls_port: tls.as_ref().map(|t| t.addr.port()),
            mccp2: config.portal.mccp2,
            players: hub.players(),
        }),
        keepalive: (config.portal.keepalive_s > 0)
            .then(|| Duration::from_secs(config.portal.keepalive_s)),
        tls_handshake: Duration::from_secs(config.portal.tls_handshake_timeout_s),
    };
    let watch_certificate = certificate
        .as_ref()
        .map(|c| tokio::spawn(c.clone().watch(stop_accepting.clone())));
    let listeners = listener::Listeners {
        telnet: listener,
        tls: tls.map(|t| (t.listener, t.acceptor)),
    };
    // Every listener counts in one table and takes ids from one sequence.
    let addresses = address::Addresses::new(address::AddressLimits {
        per_ip: config.portal.max_connections_per_ip,
        total: config.portal.max_connections,
        commands_per_second: config.portal.commands_per_second_per_ip,
        command_burst: config.portal.command_burst_per_ip,
    });
    let ids = ids::SessionIds::new();
    let web_accept = web_listener.map(|(listener, tls)| {
        let shared = web::Shared::new(
            hub_tx.clone(),
            web_limits(&config, &limits),
            addresses.clone(),
            ids.clone(),
            tracker.clone(),
            stop_accepting.clone(),
        );
        tokio::spawn(web::run(listener, tls, shared))
    });
    let accept = tokio::spawn(listener::run(
        listeners,
        hub_tx.clone(),
        limits,
        addresses,
        ids,
        stop_accepting.clone(),
        tracker.clone(),
    ));

    let trim = tokio::spawn(trim::after_frees());
    let hub_task = tokio::spawn(hub.run());
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => {
            tracing::info!("signal: shutting down");
            let (tx, rx) = tokio::sync::oneshot::channel();
            hub_tx.send(hub::api::HubEvent::Admin(hub::api::AdminRequest::Shutdown {
                message: "The game is shutting down. Goodbye!".into(),
                timeout: Duration::from_millis(config.server.drain_timeout_ms),
                reply: tx,
            }));
            let _ = rx.await;
        }
        r = link => {
            stop_accepting.cancel();
            r.context("Link service task")??;
            anyhow::bail!("the Link service stopped");
        }
        _ = hub_task => {}
    }
    stop_accepting.cancel();
    let _ = accept.await;
    if let Some(web_accept) = web_accept {
        let _ = web_accept.await;
    }
    if let Some(watch) = watch_certificate {
        let _ = watch.await;
    }
    tracker.close();
    if tokio::time::timeout(FLUSH_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not flush within {FLUSH_DEADLINE:?}");
    }
    stop_link.cancel();
    trim.abort();
    let _ = std::fs::remove_file(game.link_socket());
    let _ = std::fs::remove_file(game.web_addr_path());
    let _ = std::fs::remove_file(game.web_url_path());
    let _ = std::fs::remove_file(game.tls_addr_path());
    tracing::info!("portal stopped");
    Ok(())
}

/// Binds `portal.web`, if set, and writes the bound address to
/// run/web.addr and the page's URL to run/web.url (both removed when it is
/// not set). With `portal.web_tls`, also the acceptor its connections'
/// handshakes go through.
async fn listen_web(
    game: &GameDir,
    config: &Config,
    certificate: Option<&(std::sync::Arc<tls::Certificate>, tokio_rustls::TlsAcceptor)>,
) -> anyhow::Result<Option<(tokio::net::TcpListener, Option<web::Tls>)>> {
    let addr_file = game.web_addr_path();
    let Some(addr) = config.portal.web else {
        let _ = std::fs::remove_file(&addr_file);
        let _ = std::fs::remove_file(game.web_url_path());
        return Ok(None);
    };
    let tls = match (config.portal.web_tls, certificate) {
        (true, Some((certificate, _))) => Some(web::Tls {
            // The webclient speaks HTTP/1.1 only.
            acceptor: certificate
                .acceptor(vec![b"http/1.1".to_vec()])
                .context("the webclient's TLS configuration (portal.web_tls)")?,
            handshake: Duration::from_secs(config.portal.tls_handshake_timeout_s),
        }),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "binding the webclient listener on {addr} (portal.web in ev.toml; \"\" turns it off)"
        )
    })?;
    let addr = listener.local_addr()?;
    write_addr(&addr_file, addr)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}/");
    write_text(&game.web_url_path(), &url)?;
    tracing::info!(%addr, "webclient listening: {url}");
    Ok(Some((listener, tls)))
}

/// The webclient's limits: its own keys, and the ones every session obeys.
fn web_limits(config: &Config, limits: &listener::Limits) -> web::WebLimits {
    web::WebLimits {
        game: config.game.name.clone(),
        max_message: config.portal.web_max_message_bytes,
        origins: config.portal.web_origins.clone(),
        resume: Duration::from_millis(config.portal.web_resume_ms),
        max_line: limits.max_line,
        max_oob: limits.max_oob,
        input_queue: limits.input_queue,
        output_queue: limits.output_queue,
        output_queue_bytes: limits.output_queue_bytes,
        commands: limits.commands,
        timeouts: limits.timeouts,
        keepalive: limits.keepalive,
        proxies: config.portal.web_proxies.clone(),
    }
}

/// Writes the address a listener bound to `path` (run/telnet.addr,
/// run/tls.addr) whole: a reader never sees half of it.
fn write_addr(path: &std::path::Path, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    write_text(path, &addr.to_string())
}

/// Writes `text` and a line end to `path` whole.
fn write_text(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{text}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))
}

/// The TLS listener, bound.
struct TlsListener {
    listener: tokio::net::TcpListener,
    addr: std::net::SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
}

/// Reads the certificate and key (`portal.tls_cert`, `portal.tls_key`). One
/// that cannot be used stops the start: an operator who turned TLS on
/// wants to hear why it is not on.
fn load_certificate(
    game: &GameDir,
    config: &Config,
) -> anyhow::Result<(std::sync::Arc<tls::Certificate>, tokio_rustls::TlsAcceptor)> {
    let files = tls::Files {
        cert: game.path(&config.portal.tls_cert),
        key: game.path(&config.portal.tls_key),
    };
    tls::Certificate::load(files, config.portal.tls_expiry_warn_days).with_context(|| {
        let users = match (config.portal.tls.is_some(), config.portal.web_tls) {
            (true, true) => "portal.tls and portal.web_tls",
            (false, true) => "portal.web_tls",
            _ => "portal.tls",
        };
        format!("reading the TLS certificate (portal.tls_cert and portal.tls_key in ev.toml, for {users})")
    })
}

/// Binds `portal.tls`, writing the bound address to run/tls.addr.
async fn listen_tls(
    game: &GameDir,
    addr: std::net::SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
) -> anyhow::Result<TlsListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the TLS listener on {addr} (portal.tls in ev.toml)"))?;
    let addr = listener.local_addr()?;
    write_addr(&game.tls_addr_path(), addr)?;
    tracing::info!(%addr, "telnet over TLS listening");
    Ok(TlsListener {
        listener,
        addr,
        acceptor,
    })
}

/// The portal's async runtime: `threads` 1 (the default) runs every
/// connection, the hub and the Link on one thread. Its tasks hand each other
/// work all the time (a line read, to the hub, to the Link, back), and on
/// two cores one thread did 30% more commands a second than two workers
/// waking each other; more pay only where cores are many and MCCP2 is busy.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    }
    .enable_all()
    .build()
}

/// Resolves on SIGTERM or SIGINT. SIGHUP is ignored: the portal outlives
/// terminals and reloads, and must never stop because of one.
pub async fn signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => tracing::info!("SIGHUP ignored by the portal"),
        }
    }
}
