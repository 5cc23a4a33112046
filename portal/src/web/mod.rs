//! The webclient: the page and its WebSocket on `portal.web`.
//!
//! - `GET /` and the page's files (`assets`, compiled into the binary).
//! - `GET /ws`: a WebSocket speaking ev's JSON messages to the page, or a
//!   mudstandards.org subprotocol to a third-party client (`protocol`).
//!
//! HTTP is hyper's (HTTP/1.1) under axum's router and WebSocket; this
//! module's own accept loop takes each connection's place in the
//! per-address and total limits (`address`, shared with telnet) before a
//! byte is read, as telnet's listener does, and a connection over them is
//! answered 503 with the reason. An upgraded socket moves its place to its
//! session, which keeps it while its page is away (`session`): a web session
//! waiting for a resume counts like a connected one.
//!
//! A web session is a portal session like a telnet one: the hub sees the
//! same events (Opened, Input, Oob, ClientInfo, Closed), so it survives
//! reloads and crashes, is counted in `evctl status` and MSSP, and obeys
//! the same command rate, input credit, output queue and timeouts. What is
//! its own: the socket may drop and come back (`resume`), and outputs and
//! inputs are numbered on the wire so that a resume misses and repeats
//! nothing.
//!
//! With `portal.web_tls` the listener speaks TLS (HTTPS and wss) with the
//! certificate of `tls`, which telnet over TLS shares: a connection takes
//! its place in the limits at the accept, as a plain one does, and does its
//! handshake within `portal.tls_handshake_timeout_s` in its own task.
//!
//! Behind a reverse proxy (a peer in `portal.web_proxies`) a connection
//! carries many players' requests, so it takes no place itself: each
//! request takes the place of the address `X-Forwarded-For` names
//! (`forwarded`), and a WebSocket's session keeps it, so the limits count
//! players, not the proxy.
//!
//! The origin rule: a browser's request names its page's origin, and only
//! the portal's own page (an Origin whose host is the request's Host) and
//! those listed in `portal.web_origins` may open a socket; a client that is
//! no browser sends none and is let in (it could claim any origin anyway).

mod assets;
mod forwarded;
pub mod protocol;
mod resume;
mod session;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::address::{Addresses, Slot};
use crate::hub::api::HubSender;
use crate::ids::SessionIds;
use crate::throttle::Rate;
use crate::timeout::Timeouts;
use protocol::{FromPage, Wire};
use resume::{Refused, Rejoin, Resumes};

/// The socket of one web client.
pub type Socket = WebSocket;

/// A new socket must say hello (or resume) within this.
const HELLO_DEADLINE: Duration = Duration::from_secs(10);
/// An HTTP request's head must arrive within this.
const HEADER_DEADLINE: Duration = Duration::from_secs(10);

/// What the webclient is allowed, from ev.toml.
#[derive(Debug, Clone)]
pub struct WebLimits {
    /// `game.name`, for the page's title.
    pub game: String,
    /// `portal.web_max_message_bytes`.
    pub max_message: usize,
    /// `portal.web_origins`, as written ("*": any).
    pub origins: Vec<String>,
    /// `portal.web_resume_ms`; zero: no resume.
    pub resume: Duration,
    pub max_line: usize,
    pub max_oob: usize,
    pub input_queue: usize,
    pub output_queue: usize,
    pub output_queue_bytes: usize,
    pub commands: Rate,
    pub timeouts: Timeouts,
    /// A ping after this long without sending anything; a socket that has
    /// sent nothing for three times this is taken for gone.
    pub keepalive: Option<Duration>,
    /// `portal.web_proxies`: peers whose `X-Forwarded-For` is believed.
    pub proxies: Vec<ev::cidr::Cidr>,
}

/// The listener's TLS (`portal.web_tls`).
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// `portal.tls_handshake_timeout_s`.
    pub handshake: Duration,
}

/// What every web connection and session shares.
pub struct Shared {
    pub hub: HubSender,
    pub limits: WebLimits,
    pub addresses: Addresses,
    pub ids: SessionIds,
    pub tracker: TaskTracker,
    pub stop: CancellationToken,
    resumes: Resumes,
    /// Places for connections over the limits that come to resume.
    probation: Arc<Semaphore>,
}

