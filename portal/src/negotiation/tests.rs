use std::sync::atomic::AtomicU64;

use super::*;
use crate::options::{DO, DONT, WILL, WONT};
use crate::render::PromptEnd;

const SEND_TTYPE: [u8; 6] = [IAC, SB, TTYPE, SEND, IAC, SE];

fn facts() -> Arc<Facts> {
    Arc::new(Facts {
        name: "Test".into(),
        started_at_s: 1,
        port: 4000,
        tls_port: None,
        mccp2: true,
        players: Arc::new(AtomicU64::new(2)),
    })
}

fn started() -> Negotiation {
    let mut n = Negotiation::new(true, facts());
    n.start(&mut Vec::new());
    n
}

fn neg(n: &mut Negotiation, verb: u8, option: u8) -> Vec<u8> {
    let mut out = Vec::new();
    n.negotiate(verb, option, &mut out);
    out
}

fn sub(n: &mut Negotiation, option: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = n.subnegotiation(option, data, &mut out);
    out
}

/// The client's out-of-band message, as the game gets it.
fn oob_in(n: &mut Negotiation, option: u8, data: &[u8]) -> Result<Vec<Oob>, Dropped> {
    let mut out = Vec::new();
    let got = n.subnegotiation(option, data, &mut out);
    assert!(out.is_empty(), "answered {out:?}");
    got
}

fn oob(name: &str, data: &str) -> Oob {
    Oob {
        name: name.into(),
        data: data.into(),
    }
}

fn is(name: &str) -> Vec<u8> {
    let mut data = vec![IS];
    data.extend_from_slice(name.as_bytes());
    data
}

#[test]
fn the_offers_on_connect() {
    let mut out = Vec::new();
    Negotiation::new(true, facts()).start(&mut out);
    assert_eq!(
        out,
        [
            IAC, WILL, MCCP2, IAC, WILL, SGA, IAC, DO, TTYPE, IAC, DO, NAWS, IAC, WILL, CHARSET,
            IAC, WILL, MSSP, IAC, WILL, EOR, IAC, WILL, GMCP, IAC, WILL, MSDP
        ]
    );
    let mut out = Vec::new();
    Negotiation::new(false, facts()).start(&mut out);
    assert!(!out.windows(3).any(|w| w == [IAC, WILL, MCCP2]), "{out:?}");
}

#[test]
fn ttype_cycles_through_mtts_and_stops() {
    let mut n = started();
    assert_eq!(neg(&mut n, WILL, TTYPE), SEND_TTYPE);
    assert_eq!(sub(&mut n, TTYPE, &is("MUDLET 4.17.2")), SEND_TTYPE);
    assert_eq!(sub(&mut n, TTYPE, &is("XTERM-256COLOR")), SEND_TTYPE);
    // 1 ANSI + 4 UTF-8 + 8 256 colours + 256 truecolour.
    assert_eq!(sub(&mut n, TTYPE, &is("MTTS 269")), Vec::<u8>::new());
    let info = n.take_changed().unwrap();
    assert_eq!(info.client, "MUDLET 4.17.2");
    assert_eq!(info.terminal, "XTERM-256COLOR");
    assert_eq!(info.capabilities, Capabilities(269));
    assert_eq!(info.charset, Charset::Utf8);
    // Done: another answer is not asked for and changes nothing.
    assert_eq!(sub(&mut n, TTYPE, &is("SOMETHING")), Vec::<u8>::new());
    assert_eq!(n.take_changed(), None);
    // A repeated WILL neither answers nor restarts the cycle.
    assert_eq!(neg(&mut n, WILL, TTYPE), Vec::<u8>::new());
}

