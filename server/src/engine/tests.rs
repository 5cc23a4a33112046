//! The engine over plain channels: batching, commit-then-send, Drain.

use std::time::Duration;

use ev::config::Synchronous;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::*;
use crate::auth::Hasher;
use crate::event::{SessionId, SessionState, Stage};
use crate::game::Rules;
use ev::link::PortalSession;

const S1: SessionId = SessionId(1);
const S2: SessionId = SessionId(2);
/// A deadline for each wait, never a sleep to wait for something.
const DEADLINE: Duration = Duration::from_secs(10);

struct Running {
    _dir: tempfile::TempDir,
    to_engine: mpsc::Sender<Vec<Inbound>>,
    from_engine: mpsc::Receiver<Batch>,
    task: JoinHandle<Result<(), EngineError>>,
}

fn start(max_batch: usize) -> Running {
    start_with(max_batch, |_| None)
}

/// `fault(dir)` names the store's fault file, if any.
fn start_with(
    max_batch: usize,
    fault: impl FnOnce(&std::path::Path) -> Option<std::path::PathBuf>,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("game.db"), Synchronous::Normal)
        .unwrap()
        .with_fault(fault(dir.path()));
    let game = Kernel::new(
        crate::game::tests::Fixture::default(),
        Rules {
            game_name: "T".into(),
            max_name_len: 20,
            min_password_len: 4,
            login: crate::game::Limits {
                failures_before_delay: 3,
                ..crate::game::test_limits()
            },
            version: "v".into(),
            test_commands: false,
            crowd_size: 100,
        },
    );
    let engine = Engine::new(
        game,
        store,
        Pool::new(
            Hasher::cheap().expect("cheap argon2 parameters are valid"),
            2,
        ),
        64,
        max_batch,
        Duration::ZERO,
    )
    .with_retry_max(Duration::from_millis(100));
    let (to_engine, inbound) = mpsc::channel(16);
    let (outbound, from_engine) = mpsc::channel(16);
    let task = tokio::spawn(async move {
        let mut engine = engine;
        engine.serve(inbound, outbound).await
    });
    Running {
        _dir: dir,
        to_engine,
        from_engine,
        task,
    }
}

impl Running {
    async fn send(&self, events: Vec<Inbound>) {
        self.to_engine.send(events).await.unwrap();
    }

    async fn recv(&mut self) -> Vec<Outbound> {
        tokio::time::timeout(DEADLINE, self.from_engine.recv())
            .await
            .expect("the engine answers in time")
            .expect("the engine is running")
            .events
    }

    async fn finish(self) -> Result<(), EngineError> {
        drop(self.to_engine);
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the engine ends in time")
            .unwrap()
    }
}

fn input(session: SessionId, seq: u64, text: &str) -> Inbound {
    Inbound::Input {
        session,
        seq,
        text: text.into(),
    }
}

fn sync_new(ids: &[SessionId]) -> Inbound {
    Inbound::Sync {
        sessions: ids
            .iter()
            .map(|&session| crate::event::Snapshot {
                portal: PortalSession {
                    id: session,
                    peer: "127.0.0.1:4000".into(),
                    ..Default::default()
                },
                acked_seq: 0,
                server: SessionState {
                    stage: Stage::Login,
                    ..SessionState::login()
                },
                output_seq: 0,
            })
            .collect(),
        last: true,
    }
}

#[tokio::test]
async fn heartbeat_is_answered_without_touching_the_database() {
    let mut r = start(8);
    r.send(vec![Inbound::Heartbeat {
        nonce: 42,
        reply: false,
    }])
    .await;
    assert_eq!(
        r.recv().await,
        vec![Outbound::Heartbeat {
            nonce: 42,
            reply: true,
        }]
    );
    assert!(matches!(r.finish().await, Err(EngineError::PortalGone)));
}

