//! Telnet over TLS (`portal.tls`): the certificate the TLS listener serves,
//! kept fresh without a restart.
//!
//! The listener's rustls configuration is built once; its certificate is
//! asked of a [`Certificate`] at each handshake, so a new one is served
//! from the next connection on while every open connection keeps the
//! session it has. The files (`portal.tls_cert`, `portal.tls_key`) are read
//! again when they change on disk (their directories are watched with
//! inotify, through `notify`, so a file replaced by a rename or a symlink
//! swap is seen too) and at each `evctl reload` (the supervisor's
//! Promote). A pair that cannot be used (unreadable, not PEM, a key that
//! is not the certificate's, a key rustls cannot sign with) is refused
//! with a log line naming the files and why, and the previous certificate
//! stays. Only a start refuses to run without a usable pair. Each pair
//! taken, and the one served at each reload, has its end checked
//! ([`crate::expiry`]): within `portal.tls_expiry_warn_days` it is logged
//! as a warning and told to the game's admins in play; nothing is refused.
//!
//! The connections themselves are the telnet sessions of `session`, over
//! a TLS stream instead of a TCP one; `listener` does the handshake. With
//! `portal.web_tls` the webclient's listener serves the same certificate
//! (its own acceptor, [`Certificate::acceptor`], offering HTTP/1.1), and
//! `web` does its handshakes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::notify::event::{AccessKind, AccessMode};
use ::notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, InconsistentKeys, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::hub::api::{AdminRequest, HubEvent, HubSender};

/// After a change on disk, the files are read once nothing more has
/// changed for this long: a renewal writes the certificate and the key one
/// after the other, and reading between the two would refuse a mismatch.
const SETTLE: Duration = Duration::from_millis(300);

/// Why the files are read again, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occasion {
    /// Something changed in their directories.
    Changed,
    /// A reload (the supervisor's Promote) asked.
    Reload,
}

impl std::fmt::Display for Occasion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Occasion::Changed => "changed on disk",
            Occasion::Reload => "at a reload",
        })
    }
}

/// Where the certificate chain and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a certificate and key were not taken.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)")]
    NoKey { path: PathBuf },
    #[error("{path} is not well-formed PEM: {error}")]
    Pem { path: PathBuf, error: String },
    #[error("the key in {key} is not the key of the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("the certificate in {cert} with the key in {key} cannot be used: {error}")]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        error: String,
    },
    #[error("the TLS configuration: {0}")]
    Config(String),
}

/// The certificate new connections get; see the module's docs.
pub struct Certificate {
    files: Files,
    provider: Arc<CryptoProvider>,
    serving: Arc<Serving>,
    /// The files' bytes as last read: what is served, and the last pair
    /// refused (so an unrelated change beside them does not log it again).
    seen: Mutex<Seen>,
    /// Asked to read the files again (`evctl reload`).
    recheck: Notify,
    /// `portal.tls_expiry_warn_days`.
    warn_days: u64,
    /// Where to tell the game's admins of an expiry: the hub, once it runs.
    staff: OnceLock<HubSender>,
}

#[derive(Default)]
struct Seen {
    served: (Vec<u8>, Vec<u8>),
    refused: Option<(Vec<u8>, Vec<u8>)>,
}

/// What each handshake is given.
#[derive(Debug)]
struct Serving(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Serving {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = match self.0.read() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        Some(current.clone())
    }
}

