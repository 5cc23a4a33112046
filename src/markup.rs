//! The game's text markup, and its rendering for each kind of client.
//!
//! The server writes every line in this markup and never sees ANSI or
//! telnet; the portal renders it for what each client said it can show
//! (plain text for a screen reader or a dumb terminal, 16 colours, xterm's
//! 256, or truecolour). Kept small on purpose:
//!
//! ```text
//! {red}danger{/}           a colour until the matching {/}
//! {bold}{blue}deep{/}{/}   styles nest; {/} ends the innermost
//! {bg:yellow}...{/}        a background colour
//! {#ff8800}...{/}          truecolour, downgraded for clients without it
//! {x208}...{/}             one of xterm's 256 colours
//! {send:look cat}the cat{/} a link that sends a command when chosen
//! {url:https://ev.example/}the docs{/}   a link to a web page
//! {{                       a literal {
//! ```
//!
//! Colour names: black, red, green, yellow, blue, magenta, cyan, white and
//! each with `bright-` (bright-red). Attributes: bold (b), underline (u),
//! italic (i). A tag that is none of these (or a `{/}` with nothing open) is
//! text, shown as typed: markup
//! never fails, and a game that forgets to [`escape`] a player's words only
//! risks their braces showing. Whatever the markup says, the rendering
//! holds no control character of the text's own, so game text can never
//! smuggle an escape sequence to a player's terminal.
//!
//! # Links
//! A link wraps text like a style and ends at its `{/}`. `{send:COMMAND}`
//! is a command the player's client sends as if typed when the link is
//! chosen (MXP's `send`: exits, things to look at); `{url:URL}` a web page,
//! and only an `http://` or `https://` one with a host. A target holds no
//! control character, no space in a URL, and no brace (the tag ends at the
//! first `}`; percent-encode one in a URL): a tag that breaks a rule is
//! not a link but text, shown as typed, like any other unknown tag. Use
//! [`send_link`] and [`url_link`] to build one from words that are not
//! yours. A link inside a link replaces it until its `{/}`.
//!
//! What each client makes of a link: the webclient makes it clickable
//! (spans carry it); a telnet client gets the text alone, and for a URL
//! link whose text is not the URL itself the URL after it in angle
//! brackets, so it can still be copied: `the docs <https://ev.example/>`.
//! Nothing else goes to a terminal (no OSC 8: a terminal that does not
//! know it may show its bytes), so a target can never reach one as
//! anything but printable text.
//!
//! ```
//! use ev::markup::{Colours, Link, parse, render, send_link};
//! let exits = format!("Exits: {}", send_link("north", "north"));
//! assert_eq!(render(&exits, Colours::Ansi16), "Exits: north");
//! assert_eq!(parse(&exits)[1].link, Some(Link::Send("north".into())));
//! let docs = "{url:https://ev.example/}the docs{/}";
//! assert_eq!(render(docs, Colours::None), "the docs <https://ev.example/>");
//! // Not http(s): no link, the tag is text.
//! let bad = "{url:javascript:alert(1)}x{/}";
//! assert_eq!(render(bad, Colours::None), bad);
//! ```
//!
//! ```
//! use ev::markup::{Colours, escape, render};
//! let line = format!("{{bright-green}}{}{{/}} says hi", escape("Al{ice}"));
//! assert_eq!(render(&line, Colours::None), "Al{ice} says hi");
//! assert_eq!(render(&line, Colours::Ansi16), "\x1b[0;92mAl{ice}\x1b[0m says hi");
//! ```

use std::fmt::Write;

/// What a client can show, from TTYPE/MTTS or the player's own choice.
/// In ev.toml (`portal.default_colours`): "plain", "ansi16", "xterm256",
/// "truecolour".
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Colours {
    /// Plain text: screen readers, dumb terminals, logs.
    #[serde(rename = "plain")]
    None,
    /// The 16 ANSI colours and bold/underline/italic.
    #[default]
    Ansi16,
    /// xterm's 256 colours.
    Xterm256,
    /// 24-bit colour.
    Truecolour,
}

/// A colour as the markup names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    /// 0-15: the ANSI colours, 8-15 the bright ones.
    Basic(u8),
    /// One of xterm's 256.
    Xterm(u8),
    Rgb(u8, u8, u8),
}

