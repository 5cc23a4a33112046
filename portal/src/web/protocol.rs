//! What goes over the webclient's WebSocket: ev's own JSON messages (the
//! page's protocol) and the mudstandards.org subprotocols for third-party
//! clients, both ways, sans IO.
//!
//! # ev's protocol (subprotocol `v1.ev`, or none)
//! Every message is one TEXT frame holding one JSON object whose `t` says
//! what it is. The page speaks first.
//!
//! Page → portal:
//! - `{"t":"hello"}` starts a new session. `{"t":"hello","resume":TOKEN,
//!   "seen":N}` resumes the session TOKEN was issued for, N being the last
//!   output number the page has. The first message, and only there.
//! - `{"t":"in","n":K,"text":"look"}`: a line the player typed. Inputs
//!   are numbered by the page from 1, one more each time (a page that
//!   resumes sends again those not acknowledged, with the same numbers;
//!   the portal takes each number once).
//! - `{"t":"oob","n":K,"name":"Core.Hello","data":{...}}`: out-of-band
//!   data for the game, numbered with the inputs.
//! - `{"t":"ack","seen":N}`: the page has every output up to N; the portal
//!   forgets them (it keeps what is not acknowledged for a resume).
//! - `{"t":"info","width":W,"height":H,"screenreader":B}`: the page's size in
//!   characters and whether the player asked for screen-reader output,
//!   which the game sees as the session's window and capabilities.
//!
//! Portal → page:
//! - `{"t":"welcome","game":G,"token":T,"resumed":B,"input":K,"resume_ms":M}`:
//!   the session is (still) there, in the game named G (`game.name`). T is the token for the next resume (a token
//!   is good once); K the last input number the portal has, so the page
//!   sends again only those after it; M how long a dropped socket may be
//!   away (0: no resume).
//! - Outputs, each with its number `n` (from 1, per session):
//!   `{"t":"text","n":N,"kind":"line"|"prompt"|"secret","spans":[SPAN…]}`
//!   with SPAN `{"text":"…"}` plus, when set, `"fg"` and `"bg"` (a number
//!   0-15 for the 16 ANSI colours, or `"#rrggbb"`), `"b"`, `"i"`, `"u"`
//!   (true for bold, italic, underline), and for a span of a markup link
//!   `"send":"COMMAND"` (a command the page sends as if typed when the
//!   span is clicked) or `"url":"https://…"` (a page opened in a new tab;
//!   only http and https, as the markup allows);
//!   `{"t":"notice","n":N,"text":"…"}`,
//!   a line of the portal's own; `{"t":"pause","n":N,"paused":B,"text":"…"}`,
//!   the game paused (a long reload, a crash being recovered) or back;
//!   `{"t":"oob","n":N,"name":"Room.Info","data":JSON}`.
//! - `{"t":"ack","input":K}`: the portal has every input up to K.
//! - `{"t":"closed","reason":"…"}`: the session is over (quit, taken over by
//!   another login, a timeout, the game shutting down, a resume too late);
//!   a close frame follows. The page must not try to resume it.
//!
//! Text is never HTML: the page puts each span in as text, so nothing the
//! game or a player writes can become markup or script.
//!
//! A frame the portal cannot take (not JSON, an unknown `t`, an input out
//! of order, over `portal.web_max_message_bytes`) closes the socket with
//! code 1003, 1007, 1008 or 1009 and a reason, and ends the session.
//!
//! # mudstandards.org subprotocols
//! For third-party clients, per the mudstandards.org WebSocket proposal as
//! Evennia 6.1 speaks it: `terminal.mudstandards.org` (BINARY frames of
//! UTF-8 text with ANSI colour codes both ways; TEXT frames taken as input
//! too) and `gmcp.mudstandards.org` (the same, plus GMCP messages
//! `Package.Name JSON` in TEXT frames both ways) and `json.mudstandards.org`
//! (the same BINARY frames, plus TEXT frames each holding one JSON object
//! `{"proto":P,"id":I,"data":D}`, all three strings: out-of-band data as
//! GMCP is `"proto":"gmcp"`, the package name as `id` and its JSON text
//! as `data`; another `proto` is dropped and logged, a TEXT frame that is
//! no such object closes the socket with 1007). They have no resume: a
//! dropped socket ends the session, as a telnet connection's does.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use ev::link::{Form, Oob, TextKind};
use ev::markup::{self, Colour, Colours, Link};

/// ev's own protocol, by name.
pub const EV: &str = "v1.ev";
pub const TERMINAL: &str = "terminal.mudstandards.org";
pub const GMCP: &str = "gmcp.mudstandards.org";
pub const JSON: &str = "json.mudstandards.org";

/// Which protocol a socket speaks, from its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Ev,
    Terminal,
    Gmcp,
    Json,
}

