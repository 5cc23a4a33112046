//! The hand-over of a reload, from one server to the next.
//!
//! `Promote(B)`: stop sending input (it queues), `Drain` the active server A.
//! On A's `Drained` (or A vanishing) B becomes active: a Sync of every session
//! in chunks, then every pending input in order. B's `Ready` ends the switch;
//! the time from Drain to Ready is the dark time.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Hub;
use super::api::{ConnId, HubEvent, Promoted};
use super::pause::Cause;
use super::shutdown::Stopping;
use ev::link::ToServer;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(super) enum Phase {
    /// Waiting for the old server's Drained.
    Draining,
    /// The new server has its Sync; waiting for its Ready.
    Syncing,
}

/// A hand-over in progress; a shutdown's drain borrows it for its timeout.
pub(super) struct Switch {
    pub(super) id: u64,
    pub(super) to: ConnId,
    pub(super) phase: Phase,
    pub(super) started: Instant,
    pub(super) reply: Option<oneshot::Sender<Result<Promoted, String>>>,
}

impl Hub {
    pub(super) fn promote(
        &mut self,
        generation: u64,
        timeout: Duration,
        reply: oneshot::Sender<Result<Promoted, String>>,
    ) {
        if self.switch.is_some() {
            let _ = reply.send(Err("a hand-over is already in progress".into()));
            return;
        }
        if !matches!(self.stopping, Stopping::No) {
            let _ = reply.send(Err("the portal is shutting down".into()));
            return;
        }
        let Some((&to, _)) = self
            .servers
            .iter()
            .find(|(_, s)| s.hello.generation == generation)
        else {
            let _ = reply.send(Err(format!(
                "no server of generation {generation} is attached"
            )));
            return;
        };
        if self.active == Some(to) {
            let _ = reply.send(Ok(Promoted {
                dark: Duration::ZERO,
                sessions: self.sessions.len() as u64,
            }));
            return;
        }
        let id = self.next_switch;
        self.next_switch += 1;
        self.me
            .after(timeout, HubEvent::SwitchTimeout { switch: id });
        self.switch = Some(Switch {
            id,
            to,
            phase: Phase::Draining,
            started: Instant::now(),
            reply: Some(reply),
        });
        match self.active.take() {
            Some(old) => {
                tracing::info!(from = old, to, "hand-over: draining the old server");
                self.pause_begins(Cause::Reload);
                self.draining = Some(old);
                self.push(
                    old,
                    ToServer::Drain {
                        reason: "reload".into(),
                    },
                );
            }
            None => self.after_drain(),
        }
    }

    pub(super) fn drained(&mut self, conn: ConnId) {
        if self.draining != Some(conn) {
            tracing::warn!(conn, "Drained from a server that was not draining");
            return;
        }
        tracing::info!(conn, "old server drained");
        self.draining = None;
        if let Some(server) = self.servers.get_mut(&conn) {
            server.drained = true;
        }
        self.after_drain();
    }

    /// The old server is done (drained or gone): hand over or finish stopping.
    pub(super) fn after_drain(&mut self) {
        if let Stopping::Draining(_) = self.stopping {
            self.finish_stop();
            return;
        }
        let Some(switch) = &mut self.switch else {
            return;
        };
        if switch.phase != Phase::Draining {
            return;
        }
        switch.phase = Phase::Syncing;
        let to = switch.to;
        if self.servers.contains_key(&to) {
            self.activate(to);
        } else {
            self.fail_switch("the new server went away before the hand-over".into());
        }
    }

    pub(super) fn ready(&mut self, conn: ConnId, sessions: u64) {
        if self.active == Some(conn) {
            self.pause_ends();
        }
        let Some(switch) = &mut self.switch else {
            tracing::info!(conn, sessions, "server ready");
            return;
        };
        if switch.to != conn || switch.phase != Phase::Syncing {
            return;
        }
        let dark = switch.started.elapsed();
        tracing::info!(
            conn,
            sessions,
            dark_us = dark.as_micros() as u64,
            "hand-over complete"
        );
        if let Some(reply) = switch.reply.take() {
            let _ = reply.send(Ok(Promoted { dark, sessions }));
        }
        self.switch = None;
    }

    pub(super) fn fail_switch(&mut self, error: String) {
        let Some(mut switch) = self.switch.take() else {
            return;
        };
        tracing::error!("hand-over failed: {error}");
        if let Some(reply) = switch.reply.take() {
            let _ = reply.send(Err(error));
        }
    }