/// The style in force over a run of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    pub fg: Option<Colour>,
    pub bg: Option<Colour>,
    pub bold: bool,
    pub underline: bool,
    pub italic: bool,
}

/// Where a link leads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Link {
    /// A command the client sends as if the player typed it.
    Send(String),
    /// An `http` or `https` URL.
    Url(String),
}

/// A run of text in one style, and the link it is part of if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub style: Style,
    pub link: Option<Link>,
    pub text: String,
}

const NAMES: [&str; 8] = [
    "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white",
];

/// `text` as markup that shows it as typed: a player's words, a name.
pub fn escape(text: &str) -> String {
    text.replace('{', "{{")
}

/// A link that sends `command` when chosen, showing `text` (escaped
/// here). A command that cannot be a link's target (a brace or a control
/// character in it, or empty) gives the text alone: markup never fails.
pub fn send_link(command: &str, text: &str) -> String {
    match link_named(&format!("send:{command}")) {
        Some(_) => format!("{{send:{command}}}{}{{/}}", escape(text)),
        None => escape(text),
    }
}

/// A link to the web page `url`, showing `text` (escaped here); the text
/// alone if `url` is no `http`/`https` URL a link may hold.
pub fn url_link(url: &str, text: &str) -> String {
    match link_named(&format!("url:{url}")) {
        Some(_) => format!("{{url:{url}}}{}{{/}}", escape(text)),
        None => escape(text),
    }
}

/// `markup` without its tags: what a screen reader hears.
pub fn plain(markup: &str) -> String {
    render(markup, Colours::None)
}

