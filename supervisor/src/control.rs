//! The Control service evctl speaks, on run/control.sock (mode 0600, in the
//! 0700 run directory). Besides `portal_client`, the only module that sees pb
//! types: it converts the supervisor's answers into replies.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ev::pb::control::{
    ProcessInfo, ReloadReply, ReloadRequest, StatusReply, StatusRequest, StopReply, StopRequest,
    WaitReadyReply, WaitReadyRequest,
    control_server::{Control, ControlServer},
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::supervisor::Shared;
use crate::{reload, status};

/// How often the supervisor checks that its socket file is still there.
const SOCKET_CHECK: Duration = Duration::from_secs(1);

/// Binds run/control.sock; the connections on it, and on the socket bound
/// again whenever the file is deleted or replaced, arrive on the stream.
pub(crate) fn bind(path: &Path) -> std::io::Result<ReceiverStream<std::io::Result<UnixStream>>> {
    let listener = ev::uds::bind_listener(path)?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(keep_bound(path.to_owned(), listener, tx));
    Ok(ReceiverStream::new(rx))
}

/// Without its socket file a live game cannot be stopped or reloaded by
/// evctl (a `rm -rf run/*` or a tmp cleaner does it), so the file is
/// checked and the socket bound anew when it went.
async fn keep_bound(
    path: PathBuf,
    mut listener: UnixListener,
    tx: mpsc::Sender<std::io::Result<UnixStream>>,
) {
    let mut bound = identity(&path);
    let mut check = tokio::time::interval(SOCKET_CHECK);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if tx.send(accepted.map(|(stream, _)| stream)).await.is_err() {
                    return;
                }
            }
            _ = check.tick() => {
                if identity(&path) == bound {
                    continue;
                }
                match ev::uds::bind_listener(&path) {
                    Ok(fresh) => {
                        tracing::warn!("{} was deleted or replaced; bound it again", path.display());
                        listener = fresh;
                        bound = identity(&path);
                    }
                    Err(e) => tracing::error!("{} is gone and cannot be bound again: {e}", path.display()),
                }
            }
            _ = tx.closed() => return,
        }
    }
}

/// Which file `path` is (device and inode), if it exists.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Serves until `done`: through the stop too, so `evctl status` still
/// answers while the children are shutting down.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    incoming: ReceiverStream<std::io::Result<UnixStream>>,
    done: CancellationToken,
) {
    let result = tonic::transport::Server::builder()
        .add_service(ControlServer::new(ControlService { shared }))
        .serve_with_incoming_shutdown(incoming, done.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::error!("control service: {e}");
    }
}

struct ControlService {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let r = status::report(&self.shared).await;
        Ok(Response::new(StatusReply {
            processes: r
                .processes
                .into_iter()
                .map(|p| ProcessInfo {
                    name: p.name.into(),
                    pid: p.pid,
                    state: p.state.into(),
                    uptime_ms: p.uptime_ms,
                    rss_bytes: p.rss_bytes,
                    cpu_ms: p.cpu_ms,
                })
                .collect(),
            server_generation: r.server_generation,
            server_restarts: r.server_restarts,
            last_exit_reason: r.last_exit_reason,
            sessions: r.sessions,
            logged_in: r.logged_in,
            build_id: r.build_id,
            telnet_addr: r.telnet_addr,
            game_dir: r.game_dir,
            reloads: r.reloads,
            metrics_addr: r.metrics_addr,
            build_note: r.build_note,
        }))
    }

    async fn wait_ready(
        &self,
        request: Request<WaitReadyRequest>,
    ) -> Result<Response<WaitReadyReply>, Status> {
        let timeout = Duration::from_millis(request.into_inner().timeout_ms);
        // wait_ready itself gives up on a stop, saying why.
        let ready = self.shared.wait_ready(timeout).await;
        Ok(Response::new(match ready {
            Ok(telnet_addr) => WaitReadyReply {
                ready: true,
                error: String::new(),
                telnet_addr,
            },
            Err(error) => WaitReadyReply {
                ready: false,
                error,
                telnet_addr: String::new(),
            },
        }))
    }

    async fn reload(&self, _: Request<ReloadRequest>) -> Result<Response<ReloadReply>, Status> {
        Ok(Response::new(match reload::reload(&self.shared).await {
            Ok(done) => ReloadReply {
                ok: true,
                dark_micros: done.dark_micros,
                generation: done.generation,
                pid: done.pid,
                build_id: done.build_id,
                total_ms: done.total_ms,
                restart_needed: done.restart_needed,
                ..ReloadReply::default()
            },
            Err(failed) => ReloadReply {
                ok: false,
                error: failed.error,
                log_tail: failed.log_tail,
                ..ReloadReply::default()
            },
        }))
    }

    async fn stop(&self, _: Request<StopRequest>) -> Result<Response<StopReply>, Status> {
        self.shared.request_stop();
        Ok(Response::new(StopReply {}))
    }
}