#[test]
fn tls_is_told_as_mtts_ssl_from_the_connection_never_from_the_client() {
    let mut plain = started();
    neg(&mut plain, WILL, TTYPE);
    sub(&mut plain, TTYPE, &is("MUDLET"));
    sub(&mut plain, TTYPE, &is("XTERM"));
    // 1 ANSI + 2048 SSL: a claim a plain connection does not pass on.
    sub(&mut plain, TTYPE, &is("MTTS 2049"));
    assert_eq!(plain.take_changed().unwrap().capabilities, Capabilities(1));

    let mut tls = Negotiation::new(true, facts()).over_tls(true);
    tls.start(&mut Vec::new());
    assert_eq!(tls.info.capabilities, Capabilities(Capabilities::SSL));
    neg(&mut tls, WILL, TTYPE);
    sub(&mut tls, TTYPE, &is("MUDLET"));
    sub(&mut tls, TTYPE, &is("XTERM"));
    sub(&mut tls, TTYPE, &is("MTTS 1"));
    assert_eq!(
        tls.take_changed().unwrap().capabilities,
        Capabilities(1 | Capabilities::SSL)
    );
}

#[test]
fn a_client_that_does_not_cycle_is_asked_twice() {
    let mut n = started();
    neg(&mut n, WILL, TTYPE);
    assert_eq!(sub(&mut n, TTYPE, &is("unknown")), SEND_TTYPE);
    assert_eq!(sub(&mut n, TTYPE, &is("unknown")), Vec::<u8>::new());
    let info = n.take_changed().unwrap();
    assert_eq!(
        (info.client.as_str(), info.terminal.as_str()),
        ("unknown", "unknown")
    );
    assert_eq!(info.capabilities, Capabilities(0));
}

#[test]
fn a_cycle_ends_where_it_starts_over_or_at_the_bound() {
    let mut n = started();
    neg(&mut n, WILL, TTYPE);
    sub(&mut n, TTYPE, &is("TINTIN++"));
    sub(&mut n, TTYPE, &is("XTERM"));
    // Not MTTS, and back to the first: the end.
    assert_eq!(sub(&mut n, TTYPE, &is("TINTIN++")), Vec::<u8>::new());

    let mut n = started();
    neg(&mut n, WILL, TTYPE);
    let mut asks = 1;
    for i in 0..100 {
        if sub(&mut n, TTYPE, &is(&format!("TYPE{i}"))) == SEND_TTYPE {
            asks += 1;
        }
    }
    assert_eq!(asks, MAX_TTYPE_ASKS as usize);
}

#[test]
fn unasked_or_oversized_names_do_no_harm() {
    let mut n = started();
    // TTYPE not on: ignored.
    assert_eq!(sub(&mut n, TTYPE, &is("EARLY")), Vec::<u8>::new());
    assert_eq!(n.take_changed(), None);
    neg(&mut n, WILL, TTYPE);
    let long = format!("{}\u{7}\r\n", "X".repeat(1000));
    sub(&mut n, TTYPE, &is(&long));
    let info = n.take_changed().unwrap();
    assert_eq!(info.client, "X".repeat(MAX_NAME));
}

#[test]
fn naws_reports_the_live_size() {
    let mut n = started();
    // Before WILL NAWS a size is not taken.
    sub(&mut n, NAWS, &[0, 80, 0, 24]);
    assert_eq!(n.take_changed(), None);
    assert_eq!(neg(&mut n, WILL, NAWS), Vec::<u8>::new());
    sub(&mut n, NAWS, &[0, 120, 0, 40]);
    let info = n.take_changed().unwrap();
    assert_eq!((info.width, info.height), (120, 40));
    // 255 arrives doubled on the wire; the parser undid that.
    sub(&mut n, NAWS, &[1, 255, 0, 255]);
    let info = n.take_changed().unwrap();
    assert_eq!((info.width, info.height), (511, 255));
    // The same size again is no change; a malformed one is ignored.
    sub(&mut n, NAWS, &[1, 255, 0, 255]);
    sub(&mut n, NAWS, &[1, 2, 3]);
    assert_eq!(n.take_changed(), None);
}