impl Shared {
    pub fn new(
        hub: HubSender,
        limits: WebLimits,
        addresses: Addresses,
        ids: SessionIds,
        tracker: TaskTracker,
        stop: CancellationToken,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            hub,
            limits,
            addresses,
            ids,
            tracker,
            stop,
            resumes: Resumes::default(),
            probation: Arc::new(Semaphore::new(PROBATION)),
        })
    }
}

/// One HTTP request's client, and its place in the limits until a
/// WebSocket session takes it: the connection's, or behind a proxy the
/// request's own.
#[derive(Clone)]
struct Conn {
    /// The client's address as the game sees it: the TCP peer, or the
    /// address a trusted proxy forwarded (no port).
    peer: String,
    place: Arc<Mutex<Place>>,
}

impl Conn {
    fn new(peer: String, place: Place) -> Conn {
        Conn {
            peer,
            place: Arc::new(Mutex::new(place)),
        }
    }

    /// What a request for `path` is answered instead of being served, if
    /// its place says so.
    fn refusal(&self, path: &str) -> Option<&'static str> {
        match &*lock(&self.place) {
            Place::ResumeOnly { refusal, .. } if path != "/ws" => Some(refusal),
            Place::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }
}

fn lock(place: &Mutex<Place>) -> std::sync::MutexGuard<'_, Place> {
    place
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A connection's standing in the connection limits.
enum Place {
    /// Admitted: its place, until a session takes it.
    Slot(Slot),
    /// Over the limits, so it may only resume a session (which has its
    /// place already): a player at the limit whose socket dropped must get
    /// back in. Such connections are few at a time ([`PROBATION`]) and
    /// brief (the header and hello deadlines).
    ResumeOnly {
        _permit: OwnedSemaphorePermit,
        refusal: &'static str,
    },
    /// Over the limits, and no room to wait for a resume either.
    Refused(&'static str),
    /// A socket took it.
    Taken,
}

/// Connections over the limits that may still resume, at once, in all.
const PROBATION: usize = 64;

/// The place of a connection (or, behind a proxy, a request) from `ip`.
fn admit(shared: &Shared, ip: IpAddr) -> Place {
    match shared.addresses.admit(ip) {
        Ok(slot) => Place::Slot(slot),
        Err(refusal) => match shared.probation.clone().try_acquire_owned() {
            Ok(permit) => Place::ResumeOnly {
                _permit: permit,
                refusal,
            },
            Err(_) => Place::Refused("The game is busy; please try again later."),
        },
    }
}

/// Where a connection's requests take their places.
#[derive(Clone)]
enum Admission {
    /// A client's own connection: one place, taken at the accept.
    Connection(Conn),
    /// A trusted proxy's connection, from this peer: each request takes
    /// the place of the address it forwards.
    Proxied(IpAddr),
}

/// Accepts web connections until the portal stops accepting.
pub async fn run(listener: TcpListener, tls: Option<Tls>, shared: Arc<Shared>) {
    let router = router(shared.clone());
    loop {
        let accepted = tokio::select! {
            _ = shared.stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("web accept failed: {e}");
                tokio::select! {
                    _ = shared.stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let admission = if forwarded::trusted(peer.ip(), &shared.limits.proxies) {
            Admission::Proxied(peer.ip())
        } else {
            let place = admit(&shared, peer.ip());
            // A refusal over TLS would cost a handshake, which a flood of
            // connections must not buy: closed, as telnet's TLS listener does.
            if tls.is_some() && matches!(place, Place::Refused(_)) {
                continue;
            }
            Admission::Connection(Conn::new(peer.to_string(), place))
        };
        let serving = Serving {
            peer,
            admission,
            router: router.clone(),
            shared: shared.clone(),
        };
        match &tls {
            Some(tls) => shared
                .tracker
                .spawn(handshake(stream, tls.clone(), serving)),
            None => shared.tracker.spawn(serving.serve(stream)),
        };
    }
}

/// Does a TLS connection's handshake within its deadline, then serves it.
/// Its place (if it has one) is held until then.
async fn handshake(stream: TcpStream, tls: Tls, serving: Serving) {
    let peer = serving.peer;
    let result = tokio::select! {
        _ = serving.shared.stop.cancelled() => return,
        r = tokio::time::timeout(tls.handshake, tls.acceptor.accept(stream)) => r,
    };
    match result {
        Ok(Ok(stream)) => serving.serve(stream).await,
        // Scanners and browsers that refuse the certificate end here.
        Ok(Err(e)) => tracing::debug!(%peer, "web TLS handshake failed: {e}"),
        Err(_) => {
            tracing::debug!(%peer, "web TLS handshake not done within {:?}; closed", tls.handshake)
        }
    }
}

/// What serving one connection needs.
struct Serving {
    peer: SocketAddr,
    admission: Admission,
    router: Router,
    shared: Arc<Shared>,
}

impl Serving {
    /// Serves one HTTP connection (and hands a WebSocket upgrade on). A
    /// request over the limits is answered 503 with the reason, but for a
    /// socket that resumes a session.
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Serving {
            peer,
            admission,
            router,
            shared,
        } = self;
        let io = TokioIo::new(stream);
        let mut http = hyper::server::conn::http1::Builder::new();
        // The deadline runs while hyper waits for a request's head, also
        // between keep-alive requests: an idle connection gives its place in
        // the limits back within it.
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_DEADLINE);
        let stop = shared.stop.clone();
        let service =
            hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                let router = router.clone();
                let conn = match &admission {
                    Admission::Connection(conn) => Ok(conn.clone()),
                    Admission::Proxied(proxy) => {
                        let headers = request
                            .headers()
                            .get_all("x-forwarded-for")
                            .iter()
                            .map(|v| v.as_bytes());
                        forwarded::client(*proxy, headers, &shared.limits.proxies)
                            .map(|ip| Conn::new(ip.to_string(), admit(&shared, ip)))
                    }
                };
                let answer = match conn {
                    Ok(conn) => {
                        let refuse = conn.refusal(request.uri().path());
                        request.extensions_mut().insert(conn);
                        refuse.map(refusal)
                    }
                    Err(why) => {
                        tracing::info!(%peer, "web request from a proxy refused: {why}");
                        Some((StatusCode::BAD_REQUEST, why).into_response())
                    }
                };
                async move {
                    match answer {
                        Some(answer) => Ok::<_, Infallible>(answer),
                        None => router.oneshot(request).await,
                    }
                }
            });
        let connection = http.serve_connection(io, service).with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "web connection: {e}");
                }
            }
            _ = stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
            }
        }
    }
}

