//! The portal in process, on a real Unix socket and a real TCP port, with a
//! fake server on the Link: checks the wire protocols end to end.

// A test that fails should say where: unwrap, expect and panic are how.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use ev::pb::link as pb;
use pb::portal_event::Kind as P;
use pb::server_event::Kind as S;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

#[tokio::test]
async fn telnet_line_crosses_the_link_and_the_reply_comes_back() {
    let portal = start_portal(|_| {}).await;
    let (mut server, hello) = FakeServer::attach(&portal.game, ev::version::LINK_MAJOR, 1).await;
    assert_eq!(hello.role, pb::Role::Active as i32);
    assert!(hello.refused.is_empty());

    let mut client = telnet(&portal).await;
    let session = match server.next_event(|k| matches!(k, S::Opened(_))).await {
        S::Opened(o) => o.session.unwrap().id,
        _ => unreachable!(),
    };
    // Negotiation bytes around the text must never reach the server.
    client
        .get_mut()
        .write_all(b"\xff\xfd\x18ping \xff\xff1\r\n")
        .await
        .unwrap();
    let input = match server.next_event(|k| matches!(k, S::Input(_))).await {
        S::Input(i) => i,
        _ => unreachable!(),
    };
    assert_eq!(
        (input.session, input.seq, input.text.as_str()),
        (session, 1, "ping \u{fffd}1")
    );
    server
        .send(vec![
            P::Output(pb::Output {
                session,
                text: "pong 1".into(),
                seq: 1,
                ..Default::default()
            }),
            P::Ack(pb::Ack { session, seq: 1 }),
        ])
        .await;
    // The offers come first, then the refusal of DO TTYPE (the client's
    // option: ours to ask for, not to do), then the reply.
    let mut got = Vec::new();
    while !got.ends_with(b"pong 1\r\n") {
        let mut line = Vec::new();
        tokio::time::timeout(DEADLINE, client.read_until(b'\n', &mut line))
            .await
            .unwrap()
            .unwrap();
        assert!(!line.is_empty(), "connection closed early");
        got.extend(line);
    }
    let offers = [
        255, 251, 86, 255, 251, 3, 255, 253, 24, 255, 253, 31, 255, 251, 42, 255, 251, 70, 255,
        251, 25, 255, 251, 201, 255, 251, 69,
    ];
    assert!(got.starts_with(&offers), "{got:?}");
    assert_eq!(
        &got[offers.len()..offers.len() + 3],
        [255, 252, 0x18],
        "{got:?}"
    );

    // The server asks for a disconnect: the portal closes the connection.
    server
        .send(vec![P::Disconnect(pb::Disconnect {
            session,
            reason: "quit".into(),
            seq: 2,
        })])
        .await;
    let mut rest = String::new();
    tokio::time::timeout(
        DEADLINE,
        tokio::io::AsyncReadExt::read_to_string(&mut client, &mut rest),
    )
    .await
    .expect("connection not closed")
    .unwrap();
    let closed = server.next_event(|k| matches!(k, S::Closed(_))).await;
    assert!(matches!(closed, S::Closed(c) if c.session == session));
    portal.stop.cancel();
    portal.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn long_line_is_refused_and_never_reaches_the_server() {
    let portal = start_portal(|c| {
        c.portal.max_line_bytes = 16;
        // Plain lines only: no MCCP2 offer before the text.
        c.portal.mccp2 = false;
    })
    .await;
    let (mut server, _) = FakeServer::attach(&portal.game, ev::version::LINK_MAJOR, 1).await;
    let mut client = telnet(&portal).await;
    client.get_mut().write_all(&[b'x'; 100]).await.unwrap();
    client.get_mut().write_all(b"\r\nok\r\n").await.unwrap();
    // The offers (bytes that are no UTF-8) come first, on the same "line".
    let line = read_line(&mut client).await;
    assert!(line.contains("too long"), "{line}");
    let input = match server.next_event(|k| matches!(k, S::Input(_))).await {
        S::Input(i) => i,
        _ => unreachable!(),
    };
    assert_eq!((input.seq, input.text.as_str()), (1, "ok"));
    portal.stop.cancel();
    portal.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn other_link_major_is_refused_with_both_versions() {
    let portal = start_portal(|_| {}).await;
    let (_server, hello) = FakeServer::attach(&portal.game, 77, 3).await;
    assert!(hello.refused.contains("77.0"), "{}", hello.refused);
    assert!(
        hello.refused.contains(&ev::version::link_version()),
        "{}",
        hello.refused
    );
    portal.stop.cancel();
    portal.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn connections_over_the_per_address_limit_are_told_why() {
    let portal = start_portal(|c| c.portal.max_connections_per_ip = 1).await;
    let _first = telnet(&portal).await;
    let mut second = telnet(&portal).await;
    let line = read_line(&mut second).await;
    assert!(line.contains("Too many connections"), "{line}");
    portal.stop.cancel();
    portal.task.await.unwrap().unwrap();
}
