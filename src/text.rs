//! What of a player's text may reach other players' screens.

/// `text` without the characters that would act on a reader's terminal or
/// layout rather than be read: C0 and C1 controls (a raw escape sequence
/// would reach their terminal) and the Unicode bidirectional controls (a
/// right-to-left override, U+202E, would reverse the rest of a line, and
/// of the lines a client shows after it).
pub fn printable(text: &str) -> String {
    text.chars()
        .filter(|&c| !c.is_control() && !is_bidi_control(c))
        .collect()
}

/// The characters of Unicode's Bidi_Control property.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_go_and_the_rest_stays() {
        assert_eq!(printable("a\u{1b}[2Jb\u{7}c\u{9b}d"), "a[2Jbcd");
        assert_eq!(printable("evil\u{202E}txt.exe"), "eviltxt.exe");
        for c in [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{2066}', '\u{2069}',
        ] {
            assert_eq!(printable(&format!("x{c}y")), "xy", "{:?}", c);
        }
        assert_eq!(
            printable("héllo wörld ✓ 日本 עברית"),
            "héllo wörld ✓ 日本 עברית"
        );
    }
}
