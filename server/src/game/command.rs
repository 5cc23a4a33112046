//! Parsing a line of input into a command, and the fixed texts players see.

/// A line split into what to do and its argument. Which verbs exist depends
/// on the session's stage, so the verb stays as typed for the error message.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    Empty,
    /// `rest` is the remainder of the line, trimmed.
    Verb {
        verb: &'a str,
        rest: &'a str,
    },
}

pub fn parse(line: &str) -> Line<'_> {
    let line = line.trim();
    if line.is_empty() {
        return Line::Empty;
    }
    if let Some(rest) = line.strip_prefix('"') {
        return Line::Verb {
            verb: "say",
            rest: rest.trim(),
        };
    }
    match line.split_once(char::is_whitespace) {
        Some((verb, rest)) => Line::Verb {
            verb,
            rest: rest.trim(),
        },
        None => Line::Verb {
            verb: line,
            rest: "",
        },
    }
}

/// What another player may see of text someone typed (the portal cleans
/// input with the same function; this guards every other way in).
pub use ev::text::printable;

/// ASCII letters only, so names compare case-insensitively in SQLite too.
pub fn valid_name(name: &str, max_len: usize) -> bool {
    (2..=max_len).contains(&name.chars().count()) && name.chars().all(|c| c.is_ascii_alphabetic())
}

pub fn welcome(game_name: &str) -> String {
    format!(
        "Welcome to {game_name}!\n\
         Type: create NAME PASSWORD  to make a new character\n      \
         connect NAME PASSWORD to play\n      \
         quit              to leave"
    )
}

pub const LOGIN_HELP: &str = "Commands here:\n  \
    create NAME PASSWORD   make a new character\n  \
    connect NAME PASSWORD  play your character\n  \
    ping TEXT              check the connection\n  \
    quit                   leave";

pub const PLAYING_HELP: &str = "Commands:\n  \
    look       see where you are\n  \
    say TEXT   talk to everyone here (or \"TEXT)\n  \
    who        list the players online\n  \
    ping TEXT  check the connection\n  \
    version    show the server version\n  \
    help       this list\n  \
    quit       leave the game";

#[cfg(test)]
mod tests {
    use super::*;

    fn verb(line: &str) -> (&str, &str) {
        match parse(line) {
            Line::Verb { verb, rest } => (verb, rest),
            Line::Empty => ("", ""),
        }
    }

    #[test]
    fn splits_verb_and_trimmed_rest() {
        assert_eq!(parse("   \t "), Line::Empty);
        assert_eq!(verb("  LOOK  "), ("LOOK", ""));
        assert_eq!(verb("say  hello   there  "), ("say", "hello   there"));
        assert_eq!(verb("\"  hi"), ("say", "hi"));
        assert_eq!(verb("ping\tx"), ("ping", "x"));
    }

    #[test]
    fn welcome_screen_is_exact() {
        assert_eq!(
            welcome("ev demo"),
            "Welcome to ev demo!\nType: create NAME PASSWORD  to make a new character\n      connect NAME PASSWORD to play\n      quit              to leave"
        );
    }

    #[test]
    fn names() {
        assert!(valid_name("Al", 20));
        assert!(!valid_name("A", 20));
        assert!(!valid_name("Zoë", 20));
        assert!(!valid_name("a1", 20));
        assert!(!valid_name(&"a".repeat(21), 20));
        assert!(valid_name(&"a".repeat(20), 20));
    }

    #[test]
    fn odd_text_never_panics() {
        let long = "x".repeat(100_000);
        for line in [
            "\u{0}",
            "\u{1b}[2J",
            "é",
            "\"",
            "\"\u{301}",
            "\u{200b} look",
            "👩‍👩‍👧 hi",
            &long,
            "\r\n",
            "ping \u{fffd}",
        ] {
            let _ = parse(line);
            let _ = printable(line);
            let _ = valid_name(line, 20);
        }
        assert_eq!(printable("a\u{1b}[2Jb\u{7}"), "a[2Jb");
    }
}