impl Wire {
    /// The protocol named in the handshake (None: ev's own).
    pub fn from_protocol(name: Option<&str>) -> Wire {
        match name {
            Some(TERMINAL) => Wire::Terminal,
            Some(GMCP) => Wire::Gmcp,
            Some(JSON) => Wire::Json,
            _ => Wire::Ev,
        }
    }

    /// What the game sees as the session's protocol.
    pub fn name(self) -> &'static str {
        match self {
            Wire::Ev => "web",
            Wire::Terminal => "websocket-terminal",
            Wire::Gmcp => "websocket-gmcp",
            Wire::Json => "websocket-json",
        }
    }
}

/// A message from the page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase", deny_unknown_fields)]
pub enum FromPage {
    Hello {
        #[serde(default)]
        resume: Option<String>,
        #[serde(default)]
        seen: u64,
    },
    In {
        n: u64,
        text: String,
    },
    Oob {
        n: u64,
        name: String,
        #[serde(default)]
        data: Value,
    },
    Ack {
        seen: u64,
    },
    Info {
        #[serde(default)]
        width: u32,
        #[serde(default)]
        height: u32,
        #[serde(default)]
        screenreader: bool,
    },
}

impl FromPage {
    pub fn parse(text: &str) -> Result<FromPage, String> {
        serde_json::from_str(text).map_err(|e| {
            // serde's words, without echoing the player's text back.
            let message = e.to_string();
            match message.split_once(" at line") {
                Some((first, _)) => first.to_string(),
                None => message,
            }
        })
    }
}

/// One run of text in one style, as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanOut {
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fg: Option<ColourOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bg: Option<ColourOut>,
    #[serde(skip_serializing_if = "is_false")]
    pub b: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub i: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub u: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A colour: one of the page's 16 (its theme decides how each looks), or
/// an exact one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ColourOut {
    Basic(u8),
    Rgb(String),
}

fn colour(c: Colour) -> ColourOut {
    match c {
        Colour::Basic(n) => ColourOut::Basic(n.min(15)),
        Colour::Xterm(n) if n < 16 => ColourOut::Basic(n),
        Colour::Xterm(n) => {
            let (r, g, b) = xterm_rgb(n);
            ColourOut::Rgb(format!("#{r:02x}{g:02x}{b:02x}"))
        }
        Colour::Rgb(r, g, b) => ColourOut::Rgb(format!("#{r:02x}{g:02x}{b:02x}")),
    }
}

/// xterm's colour `n` (16-255): the 6×6×6 cube, then 24 greys.
fn xterm_rgb(n: u8) -> (u8, u8, u8) {
    if n >= 232 {
        let v = 8 + (n - 232) * 10;
        return (v, v, v);
    }
    let i = n.saturating_sub(16);
    let level = |x: u8| if x == 0 { 0 } else { 55 + x * 40 };
    (level(i / 36), level((i / 6) % 6), level(i % 6))
}

/// The game's text as spans: markup parsed, plain text as one span; no
/// control character but a line break passes.
pub fn spans(text: &str, form: Form) -> Vec<SpanOut> {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .collect()
    };
    if !form.markup {
        return vec![SpanOut {
            text: clean(text),
            fg: None,
            bg: None,
            b: false,
            i: false,
            u: false,
            send: None,
            url: None,
        }];
    }
    markup::parse(text)
        .into_iter()
        .map(|span| {
            let (send, url) = match span.link {
                Some(Link::Send(command)) => (Some(command), None),
                Some(Link::Url(url)) => (None, Some(url)),
                None => (None, None),
            };
            SpanOut {
                text: clean(&span.text),
                fg: span.style.fg.map(colour),
                bg: span.style.bg.map(colour),
                b: span.style.bold,
                i: span.style.italic,
                u: span.style.underline,
                send,
                url,
            }
        })
        .filter(|s| !s.text.is_empty())
        .collect()
}

fn kind(kind: TextKind) -> &'static str {
    match kind {
        TextKind::Line => "line",
        TextKind::Prompt => "prompt",
        TextKind::Secret => "secret",
    }
}

/// What the portal sends the page, before it is numbered.
#[derive(Debug, Clone, PartialEq)]
pub enum ToPage {
    Text { text: String, form: Form },
    Notice(String),
    Pause { paused: bool, text: String },
    Oob(Oob),
}

