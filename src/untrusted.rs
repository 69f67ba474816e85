//! Client-supplied text on its way into a log line. Anyone on the network
//! chooses these bytes: a raw newline would forge a log line of its own, and an
//! ESC sequence would repaint an operator's terminal. `Untrusted` prints the
//! text escaped (Rust's `escape_debug`, so `\n`, `\u{1b}`) and cut to a bound,
//! saying how much was cut.

use std::fmt;

/// Characters of client text a log line shows before cutting.
pub const LOG_TEXT_MAX: usize = 128;

/// Displays client-supplied text escaped and truncated, for logs.
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, (i, c)) in self.0.char_indices().enumerate() {
            if shown == LOG_TEXT_MAX {
                return write!(f, "...(+{} bytes)", self.0.len() - i);
            }
            // Quotes stay as they are: the value is never shown inside quotes
            // we add, so escaping them would only add noise.
            match c {
                '"' | '\'' => f.write_fmt(format_args!("{c}"))?,
                _ => f.write_fmt(format_args!("{}", c.escape_debug()))?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Client bytes that may not be UTF-8 (a STUN attribute, a header value).
#[derive(Clone, Copy)]
pub struct UntrustedBytes<'a>(pub &'a [u8]);

impl fmt::Display for UntrustedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = self.0.len().min(LOG_TEXT_MAX);
        for chunk in self.0[..cut].utf8_chunks() {
            Untrusted(chunk.valid()).fmt(f)?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if cut < self.0.len() {
            write!(f, "...(+{} bytes)", self.0.len() - cut)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let forged = "u\n2026-11-29T00:00:00Z  INFO natbridge ready\r\u{1b}[31m";
        let shown = Untrusted(forged).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r') && !shown.contains('\u{1b}'));
        assert!(shown.contains("\\n") && shown.contains("\\r") && shown.contains("\\u{1b}"));
        assert_eq!(Untrusted("peer-1 \"x\"").to_string(), "peer-1 \"x\"");
    }

    #[test]
    fn long_text_is_cut_and_says_so() {
        let long = "a".repeat(1000);
        let shown = Untrusted(&long).to_string();
        assert!(shown.starts_with(&"a".repeat(LOG_TEXT_MAX)));
        assert!(shown.ends_with("...(+872 bytes)"), "{shown}");
    }

    #[test]
    fn bytes_that_are_not_utf8() {
        assert_eq!(UntrustedBytes(b"ok\xff\n").to_string(), "ok\\xff\\n");
        let long = vec![b'b'; 300];
        assert!(
            UntrustedBytes(&long)
                .to_string()
                .ends_with("...(+172 bytes)")
        );
    }
}
