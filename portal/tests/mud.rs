//! What MUD clients get from the portal, byte for byte: the game's markup
//! in each client's colours, prompts ended with EOR or GA, echo turned off
//! for a secret, the game's out-of-band data as GMCP or MSDP, and the
//! client's out-of-band data numbered with its inputs and replayed after a
//! crash. The portal runs in process with a fake server on the Link.

// A test that fails should say where: unwrap, expect and panic are how.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use ev::pb::link as pb;
use ev::version::LINK_MAJOR;
use pb::TextKind::{Line, Prompt, Secret};
use pb::portal_event::Kind as P;
use pb::server_event::Kind as S;
use serde_json::json;

/// A truecolour red: rendered differently for each kind of client.
const FIRE: &str = "{#ff0000}fire{/}";

async fn portal_and_server(edit: impl FnOnce(&mut ev::config::Config)) -> (Portal, FakeServer) {
    let portal = start_portal(edit).await;
    let (server, hello) = FakeServer::attach_minor(&portal.game, LINK_MAJOR, 3, 1).await;
    assert_eq!(hello.role, pb::Role::Active as i32);
    (portal, server)
}

async fn stop(portal: Portal) {
    portal.stop.cancel();
    portal.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn markup_is_rendered_in_the_colours_each_client_reported() {
    let (portal, mut server) = portal_and_server(|_| {}).await;
    let cases: [(Option<u32>, &[u8]); 6] = [
        // MTTS: 1 ANSI, 4 UTF-8, 8 256 colours, 64 screen reader, 256 truecolour.
        (Some(1 | 8 | 256), b"\x1b[0;38;2;255;0;0mfire\x1b[0m"),
        (Some(1 | 8), b"\x1b[0;38;5;196mfire\x1b[0m"),
        (Some(1), b"\x1b[0;91mfire\x1b[0m"),
        (Some(1 | 8 | 64 | 256), b"fire"),
        // Bits that say nothing of colour.
        (Some(4), b"fire"),
        // Never answered TTYPE: portal.default_colours, ANSI's 16.
        (None, b"\x1b[0;91mfire\x1b[0m"),
    ];
    for (mtts, want) in cases {
        let mut c = Raw::connect(&portal).await;
        let session = opened(&mut server).await;
        // The game speaks before the client said what it shows: the
        // portal waits for the answer.
        server
            .send(vec![
                plain(session, 1, "begin"),
                output(session, 2, FIRE, true, Line),
                // An older server's text is shown as it is.
                plain(session, 3, "{red}as typed"),
            ])
            .await;
        c.until(&[IAC, WILL, MSDP]).await;
        c.negotiate(mtts, &[]).await;
        assert_eq!(
            c.after_line("begin").await,
            [want, b"\r\n"].concat(),
            "MTTS {mtts:?}"
        );
        assert_eq!(c.until(b"\r\n").await, b"{red}as typed\r\n");
    }
    stop(portal).await;
}

#[tokio::test]
async fn a_client_that_says_nothing_gets_the_default_after_the_wait() {
    let (portal, mut server) = portal_and_server(|c| {
        c.portal.default_colours = ev::markup::Colours::None;
        c.portal.negotiation_wait_ms = 200;
    })
    .await;
    // It answers nothing at all.
    let mut c = Raw::connect(&portal).await;
    let session = opened(&mut server).await;
    let sent = tokio::time::Instant::now();
    server
        .send(vec![
            plain(session, 1, "begin"),
            output(session, 2, FIRE, true, Line),
        ])
        .await;
    assert_eq!(c.after_line("begin").await, b"fire\r\n");
    assert!(
        sent.elapsed() >= std::time::Duration::from_millis(150),
        "output did not wait for the client"
    );
    stop(portal).await;
}

#[tokio::test]
async fn a_prompt_ends_with_eor_or_ga_or_a_line_of_its_own() {
    let (portal, mut server) = portal_and_server(|_| {}).await;
    let prompt = "{green}>{/} ";
    let green = b"\x1b[0;32m>\x1b[0m ";
    let cases: [(&[u8], &[u8], &[u8]); 3] = [
        // EOR taken: IAC EOR, and the client starts the next line.
        (&[EOR, SGA], &[IAC, EOR_CMD], b""),
        // Neither EOR nor SGA: IAC GA.
        (&[], &[IAC, GA], b""),
        // SGA and not EOR: nothing tells the client, so what comes next
        // starts on a line of its own.
        (&[SGA], b"", b"\r\n"),
    ];
    for (agree, end, then) in cases {
        let mut c = Raw::connect(&portal).await;
        c.negotiate(Some(1), agree).await;
        let session = opened(&mut server).await;
        server
            .send(vec![
                plain(session, 1, "begin"),
                output(session, 2, prompt, true, Prompt),
                output(session, 3, "Bob says hi", true, Line),
            ])
            .await;
        c.until(b"begin\r\n").await;
        let got = c.until(b"Bob says hi\r\n").await;
        assert_eq!(
            got,
            [&green[..], end, then, b"Bob says hi\r\n"].concat(),
            "agreed to {agree:?}"
        );
        // The player answers the prompt: its client ended the line.
        server
            .send(vec![output(session, 4, prompt, true, Prompt)])
            .await;
        c.until(&[green, end].concat()).await;
        c.send(b"look\r\n").await;
        let input = server.next_event(|k| matches!(k, S::Input(_))).await;
        assert!(matches!(input, S::Input(i) if i.text == "look" && i.seq == 1));
        server
            .send(vec![output(session, 5, "You look.", true, Line)])
            .await;
        assert_eq!(c.until(b"You look.\r\n").await, b"You look.\r\n");
    }
    stop(portal).await;
}

/// A client that agreed to `agree` is asked a secret: returns it, its
/// session, and what it got from the prompt to the portal's WILL ECHO.
async fn asked_a_secret(
    portal: &Portal,
    server: &mut FakeServer,
    agree: &[u8],
) -> (Raw, u64, Vec<u8>) {
    let mut c = Raw::connect(portal).await;
    c.negotiate(Some(1), agree).await;
    let session = opened(server).await;
    server
        .send(vec![
            plain(session, 1, "begin"),
            output(session, 2, "Password: ", true, Secret),
        ])
        .await;
    c.until(b"begin\r\n").await;
    let prompt = c.until(&[IAC, WILL, ECHO]).await;
    (c, session, prompt)
}

#[tokio::test]
async fn a_secret_turns_the_clients_echo_off_until_the_answer() {
    let (portal, mut server) = portal_and_server(|_| {}).await;
    let (mut c, session, prompt) = asked_a_secret(&portal, &mut server, &[EOR, SGA]).await;
    assert_eq!(
        prompt,
        [&b"Password: "[..], &[IAC, EOR_CMD, IAC, WILL, ECHO]].concat()
    );
    // Agreed (twice: the second is not answered), then the answer.
    c.send(&[IAC, DO, ECHO, IAC, DO, ECHO]).await;
    c.send(b"hunter2\r\n").await;
    assert_eq!(c.until(&[IAC, WONT, ECHO]).await, [IAC, WONT, ECHO]);
    let input = server.next_event(|k| matches!(k, S::Input(_))).await;
    assert!(matches!(input, S::Input(i) if i.text == "hunter2" && i.seq == 1));
    // The client agrees echo is off: nothing more is said of it.
    c.send(&[IAC, DONT, ECHO]).await;
    c.send(b"look\r\n").await;
    let input = server.next_event(|k| matches!(k, S::Input(_))).await;
    assert!(matches!(input, S::Input(i) if i.text == "look" && i.seq == 2));
    server.send(vec![plain(session, 3, "done")]).await;
    assert_eq!(c.until(b"done\r\n").await, b"done\r\n");
    assert!(find(&c.seen, b"hunter2").is_none(), "the secret was echoed");
    stop(portal).await;
}

#[tokio::test]
async fn after_a_hidden_answer_an_untold_client_gets_a_line_of_its_own() {
    let (portal, mut server) = portal_and_server(|_| {}).await;
    // SGA and no EOR: the client is never told the prompt ended.
    let (mut c, session, prompt) = asked_a_secret(&portal, &mut server, &[SGA]).await;
    assert_eq!(prompt, [&b"Password: "[..], &[IAC, WILL, ECHO]].concat());
    c.send(&[IAC, DO, ECHO]).await;
    c.send(b"hunter2\r").await;
    c.until(&[IAC, WONT, ECHO]).await;
    server.next_event(|k| matches!(k, S::Input(_))).await;
    server.send(vec![plain(session, 3, "Welcome")]).await;
    assert_eq!(c.until(b"Welcome\r\n").await, b"\r\nWelcome\r\n");
    stop(portal).await;
}

#[tokio::test]
async fn a_client_that_refuses_to_stop_echoing_is_asked_once() {
    let (portal, mut server) = portal_and_server(|_| {}).await;
    let (mut c, session, _) = asked_a_secret(&portal, &mut server, &[EOR]).await;
    c.send(&[IAC, DONT, ECHO]).await;
    c.send(b"pw\r\n").await;
    server.next_event(|k| matches!(k, S::Input(_))).await;
    server
        .send(vec![
            output(session, 3, "Password: ", true, Secret),
            plain(session, 4, "end"),
        ])
        .await;
    assert_eq!(
        c.until(b"end\r\n").await,
        [&b"Password: "[..], &[IAC, EOR_CMD], b"end\r\n"].concat()
    );
    stop(portal).await;
}

#[tokio::test]
async fn the_games_oob_goes_out_as_gmcp_or_msdp_or_not_at_all() {
    let (portal, mut server) = portal_and_server(|_| {}).await;
    let vitals = r#"{"hp":10,"maxhp":20}"#;

    // GMCP, exactly as the game wrote it.
    let mut c = Raw::connect(&portal).await;
    c.negotiate(Some(1), &[GMCP]).await;
    let session = opened(&mut server).await;
    server
        .send(vec![
            plain(session, 1, "begin"),
            server_oob(session, 2, "Char.Vitals", vitals),
            plain(session, 3, "end"),
        ])
        .await;
    c.until(b"begin\r\n").await;
    assert_eq!(
        c.until(b"end\r\n").await,
        [gmcp(&format!("Char.Vitals {vitals}")), b"end\r\n".to_vec()].concat()
    );
    // Once the client names its modules, only those.
    c.send(&gmcp(r#"Core.Supports.Set ["Room 1"]"#)).await;
    c.send(b"ping\r\n").await;
    server.next_event(|k| matches!(k, S::Input(_))).await;
    server
        .send(vec![
            server_oob(session, 4, "Char.Vitals", vitals),
            server_oob(session, 5, "Room.Info", r#"{"num":1}"#),
            plain(session, 6, "end2"),
        ])
        .await;
    assert_eq!(
        c.until(b"end2\r\n").await,
        [gmcp(r#"Room.Info {"num":1}"#), b"end2\r\n".to_vec()].concat()
    );

    // MSDP, read back by the test's own MSDP reader.
    let mut c = Raw::connect(&portal).await;
    c.negotiate(Some(1), &[MSDP]).await;
    let session = opened(&mut server).await;
    let room = json!({
        "num": 6008,
        "exits": {"n": 6011, "e": 6007},
        "tags": ["dark", ["nested", 1]],
        "lit": false,
        "owner": null,
    });
    server
        .send(vec![
            plain(session, 1, "begin"),
            server_oob(session, 2, "ROOM", &room.to_string()),
            server_oob(session, 3, "GROUP", r#"["Alice","Bob"]"#),
            server_oob(session, 4, "HEALTH", "42"),
            plain(session, 5, "end"),
        ])
        .await;
    c.until(b"begin\r\n").await;
    let mut got = serde_json::Map::new();
    for _ in 0..3 {
        c.until(&[IAC, SB, MSDP]).await;
        let body = c.until(&[IAC, SE]).await;
        let whole = [&[IAC, SB, MSDP][..], &body].concat();
        let serde_json::Value::Object(vars) = read_msdp(&whole) else {
            unreachable!()
        };
        got.extend(vars);
    }
    assert_eq!(
        serde_json::Value::Object(got),
        json!({
            "ROOM": {
                "num": "6008",
                "exits": {"n": "6011", "e": "6007"},
                "tags": ["dark", ["nested", "1"]],
                "lit": "0",
                "owner": "",
            },
            "GROUP": ["Alice", "Bob"],
            "HEALTH": "42",
        })
    );
    assert_eq!(c.until(b"end\r\n").await, b"end\r\n");

    // Neither: nothing is sent, and it is delivered all the same.
    let mut c = Raw::connect(&portal).await;
    c.negotiate(Some(1), &[]).await;
    let session = opened(&mut server).await;
    server
        .send(vec![
            plain(session, 1, "begin"),
            server_oob(session, 2, "Char.Vitals", vitals),
            plain(session, 3, "end"),
            server_oob(session, 4, "Char.Vitals", vitals),
        ])
        .await;
    assert_eq!(c.after_line("begin").await, b"end\r\n");
    server
        .next_event(|k| matches!(k, S::Delivered(d) if d.session == session && d.seq == 4))
        .await;
    stop(portal).await;
}

/// The `(seq, name or text)` of the next `n` inputs and OOBs of `session`.
async fn inputs(server: &mut FakeServer, session: u64, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        match server
            .next_event(|k| matches!(k, S::Input(_) | S::Oob(_)))
            .await
        {
            S::Input(i) if i.session == session => got.push((i.seq, i.text)),
            S::Oob(o) if o.session == session => {
                got.push((o.seq, format!("{} {}", o.name, o.data)))
            }
            _ => {}
        }
    }
    got
}

#[tokio::test]
async fn client_gmcp_reaches_the_server_with_the_inputs_and_is_replayed_after_a_crash() {
    let (portal, mut a) = portal_and_server(|_| {}).await;
    let mut c = Raw::connect(&portal).await;
    c.negotiate(Some(1), &[GMCP]).await;
    let session = opened(&mut a).await;
    // Core.Hello is the portal's: it names the client to the server.
    c.send(&gmcp(
        r#"Core.Hello {"client":"Mudlet","version":"4.17.2"}"#,
    ))
    .await;
    a.next_event(
        |k| matches!(k, S::Info(i) if i.session.as_ref().is_some_and(|s| s.client == "Mudlet 4.17.2")),
    )
    .await;
    let mut burst = gmcp(r#"Core.Supports.Set ["Char 1"]"#);
    burst.extend_from_slice(b"look\r\n");
    burst.extend(gmcp(r#"Char.Skills.Get {"group": "combat"}"#));
    // Malformed: dropped, and takes no seq.
    burst.extend(gmcp("Char.Broken {oops"));
    burst.extend(gmcp("\u{7}"));
    burst.extend_from_slice(b"say hi\r\n");
    c.send(&burst).await;
    let want = vec![
        (1, "look".to_string()),
        (2, r#"Char.Skills.Get {"group":"combat"}"#.to_string()),
        (3, "say hi".to_string()),
    ];
    assert_eq!(inputs(&mut a, session, 3).await, want);

    // The server dies having acked nothing: the next one gets them all
    // again, in order, after its Sync.
    drop(a);
    let (mut b, hello) = FakeServer::attach_minor(&portal.game, LINK_MAJOR, 3, 2).await;
    assert_eq!(hello.role, pb::Role::Active as i32);
    b.next_event(|k| matches!(k, S::Sync(s) if s.last)).await;
    assert_eq!(inputs(&mut b, session, 3).await, want);
    // Acked, and (the heartbeat's answer says) taken before B goes.
    b.send(vec![
        P::Ack(pb::Ack { session, seq: 3 }),
        P::Heartbeat(pb::Heartbeat {
            nonce: 77,
            reply: false,
        }),
    ])
    .await;
    b.next_event(|k| matches!(k, S::Heartbeat(h) if h.nonce == 77 && h.reply))
        .await;

    // A server older than Link 1.3 gets an empty Input in the OOB's place.
    drop(b);
    let (mut old, _) = FakeServer::attach_minor(&portal.game, LINK_MAJOR, 2, 3).await;
    old.next_event(|k| matches!(k, S::Sync(s) if s.last)).await;
    c.send(&gmcp("Char.Skills.Get")).await;
    c.send(b"look\r\n").await;
    assert_eq!(
        inputs(&mut old, session, 2).await,
        vec![(4, String::new()), (5, "look".to_string())]
    );
    stop(portal).await;
}

#[tokio::test]
async fn an_overlong_gmcp_message_is_discarded_and_the_next_one_goes() {
    let (portal, mut server) = portal_and_server(|c| c.portal.max_oob_bytes = 2048).await;
    let mut c = Raw::connect(&portal).await;
    c.negotiate(Some(1), &[GMCP]).await;
    let session = opened(&mut server).await;
    let big = format!("Char.Big \"{}\"", "x".repeat(100_000));
    c.send(&gmcp(&big)).await;
    c.send(&gmcp("Char.Small 1")).await;
    assert_eq!(
        inputs(&mut server, session, 1).await,
        vec![(1, "Char.Small 1".to_string())]
    );
    stop(portal).await;
}

/// telnetlib3 takes GMCP when offered, says Core.Hello, gets the game's
/// Char.Vitals and sends a message of its own
/// (tests/clients/telnetlib3_gmcp.py).
#[tokio::test]
async fn telnetlib3_takes_gmcp_both_ways() {
    let (portal, mut server) = portal_and_server(|_| {}).await;
    let addr = std::fs::read_to_string(portal.game.telnet_addr_path()).unwrap();
    let (host, port) = addr.trim().rsplit_once(':').unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/telnetlib3_gmcp.py");
    let client = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(host)
        .arg(port)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is needed for this test ({e})"));
    let session = opened(&mut server).await;
    // Its Core.Hello names it to the server.
    let info = server
        .next_event(|k| {
            matches!(k, S::Info(i) if i.session.as_ref().is_some_and(|s| s.client.starts_with("telnetlib3")))
        })
        .await;
    assert!(matches!(info, S::Info(_)));
    server
        .send(vec![
            server_oob(session, 1, "Char.Vitals", r#"{"hp":42,"maxhp":50}"#),
            plain(session, 2, "vitals sent"),
        ])
        .await;
    let got = inputs(&mut server, session, 1).await;
    assert_eq!(
        got,
        vec![(1, r#"Char.Skills.Get {"group":"combat"}"#.to_string())]
    );
    server.send(vec![plain(session, 3, "bye")]).await;
    let out = tokio::time::timeout(DEADLINE, client.wait_with_output())
        .await
        .expect("the telnetlib3 client did not finish")
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    stop(portal).await;
}

/// A client's MSDP variable `name` with text `value`, as a client sends it.
fn msdp_var(name: &str, value: &str) -> Vec<u8> {
    [
        &[IAC, SB, MSDP, 1][..],
        name.as_bytes(),
        &[2],
        value.as_bytes(),
        &[IAC, SE],
    ]
    .concat()
}

/// The next MSDP message the client gets, read by the test's own reader.
async fn next_msdp(c: &mut Raw) -> serde_json::Value {
    c.until(&[IAC, SB, MSDP]).await;
    let body = c.until(&[IAC, SE]).await;
    read_msdp(&[&[IAC, SB, MSDP][..], &body].concat())
}

#[tokio::test]
async fn msdp_commands_list_report_send_and_unreport() {
    let (portal, mut server) = portal_and_server(|_| {}).await;
    let mut c = Raw::connect(&portal).await;
    c.negotiate(Some(1), &[MSDP]).await;
    let session = opened(&mut server).await;

    // LIST is the portal's; CLIENT_NAME names the client to the game.
    c.send(
        &[
            msdp_var("CLIENT_NAME", "TinTin++"),
            msdp_var("LIST", "COMMANDS"),
            msdp_var("LIST", "LISTS"),
        ]
        .concat(),
    )
    .await;
    assert_eq!(
        next_msdp(&mut c).await,
        json!({"COMMANDS": ["LIST", "REPORT", "RESET", "SEND", "UNREPORT"]})
    );
    assert_eq!(
        next_msdp(&mut c).await,
        json!({"LISTS": ["COMMANDS", "LISTS", "CONFIGURABLE_VARIABLES",
            "REPORTABLE_VARIABLES", "REPORTED_VARIABLES", "SENDABLE_VARIABLES"]})
    );
    server
        .next_event(
            |k| matches!(k, S::Info(i) if i.session.as_ref().is_some_and(|s| s.client == "TinTin++")),
        )
        .await;

    // Nothing reported yet: every variable goes out.
    server
        .send(vec![
            server_oob(session, 1, "HEALTH", "40"),
            server_oob(session, 2, "MANA", "7"),
            plain(session, 3, "one"),
        ])
        .await;
    assert_eq!(next_msdp(&mut c).await, json!({"HEALTH": "40"}));
    assert_eq!(next_msdp(&mut c).await, json!({"MANA": "7"}));
    c.until(b"one\r\n").await;

    // REPORT reaches the game too (it has the current value), then only
    // what is reported goes out.
    c.send(&[msdp_var("REPORT", "HEALTH"), b"ping\r\n".to_vec()].concat())
        .await;
    let got = inputs(&mut server, session, 2).await;
    assert_eq!(got[0].1, r#"REPORT "HEALTH""#);
    assert_eq!(got[1].1, "ping");
    server
        .send(vec![
            server_oob(session, 4, "HEALTH", "39"),
            server_oob(session, 5, "MANA", "6"),
            plain(session, 6, "two"),
        ])
        .await;
    assert_eq!(next_msdp(&mut c).await, json!({"HEALTH": "39"}));
    assert_eq!(
        c.until(b"two\r\n").await,
        b"two\r\n",
        "MANA is not reported"
    );

    c.send(
        &[
            msdp_var("LIST", "REPORTABLE_VARIABLES"),
            msdp_var("LIST", "REPORTED_VARIABLES"),
        ]
        .concat(),
    )
    .await;
    assert_eq!(
        next_msdp(&mut c).await,
        json!({"REPORTABLE_VARIABLES": ["HEALTH", "MANA"]})
    );
    assert_eq!(
        next_msdp(&mut c).await,
        json!({"REPORTED_VARIABLES": ["HEALTH"]})
    );

    // SEND: the game is asked, and its answer goes out once.
    c.send(&[msdp_var("SEND", "MANA"), b"ping\r\n".to_vec()].concat())
        .await;
    let got = inputs(&mut server, session, 2).await;
    assert_eq!(got[0].1, r#"SEND "MANA""#);
    server
        .send(vec![
            server_oob(session, 7, "MANA", "5"),
            server_oob(session, 8, "MANA", "4"),
            plain(session, 9, "three"),
        ])
        .await;
    assert_eq!(next_msdp(&mut c).await, json!({"MANA": "5"}));
    assert_eq!(c.until(b"three\r\n").await, b"three\r\n");

    // UNREPORT is the portal's alone: the game hears nothing of it.
    c.send(&[msdp_var("UNREPORT", "HEALTH"), b"ping\r\n".to_vec()].concat())
        .await;
    let got = inputs(&mut server, session, 1).await;
    assert_eq!(got[0].1, "ping");
    server
        .send(vec![
            server_oob(session, 10, "HEALTH", "38"),
            plain(session, 11, "four"),
        ])
        .await;
    assert_eq!(c.until(b"four\r\n").await, b"four\r\n");
    stop(portal).await;
}
