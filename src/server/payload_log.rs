//! Payloads in logs: off unless asked for, and always one line.
//!
//! Payloads are other people's data and may be personal, so log lines name
//! jobs, keys and sizes. `--log-payloads` (`server.log_payloads`) adds the
//! payload itself, escaped (`\n`, `"`, control characters) so that a record
//! is always one line whatever the payload holds. Like the log subscriber it
//! is process-wide, and once a server has turned it on it stays on.

use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns payload logging on for the whole process.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A payload as a log field: escaped, quoted.
pub struct Escaped<'a>(pub &'a [u8]);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `str`'s Debug quotes it and escapes newlines, quotes, backslashes
        // and every control or non-printable character.
        write!(f, "{:?}", String::from_utf8_lossy(self.0))
    }
}

/// The payload field of a log line: `Some` only when payloads are logged.
pub fn field(payload: &[u8]) -> Option<tracing::field::DisplayValue<Escaped<'_>>> {
    enabled().then(|| tracing::field::display(Escaped(payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escaped_payload_is_one_line() {
        let shown = Escaped(b"{\"a\":\n\"b\\c\"}\r\x1b").to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r') && !shown.contains('\x1b'));
        assert_eq!(shown, r#""{\"a\":\n\"b\\c\"}\r\u{1b}""#);
    }
}
