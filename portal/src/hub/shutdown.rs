//! Shutdown: stop accepting, tell the players, let the serving server drain
//! what it was sent (within a timeout), then close every connection.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Hub;
use super::api::{HubEvent, Outbound};
use super::handover::{Phase, Switch};
use ev::link::{SessionId, ToServer};

pub(super) enum Stopping {
    No,
    /// Waiting for the server to apply what it was sent.
    Draining(oneshot::Sender<()>),
    Done,
}

impl Hub {
    pub(super) fn shutdown(
        &mut self,
        message: String,
        timeout: Duration,
        reply: oneshot::Sender<()>,
    ) {
        if !matches!(self.stopping, Stopping::No) {
            let _ = reply.send(());
            return;
        }
        tracing::info!("shutting down: {message}");
        self.stop_accepting.cancel();
        self.notice_all(&format!("[ev] {message}"));
        self.fail_switch("the portal is shutting down".into());
        let server = self.active.take().or(self.draining.take());
        match server {
            Some(conn) => {
                self.stopping = Stopping::Draining(reply);
                self.draining = Some(conn);
                self.push(
                    conn,
                    ToServer::Drain {
                        reason: "shutdown".into(),
                    },
                );
                let id = self.next_switch;
                self.next_switch += 1;
                // Reuse the switch timer path: a stop must not wait forever.
                self.switch = Some(Switch {
                    id,
                    to: conn,
                    phase: Phase::Draining,
                    started: Instant::now(),
                    reply: None,
                });
                self.me
                    .after(timeout, HubEvent::SwitchTimeout { switch: id });
            }
            None => {
                self.stopping = Stopping::Draining(reply);
                self.finish_stop();
            }
        }
    }

    pub(super) fn finish_stop(&mut self) {
        let Stopping::Draining(reply) = std::mem::replace(&mut self.stopping, Stopping::Done)
        else {
            return;
        };
        self.switch = None;
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.send_to_player(id, Outbound::Close("shutdown".into()));
        }
        let _ = reply.send(());
    }
}