fn request() -> Vec<u8> {
    let mut r = vec![IAC, SB, CHARSET, REQUEST];
    r.extend_from_slice(b";UTF-8;ISO-8859-1;US-ASCII");
    r.extend_from_slice(&[IAC, SE]);
    r
}

#[test]
fn charset_agrees_on_utf8() {
    let mut n = started();
    assert_eq!(neg(&mut n, DO, CHARSET), request());
    // Its own WILL adds no second request.
    assert_eq!(neg(&mut n, WILL, CHARSET), [IAC, DO, CHARSET]);
    let mut accepted = vec![ACCEPTED];
    accepted.extend_from_slice(b"UTF-8");
    assert_eq!(sub(&mut n, CHARSET, &accepted), Vec::<u8>::new());
    assert_eq!(n.charset(), Charset::Utf8);
}

#[test]
fn charset_latin1_and_rejection() {
    let mut n = started();
    neg(&mut n, DO, CHARSET);
    let mut accepted = vec![ACCEPTED];
    accepted.extend_from_slice(b"iso-8859-1");
    sub(&mut n, CHARSET, &accepted);
    assert_eq!(n.charset(), Charset::Latin1);
    assert_eq!(n.take_changed().unwrap().charset, Charset::Latin1);

    let mut n = started();
    neg(&mut n, DO, CHARSET);
    sub(&mut n, CHARSET, &[REJECTED]);
    assert_eq!(n.charset(), Charset::Ascii, "agreed on nothing: ASCII");
    // A late answer to a request no longer out changes nothing.
    sub(&mut n, CHARSET, &accepted);
    assert_eq!(n.charset(), Charset::Ascii);
}

#[test]
fn the_clients_own_request() {
    let mut n = started();
    neg(&mut n, DO, CHARSET);
    let mut theirs = vec![REQUEST];
    theirs.extend_from_slice(b" KOI8-R latin1 UTF8");
    // Ours is out: theirs is declined.
    assert_eq!(
        sub(&mut n, CHARSET, &theirs),
        [IAC, SB, CHARSET, REJECTED, IAC, SE]
    );
    sub(&mut n, CHARSET, &[REJECTED]);
    // Now theirs is answered, UTF-8 first whatever its order.
    let mut expected = vec![IAC, SB, CHARSET, ACCEPTED];
    expected.extend_from_slice(b"UTF8");
    expected.extend_from_slice(&[IAC, SE]);
    assert_eq!(sub(&mut n, CHARSET, &theirs), expected);
    assert_eq!(n.charset(), Charset::Utf8);
    // With a translation-table version first, and nothing we speak:
    // declined, and what was agreed stands.
    let mut ttable = vec![REQUEST];
    ttable.extend_from_slice(b"[TTABLE]\x01;KOI8-R");
    assert_eq!(
        sub(&mut n, CHARSET, &ttable),
        [IAC, SB, CHARSET, REJECTED, IAC, SE]
    );
    assert_eq!(n.charset(), Charset::Utf8);
    // A client that never agreed on anything and asks for nothing we speak
    // gets ASCII.
    let mut n = started();
    neg(&mut n, WILL, CHARSET);
    sub(&mut n, CHARSET, &[REJECTED]);
    sub(&mut n, CHARSET, &ttable);
    assert_eq!(n.charset(), Charset::Ascii);
}

#[test]
fn mtts_without_utf8_means_ascii_until_charset_says_otherwise() {
    let mut n = started();
    neg(&mut n, WILL, TTYPE);
    sub(&mut n, TTYPE, &is("TINTIN++"));
    sub(&mut n, TTYPE, &is("XTERM"));
    sub(&mut n, TTYPE, &is("MTTS 137"));
    assert_eq!(n.charset(), Charset::Ascii);
    neg(&mut n, DO, CHARSET);
    let mut accepted = vec![ACCEPTED];
    accepted.extend_from_slice(b"UTF-8");
    sub(&mut n, CHARSET, &accepted);
    assert_eq!(n.charset(), Charset::Utf8);
}

