//! The portal's end of the Link, and the PortalAdmin service.
//!
//! Only its side's stream handling: the server's hello first (and only
//! first), then protobuf messages turned into the domain events of
//! `ev::link` (which also converts them back) and handed to the hub through
//! the hub's API. A server's stream gets a reader task that forwards each
//! batch; the outbound side is an unbounded channel of messages the hub
//! batched (its size is bounded by the per-session input credit, see
//! `session`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ev::pb::link as pb;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::hub::api::{AdminRequest, ConnId, Counters, HubEvent, HubSender};
use crate::tls::Certificate;
use ev::link::{MAX_MESSAGE_BYTES, ServerHello, ToPortal, ToServer};

fn hello_of(msg: pb::ToPortal) -> Option<ServerHello> {
    match ToPortal::try_from(msg.events.into_iter().next()?) {
        Ok(ToPortal::Hello(hello)) => Some(hello),
        _ => None,
    }
}

// === impl LinkService ===

/// Serves `Link.Attach`: one stream per server.
pub struct LinkService {
    hub: HubSender,
    next_conn: Arc<AtomicU64>,
}

impl LinkService {
    pub fn new(hub: HubSender) -> Self {
        Self {
            hub,
            next_conn: Arc::new(AtomicU64::new(1)),
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::link_server::Link for LinkService {
    type AttachStream = BoxStream<pb::ToServer>;

    async fn attach(
        &self,
        request: Request<Streaming<pb::ToPortal>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("stream ended before hello"))?;
        let hello = hello_of(first)
            .ok_or_else(|| Status::invalid_argument("the first message must be a hello"))?;
        let conn: ConnId = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel::<Vec<ToServer>>();
        self.hub.send(HubEvent::Attach { conn, hello, tx });

        let hub = self.hub.clone();
        tokio::spawn(async move {
            let reason = loop {
                match inbound.message().await {
                    Ok(Some(msg)) => {
                        let mut events = Vec::with_capacity(msg.events.len());
                        for e in msg.events {
                            match ToPortal::try_from(e) {
                                Ok(ToPortal::Hello(_)) => {
                                    tracing::warn!(conn, "ignoring a Link event: a second hello")
                                }
                                Ok(e) => events.push(e),
                                Err(why) => tracing::warn!(conn, "ignoring a Link event: {why}"),
                            }
                        }
                        hub.send(HubEvent::FromServer { conn, events });
                    }
                    Ok(None) => break "stream ended".to_string(),
                    Err(status) => break format!("stream failed: {}", status.message()),
                }
            };
            hub.send(HubEvent::Detached { conn, reason });
        });

        let outbound = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
            .map(|batch| Ok(pb::ToServer::from(batch)));
        Ok(Response::new(Box::pin(outbound)))
    }
}

// === impl AdminService ===

/// Serves `PortalAdmin` for the supervisor.
pub struct AdminService {
    hub: HubSender,
    /// The TLS listener's certificate, read again at each Promote (a
    /// reload's, or a start's), if there is one.
    certificate: Option<Arc<Certificate>>,
}

impl AdminService {
    pub fn new(hub: HubSender, certificate: Option<Arc<Certificate>>) -> Self {
        Self { hub, certificate }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> AdminRequest,
    ) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.hub.send(HubEvent::Admin(make(tx)));
        rx.await
            .map_err(|_| Status::unavailable("the portal is shutting down"))
    }
}

fn counters_to_pb(c: Counters) -> pb::PortalCounters {
    let h = c.link_round_trip;
    pb::PortalCounters {
        inputs_received: c.inputs_received,
        inputs_applied: c.inputs_applied,
        inputs_replayed: c.inputs_replayed,
        inputs_quarantined: c.inputs_quarantined,
        sessions_opened: c.sessions_opened.into_iter().collect(),
        link_round_trip: Some(pb::MicrosHistogram {
            bounds_micros: h.bounds_micros,
            counts: h.counts,
            sum_micros: h.sum_micros,
            count: h.count,
        }),
    }
}

fn timeout_of(ms: u64) -> Duration {
    Duration::from_millis(if ms == 0 { 10_000 } else { ms })
}

#[tonic::async_trait]
impl pb::portal_admin_server::PortalAdmin for AdminService {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::PortalStatus>, Status> {
        let s = self.ask(AdminRequest::Status).await?;
        Ok(Response::new(pb::PortalStatus {
            pid: std::process::id(),
            sessions: s.sessions,
            logged_in: s.logged_in,
            servers: s
                .servers
                .into_iter()
                .map(|(hello, role, silent)| pb::ServerInfo {
                    generation: hello.generation,
                    pid: hello.pid,
                    build_id: hello.build_id,
                    role: pb::Role::from(role).into(),
                    version: Some(pb::Version {
                        major: hello.major,
                        minor: hello.minor,
                    }),
                    silent_ms: silent.as_millis() as u64,
                })
                .collect(),
            buffered_inputs: s.buffered_inputs,
            telnet_addr: s.telnet_addr,
            started_at_ms: s.started_at_ms,
            counters: Some(counters_to_pb(s.counters)),
            sessions_by_protocol: s.sessions_by_protocol.into_iter().collect(),
        }))
    }

