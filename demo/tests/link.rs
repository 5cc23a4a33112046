//! The server against a fake portal: a tonic `Link` service on a Unix socket
//! in a temporary game directory. In-process (`ev_server::run`) for the Link
//! conversation, and through the real binaries for exit codes and
//! `create-admin`. Every wait has a deadline; nothing waits by sleeping.

// A test that fails should say where: unwrap, expect and panic are how.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ev::gamedir::GameDir;
use ev::pb::link as pb;
use ev::pb::link::link_server::{Link, LinkServer};
use pb::portal_event::Kind as Out;
use pb::server_event::Kind as In;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

const DEADLINE: Duration = Duration::from_secs(20);

/// One server's stream, as the fake portal sees it.
struct Conn {
    from_server: Streaming<pb::ToPortal>,
    to_server: mpsc::Sender<Result<pb::ToServer, Status>>,
}

struct FakePortal {
    conns: mpsc::Sender<Conn>,
}

#[tonic::async_trait]
impl Link for FakePortal {
    type AttachStream = ReceiverStream<Result<pb::ToServer, Status>>;

    async fn attach(
        &self,
        request: Request<Streaming<pb::ToPortal>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let (to_server, rx) = mpsc::channel(64);
        let conn = Conn {
            from_server: request.into_inner(),
            to_server,
        };
        self.conns
            .send(conn)
            .await
            .map_err(|_| Status::unavailable("test over"))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct Game {
    dir: tempfile::TempDir,
    game_dir: GameDir,
}

fn game() -> Game {
    let dir = tempfile::tempdir().unwrap();
    let game_dir = GameDir::new(dir.path());
    game_dir.create_dirs().unwrap();
    std::fs::write(
        game_dir.config_path(),
        "[game]\nname = \"Fake\"\n[server]\nstart_timeout_ms = 15000\n\
         [auth]\nargon2_memory_kib = 8\nargon2_iterations = 1\n",
    )
    .unwrap();
    Game { dir, game_dir }
}

/// Serves the fake portal on the game's Link socket; yields each attach.
fn serve_portal(game_dir: &GameDir) -> mpsc::Receiver<Conn> {
    let incoming = ev::uds::bind(&game_dir.link_socket()).unwrap();
    let (conns, rx) = mpsc::channel(4);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LinkServer::new(FakePortal { conns }))
            .serve_with_incoming(incoming),
    );
    rx
}

fn options(game_dir: &GameDir) -> ev_server::ServerOptions {
    ev_server::ServerOptions {
        game_dir: game_dir.clone(),
        generation: 7,
        build_id: "test-build".into(),
        link_major: ev::version::LINK_MAJOR,
        version_text: None,
        failpoint: None,
        test_commands: false,
        storage_fault: None,
        crash_after: None,
        migrate_past: None,
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

impl Conn {
    async fn next(&mut self) -> Vec<pb::PortalEvent> {
        within("a message from the server", self.from_server.message())
            .await
            .expect("stream healthy")
            .expect("stream open")
            .events
    }

    async fn hello(&mut self) -> pb::ServerHello {
        let mut events = self.next().await;
        assert_eq!(events.len(), 1, "the hello comes alone: {events:?}");
        match events.pop().and_then(|e| e.kind) {
            Some(Out::Hello(hello)) => hello,
            other => panic!("first message is not a hello: {other:?}"),
        }
    }

    async fn send(&self, events: Vec<In>) {
        let batch = pb::ToServer {
            events: events
                .into_iter()
                .map(|kind| pb::ServerEvent { kind: Some(kind) })
                .collect(),
        };
        self.to_server.send(Ok(batch)).await.unwrap();
    }

    async fn answer_hello(&self, major: u32, role: pb::Role, refused: &str) {
        self.send(vec![In::Hello(pb::PortalHello {
            version: Some(pb::Version { major, minor: 3 }),
            build_id: "fake-portal".into(),
            role: role.into(),
            refused: refused.into(),
        })])
        .await;
    }

    /// Reads until `stop` matches an event; returns everything read.
    async fn until(&mut self, stop: impl Fn(&Out) -> bool) -> Vec<Out> {
        let mut seen = Vec::new();
        loop {
            for event in self.next().await {
                let Some(kind) = event.kind else { continue };
                let done = stop(&kind);
                seen.push(kind);
                if done {
                    return seen;
                }
            }
        }
    }
}

/// The text of each Output to `session`, as plain text (what a client
/// without colour sees of the markup).
fn texts(events: &[Out], session: u64) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Out::Output(o) if o.session == session && o.markup => Some(ev::markup::plain(&o.text)),
            Out::Output(o) if o.session == session => Some(o.text.clone()),
            _ => None,
        })
        .collect()
}