#[test]
fn mssp_is_answered_once_per_do() {
    let mut n = started();
    let table = neg(&mut n, DO, MSSP);
    assert!(table.starts_with(&[IAC, SB, MSSP]), "{table:?}");
    assert!(table.windows(9).any(|w| w == b"\x01PLAYERS\x02"));
    assert_eq!(neg(&mut n, DO, MSSP), Vec::<u8>::new());
}

#[test]
fn mccp2_start_and_end() {
    let mut n = started();
    let mut out = Vec::new();
    assert_eq!(n.negotiate(DO, MCCP2, &mut out), Some(Compress::Start));
    assert!(out.is_empty());
    assert_eq!(n.negotiate(DO, MCCP2, &mut out), None);
    assert_eq!(n.negotiate(DONT, MCCP2, &mut out), Some(Compress::End));
    assert_eq!(out, [IAC, WONT, MCCP2]);
    let mut n = Negotiation::new(false, facts());
    let mut out = Vec::new();
    assert_eq!(n.negotiate(DO, MCCP2, &mut out), None);
    assert_eq!(out, [IAC, WONT, MCCP2]);
}

/// A small deterministic generator: the same streams on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A byte, mostly the ones telnet gives meaning to.
    fn byte(&mut self) -> u8 {
        const MEANINGFUL: [u8; 22] = [
            IAC, IAC, SB, SE, WILL, WONT, DO, DONT, TTYPE, NAWS, CHARSET, MSSP, MCCP2, SGA, 0, 1,
            ECHO, EOR, GMCP, MSDP, b'{', b' ',
        ];
        let r = self.next();
        if r % 3 == 0 {
            (r >> 8) as u8
        } else {
            MEANINGFUL[(r >> 8) as usize % MEANINGFUL.len()]
        }
    }
}

/// Random and malformed streams (truncated IAC, endless SB, IAC IAC in
/// data, option floods, invalid UTF-8), cut at random places, through the
/// parser, the negotiation and the line assembler (`crate::fuzzing`, the
/// fuzz target's harness): nothing panics, what is kept stays bounded,
/// lines stay under the limit, and what is sent back is at most a small
/// multiple of what came in.
#[test]
fn random_streams_are_survived_with_bounded_state() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let len = (rng.next() % 4000) as usize;
        let stream: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        crate::fuzzing::telnet_stream(&stream);
    }
}

#[test]
fn a_do_dont_flood_answers_in_proportion() {
    let mut n = started();
    let mut answered = 0;
    for _ in 0..10_000 {
        answered += neg(&mut n, DO, SGA).len();
        answered += neg(&mut n, DO, SGA).len();
        answered += neg(&mut n, DONT, SGA).len();
    }
    // Each DO after a DONT is a new request; the repeated DO is never answered.
    assert_eq!(answered, 10_000 * 6 - 3);
}

#[test]
fn a_prompt_ends_with_eor_once_agreed_else_ga_unless_sga() {
    let mut n = started();
    assert_eq!(n.prompt_end(), PromptEnd::Ga, "nothing agreed yet");
    neg(&mut n, DO, SGA);
    assert_eq!(n.prompt_end(), PromptEnd::Nothing);
    assert_eq!(neg(&mut n, DO, EOR), Vec::<u8>::new());
    assert_eq!(n.prompt_end(), PromptEnd::Eor);
    neg(&mut n, DONT, EOR);
    assert_eq!(n.prompt_end(), PromptEnd::Nothing);
    let mut n = started();
    neg(&mut n, DONT, SGA);
    neg(&mut n, DO, EOR);
    assert_eq!(n.prompt_end(), PromptEnd::Eor);
}