impl Certificate {
    /// Reads the files and builds the listener's acceptor.
    /// `warn_days`: warn when it expires within so many days (0: never).
    pub fn load(files: Files, warn_days: u64) -> Result<(Arc<Certificate>, TlsAcceptor), Refused> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert_pem = read(&files.cert)?;
        let key_pem = read(&files.key)?;
        let key = parse(&files, &cert_pem, &key_pem, &provider)?;
        let expiry = expiry_warning(&key, warn_days);
        let serving = Arc::new(Serving(RwLock::new(Arc::new(key))));
        let certificate = Arc::new(Certificate {
            files,
            provider,
            serving,
            seen: Mutex::new(Seen {
                served: (cert_pem, key_pem),
                refused: None,
            }),
            recheck: Notify::new(),
            warn_days,
            staff: OnceLock::new(),
        });
        if let Some(warning) = expiry {
            // No server is attached yet: the log alone hears of it now, the
            // admins at the next reload or renewal.
            tracing::warn!("{warning}");
        }
        let acceptor = certificate.acceptor(Vec::new())?;
        Ok((certificate, acceptor))
    }

    /// Another listener's acceptor for the same certificate (the
    /// webclient's, `portal.web_tls`), offering the application protocols
    /// `alpn` (ALPN): it is renewed with telnet's, by one watch.
    pub fn acceptor(&self, alpn: Vec<Vec<u8>>) -> Result<TlsAcceptor, Refused> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Refused::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.serving.clone());
        config.alpn_protocols = alpn;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// From now on an expiry is also told to the game's admins in play,
    /// through the hub (the active server knows who they are).
    pub fn tell_staff_through(&self, hub: HubSender) {
        let _ = self.staff.set(hub);
    }

    /// Warns, in the log and to the admins, if `key` expires soon; returns
    /// the warning.
    fn warn_of_expiry(&self, key: &CertifiedKey) -> Option<String> {
        let warning = expiry_warning(key, self.warn_days)?;
        tracing::warn!("{warning}");
        if let Some(hub) = self.staff.get() {
            hub.send(HubEvent::Admin(AdminRequest::Notice {
                text: format!("Portal: {warning}."),
                admins: true,
            }));
        }
        Some(warning)
    }

    /// Asks for the files to be read again soon (`evctl reload`).
    pub fn recheck(&self) {
        self.recheck.notify_one();
    }

    /// Reads the files again; if they changed and can be used, they are
    /// served from the next handshake on. A pair refused before is only
    /// logged again when a reload asks. Returns whether a new certificate
    /// is served.
    pub async fn refresh(&self, why: Occasion) -> bool {
        let files = &self.files;
        let read_off_thread = |path: PathBuf| async move {
            // Off the runtime's thread: the files may be on a slow mount.
            tokio::task::spawn_blocking(move || read(&path))
                .await
                .map_err(|e| Refused::Config(format!("reading the files: {e}")))?
        };
        let read_both = async {
            let cert = read_off_thread(files.cert.clone()).await?;
            Ok::<_, Refused>((cert, read_off_thread(files.key.clone()).await?))
        };
        let parsed = match read_both.await {
            Ok(pair) => {
                if self.seen().served == pair {
                    tracing::debug!("TLS certificate unchanged ({why})");
                    if why == Occasion::Reload {
                        // An operator at work: remind them of what they
                        // have not renewed yet.
                        let serving = match self.serving.0.read() {
                            Ok(current) => current.clone(),
                            Err(poisoned) => poisoned.into_inner().clone(),
                        };
                        self.warn_of_expiry(&serving);
                    }
                    return false;
                }
                if why == Occasion::Changed && self.seen().refused.as_ref() == Some(&pair) {
                    return false;
                }
                let key = parse(files, &pair.0, &pair.1, &self.provider);
                (Some(pair), key)
            }
            Err(e) => (None, Err(e)),
        };
        match parsed {
            (Some(pair), Ok(key)) => {
                self.warn_of_expiry(&key);
                *match self.serving.0.write() {
                    Ok(current) => current,
                    Err(poisoned) => poisoned.into_inner(),
                } = Arc::new(key);
                let mut seen = self.seen();
                seen.served = pair;
                seen.refused = None;
                tracing::info!(
                    "TLS certificate {} renewed ({why}): new connections get it, open ones keep theirs",
                    files.cert.display()
                );
                true
            }
            (pair, Err(e)) => {
                tracing::error!(
                    "TLS certificate refused ({why}): {e}; new connections still get the previous one"
                );
                if let Some(pair) = pair {
                    self.seen().refused = Some(pair);
                }
                false
            }
            (None, Ok(_)) => false,
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        match self.seen.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reads the files again whenever they change on disk or a reload asks,
    /// until `stop`. The watch is on before this returns: a change made
    /// after it is seen.
    pub fn watch(
        self: Arc<Self>,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let changed = Arc::new(Notify::new());
        let watcher = match watch_dirs(&self.files, changed.clone()) {
            Ok((watcher, dirs)) => {
                let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                tracing::info!(
                    "TLS: watching {} for a renewed certificate",
                    dirs.join(", ")
                );
                Some(watcher)
            }
            Err(e) => {
                tracing::warn!(
                    "TLS: cannot watch the certificate's directory ({e}); a renewed certificate is picked up at `evctl reload`"
                );
                None
            }
        };
        async move {
            let _watcher = watcher;
            self.run(changed, stop).await;
        }
    }

    async fn run(&self, changed: Arc<Notify>, stop: CancellationToken) {
        loop {
            let why = tokio::select! {
                () = stop.cancelled() => return,
                () = self.recheck.notified() => Occasion::Reload,
                () = changed.notified() => {
                    // Wait for the writes to stop.
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = changed.notified() => {}
                            () = tokio::time::sleep(SETTLE) => break,
                        }
                    }
                    Occasion::Changed
                }
            };
            self.refresh(why).await;
        }
    }
}

