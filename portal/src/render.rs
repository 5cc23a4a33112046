//! How the game's text reaches a telnet client's screen, sans IO: the
//! colours its markup is rendered in ([`colours`]) and where each line and
//! prompt starts and ends ([`Screen`]).
//!
//! A prompt is sent without a line end, then IAC EOR if the client agreed
//! to EOR, else IAC GA unless it agreed to SGA (RFC 885, RFC 858): never
//! both, since a client that takes each as the end of a line would show an
//! empty one. Clients that act on EOR or GA (Mudlet, tintin++, Blightmud)
//! end the prompt's line themselves, so the next line is sent as it is. A
//! client told neither still shows the prompt on the line the player types
//! on: if something else comes before the player's answer, it starts on a
//! line of its own (a CR LF first), never glued after the prompt.

use ev::link::{Capabilities, Form, TextKind};
use ev::markup::Colours;

use crate::charset::Charset;
use crate::telnet::{self, EOR, GA, IAC};

/// The colours a client gets, from what it told of itself:
/// - its MTTS bits, if it sent them: a screen reader gets plain text
///   whatever else it claims; then truecolour, 256 colours, ANSI's 16; a
///   client whose bits claim none of these gets plain text;
/// - else its terminal type, if it named one: "DUMB" is plain, a name
///   with TRUECOLOR, 24BIT or DIRECT is truecolour, one with 256COL is 256
///   colours;
/// - else `fallback` (`portal.default_colours`): a client that never
///   answered TTYPE, or named a terminal that says nothing of colour.
pub fn colours(mtts: Option<Capabilities>, terminal: &str, fallback: Colours) -> Colours {
    if let Some(caps) = mtts {
        return if caps.has(Capabilities::SCREEN_READER) {
            Colours::None
        } else if caps.has(Capabilities::TRUECOLOUR) {
            Colours::Truecolour
        } else if caps.has(Capabilities::COLOURS_256) {
            Colours::Xterm256
        } else if caps.has(Capabilities::ANSI) {
            Colours::Ansi16
        } else {
            Colours::None
        };
    }
    let says = |word: &str| {
        terminal
            .as_bytes()
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
    };
    if terminal.eq_ignore_ascii_case("DUMB") {
        Colours::None
    } else if says("TRUECOLOR") || says("24BIT") || says("DIRECT") {
        Colours::Truecolour
    } else if says("256COL") {
        Colours::Xterm256
    } else {
        fallback
    }
}

/// What tells the client a prompt is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptEnd {
    /// IAC EOR: the client agreed to EOR.
    Eor,
    /// IAC GA: the client agreed to neither EOR nor SGA.
    Ga,
    /// Nothing: the client agreed to SGA and not EOR.
    Nothing,
}

/// Where the client's cursor is, as far as the portal can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Cursor {
    /// At the start of a line.
    #[default]
    LineStart,
    /// After a prompt; `told`: the client was told it ended (EOR or GA).
    Prompt { told: bool },
}

/// One client's screen: what was last sent, to start the next text right.
#[derive(Debug, Default)]
pub struct Screen {
    cursor: Cursor,
}

impl Screen {
    /// Stages the game's `text` in `form`: markup rendered in `colours`
    /// (text that is not markup, from a server older than Link 1.3, as it
    /// is), in the client's `charset`; a line ends with CR LF, a prompt
    /// (secret or not) with `end`.
    pub fn show(
        &mut self,
        text: &str,
        form: Form,
        colours: Colours,
        charset: Charset,
        end: PromptEnd,
        out: &mut Vec<u8>,
    ) {
        self.start(out);
        if form.markup && !ev::markup::is_plain(text) {
            telnet::encode_text(&ev::markup::render(text, colours), charset, out);
        } else {
            telnet::encode_text(text, charset, out);
        }
        match form.kind {
            TextKind::Line => self.end_line(out),
            TextKind::Prompt | TextKind::Secret => {
                match end {
                    PromptEnd::Eor => out.extend_from_slice(&[IAC, EOR]),
                    PromptEnd::Ga => out.extend_from_slice(&[IAC, GA]),
                    PromptEnd::Nothing => {}
                }
                self.cursor = Cursor::Prompt {
                    told: end != PromptEnd::Nothing,
                };
            }
        }
    }

    /// Stages a line of the portal's own (a notice, a refusal): plain text.
    pub fn notice(&mut self, text: &str, charset: Charset, out: &mut Vec<u8>) {
        self.start(out);
        telnet::encode_text(text, charset, out);
        self.end_line(out);
    }

