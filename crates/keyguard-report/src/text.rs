//! Making untrusted strings (resource names, tags, error details echoed from ARM) safe to show.

use std::borrow::Cow;

/// Characters that change how the text around them is displayed rather than being text: C0/C1
/// controls (a terminal obeys ESC sequences: colours, cursor moves, title changes) and Unicode
/// bidi overrides/isolates (`stpayments\u{202E}gpj.exe` shows as `stpaymentsexe.jpg`).
fn is_display_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// One visible line: every display control (newlines included) becomes U+FFFD, so the reader
/// sees that something was there and cannot be fooled by it.
pub fn visible(s: &str) -> Cow<'_, str> {
    if s.chars().any(is_display_control) {
        Cow::Owned(
            s.chars()
                .map(|c| if is_display_control(c) { '\u{FFFD}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_become_visible_marks() {
        assert_eq!(visible("stpayments"), "stpayments");
        assert!(matches!(visible("plain"), Cow::Borrowed(_)));
        assert_eq!(visible("a\u{1b}[31mred"), "a\u{FFFD}[31mred");
        assert_eq!(visible("x\r\ny\u{9b}"), "x\u{FFFD}\u{FFFD}y\u{FFFD}");
        assert_eq!(visible("st\u{202E}gpj.exe"), "st\u{FFFD}gpj.exe");
        assert_eq!(visible("\u{2066}a\u{2069}"), "\u{FFFD}a\u{FFFD}");
        assert_eq!(visible("Zürich ✓"), "Zürich ✓", "ordinary non-ASCII text is kept");
    }
}