    pub(super) fn switch_timeout(&mut self, id: u64) {
        let Some(switch) = &self.switch else { return };
        if switch.id != id {
            return;
        }
        match switch.phase {
            Phase::Draining if matches!(self.stopping, Stopping::Draining(_)) => {
                // Stopping: do not wait any longer for a server that hangs.
                if let Some(old) = self.draining.take() {
                    tracing::error!(conn = old, "server did not drain in time; stopping anyway");
                    self.servers.remove(&old);
                }
                self.after_drain();
            }
            Phase::Draining => {
                // The old server may still commit what it has: handing its
                // sessions to the new one now could apply an input twice.
                // It stays draining until it finishes or the supervisor kills
                // it; the hand-over is off.
                self.fail_switch("the old server did not drain in time".into());
            }
            Phase::Syncing => {
                self.fail_switch("the new server did not report ready in time".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::hub::fixture::*;

    #[tokio::test]
    async fn hand_over_buffers_during_drain_and_replays_unacked_input() {
        let h = start();
        let _s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "one");
        a.take(1).await;
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        assert!(matches!(
            b.take(1).await[0],
            ToServer::Hello(PortalHello {
                role: Role::Standby,
                ..
            })
        ));
        let promoted = h.promote(2).await;
        assert!(matches!(a.take(1).await[0], ToServer::Drain { .. }));
        // Typed during the drain: held back from both servers.
        h.input(7, "two");
        // A applies "one" and drains.
        h.from(
            1,
            vec![
                ToPortal::Ack {
                    session: SessionId(7),
                    seq: 1,
                },
                ToPortal::Drained,
            ],
        );
        let events = b.take(2).await;
        assert_eq!(synced(&events), vec![7]);
        assert_eq!(inputs(&events), vec![(7, 2, "two".into())]);
        h.from(2, vec![ToPortal::Ready { sessions: 1 }]);
        let done = promoted.await.unwrap().unwrap();
        assert_eq!(done.sessions, 1);
        h.stop.cancel();
    }

    #[tokio::test]
    async fn old_server_vanishing_mid_drain_hands_over_its_unacked_input() {
        let h = start();
        let _s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "one");
        a.take(1).await;
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        b.take(1).await;
        let promoted = h.promote(2).await;
        a.take(1).await;
        h.kill(1);
        let events = b.take(2).await;
        assert_eq!(inputs(&events), vec![(7, 1, "one".into())]);
        h.from(2, vec![ToPortal::Ready { sessions: 1 }]);
        assert!(promoted.await.unwrap().is_ok());
        h.stop.cancel();
    }

    #[tokio::test]
    async fn a_drain_that_times_out_does_not_hand_over() {
        let h = start();
        let _s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        b.take(1).await;
        let (reply, rx) = oneshot::channel();
        h.tx.send(HubEvent::Admin(AdminRequest::Promote {
            generation: 2,
            timeout: Duration::from_millis(1),
            reply,
        }));
        let err = rx.await.unwrap().err().unwrap();
        assert!(err.contains("did not drain"), "{err}");
        // B was never synced: A may still commit what it holds.
        h.input(7, "look");
        let status = h.status().await;
        assert_eq!(status.buffered_inputs, 1);
        assert!(b.rx.try_recv().is_err(), "the new server got a Sync");
        h.stop.cancel();
    }

    /// Regression (issue 3): the new server dies after the old one drained;
    /// the drained server, which is exiting, must not be made active again.
    #[tokio::test]
    async fn a_drained_server_is_never_reactivated() {
        let h = start();
        let HandOver {
            mut a,
            mut b,
            promoted,
            ..
        } = hand_over(&h).await;
        h.from(1, vec![ToPortal::Drained]);
        b.take(1).await;
        h.kill(2);
        assert!(promoted.await.unwrap().is_err());
        h.input(7, "look");
        let status = h.status().await;
        assert_eq!(status.buffered_inputs, 1);
        assert!(
            a.rx.try_recv().is_err(),
            "the drained server got a Sync or input"
        );
        // The next server to attach serves, with the input.
        let mut c = h.attach(3, 3, ev::version::LINK_MAJOR);
        let events = c.take(3).await;
        assert!(matches!(
            events[0],
            ToServer::Hello(PortalHello {
                role: Role::Active,
                ..
            })
        ));
        h.stop.cancel();
    }
}