#[test]
fn a_secret_turns_echo_on_until_the_answer() {
    let mut n = started();
    let mut out = Vec::new();
    n.secret(&mut out);
    assert_eq!(out, [IAC, WILL, ECHO]);
    assert_eq!(neg(&mut n, DO, ECHO), Vec::<u8>::new());
    // A repeated DO is not answered and changes nothing.
    assert_eq!(neg(&mut n, DO, ECHO), Vec::<u8>::new());
    out.clear();
    assert!(!n.answered(&mut out), "the client hid the answer");
    assert_eq!(out, [IAC, WONT, ECHO]);
    // Its DONT agrees: no answer, no loop.
    assert_eq!(neg(&mut n, DONT, ECHO), Vec::<u8>::new());
    out.clear();
    assert!(n.answered(&mut out), "a later line is echoed by the client");
    assert!(out.is_empty());
    // Unasked, the client cannot turn our echo on.
    assert_eq!(neg(&mut n, DO, ECHO), [IAC, WONT, ECHO]);
    // The next secret asks again.
    out.clear();
    n.secret(&mut out);
    assert_eq!(out, [IAC, WILL, ECHO]);
}

#[test]
fn a_client_that_refuses_echo_is_not_asked_again() {
    let mut n = started();
    let mut out = Vec::new();
    n.secret(&mut out);
    assert_eq!(neg(&mut n, DONT, ECHO), Vec::<u8>::new());
    out.clear();
    assert!(n.answered(&mut out));
    assert!(out.is_empty(), "nothing to turn off: {out:?}");
    n.secret(&mut out);
    assert!(out.is_empty(), "asked again: {out:?}");
    // An answer that came before the client said anything: WONT follows
    // its DO, once.
    let mut n = started();
    n.secret(&mut Vec::new());
    out.clear();
    assert!(n.answered(&mut out));
    assert!(out.is_empty());
    assert_eq!(neg(&mut n, DO, ECHO), [IAC, WONT, ECHO]);
    assert_eq!(neg(&mut n, DONT, ECHO), Vec::<u8>::new());
}

