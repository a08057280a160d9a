//! Text hygiene for what agents and commands print: their output reaches a person's terminal, so
//! it must not be able to drive that terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character except newline and tab replaced by a visible escape, so
/// an agent's output cannot move the cursor, retitle the window, clear the screen or hide text
/// when Factory prints it. C0 controls and DEL become `\x1b`-style escapes, carriage return
/// becomes `\r`, and C1 controls (U+0080–U+009F, which some terminals obey like ESC sequences)
/// become `\u{9b}`-style escapes. Text without such characters is returned as is, uncopied.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
            continue;
        }
        match c {
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x80 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// Control characters other than the two that only lay out text.
fn needs_escape(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::escape_control;
    use std::borrow::Cow;

    #[test]
    fn plain_text_newlines_and_tabs_are_untouched_and_not_copied() {
        let text = "ok: 3 passed\n\tdetail — ünïcode ✓\n";
        assert!(matches!(escape_control(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn terminal_escapes_become_visible() {
        assert_eq!(
            escape_control("\x1b[2J\x1b]0;pwned\x07red\x1b[31m"),
            "\\x1b[2J\\x1b]0;pwned\\x07red\\x1b[31m"
        );
        assert_eq!(escape_control("fake\roverwrite"), "fake\\roverwrite");
        assert_eq!(escape_control("a\x08\x7fb\0"), "a\\x08\\x7fb\\x00");
        // C1 CSI, which some terminals treat like ESC [.
        assert_eq!(escape_control("x\u{9b}31my"), "x\\u{9b}31my");
    }

    #[test]
    fn escaped_text_has_no_control_characters_left() {
        let all: String = (0u32..0x200).filter_map(char::from_u32).collect();
        let escaped = escape_control(&all);
        assert!(
            escaped
                .chars()
                .all(|c| !c.is_control() || c == '\n' || c == '\t'),
            "{escaped:?}"
        );
    }
}
