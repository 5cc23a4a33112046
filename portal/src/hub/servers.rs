//! The servers attached over the Link: the version check at attach, who
//! waits for which generation, heartbeats, the batching of events into Link
//! messages, and what follows when a server goes away (a crash, the end of
//! a drain, a standby promoted).

use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::Hub;
use super::api::ConnId;
use super::shutdown::Stopping;
use ev::link::{Batcher, PortalHello, Role, ServerHello, ToServer};

pub(super) struct Server {
    pub(super) hello: ServerHello,
    tx: mpsc::UnboundedSender<Vec<ToServer>>,
    /// The Link message being filled.
    batch: Batcher<ToServer>,
    pub(super) last_seen: Instant,
    /// It sent `Drained` and is exiting: never to be made active again.
    pub(super) drained: bool,
}

impl Hub {
    pub(super) fn attach(
        &mut self,
        conn: ConnId,
        hello: ServerHello,
        tx: mpsc::UnboundedSender<Vec<ToServer>>,
    ) {
        if hello.major != ev::version::LINK_MAJOR {
            let refused = format!(
                "link version mismatch: server speaks {}.{}, portal speaks {}",
                hello.major,
                hello.minor,
                ev::version::link_version()
            );
            tracing::error!(generation = hello.generation, pid = hello.pid, "{refused}");
            let _ = tx.send(vec![ToServer::Hello(PortalHello::ours(
                Role::Standby,
                refused.clone(),
            ))]);
            self.resolve_waiters(hello.generation, Err(refused.clone()));
            self.refused.insert(hello.generation, refused);
            return;
        }
        let role = if self.active.is_none()
            && self.draining.is_none()
            && self.switch.is_none()
            && matches!(self.stopping, Stopping::No)
        {
            Role::Active
        } else {
            Role::Standby
        };
        tracing::info!(
            conn,
            generation = hello.generation,
            pid = hello.pid,
            build = %hello.build_id,
            ?role,
            "server attached"
        );
        let generation = hello.generation;
        self.servers.insert(
            conn,
            Server {
                hello,
                tx,
                batch: Batcher::new(),
                last_seen: Instant::now(),
                drained: false,
            },
        );
        self.push(
            conn,
            ToServer::Hello(PortalHello::ours(role, String::new())),
        );
        if role == Role::Active {
            self.activate(conn);
        }
        self.resolve_waiters(generation, Ok(()));
    }

    fn resolve_waiters(&mut self, generation: u64, result: Result<(), String>) {
        let waiters = std::mem::take(&mut self.attach_waiters);
        for (g, reply) in waiters {
            if g == generation {
                let _ = reply.send(result.clone());
            } else if !reply.is_closed() {
                self.attach_waiters.push((g, reply));
            }
        }
    }

    /// Answers once a server of `generation` is attached, or refused.
    pub(super) fn wait_attached(
        &mut self,
        generation: u64,
        reply: oneshot::Sender<Result<(), String>>,
    ) {
        if self
            .servers
            .values()
            .any(|s| s.hello.generation == generation)
        {
            let _ = reply.send(Ok(()));
        } else if let Some(refused) = self.refused.get(&generation) {
            let _ = reply.send(Err(refused.clone()));
        } else {
            self.attach_waiters.push((generation, reply));
        }
    }

    pub(super) fn detached(&mut self, conn: ConnId, reason: String) {
        let Some(server) = self.servers.remove(&conn) else {
            return;
        };
        tracing::info!(
            conn,
            generation = server.hello.generation,
            pid = server.hello.pid,
            "server detached: {reason}"
        );
        if self.active == Some(conn) || self.draining == Some(conn) {
            self.crashed(&reason);
        }
        if self.active == Some(conn) {
            self.active = None;
            if let Some(switch) = &self.switch
                && switch.to == conn
            {
                self.fail_switch(format!(
                    "the new server went away during the hand-over: {reason}"
                ));
            }
        }
        if self.draining == Some(conn) {
            self.draining = None;
            self.after_drain();
        }
        if let Some(switch) = &self.switch
            && switch.to == conn
        {
            self.fail_switch(format!("the new server went away: {reason}"));
        }
        // A standby waiting for a server that just went: serve with it.
        if self.active.is_none()
            && self.draining.is_none()
            && self.switch.is_none()
            && matches!(self.stopping, Stopping::No)
            && let Some((&next, _)) = self
                .servers
                .iter()
                .filter(|(_, s)| !s.drained)
                .max_by_key(|(_, s)| s.hello.generation)
        {
            tracing::info!(
                conn = next,
                "promoting the standby server: no server is active"
            );
            self.activate(next);
        }
    }

    /// Sends every server a heartbeat once `heartbeat` has passed.
    pub(super) fn heartbeat(&mut self) {
        if self.last_heartbeat.elapsed() >= self.config.heartbeat {
            self.last_heartbeat = Instant::now();
            self.nonce += 1;
            let nonce = self.nonce;
            self.heartbeats.sent(nonce, self.last_heartbeat);
            let conns: Vec<ConnId> = self.servers.keys().copied().collect();
            for conn in conns {
                self.push(
                    conn,
                    ToServer::Heartbeat {
                        nonce,
                        reply: false,
                    },
                );
            }
        }
    }

    pub(super) fn push(&mut self, conn: ConnId, event: ToServer) {
        if let Some(server) = self.servers.get_mut(&conn)
            && let Some(message) = server.batch.push(event)
        {
            let _ = server.tx.send(message);
        }
    }

    pub(super) fn flush(&mut self) {
        for server in self.servers.values_mut() {
            if let Some(message) = server.batch.flush() {
                let _ = server.tx.send(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::hub::fixture::*;

    #[tokio::test]
    async fn other_major_version_is_refused_and_reported_to_the_waiter() {
        let h = start();
        let mut a = h.attach(1, 5, 99);
        match &a.take(1).await[0] {
            ToServer::Hello(PortalHello { refused, .. }) => {
                assert!(refused.contains("99.0"), "{refused}");
                assert!(refused.contains(&ev::version::link_version()), "{refused}");
            }
            other => panic!("{other:?}"),
        }
        let (reply, rx) = oneshot::channel();
        h.tx.send(HubEvent::Admin(AdminRequest::WaitAttached {
            generation: 5,
            reply,
        }));
        assert!(rx.await.unwrap().unwrap_err().contains("mismatch"));
        h.stop.cancel();
    }
}
