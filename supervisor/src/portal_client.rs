//! The supervisor's calls to the portal's `PortalAdmin` service on
//! run/portal.sock. Beside `control`, the only module that sees pb types: it
//! turns them into the small domain types below.
//!
//! Each call opens a fresh connection: a Unix socket connect costs little, and
//! a restarted portal is then reached without any reconnect logic.

use std::collections::BTreeMap;
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortalStatus {
    pub pid: u32,
    pub sessions: u64,
    pub logged_in: u64,
    pub telnet_addr: String,
    pub servers: Vec<AttachedServer>,
    /// Inputs received and not yet acknowledged by a server.
    pub buffered_inputs: u64,
    /// Unix time in milliseconds.
    pub started_at_ms: u64,
    /// Open connections by protocol.
    pub sessions_by_protocol: BTreeMap<String, u64>,
    pub counters: PortalCounters,
}

/// The portal's counters since it started (all 0 from a portal too old to
/// count).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortalCounters {
    pub inputs_received: u64,
    pub inputs_applied: u64,
    pub inputs_replayed: u64,
    pub inputs_quarantined: u64,
    pub sessions_opened: BTreeMap<String, u64>,
    pub link_round_trip: Option<Histogram>,
}

/// A histogram in seconds, as Prometheus takes one: each bucket's upper
/// bound (the last one infinite) and the observations in it alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    /// None when the counts do not fit the bounds (one more count than
    /// bounds, the bounds rising): a malformed histogram is left out.
    fn from_pb(h: link::MicrosHistogram) -> Option<Histogram> {
        let rising = h.bounds_micros.windows(2).all(|w| w[0] < w[1]);
        if h.counts.len() != h.bounds_micros.len() + 1 || !rising {
            return None;
        }
        let seconds = |micros: u64| micros as f64 / 1e6;
        let bounds = h
            .bounds_micros
            .iter()
            .map(|&b| seconds(b))
            .chain(std::iter::once(f64::INFINITY));
        Some(Histogram {
            buckets: bounds.zip(h.counts).collect(),
            sum_seconds: seconds(h.sum_micros),
            count: h.count,
        })
    }
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
        let counters = reply.counters.unwrap_or_default();
        Ok(PortalStatus {
            pid: reply.pid,
            sessions: reply.sessions,
            logged_in: reply.logged_in,
            telnet_addr: reply.telnet_addr,
            buffered_inputs: reply.buffered_inputs,
            started_at_ms: reply.started_at_ms,
            sessions_by_protocol: reply.sessions_by_protocol.into_iter().collect(),
            counters: PortalCounters {
                inputs_received: counters.inputs_received,
                inputs_applied: counters.inputs_applied,
                inputs_replayed: counters.inputs_replayed,
                inputs_quarantined: counters.inputs_quarantined,
                sessions_opened: counters.sessions_opened.into_iter().collect(),
                link_round_trip: counters.link_round_trip.and_then(Histogram::from_pb),
            },
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
        self.notice_to(text, false).await
    }

    /// A one-line notice to the game's admins in play (the server knows
    /// who they are).
    pub async fn notice_admins(&self, text: &str) -> Result<(), PortalError> {
        self.notice_to(text, true).await
    }

    async fn notice_to(&self, text: &str, admins: bool) -> Result<(), PortalError> {
        self.client()
            .await?
            .notice(NoticeRequest {
                text: text.into(),
                admins,
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_becomes_seconds_with_an_infinite_last_bucket() {
        let h = Histogram::from_pb(link::MicrosHistogram {
            bounds_micros: vec![500, 1_000_000],
            counts: vec![3, 1, 2],
            sum_micros: 12_500_000,
            count: 6,
        })
        .unwrap();
        assert_eq!(h.buckets, [(0.0005, 3), (1.0, 1), (f64::INFINITY, 2)]);
        assert_eq!((h.sum_seconds, h.count), (12.5, 6));
    }

    #[test]
    fn a_malformed_histogram_is_left_out() {
        let wrong_len = link::MicrosHistogram {
            bounds_micros: vec![1, 2],
            counts: vec![1, 2],
            ..Default::default()
        };
        let falling = link::MicrosHistogram {
            bounds_micros: vec![2, 1],
            counts: vec![0, 0, 0],
            ..Default::default()
        };
        assert_eq!(Histogram::from_pb(wrong_len), None);
        assert_eq!(Histogram::from_pb(falling), None);
    }
}
