//! Serves the metrics over HTTP: `GET /metrics` on `supervisor.metrics`.
//!
//! A small responder on hyper's HTTP/1 server (hyper comes with tonic):
//! hyper parses the request, and everything a client controls is bounded,
//! so a scanner or a stuck client costs little and never hangs anything:
//! the request head may take [`MAX_REQUEST_BYTES`] (past it hyper answers
//! 431) and [`HEADER_TIMEOUT`] to arrive, a connection lives at most
//! [`CONNECTION_TIMEOUT`] and serves one request, and at most
//! [`MAX_CONNECTIONS`] are open at once (more are closed at the accept).
//! A path other than `/metrics` is 404, a method other than GET or HEAD 405.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use crate::metrics::{self, Format};
use crate::supervisor::Shared;

/// The largest request head read (hyper's smallest buffer): a scrape's is a
/// few hundred bytes.
const MAX_REQUEST_BYTES: usize = 8192;
/// How long a client may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may last, answer included.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 8;

/// Binds `addr` (before the runtime serves anything, so a taken port fails
/// the start with a plain reason).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves until the supervisor stops.
pub(crate) async fn serve(shared: Arc<Shared>, listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("metrics: cannot serve: {e}");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: do not spin on it.
                tracing::warn!("metrics: accept failed: {e}");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    () = shared.stop.cancelled() => return,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("metrics: {MAX_CONNECTIONS} connections open; closing {peer}'s");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            connection(shared, stream, peer).await;
            drop(permit);
        });
    }
}

async fn connection(shared: Arc<Shared>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BYTES)
        .keep_alive(false);
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(respond(&shared, request).await) }
    });
    let served = http.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, served).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("metrics: {peer}: {e}"),
        Err(_) => tracing::debug!(
            "metrics: {peer}: closed after {} s",
            CONNECTION_TIMEOUT.as_secs()
        ),
    }
}

async fn respond(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "Not found: metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "Use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let format = Format::from_accept(accept);
    match metrics::scrape(shared, format).await {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            response
        }
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The metrics could not be encoded\n",
        ),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