impl ToPage {
    /// The JSON of output number `n`, or None for out-of-band data whose
    /// JSON does not parse (the game's mistake: dropped, and logged).
    pub fn json(&self, n: u64) -> Option<String> {
        let value = match self {
            ToPage::Text { text, form } => serde_json::json!({
                "t": "text", "n": n, "kind": kind(form.kind), "spans": spans(text, *form),
            }),
            ToPage::Notice(text) => serde_json::json!({"t": "notice", "n": n, "text": text}),
            ToPage::Pause { paused, text } => {
                serde_json::json!({"t": "pause", "n": n, "paused": paused, "text": text})
            }
            ToPage::Oob(oob) => {
                let data: Value = if oob.data.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&oob.data).ok()?
                };
                serde_json::json!({"t": "oob", "n": n, "name": oob.name, "data": data})
            }
        };
        Some(value.to_string())
    }

    /// For the mudstandards.org protocols: the text with ANSI colours (a
    /// BINARY frame), or the GMCP message (a TEXT frame, as `gmcp` or
    /// `json` wraps it), or nothing to send.
    pub fn terminal(&self, wire: Wire) -> Option<Frame> {
        match self {
            ToPage::Text { text, form } => {
                let colours = if form.markup {
                    Colours::Truecolour
                } else {
                    Colours::None
                };
                let mut out = if form.markup {
                    markup::render(text, colours)
                } else {
                    markup::render(&markup::escape(text), Colours::None)
                };
                if form.kind == TextKind::Line {
                    out.push_str("\r\n");
                }
                Some(Frame::Binary(out.into_bytes()))
            }
            ToPage::Notice(text) | ToPage::Pause { text, .. } => Some(Frame::Binary(
                format!("{}\r\n", ev::text::printable(text)).into_bytes(),
            )),
            ToPage::Oob(oob) if wire == Wire::Gmcp => Some(Frame::Text(if oob.data.is_empty() {
                oob.name.clone()
            } else {
                format!("{} {}", oob.name, oob.data)
            })),
            ToPage::Oob(oob) if wire == Wire::Json => Some(Frame::Text(
                serde_json::json!({"proto": "gmcp", "id": oob.name, "data": oob.data}).to_string(),
            )),
            ToPage::Oob(_) => None,
        }
    }
}

/// A frame for a mudstandards.org client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// A TEXT frame of `json.mudstandards.org`: the envelope of out-of-band
/// data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    pub proto: String,
    pub id: String,
    #[serde(default, deserialize_with = "data_text")]
    pub data: String,
}

impl Envelope {
    pub fn parse(text: &str) -> Result<Envelope, String> {
        serde_json::from_str(text).map_err(|e| {
            let message = e.to_string();
            let first = message.split_once(" at line").map_or(&*message, |(f, _)| f);
            format!("not a {{\"proto\",\"id\",\"data\"}} object: {first}")
        })
    }

    /// Whether it carries GMCP (the proposal names it in lower case;
    /// a client that writes `GMCP` means the same).
    pub fn is_gmcp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("gmcp")
    }
}

/// `data` is JSON text in a string, as the proposal says; a client that
/// sends the JSON itself (an object, a number) is taken at its word, and
/// null or nothing is no data.
fn data_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(text) => text,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// The portal's own messages to the page, which are not numbered.
pub fn welcome(game: &str, token: &str, resumed: bool, input: u64, resume_ms: u64) -> String {
    serde_json::json!({
        "t": "welcome", "game": game, "token": token, "resumed": resumed, "input": input,
        "resume_ms": resume_ms,
    })
    .to_string()
}

pub fn ack(input: u64) -> String {
    serde_json::json!({"t": "ack", "input": input}).to_string()
}