#[tokio::test]
async fn one_batch_in_one_batch_out_acks_last() {
    let mut r = start(8);
    r.send(vec![
        sync_new(&[S1, S2]),
        input(S1, 1, "ping a"),
        input(S2, 1, "ping b"),
        input(S1, 2, "ping c"),
    ])
    .await;
    let out = r.recv().await;
    assert_eq!(
        out,
        vec![
            Outbound::Ready { sessions: 2 },
            Outbound::Output {
                session: S1,
                seq: 1,
                text: "pong a".into(),
                form: ev::link::Form::LINE,
            },
            Outbound::Output {
                session: S2,
                seq: 1,
                text: "pong b".into(),
                form: ev::link::Form::LINE,
            },
            Outbound::Output {
                session: S1,
                seq: 2,
                text: "pong c".into(),
                form: ev::link::Form::LINE,
            },
            Outbound::Ack {
                session: S1,
                seq: 2
            },
            Outbound::Ack {
                session: S2,
                seq: 1
            },
        ]
    );
}

#[tokio::test]
async fn a_batch_larger_than_max_batch_is_split_into_transactions() {
    let mut r = start(2);
    r.send(vec![sync_new(&[S1])]).await;
    r.recv().await;
    r.send((1..=5).map(|seq| input(S1, seq, "ping")).collect())
        .await;
    let mut sizes = Vec::new();
    let mut acked = 0;
    while acked < 5 {
        let out = r.recv().await;
        sizes.push(out.len());
        if let Some(Outbound::Ack { seq, .. }) = out.last() {
            acked = *seq;
        }
    }
    // Two pongs and one ack per transaction, then the last one alone.
    assert_eq!(sizes, [3, 3, 2]);
}

