//! The supervisor's calls to the portal's `PortalAdmin` service on
//! run/portal.sock. Beside `control`, the only module that sees pb types: it
//! turns them into the small domain types below.
//!
//! Each call opens a fresh connection: a Unix socket connect costs little, and
//! a restarted portal is then reached without any reconnect logic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ev::pb::link::{
    self, NoticeRequest, PromoteRequest, ShutdownRequest, StatusRequest, WaitAttachedRequest,
    portal_admin_client::PortalAdminClient,
};
use tonic::transport::Channel;

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("portal is not reachable on {path}: {source}")]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("portal {call} failed: {}", .status.message())]
    Call {
        call: &'static str,
        status: tonic::Status,
    },
}

/// What the supervisor wants from `PortalAdmin.Status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortalStatus {
    pub pid: u32,
    pub sessions: u64,
    pub logged_in: u64,
    pub telnet_addr: String,
    pub servers: Vec<AttachedServer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedServer {
    pub generation: u64,
    pub pid: u32,
    pub build_id: String,
    pub active: bool,
    /// How long since the portal last heard from it.
    pub silent: Duration,
}

/// Why a server is not attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAttached {
    /// The deadline passed.
    Timeout,
    /// The portal refused it (e.g. its Link version); the portal's words.
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    pub dark_micros: u64,
    pub sessions: u64,
}

#[derive(Debug, Clone)]
pub struct PortalClient {
    socket: PathBuf,
}

impl PortalClient {
    pub fn new(socket: &Path) -> PortalClient {
        PortalClient {
            socket: socket.to_owned(),
        }
    }

    async fn client(&self) -> Result<PortalAdminClient<Channel>, PortalError> {
        let channel =
            ev::uds::connect(&self.socket)
                .await
                .map_err(|source| PortalError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
        Ok(PortalAdminClient::new(channel))
    }

    pub async fn status(&self) -> Result<PortalStatus, PortalError> {
        let reply = self
            .client()
            .await?
            .status(StatusRequest {})
            .await
            .map_err(|status| PortalError::Call {
                call: "Status",
                status,
            })?
            .into_inner();
        Ok(PortalStatus {
            pid: reply.pid,
            sessions: reply.sessions,
            logged_in: reply.logged_in,
            telnet_addr: reply.telnet_addr,
            servers: reply
                .servers
                .into_iter()
                .map(|s| AttachedServer {
                    generation: s.generation,
                    pid: s.pid,
                    build_id: s.build_id,
                    active: s.role == link::Role::Active as i32,
                    silent: Duration::from_millis(s.silent_ms),
                })
                .collect(),
        })
    }

    /// Ok(Ok(())) once a server of `generation` is attached.
    pub async fn wait_attached(
        &self,
        generation: u64,
        timeout: Duration,
    ) -> Result<Result<(), NotAttached>, PortalError> {
        let reply = self
            .client()
            .await?
            .wait_attached(WaitAttachedRequest {
                generation,
                timeout_ms: millis(timeout),
            })
            .await
            .map_err(|status| PortalError::Call {
                call: "WaitAttached",
                status,
            })?
            .into_inner();
        Ok(match (reply.attached, reply.error.is_empty()) {
            (true, _) => Ok(()),
            (false, true) => Err(NotAttached::Timeout),
            (false, false) => Err(NotAttached::Refused(reply.error)),
        })
    }

    /// Hands every session to the standby server of `generation`.
    pub async fn promote(
        &self,
        generation: u64,
        timeout: Duration,
    ) -> Result<Result<Promoted, String>, PortalError> {
        let reply = self
            .client()
            .await?
            .promote(PromoteRequest {
                generation,
                timeout_ms: millis(timeout),
            })
            .await
            .map_err(|status| PortalError::Call {
                call: "Promote",
                status,
            })?
            .into_inner();
        Ok(if reply.ok {
            Ok(Promoted {
                dark_micros: reply.dark_micros,
                sessions: reply.sessions,
            })
        } else if reply.error.is_empty() {
            Err("the portal refused the promotion without a reason".into())
        } else {
            Err(reply.error)
        })
    }

    /// A one-line notice to every player.
    pub async fn notice(&self, text: &str) -> Result<(), PortalError> {
        self.client()
            .await?
            .notice(NoticeRequest { text: text.into() })
            .await
            .map_err(|status| PortalError::Call {
                call: "Notice",
                status,
            })?;
        Ok(())
    }

    pub async fn shutdown(&self, message: &str, timeout: Duration) -> Result<(), PortalError> {
        self.client()
            .await?
            .shutdown(ShutdownRequest {
                message: message.into(),
                timeout_ms: millis(timeout),
            })
            .await
            .map_err(|status| PortalError::Call {
                call: "Shutdown",
                status,
            })?;
        Ok(())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