/// What to warn of `key`'s certificate's end, if anything; one that
/// cannot be read is logged, never refused (rustls took it).
fn expiry_warning(key: &CertifiedKey, warn_days: u64) -> Option<String> {
    let leaf = key.cert.first()?;
    let Some(end) = crate::expiry::not_after(leaf.as_ref()) else {
        tracing::warn!("cannot read the TLS certificate's expiry date; not checking it");
        return None;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    crate::expiry::warning(end, now, warn_days)
}

fn read(path: &Path) -> Result<Vec<u8>, Refused> {
    std::fs::read(path).map_err(|error| Refused::Read {
        path: path.to_owned(),
        error,
    })
}

/// The chain and key in `cert_pem` and `key_pem` (read from `files`), as
/// rustls serves them, if the key is the certificate's.
fn parse(
    files: &Files,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, Refused> {
    let pem_error = |path: &Path, e: pem::Error| Refused::Pem {
        path: path.to_owned(),
        error: e.to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&files.cert, e))?;
    if chain.is_empty() {
        return Err(Refused::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => Refused::NoKey {
            path: files.key.clone(),
        },
        e => pem_error(&files.key, e),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => Refused::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        },
        e => Refused::Unusable {
            cert: files.cert.clone(),
            key: files.key.clone(),
            error: e.to_string(),
        },
    })
}