#[tokio::test]
async fn drain_finishes_password_work_in_flight_then_says_drained() {
    let mut r = start(8);
    r.send(vec![sync_new(&[S1])]).await;
    r.recv().await;
    r.send(vec![
        input(S1, 1, "create Alice secret"),
        input(S1, 2, "say hi"),
        Inbound::Drain {
            reason: "reload".into(),
        },
        // Nothing after a Drain is applied: the portal gives it to the next server.
        input(S1, 3, "say late"),
    ])
    .await;
    let mut sent = Vec::new();
    loop {
        let out = r.recv().await;
        let done = out.contains(&Outbound::Drained);
        sent.extend(out);
        if done {
            break;
        }
    }
    assert_eq!(sent.last(), Some(&Outbound::Drained));
    let texts: Vec<&str> = sent
        .iter()
        .filter_map(|e| match e {
            Outbound::Output { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts[0], "Welcome, Alice!");
    assert_eq!(texts.last(), Some(&"You say, \"hi\""));
    assert!(sent.contains(&Outbound::Ack {
        session: S1,
        seq: 2
    }));
    assert!(!sent.contains(&Outbound::Ack {
        session: S1,
        seq: 3
    }));
    assert!(r.finish().await.is_ok());
}

#[tokio::test]
async fn portal_gone_is_an_error() {
    let r = start(8);
    assert!(matches!(r.finish().await, Err(EngineError::PortalGone)));
}

/// The outbox rows of `session`, read through a second connection.
fn outbox_seqs(r: &Running, session: SessionId) -> Vec<u64> {
    let mut store = Store::open(&r._dir.path().join("game.db"), Synchronous::Normal).unwrap();
    let tx = store.begin().unwrap();
    tx.outbox_after(session, 0)
        .unwrap()
        .into_iter()
        .map(|row| row.seq)
        .collect()
}

#[tokio::test]
async fn delivered_prunes_the_outbox_in_the_next_transaction_without_opening_one() {
    let mut r = start(8);
    r.send(vec![
        sync_new(&[S1]),
        input(S1, 1, "ping a"),
        input(S1, 2, "ping b"),
    ])
    .await;
    r.recv().await;
    assert_eq!(outbox_seqs(&r, S1), [1, 2]);
    // Delivered alone is answered by nothing and opens no transaction.
    r.send(vec![Inbound::Delivered {
        session: S1,
        seq: 1,
    }])
    .await;
    r.send(vec![Inbound::Heartbeat {
        nonce: 1,
        reply: false,
    }])
    .await;
    assert_eq!(
        r.recv().await,
        vec![Outbound::Heartbeat {
            nonce: 1,
            reply: true,
        }]
    );
    assert_eq!(outbox_seqs(&r, S1), [1, 2], "waits for a transaction");
    r.send(vec![input(S1, 3, "ping c")]).await;
    assert_eq!(
        r.recv().await,
        vec![
            Outbound::Output {
                session: S1,
                seq: 3,
                text: "pong c".into(),
                form: ev::link::Form::LINE,
            },
            Outbound::Ack {
                session: S1,
                seq: 3
            }
        ]
    );
    assert_eq!(outbox_seqs(&r, S1), [2, 3]);
    // In a batch with other work it is applied in order, in that transaction.
    r.send(vec![
        Inbound::Delivered {
            session: S1,
            seq: 3,
        },
        input(S1, 4, "ping d"),
    ])
    .await;
    r.recv().await;
    assert_eq!(outbox_seqs(&r, S1), [4]);
}

fn pong(session: SessionId, seq: u64, text: &str) -> Outbound {
    Outbound::Output {
        session,
        seq,
        text: text.into(),
        form: ev::link::Form::LINE,
    }
}

/// Storage fails (at the commit, or at the start of each transaction): the
/// engine answers heartbeats and nothing else, and once storage is back
/// every input is answered exactly once, in order, with nothing skipped.
async fn an_outage_holds_everything_until_storage_is_back(mode: &str) {
    let fault = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = fault.clone();
    let mut r = start_with(8, move |dir| {
        let path = dir.join("fault");
        *seen.lock().unwrap() = Some(path.clone());
        Some(path)
    });
    let path = fault.lock().unwrap().clone().unwrap();
    r.send(vec![sync_new(&[S1]), input(S1, 1, "ping a")]).await;
    assert_eq!(
        r.recv().await,
        vec![
            Outbound::Ready { sessions: 1 },
            pong(S1, 1, "pong a"),
            Outbound::Ack {
                session: S1,
                seq: 1
            }
        ]
    );

    std::fs::write(&path, mode).unwrap();
    r.send(vec![input(S1, 2, "ping b")]).await;
    r.send(vec![
        Inbound::Heartbeat {
            nonce: 7,
            reply: false,
        },
        input(S1, 3, "ping c"),
    ])
    .await;
    // Retried several times meanwhile (every 50 to 100 ms), yet only the
    // heartbeat is answered.
    assert_eq!(
        r.recv().await,
        vec![Outbound::Heartbeat {
            nonce: 7,
            reply: true,
        }]
    );
    r.send(vec![Inbound::Heartbeat {
        nonce: 8,
        reply: false,
    }])
    .await;
    assert_eq!(
        r.recv().await,
        vec![Outbound::Heartbeat {
            nonce: 8,
            reply: true,
        }]
    );

    std::fs::remove_file(&path).unwrap();
    let mut got = Vec::new();
    while !got.contains(&Outbound::Ack {
        session: S1,
        seq: 3,
    }) {
        got.extend(r.recv().await);
    }
    let outputs: Vec<&Outbound> = got
        .iter()
        .filter(|e| matches!(e, Outbound::Output { .. }))
        .collect();
    assert_eq!(outputs, [&pong(S1, 2, "pong b"), &pong(S1, 3, "pong c")]);

    // And the game goes on from there, in memory and on disk alike.
    r.send(vec![input(S1, 4, "ping d")]).await;
    assert_eq!(
        r.recv().await,
        vec![
            pong(S1, 4, "pong d"),
            Outbound::Ack {
                session: S1,
                seq: 4
            }
        ]
    );
    assert!(matches!(r.finish().await, Err(EngineError::PortalGone)));
}

#[tokio::test]
async fn a_failed_commit_is_retried_with_its_writes_not_lost_or_doubled() {
    an_outage_holds_everything_until_storage_is_back("commit").await;
}

#[tokio::test]
async fn a_transaction_that_cannot_begin_waits_with_its_events() {
    an_outage_holds_everything_until_storage_is_back("begin").await;
}

#[test]
fn retries_wait_50_ms_doubling_to_the_limit() {
    let max = Duration::from_millis(1000);
    let waits: Vec<u128> = (0..7).map(|n| retry_delay(n, max).as_millis()).collect();
    assert_eq!(waits, [50, 100, 200, 400, 800, 1000, 1000]);
    assert_eq!(retry_delay(u32::MAX, max), max);
    // A limit below the first wait does not make the retries spin.
    assert_eq!(retry_delay(3, Duration::ZERO), RETRY_FIRST);
}
