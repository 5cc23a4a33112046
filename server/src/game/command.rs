//! The demo's fixed texts and name rule. (Finding the command a line names
//! is the registry's.)

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

#[cfg(test)]
mod tests {
    use super::*;

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
            let _ = valid_name(line, 20);
        }
    }
}