/// Watches the directories that hold the files (and, for a symlink, its
/// target's); `changed` is told of every change in them. What is in them
/// decides: a change that leaves the two files as they were is nothing.
fn watch_dirs(
    files: &Files,
    changed: Arc<Notify>,
) -> ::notify::Result<(::notify::RecommendedWatcher, Vec<PathBuf>)> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for file in [&files.cert, &files.key] {
        let resolved = std::fs::canonicalize(file).ok();
        for path in std::iter::once(file.clone()).chain(resolved) {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_owned();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    let mut watcher =
        ::notify::recommended_watcher(move |event: ::notify::Result<::notify::Event>| {
            let relevant = match &event {
                // Opening and reading (ours included) change nothing.
                Ok(event) => match event.kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                    EventKind::Access(_) => false,
                    _ => true,
                },
                // The watch itself failed (inotify's queue overflowed):
                // whether the files changed is unknown, so look.
                Err(_) => true,
            };
            if relevant {
                changed.notify_one();
            }
        })?;
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    Ok((watcher, dirs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and key for `name`, as PEM.
    fn pair(name: &str) -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    fn files(dir: &Path) -> Files {
        Files {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    fn write(files: &Files, (cert, key): &(String, String)) {
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
    }

    fn served(c: &Certificate) -> Vec<u8> {
        c.serving.0.read().unwrap().cert[0].to_vec()
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn a_start_refuses_what_cannot_be_served_and_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let f = files(tmp.path());
        let err = Certificate::load(f.clone(), 14).err().unwrap().to_string();
        assert!(
            err.contains("cannot read") && err.contains("cert.pem"),
            "{err}"
        );

        let (cert, key) = pair("localhost");
        write(&f, &("not a certificate".into(), key.clone()));
        let err = Certificate::load(f.clone(), 14).err().unwrap().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");

        write(&f, &(cert.clone(), "nothing".into()));
        let err = Certificate::load(f.clone(), 14).err().unwrap().to_string();
        assert!(
            err.contains("no PEM private key") && err.contains("key.pem"),
            "{err}"
        );

        let (_, other_key) = pair("localhost");
        write(&f, &(cert.clone(), other_key));
        let err = Certificate::load(f.clone(), 14).err().unwrap().to_string();
        assert!(err.contains("is not the key of the certificate"), "{err}");

        write(&f, &(cert, key));
        assert!(Certificate::load(f, 14).is_ok());
    }

    #[tokio::test]
    async fn a_renewal_is_served_and_a_bad_one_refused_keeping_the_old() {
        let tmp = tempfile::tempdir().unwrap();
        let f = files(tmp.path());
        let first = pair("localhost");
        write(&f, &first);
        let (c, _) = Certificate::load(f.clone(), 14).unwrap();
        assert_eq!(served(&c), der(&first.0));
        assert!(!c.refresh(Occasion::Changed).await, "unchanged");

        let second = pair("localhost");
        write(&f, &second);
        assert!(c.refresh(Occasion::Changed).await);
        assert_eq!(served(&c), der(&second.0));

        // Half a renewal: the new certificate beside the old key.
        let third = pair("localhost");
        std::fs::write(&f.cert, &third.0).unwrap();
        assert!(!c.refresh(Occasion::Changed).await);
        assert_eq!(served(&c), der(&second.0), "the old one stays");
        std::fs::write(&f.key, &third.1).unwrap();
        assert!(c.refresh(Occasion::Changed).await);
        assert_eq!(served(&c), der(&third.0));

        std::fs::remove_file(&f.key).unwrap();
        assert!(!c.refresh(Occasion::Changed).await);
        assert_eq!(served(&c), der(&third.0));
    }

    /// A certificate and key for `name` that end `days` days from now.
    fn pair_ending_in(name: &str, days: u64) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        params.not_after =
            rcgen::date_time_ymd(1970, 1, 1) + now + Duration::from_secs(days * 86_400);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn staff_notices(rx: &mut tokio::sync::mpsc::UnboundedReceiver<HubEvent>) -> Vec<String> {
        let mut told = Vec::new();
        while let Ok(event) = rx.try_recv() {
            if let HubEvent::Admin(AdminRequest::Notice { text, admins: true }) = event {
                told.push(text);
            }
        }
        told
    }

    #[tokio::test]
    async fn a_certificate_near_its_end_is_served_and_told_to_the_admins() {
        let tmp = tempfile::tempdir().unwrap();
        let f = files(tmp.path());
        write(&f, &pair_ending_in("localhost", 100));
        let (c, _) = Certificate::load(f.clone(), 14).unwrap();
        let (hub, mut rx) = crate::hub::api::channel();
        c.tell_staff_through(hub);

        let soon = pair_ending_in("localhost", 3);
        write(&f, &soon);
        assert!(
            c.refresh(Occasion::Changed).await,
            "taken: nothing is refused"
        );
        assert_eq!(served(&c), der(&soon.0));
        let told = staff_notices(&mut rx);
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(
            told[0].contains("expires in 2 day(s)") || told[0].contains("expires in 3 day(s)"),
            "{told:?}"
        );

        assert!(!c.refresh(Occasion::Changed).await);
        assert!(
            staff_notices(&mut rx).is_empty(),
            "an unrelated change says nothing"
        );
        assert!(!c.refresh(Occasion::Reload).await);
        assert_eq!(
            staff_notices(&mut rx).len(),
            1,
            "each reload reminds the admins"
        );

        let expired = pair_ending_in("localhost", 0);
        write(&f, &expired);
        assert!(
            c.refresh(Occasion::Changed).await,
            "even an expired one is served"
        );
        let told = staff_notices(&mut rx);
        assert!(told.len() == 1 && told[0].contains("expired"), "{told:?}");

        let later = pair_ending_in("localhost", 15);
        write(&f, &later);
        assert!(c.refresh(Occasion::Changed).await);
        assert!(staff_notices(&mut rx).is_empty(), "15 days is outside 14");
    }

    #[tokio::test]
    async fn a_file_replaced_on_disk_is_picked_up_by_the_watch() {
        let tmp = tempfile::tempdir().unwrap();
        let f = files(tmp.path());
        write(&f, &pair("localhost"));
        let (c, _) = Certificate::load(f.clone(), 14).unwrap();
        let stop = CancellationToken::new();
        let watch = tokio::spawn(c.clone().watch(stop.clone()));
        let next = pair("localhost");
        // As a renewal tool does it: new files renamed into place.
        for (text, path) in [(&next.1, &f.key), (&next.0, &f.cert)] {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while served(&c) != der(&next.0) {
            assert!(tokio::time::Instant::now() < deadline, "not picked up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        watch.await.unwrap();
    }
}