    /// The player sent a line. `echoed`: the client showed it, and so
    /// moved to a new line; a client that hid a secret did not.
    pub fn input(&mut self, echoed: bool) {
        if echoed {
            self.cursor = Cursor::LineStart;
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.cursor == (Cursor::Prompt { told: false }) {
            out.extend_from_slice(b"\r\n");
        }
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        self.cursor = Cursor::LineStart;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: Form = Form::LINE;
    const PROMPT: Form = Form {
        markup: true,
        kind: TextKind::Prompt,
    };
    const SECRET: Form = Form {
        markup: true,
        kind: TextKind::Secret,
    };

    fn shown(
        screen: &mut Screen,
        text: &str,
        form: Form,
        colours: Colours,
        end: PromptEnd,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        screen.show(text, form, colours, Charset::Utf8, end, &mut out);
        out
    }

    #[test]
    fn mtts_bits_decide_first() {
        let c = |bits, terminal| colours(Some(Capabilities(bits)), terminal, Colours::Ansi16);
        // 1 ANSI, 8 256, 64 screen reader, 256 truecolour.
        assert_eq!(c(1 | 8 | 256, "DUMB"), Colours::Truecolour);
        assert_eq!(c(1 | 8, ""), Colours::Xterm256);
        assert_eq!(c(1, "XTERM-256COLOR"), Colours::Ansi16);
        assert_eq!(c(1 | 8 | 64 | 256, ""), Colours::None, "a screen reader");
        assert_eq!(c(4, "XTERM"), Colours::None, "said nothing of colour");
    }

    #[test]
    fn a_terminal_name_decides_next_then_the_fallback() {
        let c = |terminal| colours(None, terminal, Colours::Ansi16);
        assert_eq!(c("xterm-256color"), Colours::Xterm256);
        assert_eq!(c("XTERM-TRUECOLOR"), Colours::Truecolour);
        assert_eq!(c("xterm-direct"), Colours::Truecolour);
        assert_eq!(c("dumb"), Colours::None);
        assert_eq!(c("XTERM"), Colours::Ansi16);
        assert_eq!(c(""), Colours::Ansi16);
        assert_eq!(colours(None, "", Colours::None), Colours::None);
    }

    #[test]
    fn markup_is_rendered_per_client_and_plain_text_shown_as_it_is() {
        let mut s = Screen::default();
        let red = "{red}hot{/} \u{1b}[1m";
        assert_eq!(
            shown(&mut s, red, LINE, Colours::Ansi16, PromptEnd::Eor),
            b"\x1b[0;31mhot\x1b[0m [1m\r\n"
        );
        assert_eq!(
            shown(&mut s, red, LINE, Colours::None, PromptEnd::Eor),
            b"hot [1m\r\n"
        );
        let old = Form::PLAIN;
        assert_eq!(
            shown(
                &mut s,
                "{red}as typed",
                old,
                Colours::Truecolour,
                PromptEnd::Eor
            ),
            b"{red}as typed\r\n"
        );
        let mut out = Vec::new();
        s.notice("{red}the portal's", Charset::Utf8, &mut out);
        assert_eq!(out, b"{red}the portal's\r\n");
    }

    #[test]
    fn a_prompt_ends_with_eor_or_ga_or_nothing() {
        let mut s = Screen::default();
        assert_eq!(
            shown(&mut s, "> ", PROMPT, Colours::None, PromptEnd::Eor),
            b"> \xff\xef"
        );
        assert_eq!(
            shown(&mut s, "> ", PROMPT, Colours::None, PromptEnd::Ga),
            b"> \xff\xf9"
        );
        assert_eq!(
            shown(
                &mut s,
                "Password: ",
                SECRET,
                Colours::None,
                PromptEnd::Nothing
            ),
            b"Password: "
        );
    }

    #[test]
    fn a_line_after_an_untold_prompt_starts_on_its_own_line() {
        let mut s = Screen::default();
        shown(&mut s, "> ", PROMPT, Colours::None, PromptEnd::Nothing);
        // Someone speaks before the player answers.
        assert_eq!(
            shown(
                &mut s,
                "Bob says hi",
                LINE,
                Colours::None,
                PromptEnd::Nothing
            ),
            b"\r\nBob says hi\r\n"
        );
        // The player answers; its client echoed the line end.
        shown(&mut s, "> ", PROMPT, Colours::None, PromptEnd::Nothing);
        s.input(true);
        assert_eq!(
            shown(&mut s, "ok", LINE, Colours::None, PromptEnd::Nothing),
            b"ok\r\n"
        );
        // A hidden answer moved no cursor: the next text starts a line.
        shown(
            &mut s,
            "Password: ",
            SECRET,
            Colours::None,
            PromptEnd::Nothing,
        );
        s.input(false);
        let mut out = Vec::new();
        s.notice("Welcome", Charset::Utf8, &mut out);
        assert_eq!(out, b"\r\nWelcome\r\n");
    }

    #[test]
    fn a_line_after_a_told_prompt_is_sent_as_it_is() {
        let mut s = Screen::default();
        shown(&mut s, "> ", PROMPT, Colours::None, PromptEnd::Eor);
        assert_eq!(
            shown(&mut s, "Bob says hi", LINE, Colours::None, PromptEnd::Eor),
            b"Bob says hi\r\n"
        );
        shown(&mut s, "> ", PROMPT, Colours::None, PromptEnd::Ga);
        s.input(false);
        assert_eq!(
            shown(&mut s, "> ", PROMPT, Colours::None, PromptEnd::Ga),
            b"> \xff\xf9"
        );
    }
}