pub fn closed(reason: &str) -> String {
    serde_json::json!({"t": "closed", "reason": reason}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_becomes_spans_with_colours_and_no_controls() {
        let spans = spans(
            "{red}hot{/} {b}{#ff8800}x{/}{/}\u{1b}[2J{x208}y{/}",
            Form::LINE,
        );
        let json = serde_json::to_string(&spans).unwrap();
        assert_eq!(
            json,
            r##"[{"text":"hot","fg":1},{"text":" "},{"text":"x","fg":"#ff8800","b":true},{"text":"[2J"},{"text":"y","fg":"#ff8700"}]"##
        );
    }

    #[test]
    fn plain_text_is_one_span_even_with_braces_and_tags() {
        let spans = spans("<script>{red}</script>", Form::PLAIN);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].text, "<script>{red}</script>");
    }

    #[test]
    fn page_messages_parse_and_unknown_ones_are_refused() {
        assert_eq!(
            FromPage::parse(r#"{"t":"in","n":3,"text":"look"}"#),
            Ok(FromPage::In {
                n: 3,
                text: "look".into()
            })
        );
        assert_eq!(
            FromPage::parse(r#"{"t":"hello","resume":"abc","seen":7}"#),
            Ok(FromPage::Hello {
                resume: Some("abc".into()),
                seen: 7
            })
        );
        assert!(FromPage::parse(r#"{"t":"exec","cmd":"rm"}"#).is_err());
        assert!(FromPage::parse(r#"{"t":"in","n":-1,"text":"x"}"#).is_err());
        assert!(FromPage::parse("not json").is_err());
    }

    #[test]
    fn outputs_are_numbered_and_bad_oob_json_is_dropped() {
        let oob = ToPage::Oob(Oob {
            name: "Room.Info".into(),
            data: r#"{"name":"Hall"}"#.into(),
        });
        assert_eq!(
            oob.json(4).unwrap(),
            r#"{"data":{"name":"Hall"},"n":4,"name":"Room.Info","t":"oob"}"#
        );
        let bad = ToPage::Oob(Oob {
            name: "X".into(),
            data: "{nope".into(),
        });
        assert_eq!(bad.json(5), None);
    }

    #[test]
    fn terminal_frames_carry_ansi_and_gmcp_text() {
        let text = ToPage::Text {
            text: "{red}a{/}".into(),
            form: Form::LINE,
        };
        assert_eq!(
            text.terminal(Wire::Terminal),
            Some(Frame::Binary(b"\x1b[0;31ma\x1b[0m\r\n".to_vec()))
        );
        let oob = ToPage::Oob(Oob {
            name: "Room.Info".into(),
            data: "{}".into(),
        });
        assert_eq!(oob.terminal(Wire::Terminal), None);
        assert_eq!(
            oob.terminal(Wire::Gmcp),
            Some(Frame::Text("Room.Info {}".into()))
        );
    }

    #[test]
    fn json_envelopes_carry_gmcp_both_ways() {
        let oob = ToPage::Oob(Oob {
            name: "Room.Info".into(),
            data: r#"{"name":"Hall"}"#.into(),
        });
        let Some(Frame::Text(text)) = oob.terminal(Wire::Json) else {
            panic!("a TEXT frame");
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["proto"], "gmcp");
        assert_eq!(value["id"], "Room.Info");
        assert_eq!(value["data"], r#"{"name":"Hall"}"#, "data is JSON text");
        let line = ToPage::Text {
            text: "hi".into(),
            form: Form::LINE,
        };
        assert_eq!(
            line.terminal(Wire::Json),
            Some(Frame::Binary(b"hi\r\n".to_vec()))
        );

        let given =
            Envelope::parse(r#"{"proto":"gmcp","id":"Core.Hello","data":"{\"client\":\"x\"}"}"#)
                .unwrap();
        assert!(given.is_gmcp());
        assert_eq!(given.id, "Core.Hello");
        assert_eq!(given.data, r#"{"client":"x"}"#);
        let object =
            Envelope::parse(r#"{"proto":"GMCP","id":"Core.Ping","data":{"a":1}}"#).unwrap();
        assert!(object.is_gmcp());
        assert_eq!(object.data, r#"{"a":1}"#);
        let bare = Envelope::parse(r#"{"proto":"gmcp","id":"Core.Ping"}"#).unwrap();
        assert_eq!(bare.data, "");
        let err = Envelope::parse("look").unwrap_err();
        assert!(err.contains("proto"), "{err}");
        assert!(
            Envelope::parse(r#"{"id":"x","data":""}"#).is_err(),
            "no proto"
        );
        assert_eq!(Wire::from_protocol(Some(JSON)), Wire::Json);
    }

    #[test]
    fn xterm_colours_map_to_their_rgb() {
        assert_eq!(xterm_rgb(16), (0, 0, 0));
        assert_eq!(xterm_rgb(231), (255, 255, 255));
        assert_eq!(xterm_rgb(232), (8, 8, 8));
        assert_eq!(xterm_rgb(255), (238, 238, 238));
    }

    #[test]
    fn links_reach_the_page_as_targets_and_never_as_html() {
        let out = spans(
            "{send:look cat}the {b}cat{/}{/} {url:https://ev.example/?a=1&b=\"x\"}docs{/} \
             {send:\"><img src=x onerror=alert(1)>}evil{/} {url:javascript:alert(1)}js{/}",
            Form::LINE,
        );
        let json = serde_json::to_string(&out).unwrap();
        assert_eq!(
            json,
            r##"[{"text":"the ","send":"look cat"},{"text":"cat","b":true,"send":"look cat"},{"text":" "},{"text":"docs","url":"https://ev.example/?a=1&b=\"x\""},{"text":" "},{"text":"evil","send":"\"><img src=x onerror=alert(1)>"},{"text":" {url:javascript:alert(1)}js{/}"}]"##
        );
        // Plain text (not markup) holds no link.
        let plain = spans("{send:x}y{/}", Form::PLAIN);
        assert!(plain.iter().all(|s| s.send.is_none() && s.url.is_none()));
    }
}