fn portal_session(id: u64) -> pb::PortalSession {
    pb::PortalSession {
        id,
        protocol: "telnet".into(),
        ..Default::default()
    }
}

fn input(session: u64, seq: u64, text: &str) -> In {
    In::Input(pb::Input {
        session,
        seq,
        text: text.into(),
    })
}

fn acked(session: u64, seq: u64) -> impl Fn(&Out) -> bool {
    move |e| matches!(e, Out::Ack(a) if a.session == session && a.seq >= seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_server_plays_then_drains() {
    let g = game();
    // The server starts first and waits for the portal's socket to appear.
    let server = tokio::spawn(ev_server::run(
        options(&g.game_dir),
        ev_demo::Demo::default(),
    ));
    let mut conns = serve_portal(&g.game_dir);
    let mut conn = within("the server to attach", conns.recv()).await.unwrap();

    let hello = conn.hello().await;
    assert_eq!(
        hello.version,
        Some(pb::Version {
            major: ev::version::LINK_MAJOR,
            minor: ev::version::LINK_MINOR
        })
    );
    assert_eq!(hello.build_id, "test-build");
    assert_eq!(hello.generation, 7);
    assert_eq!(hello.pid, std::process::id());

    conn.answer_hello(ev::version::LINK_MAJOR, pb::Role::Active, "")
        .await;
    conn.send(vec![In::Sync(pb::SyncChunk {
        sessions: vec![],
        last: true,
    })])
    .await;
    let seen = conn.until(|e| matches!(e, Out::Ready(_))).await;
    assert_eq!(seen, vec![Out::Ready(pb::Ready { sessions: 0 })]);

    conn.send(vec![In::Opened(pb::SessionOpened {
        session: Some(portal_session(1)),
    })])
    .await;
    let seen = conn.until(|e| matches!(e, Out::Update(_))).await;
    assert!(texts(&seen, 1)[0].starts_with("Welcome to Fake!\n"));

    conn.send(vec![
        input(1, 1, "create Alice secret"),
        input(1, 2, "version"),
    ])
    .await;
    let seen = conn.until(acked(1, 2)).await;
    assert_eq!(
        texts(&seen, 1),
        [
            "Welcome, Alice!",
            "Limbo\nA quiet grey space where new arrivals gather. Far below, through a shimmer of light, lies a town.\nExits: down\nYou are alone here.",
            &format!(
                "ev-server {} (build test-build, link {}.{})",
                env!("CARGO_PKG_VERSION"),
                ev::version::LINK_MAJOR,
                ev::version::LINK_MINOR
            ),
        ]
    );
    // After the welcome screen (1) and the login stage (2); the character
    // is an object made after the demo's world.
    assert!(
        seen.iter()
            .any(|e| matches!(e, Out::Update(pb::SessionUpdate {
            session: 1,
            server: Some(s),
            seq: 3,
        }) if s.stage == i32::from(pb::Stage::Playing) && s.account_id == 1 && s.character_id > 1)),
        "{seen:?}"
    );
    let alice = seen
        .iter()
        .find_map(|e| match e {
            Out::Update(u) => u.server.as_ref().map(|s| s.character_id),
            _ => None,
        })
        .filter(|&id| id > 1);
    let alice = alice.or_else(|| {
        seen.iter().rev().find_map(|e| match e {
            Out::Update(u) => u.server.as_ref().map(|s| s.character_id),
            _ => None,
        })
    });
    let alice = alice.expect("Alice's character");

    conn.send(vec![In::Heartbeat(pb::Heartbeat {
        nonce: 11,
        reply: false,
    })])
    .await;
    let seen = conn.until(|e| matches!(e, Out::Heartbeat(_))).await;
    assert_eq!(
        seen,
        vec![Out::Heartbeat(pb::Heartbeat {
            nonce: 11,
            reply: true
        })]
    );

    conn.send(vec![
        input(1, 3, "say bye"),
        In::Drain(pb::Drain {
            reason: "reload".into(),
        }),
    ])
    .await;
    let seen = conn.until(|e| matches!(e, Out::Drained(_))).await;
    assert_eq!(texts(&seen, 1), ["You say, \"bye\""]);
    assert!(seen.iter().any(acked(1, 3)));
    // Our side of the stream ends after Drained; then we close ours.
    assert!(
        within("the server to close its stream", conn.from_server.message())
            .await
            .unwrap()
            .is_none()
    );
    drop(conn);
    within("the server to exit", server)
        .await
        .unwrap()
        .expect("a drained server exits cleanly");

    // A new server over the same database restores the session from a Sync
    // and skips the input the old one applied.
    let server = tokio::spawn(ev_server::run(
        options(&g.game_dir),
        ev_demo::Demo::default(),
    ));
    let mut conn = within("the server to attach", conns.recv()).await.unwrap();
    conn.hello().await;
    conn.answer_hello(ev::version::LINK_MAJOR, pb::Role::Standby, "")
        .await;
    conn.send(vec![In::Heartbeat(pb::Heartbeat {
        nonce: 1,
        reply: false,
    })])
    .await;
    conn.until(|e| matches!(e, Out::Heartbeat(_))).await;
    conn.send(vec![In::Sync(pb::SyncChunk {
        sessions: vec![pb::SessionSnapshot {
            portal: Some(portal_session(1)),
            server: Some(pb::ServerSession {
                stage: pb::Stage::Playing.into(),
                account_id: 1,
                character_id: alice,
                extra: vec![],
                ..Default::default()
            }),
            acked_seq: 2,
            // Everything the first server sent was delivered (its Room.Info
            // and Char.Vitals at login are two of them).
            output_seq: 9,
        }],
        last: true,
    })])
    .await;
    let seen = conn.until(|e| matches!(e, Out::Ready(_))).await;
    assert_eq!(seen, vec![Out::Ready(pb::Ready { sessions: 1 })]);
    conn.send(vec![input(1, 3, "say bye"), input(1, 4, "who")])
        .await;
    let seen = conn.until(acked(1, 4)).await;
    assert_eq!(texts(&seen, 1), ["Players online (1): Alice"]);
    assert!(
        seen.iter()
            .any(|e| matches!(e, Out::Output(o) if o.session == 1 && o.seq == 10)),
        "the output seq goes on from the first server's: {seen:?}"
    );

    // The portal goes away without a Drain: an error (exit code 1).
    drop(conn);
    drop(conns);
    let err = within("the server to exit", server)
        .await
        .unwrap()
        .expect_err("losing the portal is an error");
    assert_eq!(ev_server::exit_code(&err), 1);
    assert!(err.to_string().contains("without a Drain"), "{err:#}");
    drop(g.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_and_version_mismatch_exit_with_code_2() {
    let g = game();
    let mut conns = serve_portal(&g.game_dir);

    let server = tokio::spawn(ev_server::run(
        options(&g.game_dir),
        ev_demo::Demo::default(),
    ));
    let mut conn = within("attach", conns.recv()).await.unwrap();
    conn.hello().await;
    conn.answer_hello(
        ev::version::LINK_MAJOR,
        pb::Role::Unspecified,
        "generation 7 is stale",
    )
    .await;
    let err = within("exit", server).await.unwrap().unwrap_err();
    assert_eq!(ev_server::exit_code(&err), 2);
    assert!(err.to_string().contains("generation 7 is stale"), "{err:#}");

    let server = tokio::spawn(ev_server::run(
        options(&g.game_dir),
        ev_demo::Demo::default(),
    ));
    let mut conn = within("attach", conns.recv()).await.unwrap();
    conn.hello().await;
    conn.answer_hello(9, pb::Role::Active, "").await;
    let err = within("exit", server).await.unwrap().unwrap_err();
    assert_eq!(ev_server::exit_code(&err), 2);
    assert_eq!(
        err.to_string(),
        format!(
            "link version mismatch: portal speaks 9.3, this server speaks {}.{}",
            ev::version::LINK_MAJOR,
            ev::version::LINK_MINOR
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_portal_is_an_error_after_the_start_timeout() {
    let g = game();
    std::fs::write(
        g.game_dir.config_path(),
        "[server]\nstart_timeout_ms = 200\n",
    )
    .unwrap();
    let err = within(
        "exit",
        ev_server::run(options(&g.game_dir), ev_demo::Demo::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(ev_server::exit_code(&err), 1);
    assert!(err.to_string().contains("portal.sock"), "{err:#}");
}

fn binary(name: &str, game_dir: &Path) -> tokio::process::Command {
    let path = match name {
        "ev-server" => env!("CARGO_BIN_EXE_ev-server"),
        _ => env!("CARGO_BIN_EXE_ev-test-server"),
    };
    let mut command = tokio::process::Command::new(path);
    command
        .arg("--game-dir")
        .arg(game_dir)
        .env_remove("EV_GAME_DIR")
        .env_remove("EV_TEST_LINK_MAJOR")
        .env_remove("EV_TEST_VERSION")
        .env("EV_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_build_claims_the_link_major_it_is_told_and_exits_2_when_refused() {
    let g = game();
    let mut conns = serve_portal(&g.game_dir);
    let mut child = binary("ev-test-server", g.game_dir.root())
        .env("EV_TEST_LINK_MAJOR", "42")
        .env("EV_GENERATION", "3")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut conn = within("attach", conns.recv()).await.unwrap();
    let hello = conn.hello().await;
    assert_eq!(hello.version.unwrap().major, 42);
    assert_eq!(hello.generation, 3);
    conn.answer_hello(
        ev::version::LINK_MAJOR,
        pb::Role::Unspecified,
        "link 42.0 is not 1.x",
    )
    .await;
    let status = within("exit", child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(2));
    let mut stderr = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("ERROR"), "{stderr}");
    assert!(stderr.contains("link 42.0 is not 1.x"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_admin_makes_an_account_once() {
    let g = game();
    let run = |password: Option<&str>, name: &str| {
        let mut command = binary("ev-server", g.game_dir.root());
        command.arg("create-admin").arg(name);
        match password {
            Some(p) => command.env("EV_ADMIN_PASSWORD", p),
            None => command.env_remove("EV_ADMIN_PASSWORD"),
        };
        command.output()
    };
    let out = within("create-admin", run(Some("hunter22"), "Root"))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "created admin Root (account 1, character 1)\n"
    );
    let out = within("create-admin", run(Some("hunter22"), "root"))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken"));
    let out = within("create-admin", run(None, "Other")).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("EV_ADMIN_PASSWORD"));

    // The admin can log in through a server.
    let mut conns = serve_portal(&g.game_dir);
    let server = tokio::spawn(ev_server::run(
        options(&g.game_dir),
        ev_demo::Demo::default(),
    ));
    let mut conn = within("attach", conns.recv()).await.unwrap();
    conn.hello().await;
    conn.answer_hello(ev::version::LINK_MAJOR, pb::Role::Active, "")
        .await;
    conn.send(vec![
        In::Sync(pb::SyncChunk {
            sessions: vec![snapshot(5), snapshot(6)],
            last: true,
        }),
        input(5, 1, "connect ROOT hunter22"),
    ])
    .await;
    // Issue 11: its first login is not greeted as a return.
    let seen = conn.until(acked(5, 1)).await;
    assert!(
        texts(&seen, 5).iter().any(|t| t == "Welcome, Root!"),
        "{seen:?}"
    );
    conn.send(vec![input(6, 1, "connect root hunter22")]).await;
    let seen = conn.until(acked(6, 1)).await;
    assert!(
        texts(&seen, 6).iter().any(|t| t == "Welcome back, Root!"),
        "{seen:?}"
    );
    conn.send(vec![In::Drain(pb::Drain::default())]).await;
    conn.until(|e| matches!(e, Out::Drained(_))).await;
    drop(conn);
    within("exit", server).await.unwrap().unwrap();
}

fn snapshot(session: u64) -> pb::SessionSnapshot {
    pb::SessionSnapshot {
        portal: Some(portal_session(session)),
        server: None,
        acked_seq: 0,
        output_seq: 0,
    }
}

/// Issue 11: `set-password` replaces an account's password (from
/// `EV_NEW_PASSWORD`, never argv); the old one no longer logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_password_replaces_the_password_of_an_account() {
    let g = game();
    let mut command = binary("ev-server", g.game_dir.root());
    command
        .args(["create-admin", "Root"])
        .env("EV_ADMIN_PASSWORD", "hunter22");
    let out = within("create-admin", command.output()).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let set = |name: &str, password: Option<&str>| {
        let mut command = binary("ev-server", g.game_dir.root());
        command.arg("set-password").arg(name);
        match password {
            Some(p) => command.env("EV_NEW_PASSWORD", p),
            None => command.env_remove("EV_NEW_PASSWORD"),
        };
        command.output()
    };
    let out = within("set-password", set("ROOT", Some("newpass22")))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "set the password of Root\n"
    );
    for (name, password, said) in [
        ("Nobody", Some("newpass22"), "no account named Nobody"),
        ("Root", None, "EV_NEW_PASSWORD"),
        ("Root", Some("abc"), "at least"),
        ("Root", Some("has space"), "no spaces"),
    ] {
        let out = within("set-password", set(name, password)).await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name} {password:?}: {stderr}");
        assert!(stderr.contains(said), "{name} {password:?}: {stderr}");
    }

    let mut conns = serve_portal(&g.game_dir);
    let server = tokio::spawn(ev_server::run(
        options(&g.game_dir),
        ev_demo::Demo::default(),
    ));
    let mut conn = within("attach", conns.recv()).await.unwrap();
    conn.hello().await;
    conn.answer_hello(ev::version::LINK_MAJOR, pb::Role::Active, "")
        .await;
    conn.send(vec![
        In::Sync(pb::SyncChunk {
            sessions: vec![snapshot(5)],
            last: true,
        }),
        input(5, 1, "connect root hunter22"),
    ])
    .await;
    let seen = conn.until(acked(5, 1)).await;
    assert!(
        texts(&seen, 5)
            .iter()
            .any(|t| t == "Wrong name or password."),
        "{seen:?}"
    );
    conn.send(vec![input(5, 2, "connect root newpass22")]).await;
    let seen = conn.until(acked(5, 2)).await;
    assert!(
        texts(&seen, 5).iter().any(|t| t == "Welcome, Root!"),
        "{seen:?}"
    );
    conn.send(vec![In::Drain(pb::Drain::default())]).await;
    conn.until(|e| matches!(e, Out::Drained(_))).await;
    drop(conn);
    within("exit", server).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_build_prints_the_version_it_is_told() {
    let g = game();
    let mut conns = serve_portal(&g.game_dir);
    let mut child = binary("ev-test-server", g.game_dir.root())
        .env("EV_TEST_VERSION", "rebuilt binary #2")
        .spawn()
        .unwrap();
    let mut conn = within("attach", conns.recv()).await.unwrap();
    assert_eq!(
        conn.hello().await.version.unwrap().major,
        ev::version::LINK_MAJOR
    );
    conn.answer_hello(ev::version::LINK_MAJOR, pb::Role::Active, "")
        .await;
    conn.send(vec![
        In::Sync(pb::SyncChunk {
            sessions: vec![],
            last: true,
        }),
        In::Opened(pb::SessionOpened {
            session: Some(portal_session(1)),
        }),
        input(1, 1, "create Vera secret"),
        input(1, 2, "version"),
    ])
    .await;
    let seen = conn.until(acked(1, 2)).await;
    assert_eq!(
        texts(&seen, 1).last().map(String::as_str),
        Some("rebuilt binary #2")
    );
    conn.send(vec![In::Drain(pb::Drain::default())]).await;
    conn.until(|e| matches!(e, Out::Drained(_))).await;
    drop(conn);
    let status = within("exit", child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

// === crashes: failpoints, poison input, the command watchdog ===

/// `ev-test-server` on the game, attached to the fake portal as the active
/// server, with session 1 opened and its welcome screen (seqs 1 and 2)
/// reported delivered with the next batch.
async fn crashing_server(
    g: &Game,
    conns: &mut mpsc::Receiver<Conn>,
    env: &[(&str, &str)],
) -> (tokio::process::Child, Conn) {
    let mut command = binary("ev-test-server", g.game_dir.root());
    command
        .env_remove("EV_FAILPOINT")
        .current_dir(g.dir.path())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().unwrap();
    let mut conn = within("attach", conns.recv()).await.unwrap();
    conn.hello().await;
    conn.answer_hello(ev::version::LINK_MAJOR, pb::Role::Active, "")
        .await;
    conn.send(vec![
        In::Sync(pb::SyncChunk {
            sessions: vec![],
            last: true,
        }),
        In::Opened(pb::SessionOpened {
            session: Some(portal_session(1)),
        }),
    ])
    .await;
    let seen = conn.until(|e| matches!(e, Out::Update(_))).await;
    assert_eq!(seqs(&seen, 1), [1, 2]);
    (child, conn)
}

/// Everything the server sent until its stream broke, and its stderr;
/// asserts that it died of an abort.
async fn aborted(mut child: tokio::process::Child, mut conn: Conn) -> (Vec<Out>, String) {
    let mut seen = Vec::new();
    while let Ok(Some(batch)) = within("the stream to end", conn.from_server.message()).await {
        seen.extend(batch.events.into_iter().filter_map(|e| e.kind));
    }
    let status = within("the server to die", child.wait()).await.unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(6), "aborted (SIGABRT): {status:?}");
    let mut stderr = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    (seen, stderr)
}

/// A second server (in-process) on the same database and fake portal,
/// given session 1 at the login screen with `delivered` as the portal's
/// output mark. Returns what it sent up to its Ready.
async fn restarted(
    g: &Game,
    conns: &mut mpsc::Receiver<Conn>,
    delivered: u64,
) -> (tokio::task::JoinHandle<anyhow::Result<()>>, Conn, Vec<Out>) {
    let server = tokio::spawn(ev_server::run(
        options(&g.game_dir),
        ev_demo::Demo::default(),
    ));
    let mut conn = within("attach", conns.recv()).await.unwrap();
    conn.hello().await;
    conn.answer_hello(ev::version::LINK_MAJOR, pb::Role::Active, "")
        .await;
    conn.send(vec![In::Sync(pb::SyncChunk {
        sessions: vec![pb::SessionSnapshot {
            portal: Some(portal_session(1)),
            server: Some(pb::ServerSession {
                stage: pb::Stage::Login.into(),
                ..Default::default()
            }),
            acked_seq: 0,
            output_seq: delivered,
        }],
        last: true,
    })])
    .await;
    let seen = conn.until(|e| matches!(e, Out::Ready(_))).await;
    (server, conn, seen)
}

/// The output seqs of session `session`'s sequenced events, in order.
fn seqs(events: &[Out], session: u64) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Out::Output(o) if o.session == session => Some(o.seq),
            Out::Update(u) if u.session == session => Some(u.seq),
            Out::Disconnect(d) if d.session == session => Some(d.seq),
            _ => None,
        })
        .collect()
}

fn delivered(session: u64, seq: u64) -> In {
    In::Delivered(pb::Delivered { session, seq })
}

async fn drain(server: tokio::task::JoinHandle<anyhow::Result<()>>, mut conn: Conn) {
    conn.send(vec![In::Drain(pb::Drain::default())]).await;
    conn.until(|e| matches!(e, Out::Drained(_))).await;
    drop(conn);
    within("exit", server).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_committed_before_a_crash_is_resent_exactly_once() {
    let g = game();
    let mut conns = serve_portal(&g.game_dir);
    let (child, conn) = crashing_server(&g, &mut conns, &[("EV_FAILPOINT", "after_commit")]).await;
    conn.send(vec![delivered(1, 2), input(1, 1, "ping hello")])
        .await;
    let (seen, stderr) = aborted(child, conn).await;
    assert!(seen.is_empty(), "nothing left after the commit: {seen:?}");
    assert!(stderr.contains("failpoint after_commit hit"), "{stderr}");

    // The portal still has the input un-acked and delivered nothing new.
    let (server, mut conn, seen) = restarted(&g, &mut conns, 0).await;
    assert_eq!(
        seen,
        [
            Out::Output(pb::Output {
                session: 1,
                text: "pong hello".into(),
                seq: 3,
                markup: true,
                ..Default::default()
            }),
            Out::Ready(pb::Ready { sessions: 1 })
        ],
        "the committed reply, re-sent before Ready; the delivered welcome is not"
    );
    // The replayed input is only acknowledged; new output goes on from 4.
    conn.send(vec![input(1, 1, "ping hello"), input(1, 2, "ping again")])
        .await;
    let seen = conn.until(acked(1, 2)).await;
    assert_eq!(texts(&seen, 1), ["pong again"]);
    assert_eq!(seqs(&seen, 1), [4]);
    drain(server, conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_sent_before_a_crash_is_not_sent_again() {
    let g = game();
    let mut conns = serve_portal(&g.game_dir);
    let (child, conn) = crashing_server(&g, &mut conns, &[("EV_FAILPOINT", "after_output")]).await;
    conn.send(vec![delivered(1, 2), input(1, 1, "ping hello")])
        .await;
    let (seen, stderr) = aborted(child, conn).await;
    assert_eq!(
        seen,
        [Out::Output(pb::Output {
            session: 1,
            text: "pong hello".into(),
            seq: 3,
            markup: true,
            ..Default::default()
        })],
        "the output, never its ack"
    );
    assert!(stderr.contains("failpoint after_output hit"), "{stderr}");

    // The portal delivered the pong (mark 3) but holds the input un-acked.
    let (server, mut conn, seen) = restarted(&g, &mut conns, 3).await;
    assert_eq!(seen, [Out::Ready(pb::Ready { sessions: 1 })]);
    conn.send(vec![input(1, 1, "ping hello"), input(1, 2, "ping again")])
        .await;
    let seen = conn.until(acked(1, 2)).await;
    assert_eq!(texts(&seen, 1), ["pong again"]);
    assert_eq!(seqs(&seen, 1), [4]);
    drain(server, conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_group_commit_applies_none_of_it() {
    let g = game();
    let mut conns = serve_portal(&g.game_dir);
    let (child, conn) = crashing_server(&g, &mut conns, &[("EV_FAILPOINT", "mid_batch")]).await;
    conn.send(vec![
        delivered(1, 2),
        input(1, 1, "ping a"),
        input(1, 2, "ping b"),
    ])
    .await;
    let (seen, stderr) = aborted(child, conn).await;
    assert!(seen.is_empty(), "{seen:?}");
    assert!(stderr.contains("failpoint mid_batch hit"), "{stderr}");

    let (server, mut conn, seen) = restarted(&g, &mut conns, 2).await;
    assert_eq!(seen, [Out::Ready(pb::Ready { sessions: 1 })]);
    conn.send(vec![input(1, 1, "ping a"), input(1, 2, "ping b")])
        .await;
    let seen = conn.until(acked(1, 2)).await;
    assert_eq!(texts(&seen, 1), ["pong a", "pong b"]);
    assert_eq!(seqs(&seen, 1), [3, 4]);
    drain(server, conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failpoint_counts_only_batches_with_input() {
    let g = game();
    let mut conns = serve_portal(&g.game_dir);
    let (child, mut conn) =
        crashing_server(&g, &mut conns, &[("EV_FAILPOINT", "after_commit:2")]).await;
    conn.send(vec![input(1, 1, "ping one")]).await;
    let seen = conn.until(acked(1, 1)).await;
    assert_eq!(texts(&seen, 1), ["pong one"]);
    // Batches without input do not count.
    conn.send(vec![In::Heartbeat(pb::Heartbeat {
        nonce: 3,
        reply: false,
    })])
    .await;
    conn.until(|e| matches!(e, Out::Heartbeat(_))).await;
    conn.send(vec![input(1, 2, "ping two")]).await;
    let (seen, stderr) = aborted(child, conn).await;
    assert!(seen.is_empty(), "{seen:?}");
    assert!(stderr.contains("failpoint after_commit hit"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_failpoint_stops_the_test_server_at_once() {
    let g = game();
    let out = binary("ev-test-server", g.game_dir.root())
        .env("EV_FAILPOINT", "before_lunch")
        .output();
    let out = within("exit", out).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown failpoint \"before_lunch\""),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_command_aborts_the_test_server() {
    let g = game();
    let mut conns = serve_portal(&g.game_dir);
    let (child, conn) = crashing_server(&g, &mut conns, &[]).await;
    conn.send(vec![input(1, 1, "@crash")]).await;
    let (seen, stderr) = aborted(child, conn).await;
    assert!(seen.is_empty(), "{seen:?}");
    assert!(stderr.contains("@crash"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_aborts_a_server_stuck_in_a_command() {
    let g = game();
    std::fs::write(
        g.game_dir.config_path(),
        "[game]\nname = \"Fake\"\n[server]\nstart_timeout_ms = 15000\ncommand_timeout_ms = 200\n\
         [auth]\nargon2_memory_kib = 8\nargon2_iterations = 1\n",
    )
    .unwrap();
    let mut conns = serve_portal(&g.game_dir);
    let (child, mut conn) = crashing_server(&g, &mut conns, &[]).await;
    // Quick commands are well within the limit.
    conn.send(vec![input(1, 1, "ping")]).await;
    conn.until(acked(1, 1)).await;
    conn.send(vec![input(1, 2, "@hang")]).await;
    let (seen, stderr) = aborted(child, conn).await;
    assert!(seen.is_empty(), "{seen:?}");
    assert!(stderr.contains("command watchdog"), "{stderr}");
    assert!(
        stderr.contains("input 2 of session 1: \"@hang\""),
        "names what hung: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_server_has_no_test_commands() {
    let g = game();
    let mut conns = serve_portal(&g.game_dir);
    let server = tokio::spawn(ev_server::run(
        options(&g.game_dir),
        ev_demo::Demo::default(),
    ));
    let mut conn = within("attach", conns.recv()).await.unwrap();
    conn.hello().await;
    conn.answer_hello(ev::version::LINK_MAJOR, pb::Role::Active, "")
        .await;
    conn.send(vec![
        In::Sync(pb::SyncChunk {
            sessions: vec![],
            last: true,
        }),
        In::Opened(pb::SessionOpened {
            session: Some(portal_session(1)),
        }),
        input(1, 1, "@crash"),
        input(1, 2, "@hang"),
    ])
    .await;
    let seen = conn.until(acked(1, 2)).await;
    assert_eq!(
        &texts(&seen, 1)[1..],
        [
            "Unknown command '@crash'. Type create NAME PASSWORD, connect NAME PASSWORD, or help.",
            "Unknown command '@hang'. Type create NAME PASSWORD, connect NAME PASSWORD, or help."
        ]
    );
    drain(server, conn).await;
}