/// The markup split into runs of one style (and link) each.
pub fn parse(markup: &str) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    // What each open tag replaced, restored by its `{/}`.
    let mut stack: Vec<(Style, Option<Link>)> = Vec::new();
    let mut style = Style::default();
    let mut link: Option<Link> = None;
    let mut text = String::new();
    let mut rest = markup;
    while let Some(open) = rest.find('{') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        if let Some(more) = after.strip_prefix('{') {
            text.push('{');
            rest = more;
            continue;
        }
        let Some(close) = after.find('}') else {
            text.push('{');
            rest = after;
            continue;
        };
        let tag = &after[..close];
        let next = if tag == "/" {
            stack.pop()
        } else if let Some(new) = link_named(tag) {
            stack.push((style, link.clone()));
            Some((style, Some(new)))
        } else {
            apply(style, tag).map(|next| {
                stack.push((style, link.clone()));
                (next, link.clone())
            })
        };
        match next {
            Some((next_style, next_link)) => {
                if next_style != style || next_link != link {
                    flush(&mut spans, style, &link, &mut text);
                    style = next_style;
                    link = next_link;
                }
            }
            // Not a tag: the braces and all are text.
            None => {
                text.push('{');
                text.push_str(tag);
                text.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    text.push_str(rest);
    flush(&mut spans, style, &link, &mut text);
    spans
}

fn flush(spans: &mut Vec<Span>, style: Style, link: &Option<Link>, text: &mut String) {
    if text.is_empty() {
        return;
    }
    match spans.last_mut() {
        Some(last) if last.style == style && last.link == *link => last.text.push_str(text),
        _ => spans.push(Span {
            style,
            link: link.clone(),
            text: std::mem::take(text),
        }),
    }
    text.clear();
}

/// The link a tag opens, or None if it opens none (a tag that looks like
/// one but breaks a rule is then shown as text).
fn link_named(tag: &str) -> Option<Link> {
    // `{` too: a target with one could not be written back as markup.
    let clean = |t: &str| !t.is_empty() && !t.chars().any(|c| c.is_control() || "{}".contains(c));
    if let Some(command) = tag.strip_prefix("send:") {
        return clean(command).then(|| Link::Send(command.to_owned()));
    }
    let url = tag.strip_prefix("url:")?;
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let has_host = rest.chars().next().is_some_and(|c| !"/?#".contains(c));
    // Printable ASCII only: no spaces, and no look-alike Unicode or bidi
    // controls that would show a player one address and open another.
    let printable = url.bytes().all(|b| b.is_ascii_graphic());
    (has_host && printable && clean(url)).then(|| Link::Url(url.to_owned()))
}

/// `style` with `tag` applied, or None if `tag` is no tag.
fn apply(mut style: Style, tag: &str) -> Option<Style> {
    match tag {
        "b" | "bold" => style.bold = true,
        "u" | "underline" => style.underline = true,
        "i" | "italic" => style.italic = true,
        _ => match tag.strip_prefix("bg:") {
            Some(colour) => style.bg = Some(colour_named(colour)?),
            None => style.fg = Some(colour_named(tag)?),
        },
    }
    Some(style)
}

fn colour_named(name: &str) -> Option<Colour> {
    if let Some(hex) = name.strip_prefix('#') {
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        return Some(Colour::Rgb(byte(0)?, byte(2)?, byte(4)?));
    }
    if let Some(n) = name.strip_prefix('x') {
        return n.parse().ok().map(Colour::Xterm);
    }
    let (bright, base) = match name.strip_prefix("bright-") {
        Some(base) => (8, base),
        None => (0, name),
    };
    let i = NAMES.iter().position(|n| *n == base)?;
    Some(Colour::Basic(i as u8 + bright))
}

/// The markup as a client that shows `colours` should get it: SGR escape
/// sequences around each run, and a reset at the end if any was set. A
/// link is its text; a URL link's URL follows in angle brackets unless
/// the text is the URL.
pub fn render(markup: &str, colours: Colours) -> String {
    let spans = parse(markup);
    let mut out = String::with_capacity(markup.len() + 16);
    let mut current = Style::default();
    // The URL link being rendered, and its text so far.
    let mut url: Option<(String, String)> = None;
    for span in spans {
        let this_url = match &span.link {
            Some(Link::Url(u)) => Some(u),
            _ => None,
        };
        if url.as_ref().map(|(u, _)| u) != this_url {
            end_url(&mut out, url.take());
            url = this_url.map(|u| (u.clone(), String::new()));
        }
        if colours != Colours::None && span.style != current {
            sgr(&mut out, span.style, colours);
            current = span.style;
        }
        let start = out.len();
        out.extend(span.text.chars().filter(|&c| shown(c)));
        if let Some((_, text)) = url.as_mut() {
            text.push_str(&out[start..]);
        }
    }
    end_url(&mut out, url);
    if current != Style::default() {
        out.push_str("\x1b[0m");
    }
    out
}

/// Whether `markup` renders as itself for every client: no braces and no
/// control characters but line ends. Most of a game's lines are, and the
/// portal sends them without rendering (a line is rendered per player).
pub fn is_plain(markup: &str) -> bool {
    markup.chars().all(|c| c != '{' && c != '}' && shown(c))
}

/// A character of the game's text a client is shown: no control
/// characters but line ends (they would move a terminal's cursor).
fn shown(c: char) -> bool {
    !c.is_control() || c == '\n'
}

/// After a URL link's text, the URL, so a terminal's player can copy it.
fn end_url(out: &mut String, url: Option<(String, String)>) {
    let Some((url, shown)) = url else { return };
    if shown.trim() != url {
        let _ = write!(out, " <{url}>");
    }
}

/// The escape sequence that sets `style` from scratch.
fn sgr(out: &mut String, style: Style, colours: Colours) {
    let mut codes: Vec<String> = vec!["0".into()];
    if style.bold {
        codes.push("1".into());
    }
    if style.italic {
        codes.push("3".into());
    }
    if style.underline {
        codes.push("4".into());
    }
    if let Some(fg) = style.fg {
        codes.push(colour_code(fg, colours, false));
    }
    if let Some(bg) = style.bg {
        codes.push(colour_code(bg, colours, true));
    }
    if codes.len() == 1 {
        out.push_str("\x1b[0m");
        return;
    }
    let _ = write!(out, "\x1b[{}m", codes.join(";"));
}

fn colour_code(colour: Colour, colours: Colours, background: bool) -> String {
    let base = if background { 40 } else { 30 };
    let extended = if background { 48 } else { 38 };
    match (colour, colours) {
        (Colour::Rgb(r, g, b), Colours::Truecolour) => format!("{extended};2;{r};{g};{b}"),
        (Colour::Rgb(r, g, b), Colours::Xterm256) => {
            format!("{extended};5;{}", nearest_xterm(r, g, b))
        }
        (Colour::Xterm(n), Colours::Xterm256 | Colours::Truecolour) => format!("{extended};5;{n}"),
        (Colour::Basic(n), _) => basic_code(n, base),
        (Colour::Rgb(r, g, b), _) => basic_code(nearest_basic(r, g, b), base),
        (Colour::Xterm(n), _) => {
            let (r, g, b) = xterm_rgb(n);
            basic_code(nearest_basic(r, g, b), base)
        }
    }
}

fn basic_code(n: u8, base: u8) -> String {
    match n {
        0..8 => (base + n).to_string(),
        _ => (base + 60 + (n - 8)).to_string(),
    }
}

/// The usual RGB values of the 16 ANSI colours (xterm's defaults).
const BASIC_RGB: [(u8, u8, u8); 16] = [
    (0, 0, 0),
    (205, 0, 0),
    (0, 205, 0),
    (205, 205, 0),
    (0, 0, 238),
    (205, 0, 205),
    (0, 205, 205),
    (229, 229, 229),
    (127, 127, 127),
    (255, 0, 0),
    (0, 255, 0),
    (255, 255, 0),
    (92, 92, 255),
    (255, 0, 255),
    (0, 255, 255),
    (255, 255, 255),
];

/// The levels of xterm's 6×6×6 colour cube.
const CUBE: [u8; 6] = [0, 95, 135, 175, 215, 255];

fn distance((r1, g1, b1): (u8, u8, u8), (r2, g2, b2): (u8, u8, u8)) -> u32 {
    let d = |a: u8, b: u8| (i32::from(a) - i32::from(b)).unsigned_abs();
    d(r1, r2).pow(2) + d(g1, g2).pow(2) + d(b1, b2).pow(2)
}

fn nearest_basic(r: u8, g: u8, b: u8) -> u8 {
    (0u8..16)
        .min_by_key(|&i| distance(BASIC_RGB[usize::from(i)], (r, g, b)))
        .unwrap_or(7)
}

fn xterm_rgb(n: u8) -> (u8, u8, u8) {
    match n {
        0..16 => BASIC_RGB[usize::from(n)],
        16..232 => {
            let i = n - 16;
            (
                CUBE[usize::from(i / 36)],
                CUBE[usize::from(i / 6 % 6)],
                CUBE[usize::from(i % 6)],
            )
        }
        _ => {
            let level = 8 + (n - 232) * 10;
            (level, level, level)
        }
    }
}

fn nearest_xterm(r: u8, g: u8, b: u8) -> u8 {
    // The cube and the grey ramp; the first 16 vary by terminal.
    (16u8..=255)
        .min_by_key(|&n| distance(xterm_rgb(n), (r, g, b)))
        .unwrap_or(231)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fg(c: Colour) -> Style {
        Style {
            fg: Some(c),
            ..Style::default()
        }
    }

    #[test]
    fn tags_nest_and_close_innermost_first() {
        let spans = parse("a{red}b{bold}c{/}d{/}e");
        let red = fg(Colour::Basic(1));
        let red_bold = Style { bold: true, ..red };
        assert_eq!(
            spans,
            [
                Span {
                    style: Style::default(),
                    link: None,
                    text: "a".into()
                },
                Span {
                    style: red,
                    link: None,
                    text: "b".into()
                },
                Span {
                    style: red_bold,
                    link: None,
                    text: "c".into()
                },
                Span {
                    style: red,
                    link: None,
                    text: "d".into()
                },
                Span {
                    style: Style::default(),
                    link: None,
                    text: "e".into()
                },
            ]
        );
    }

    #[test]
    fn what_is_no_tag_is_text() {
        for text in [
            "{", "}", "{{", "{nope}", "{/}", "a{", "{#12}", "{x999}", "{bg:}", "}{",
        ] {
            let shown = plain(text);
            // `{{` is the one escape; a `{/}` with nothing open is text too.
            let expect = if text == "{{" { "{" } else { text };
            assert_eq!(shown, expect, "{text:?}");
            assert!(
                !render(text, Colours::Truecolour).contains('\x1b'),
                "{text:?}"
            );
        }
    }

    #[test]
    fn escaped_text_shows_as_typed() {
        for text in ["{red}", "{{", "a{b}c", "{/}", "}"] {
            assert_eq!(plain(&escape(text)), text);
            assert_eq!(render(&escape(text), Colours::Ansi16), text);
        }
    }

    #[test]
    fn each_client_gets_what_it_can_show() {
        let line = "{b}{#ff8800}hot{/}{/} {x21}deep{/} {bg:bright-blue}sky{/}";
        assert_eq!(render(line, Colours::None), "hot deep sky");
        assert_eq!(
            render(line, Colours::Truecolour),
            "\x1b[0;1;38;2;255;136;0mhot\x1b[0m \x1b[0;38;5;21mdeep\x1b[0m \x1b[0;104msky\x1b[0m"
        );
        assert_eq!(
            render(line, Colours::Xterm256),
            "\x1b[0;1;38;5;208mhot\x1b[0m \x1b[0;38;5;21mdeep\x1b[0m \x1b[0;104msky\x1b[0m"
        );
        // Orange is nearest to yellow (33) of the 16; xterm 21 to blue.
        assert_eq!(
            render(line, Colours::Ansi16),
            "\x1b[0;1;33mhot\x1b[0m \x1b[0;34mdeep\x1b[0m \x1b[0;104msky\x1b[0m"
        );
    }

    #[test]
    fn no_control_character_of_the_text_reaches_the_client() {
        let evil = "{red}\x1b[2J\x07\u{9b}31m{/}";
        for colours in [
            Colours::None,
            Colours::Ansi16,
            Colours::Xterm256,
            Colours::Truecolour,
        ] {
            let out = render(evil, colours);
            let escapes = out.matches('\x1b').count();
            let expected = if colours == Colours::None { 0 } else { 2 };
            assert_eq!(escapes, expected, "{colours:?}: {out:?}");
            assert!(!out.contains('\x07') && !out.contains('\u{9b}'), "{out:?}");
        }
        assert_eq!(render("a\nb", Colours::None), "a\nb");
    }

    #[test]
    fn plain_text_renders_as_itself_and_nothing_else_is_called_plain() {
        let all = [
            Colours::None,
            Colours::Ansi16,
            Colours::Xterm256,
            Colours::Truecolour,
        ];
        for text in [
            "",
            "pong 12",
            "Here: Ann, Bob\nExits: north",
            "café ☕ <b>&",
        ] {
            assert!(is_plain(text), "{text:?}");
            for colours in all {
                assert_eq!(render(text, colours), text, "{colours:?}");
            }
        }
        for text in [
            "{red}hot{/}",
            "a {{brace}",
            "a }",
            "bell\x07",
            "\u{9b}31m",
            "tab\t",
        ] {
            assert!(!is_plain(text), "{text:?}");
        }
    }

    #[test]
    fn any_string_renders_without_panic_or_stray_escapes() {
        // A fixed-seed generator over the markup's own alphabet.
        let pieces = [
            "{",
            "}",
            "/",
            "red",
            "bg:",
            "#",
            "ff",
            "x2",
            "bright-",
            "b",
            "{{",
            "é",
            "\u{1b}",
            "a",
            "send:",
            "url:https://",
            "\u{9b}",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5_000 {
            let mut text = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            assert!(!render(&text, Colours::None).contains('\x1b'), "{text:?}");
            // Every escape in the output is a whole SGR sequence of ours.
            let out = render(&text, Colours::Truecolour);
            let mut rest = out.as_str();
            while let Some(at) = rest.find('\x1b') {
                let seq = &rest[at + 1..];
                let end = seq.find('m').unwrap_or_else(|| panic!("{text:?}: {out:?}"));
                assert!(seq.starts_with('['), "{text:?}: {out:?}");
                assert!(
                    seq[1..end].bytes().all(|b| b.is_ascii_digit() || b == b';'),
                    "{text:?}: {out:?}"
                );
                rest = &seq[end + 1..];
            }
            assert_eq!(plain(&text), render(&text, Colours::None), "{text:?}");
        }
    }

    #[test]
    fn unclosed_styles_are_reset_at_the_end() {
        assert_eq!(render("{green}go", Colours::Ansi16), "\x1b[0;32mgo\x1b[0m");
        assert_eq!(render("plain", Colours::Truecolour), "plain");
    }

    #[test]
    fn the_colour_tables_are_right_at_their_corners() {
        assert_eq!(xterm_rgb(16), (0, 0, 0));
        assert_eq!(xterm_rgb(231), (255, 255, 255));
        assert_eq!(xterm_rgb(232), (8, 8, 8));
        assert_eq!(xterm_rgb(255), (238, 238, 238));
        assert_eq!(nearest_xterm(255, 0, 0), 196);
        assert_eq!(nearest_basic(250, 250, 250), 15);
    }

    #[test]
    fn links_carry_their_target_and_end_at_their_close() {
        let spans =
            parse("go {send:north}{green}north{/}{/} or {url:https://ev.example/a?b=1}read{/}.");
        let links: Vec<(Option<Link>, &str)> = spans
            .iter()
            .map(|s| (s.link.clone(), s.text.as_str()))
            .collect();
        assert_eq!(
            links,
            [
                (None, "go "),
                (Some(Link::Send("north".into())), "north"),
                (None, " or "),
                (Some(Link::Url("https://ev.example/a?b=1".into())), "read"),
                (None, "."),
            ]
        );
        assert_eq!(spans[1].style.fg, Some(Colour::Basic(2)));
        // A link inside a link replaces it until its close.
        let spans = parse("{send:a}x{send:b}y{/}z{/}");
        let targets: Vec<_> = spans.iter().map(|s| s.link.clone()).collect();
        assert_eq!(
            targets,
            [
                Some(Link::Send("a".into())),
                Some(Link::Send("b".into())),
                Some(Link::Send("a".into()))
            ]
        );
    }

    #[test]
    fn a_link_that_breaks_a_rule_is_text() {
        for bad in [
            "{url:javascript:alert(1)}x{/}",
            "{url:data:text/html,<script>}x{/}",
            "{url:ftp://ev.example/}x{/}",
            "{url:https://}x{/}",
            "{url:https:///path}x{/}",
            "{url:https://ev.example/a b}x{/}",
            "{url:https://ev.exa\u{202e}mple/}x{/}",
            "{url:https://ev.example/\x1b[2J}x{/}",
            "{send:}x{/}",
            "{send:look\x1b[31m}x{/}",
            "{send:look\ncat}x{/}",
            "{send:look {cat}x{/}",
        ] {
            assert!(parse(bad).iter().all(|s| s.link.is_none()), "{bad:?}");
            let shown = render(bad, Colours::Truecolour);
            assert!(
                !shown.chars().any(|c| c.is_control() && c != '\n'),
                "{bad:?}: {shown:?}"
            );
        }
        assert_eq!(
            plain("{url:javascript:alert(1)}x{/}"),
            "{url:javascript:alert(1)}x{/}"
        );
        // Upper-case schemes are schemes all the same.
        assert!(parse("{url:HTTPS://EV.EXAMPLE}x{/}")[0].link.is_some());
    }

    #[test]
    fn a_terminal_gets_the_text_and_a_url_it_could_not_see() {
        assert_eq!(
            render("{send:look cat}the cat{/}", Colours::None),
            "the cat"
        );
        assert_eq!(
            render(
                "see {url:https://ev.example/}{b}the docs{/}{/}!",
                Colours::Ansi16
            ),
            "see \x1b[0;1mthe docs <https://ev.example/>\x1b[0m!"
        );
        // A link whose text is its URL shows it once.
        assert_eq!(
            render(
                "{url:https://ev.example/}https://ev.example/{/}",
                Colours::None
            ),
            "https://ev.example/"
        );
        // A link without text is nothing, on every client.
        assert_eq!(render("{url:https://ev.example/}{/}", Colours::None), "");
        // Two links in a row each get their own URL.
        assert_eq!(
            render(
                "{url:http://a.example}a{/}{url:http://b.example}b{/}",
                Colours::None
            ),
            "a <http://a.example>b <http://b.example>"
        );
    }

    #[test]
    fn links_built_from_other_words_are_safe() {
        assert_eq!(
            send_link("look cat", "the {cat}"),
            "{send:look cat}the {{cat}{/}"
        );
        assert_eq!(plain(&send_link("look cat", "the {cat}")), "the {cat}");
        // Commands no link can hold: the text alone.
        assert_eq!(send_link("look {x}", "x"), "x");
        assert_eq!(send_link("a\x1b", "x"), "x");
        assert_eq!(send_link("", "x"), "x");
        assert_eq!(url_link("javascript:alert(1)", "y"), "y");
        assert_eq!(
            url_link("https://ev.example/", "docs"),
            "{url:https://ev.example/}docs{/}"
        );
    }
}