#[test]
fn the_games_oob_goes_as_gmcp_else_msdp_else_nowhere() {
    let data = oob("Char.Vitals", r#"{"hp":10,"tags":["a"]}"#);
    let mut n = started();
    let mut out = Vec::new();
    assert_eq!(n.oob(&data, &mut out), Ok(OobSent::Not));
    assert!(out.is_empty());
    neg(&mut n, DO, MSDP);
    assert_eq!(n.oob(&data, &mut out), Ok(OobSent::Msdp));
    let mut want = vec![IAC, SB, MSDP];
    want.extend_from_slice(b"\x01Char.Vitals\x02\x03\x01hp\x0210\x01tags\x02\x05\x02a\x06\x04");
    want.extend_from_slice(&[IAC, SE]);
    assert_eq!(out, want);
    neg(&mut n, DO, GMCP);
    out.clear();
    assert_eq!(n.oob(&data, &mut out), Ok(OobSent::Gmcp));
    let mut want = vec![IAC, SB, GMCP];
    want.extend_from_slice(br#"Char.Vitals {"hp":10,"tags":["a"]}"#);
    want.extend_from_slice(&[IAC, SE]);
    assert_eq!(out, want);
    // Not JSON, or a name GMCP cannot carry: dropped, nothing sent.
    out.clear();
    assert!(matches!(
        n.oob(&oob("Char.Vitals", "{hp"), &mut out),
        Err(Dropped::NotJson { .. })
    ));
    assert!(matches!(
        n.oob(&oob("Char Vitals", "1"), &mut out),
        Err(Dropped::BadName(_))
    ));
    assert!(out.is_empty());
    // A module the client did not ask for is not sent.
    assert_eq!(
        oob_in(&mut n, GMCP, br#"Core.Supports.Set ["Room 1"]"#),
        Ok(vec![])
    );
    assert_eq!(n.oob(&data, &mut out), Ok(OobSent::Not));
    assert!(out.is_empty());
}

#[test]
fn core_hello_names_the_client_over_ttype() {
    let mut n = started();
    // Before DO GMCP, GMCP is not listened to.
    assert_eq!(
        oob_in(&mut n, GMCP, br#"Core.Hello {"client":"Early"}"#),
        Ok(vec![])
    );
    assert_eq!(n.take_changed(), None);
    neg(&mut n, DO, GMCP);
    assert_eq!(
        oob_in(
            &mut n,
            GMCP,
            br#"Core.Hello {"client":"Mudlet","version":"4.17.2"}"#
        ),
        Ok(vec![])
    );
    assert_eq!(n.take_changed().unwrap().client, "Mudlet 4.17.2");
    // TTYPE's cycle after it keeps its terminal, not its name.
    neg(&mut n, WILL, TTYPE);
    sub(&mut n, TTYPE, &is("MUDLET"));
    sub(&mut n, TTYPE, &is("ANSI-TRUECOLOR"));
    assert_eq!(sub(&mut n, TTYPE, &is("MTTS 297")), Vec::<u8>::new());
    let info = n.take_changed().unwrap();
    assert_eq!(
        (info.client.as_str(), info.terminal.as_str()),
        ("Mudlet 4.17.2", "ANSI-TRUECOLOR")
    );
    assert_eq!(n.colours(Colours::None), Colours::Truecolour);
}

#[test]
fn the_clients_oob_is_the_games_but_core_is_ours() {
    let mut n = started();
    neg(&mut n, DO, GMCP);
    neg(&mut n, DO, MSDP);
    assert_eq!(
        oob_in(&mut n, GMCP, br#"Core.Supports.Set ["Char 1"]"#),
        Ok(vec![])
    );
    assert_eq!(
        oob_in(&mut n, GMCP, b"Char.Skills.Get {\"group\": \"combat\"}"),
        Ok(vec![oob("Char.Skills.Get", r#"{"group":"combat"}"#)])
    );
    assert_eq!(
        oob_in(&mut n, GMCP, b"Core.Ping"),
        Ok(vec![oob("Core.Ping", "")])
    );
    assert!(matches!(
        oob_in(&mut n, GMCP, b"Char.Skills.Get {broken"),
        Err(Dropped::Gmcp(gmcp::Malformed::BadJson { .. }))
    ));
    assert_eq!(
        oob_in(
            &mut n,
            MSDP,
            b"\x01REPORT\x02HEALTH\x02MANA\x01SEND\x02ROOM"
        ),
        Ok(vec![
            oob("REPORT", r#"["HEALTH","MANA"]"#),
            oob("SEND", r#""ROOM""#)
        ])
    );
    assert!(matches!(
        oob_in(&mut n, MSDP, b"\x01A\x02\x03"),
        Err(Dropped::Msdp(msdp::Malformed::Unclosed))
    ));
}

#[test]
fn settling_until_ttype_and_charset_are_answered() {
    let mut n = started();
    assert!(n.settling(), "both asked, neither answered");
    neg(&mut n, WONT, TTYPE);
    assert!(n.settling(), "CHARSET still unanswered");
    neg(&mut n, DONT, CHARSET);
    assert!(!n.settling());

    let mut n = started();
    neg(&mut n, DONT, CHARSET);
    neg(&mut n, WILL, TTYPE);
    sub(&mut n, TTYPE, &is("TINTIN++"));
    assert!(n.settling(), "mid-cycle");
    sub(&mut n, TTYPE, &is("XTERM"));
    sub(&mut n, TTYPE, &is("MTTS 137"));
    assert!(!n.settling());
    assert_eq!(n.colours(Colours::Truecolour), Colours::Xterm256);

    let mut n = started();
    neg(&mut n, WONT, TTYPE);
    neg(&mut n, DO, CHARSET);
    assert!(n.settling(), "our REQUEST is out");
    sub(&mut n, CHARSET, &[REJECTED]);
    assert!(!n.settling());
    assert_eq!(
        n.colours(Colours::Xterm256),
        Colours::Xterm256,
        "never said"
    );
}