/// The answer to every request of a connection over the limits.
fn refusal(message: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONNECTION, "close")],
        message,
    )
        .into_response()
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ws", any(upgrade))
        .route("/", get(assets::serve))
        .fallback(get(assets::serve))
        .with_state(shared)
}

/// Whether a page of `origin` may open a socket here, `host` being the
/// request's Host.
fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    origin.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host)
    })
}

/// What a socket reads into at a time; see `upgrade`.
const WS_READ_BUFFER: usize = 4 * 1024;

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = text(header::ORIGIN).map(str::to_owned);
    if !origin_allowed(
        origin.as_deref(),
        text(header::HOST),
        &shared.limits.origins,
    ) {
        tracing::info!(peer = %conn.peer, ?origin, "web socket refused: origin not allowed (portal.web_origins)");
        return (
            StatusCode::FORBIDDEN,
            "This origin may not open the game's socket.",
        )
            .into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let place = std::mem::replace(&mut *lock(&conn.place), Place::Taken);
    let slot = match place {
        Place::Slot(slot) => Ok(slot),
        Place::ResumeOnly { refusal, .. } | Place::Refused(refusal) => Err(refusal),
        Place::Taken => {
            return (
                StatusCode::CONFLICT,
                "This connection has a socket already.",
            )
                .into_response();
        }
    };
    let upgrade = upgrade
        .protocols([
            protocol::EV,
            protocol::JSON,
            protocol::GMCP,
            protocol::TERMINAL,
        ])
        .max_message_size(shared.limits.max_message)
        .max_frame_size(shared.limits.max_message)
        // tungstenite's 128 KiB default read buffer is held by every idle
        // socket: 150 KiB a web session against telnet's 8 (scripts/bench-web).
        // A page's messages are a few hundred bytes; a larger one still
        // arrives whole, read in more pieces.
        .read_buffer_size(WS_READ_BUFFER);
    let wire = Wire::from_protocol(upgrade.selected_protocol().and_then(|p| p.to_str().ok()));
    let peer = conn.peer;
    let tracker = shared.tracker.clone();
    let failed_peer = peer.clone();
    upgrade
        .on_failed_upgrade(
            move |e| tracing::debug!(peer = %failed_peer, "web socket upgrade failed: {e}"),
        )
        .on_upgrade(move |socket| {
            tracker.track_future(opened(socket, shared, peer, slot, origin, wire))
        })
}