    async fn wait_attached(
        &self,
        request: Request<pb::WaitAttachedRequest>,
    ) -> Result<Response<pb::WaitAttachedReply>, Status> {
        let r = request.into_inner();
        let wait = self.ask(|tx| AdminRequest::WaitAttached {
            generation: r.generation,
            reply: tx,
        });
        let reply = match tokio::time::timeout(timeout_of(r.timeout_ms), wait).await {
            Ok(Ok(Ok(()))) => pb::WaitAttachedReply {
                attached: true,
                error: String::new(),
            },
            Ok(Ok(Err(error))) => pb::WaitAttachedReply {
                attached: false,
                error,
            },
            Ok(Err(status)) => return Err(status),
            Err(_) => pb::WaitAttachedReply {
                attached: false,
                error: format!("not attached within {} ms", r.timeout_ms),
            },
        };
        Ok(Response::new(reply))
    }

    async fn promote(
        &self,
        request: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::PromoteReply>, Status> {
        let r = request.into_inner();
        // `evctl reload` also renews the certificate (the watch may be
        // off, or the files on a filesystem that tells no changes).
        if let Some(certificate) = &self.certificate {
            certificate.recheck();
        }
        let result = self
            .ask(|tx| AdminRequest::Promote {
                generation: r.generation,
                timeout: timeout_of(r.timeout_ms),
                reply: tx,
            })
            .await?;
        Ok(Response::new(match result {
            Ok(done) => pb::PromoteReply {
                ok: true,
                error: String::new(),
                dark_micros: done.dark.as_micros() as u64,
                sessions: done.sessions,
            },
            Err(error) => pb::PromoteReply {
                ok: false,
                error,
                dark_micros: 0,
                sessions: 0,
            },
        }))
    }

    async fn notice(
        &self,
        request: Request<pb::NoticeRequest>,
    ) -> Result<Response<pb::NoticeReply>, Status> {
        let pb::NoticeRequest { text, admins } = request.into_inner();
        self.hub
            .send(HubEvent::Admin(AdminRequest::Notice { text, admins }));
        Ok(Response::new(pb::NoticeReply {}))
    }

    async fn shutdown(
        &self,
        request: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownReply>, Status> {
        let r = request.into_inner();
        self.ask(|tx| AdminRequest::Shutdown {
            message: r.message,
            timeout: timeout_of(r.timeout_ms),
            reply: tx,
        })
        .await?;
        Ok(Response::new(pb::ShutdownReply {}))
    }
}

/// Both services on the portal's Unix socket, until `shutdown` fires.
pub async fn serve(
    socket: &std::path::Path,
    hub: HubSender,
    certificate: Option<Arc<Certificate>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let incoming = ev::uds::bind(socket)
        .map_err(|e| anyhow::anyhow!("binding the Link socket {}: {e}", socket.display()))?;
    tonic::transport::Server::builder()
        .add_service(
            pb::link_server::LinkServer::new(LinkService::new(hub.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(pb::portal_admin_server::PortalAdminServer::new(
            AdminService::new(hub, certificate),
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
