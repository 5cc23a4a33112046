//! tonic over Unix sockets: the listener a service is served from and the
//! channel a client connects with.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Binds `path`, replacing a stale socket file, readable by the owner only.
/// The caller must hold whatever lock proves no live process serves it.
pub fn bind(path: &Path) -> std::io::Result<UnixListenerStream> {
    bind_listener(path).map(UnixListenerStream::new)
}

/// [`bind`], as a listener.
pub fn bind_listener(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// A channel to the gRPC service on the Unix socket at `path`. Connects
/// lazily on first use when `lazy`, otherwise fails at once if nobody listens.
pub async fn connect(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_owned();
    // The URI is required by the API and ignored: the connector decides.
    Endpoint::from_static("http://ev.local")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}
