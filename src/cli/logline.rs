//! The log lines every call writes (`incoming call ...`, `call ...: connected`, `call ...
//! ended: ...`), made here rather than by `tracing::info!`: the same text, byte for byte, as
//! tracing-subscriber's formatter set up by `init_logging` writes (`main.rs`; a test holds the
//! two together), at a fraction of the cost (no event dispatch, no formatting of the time
//! stamp from scratch, no character-by-character escaping of plain text).
//!
//! The caller asks `tracing::enabled!(Level::INFO)` first, at its own call site, so that the
//! filter (`RUST_LOG`) judges the line by the caller's module as it would judge `info!` there.

use super::clock::LogClock;
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether log lines carry ANSI colour (as `init_logging` told the formatter).
static ANSI: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The line being made (kept: its capacity is reused).
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Tells the lines made here whether to carry ANSI colour, as the formatter was told.
pub fn set_ansi(on: bool) {
    ANSI.store(on, Ordering::Relaxed);
}

/// Writes an INFO line to the log (through [`super::status::LogWriter`], as the formatter
/// writes its lines), time-stamped now: its message is `parts` one after the other.
pub fn info(parts: &[&str]) {
    let ansi = ANSI.load(Ordering::Relaxed);
    LINE.with(|line| match line.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            info_line(&mut line, ansi, LogClock::push_now, parts);
            write(&line);
        }
        Err(_) => {
            let mut line = Vec::new();
            info_line(&mut line, ansi, LogClock::push_now, parts);
            write(&line);
        }
    });
}

fn write(line: &[u8]) {
    let _ = std::io::Write::write_all(&mut super::status::LogWriter, line);
}

/// Appends the INFO line of the message `parts` to `out`: `time` writes the time stamp.
fn info_line(out: &mut Vec<u8>, ansi: bool, time: impl FnOnce(&mut Vec<u8>), parts: &[&str]) {
    if ansi {
        // The time dimmed, the level in green.
        out.extend_from_slice(b"\x1b[2m");
        time(out);
        out.extend_from_slice(b"\x1b[0m \x1b[32m INFO\x1b[0m ");
    } else {
        time(out);
        out.extend_from_slice(b"  INFO ");
    }
    for part in parts {
        push_escaped(out, part);
    }
    out.push(b'\n');
}

/// Whether `s` is printable ASCII only (nothing to escape); every byte is looked at, which
/// the compiler turns into a few wide comparisons.
fn printable_ascii(s: &str) -> bool {
    !s.bytes()
        .fold(false, |odd, b| odd | !(0x20..0x7f).contains(&b))
}

/// Appends `s` with the control characters a terminal could act on written out, as the
/// formatter does with a message (`\x1b` for ESC, `\u{9b}` for a C1 control, ...).
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    if printable_ascii(s) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for ch in s.chars() {
        match ch {
            '\x1b' => out.extend_from_slice(b"\\x1b"),
            '\x07' => out.extend_from_slice(b"\\x07"),
            '\x08' => out.extend_from_slice(b"\\x08"),
            '\x0c' => out.extend_from_slice(b"\\x0c"),
            '\x7f' => out.extend_from_slice(b"\\x7f"),
            '\u{80}'..='\u{9f}' => {
                let _ = write!(Bytes(out), "\\u{{{:x}}}", ch as u32);
            }
            ch => {
                let mut utf8 = [0; 4];
                out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

/// `fmt::Write` into bytes.
struct Bytes<'a>(&'a mut Vec<u8>);

impl fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime;

    const AT: &str = "2026-12-07T05:04:08.425503Z";

    /// A fixed time stamp for both sides.
    struct Fixed;
    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str(AT)
        }
    }

    /// A `Write` into a shared vector, to see what the formatter wrote.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The line tracing-subscriber's formatter, set up as `init_logging` sets it up, writes
    /// for `info!("incoming call {call_id} from {from}")`, and the line made here.
    fn both(ansi: bool, call_id: &str, from: &str) -> (String, String) {
        let seen = Shared::default();
        let writer = seen.clone();
        let filter = tracing_subscriber::EnvFilter::new("info");
        let subscriber = crate::log_subscriber(filter, ansi, Fixed, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("incoming call {call_id} from {from}");
        });
        let theirs = String::from_utf8(seen.0.lock().unwrap().clone()).unwrap();
        let mut ours = Vec::new();
        info_line(
            &mut ours,
            ansi,
            |out| out.extend_from_slice(AT.as_bytes()),
            &["incoming call ", call_id, " from ", from],
        );
        (theirs, String::from_utf8(ours).unwrap())
    }

    #[test]
    fn the_lines_are_the_formatters_with_and_without_colour() {
        let from = "\"sipp\" <sip:sipp@127.0.0.1:60983>;tag=31054SIPpTag001";
        for ansi in [false, true] {
            let (theirs, ours) = both(ansi, "1-31054@127.0.0.1", from);
            assert_eq!(ours, theirs, "ansi {ansi}");
        }
        let (_, plain) = both(false, "1-31054@127.0.0.1", from);
        assert_eq!(
            plain,
            format!("{AT}  INFO incoming call 1-31054@127.0.0.1 from {from}\n")
        );
    }

    #[test]
    fn printable_ascii_is_told_from_the_rest() {
        assert!(printable_ascii("call 1-2@h: connected ~"));
        assert!(!printable_ascii("tab\there"));
        assert!(!printable_ascii("é"));
    }

    #[test]
    fn control_characters_are_escaped_as_the_formatter_escapes_them() {
        let hostile = "\x1b[2J\x07\x08\x0c\x7f \u{9b}31m \u{a0}é\u{85}\u{80}\u{9f}日本\ttab";
        for ansi in [false, true] {
            let (theirs, ours) = both(ansi, hostile, hostile);
            assert_eq!(ours, theirs, "ansi {ansi}");
            assert!(!ours.contains('\x1b') || ansi, "{ours:?}");
            assert!(ours.contains("\\x1b[2J"), "{ours:?}");
            assert!(ours.contains("\\u{9b}31m"), "{ours:?}");
        }
    }
}