/// A socket is open: a new session, or (ev's protocol) a resume. `slot`
/// is its place in the limits, or why it has none (then it may only resume).
async fn opened(
    mut socket: Socket,
    shared: Arc<Shared>,
    peer: String,
    slot: Result<Slot, &'static str>,
    origin: Option<String>,
    wire: Wire,
) {
    if wire != Wire::Ev {
        match slot {
            Ok(slot) => session::start(socket, shared, peer, slot, origin, wire).await,
            Err(refusal) => close(&mut socket, CLOSE_POLICY, refusal).await,
        }
        return;
    }
    let first = tokio::select! {
        _ = shared.stop.cancelled() => return,
        r = tokio::time::timeout(HELLO_DEADLINE, socket.recv()) => r,
    };
    let hello = match first {
        Ok(Some(Ok(Message::Text(text)))) => FromPage::parse(text.as_str()),
        Ok(Some(Ok(_))) => Err("the first message must be a hello".into()),
        Ok(_) => return,
        Err(_) => Err(format!("no hello within {HELLO_DEADLINE:?}")),
    };
    match hello {
        Ok(FromPage::Hello { resume: None, .. }) => match slot {
            Ok(slot) => session::start(socket, shared, peer, slot, origin, wire).await,
            Err(refusal) => {
                let _ = socket.send(Message::text(protocol::closed(refusal))).await;
                close(&mut socket, CLOSE_POLICY, refusal).await;
            }
        },
        Ok(FromPage::Hello {
            resume: Some(token),
            seen,
        }) => {
            // The session keeps the place it had; this connection's goes.
            drop(slot);
            match shared.resumes.take(&token, origin.as_deref()) {
                Ok(session) => {
                    if let Err(mpsc_error) = session.send(Rejoin { socket, seen }).await {
                        // The session ended in the meantime.
                        let Rejoin { socket, .. } = mpsc_error.0;
                        refuse_resume(socket).await;
                    }
                }
                Err(Refused::Origin) => {
                    tracing::info!(%peer, "web resume refused: the token belongs to another origin");
                    refuse_resume(socket).await;
                }
                Err(Refused::Unknown) => refuse_resume(socket).await,
            }
        }
        Ok(_) => {
            close(
                &mut socket,
                CLOSE_POLICY,
                "the first message must be a hello",
            )
            .await
        }
        Err(e) => close(&mut socket, CLOSE_POLICY, &e).await,
    }
}

/// The session cannot be resumed: the page must start anew.
pub(super) async fn refuse_resume(mut socket: Socket) {
    let reason = "This session is over (you were away too long, or the game was restarted).";
    let _ = socket.send(Message::text(protocol::closed(reason))).await;
    close(&mut socket, CLOSE_RESUME_REFUSED, "session over").await;
}

/// Close codes (RFC 6455 section 7.4, and ours in 4000-4999).
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_UNSUPPORTED: u16 = 1003;
pub const CLOSE_INVALID: u16 = 1007;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;
/// The session asked for is over.
pub const CLOSE_RESUME_REFUSED: u16 = 4000;
/// Another socket resumed this session.
pub const CLOSE_REPLACED: u16 = 4001;

/// Sends a close frame with `reason` (cut to fit a close frame's 123
/// bytes), within a deadline: a client that does not read gets no more.
pub async fn close(socket: &mut Socket, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = socket.send(Message::Close(Some(frame))).await;
        // Wait for the client's close, so the TCP close comes from it.
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_the_page_itself_listed_ones_and_clients_without_one() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(None, Some("x:1"), &none), "not a browser");
        assert!(origin_allowed(
            Some("http://127.0.0.1:4001"),
            Some("127.0.0.1:4001"),
            &none
        ));
        assert!(!origin_allowed(
            Some("http://evil.example"),
            Some("127.0.0.1:4001"),
            &none
        ));
        assert!(!origin_allowed(Some("null"), Some("127.0.0.1:4001"), &none));
        let listed = vec!["https://play.example.org".to_string()];
        assert!(origin_allowed(
            Some("https://play.example.org"),
            Some("10.0.0.1:4001"),
            &listed
        ));
        assert!(!origin_allowed(
            Some("https://other.example.org"),
            Some("10.0.0.1:4001"),
            &listed
        ));
        assert!(origin_allowed(
            Some("https://any.example"),
            None,
            &["*".to_string()]
        ));
    }
}
