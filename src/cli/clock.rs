//! Wall-clock time stamps for event and log lines (UTC, RFC 3339).
//!
//! Every event line and log line carries one, and a call set-up writes nine lines: the text up
//! to the seconds is worked out once per second and kept (per thread), and a line only adds its
//! fraction.

use std::cell::Cell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// 10000-01-01T00:00:00Z in seconds since the epoch: from here on a year has five digits and
/// the kept text (fixed length) does not apply.
const YEAR_10000: u64 = 253_402_300_800;

/// `YYYY-MM-DDTHH:MM:SS`.
type SecondText = [u8; 19];

thread_local! {
    static SECOND: Cell<(u64, SecondText)> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// The time since the epoch now, when it is between the epoch and the year 10000.
fn now() -> Option<(u64, u32)> {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    (d.as_secs() < YEAR_10000).then(|| (d.as_secs(), d.subsec_nanos()))
}

/// `YYYY-MM-DDTHH:MM:SS` for `secs` (< [`YEAR_10000`]) since the epoch, kept for the second.
fn second_text(secs: u64) -> SecondText {
    SECOND.with(|kept| {
        let (at, text) = kept.get();
        if at == secs {
            return text;
        }
        let text = civil(secs);
        kept.set((secs, text));
        text
    })
}

/// Works out `YYYY-MM-DDTHH:MM:SS` for `secs` since the epoch.
fn civil(secs: u64) -> SecondText {
    let mut text = *b"0000-00-00T00:00:00";
    let Ok(at) = i64::try_from(secs).map(time::OffsetDateTime::from_unix_timestamp) else {
        return text;
    };
    let Ok(at) = at else {
        return text;
    };
    let year = u32::try_from(at.year()).unwrap_or(0);
    digits(&mut text[0..4], year);
    digits(&mut text[5..7], u8::from(at.month()).into());
    digits(&mut text[8..10], at.day().into());
    digits(&mut text[11..13], at.hour().into());
    digits(&mut text[14..16], at.minute().into());
    digits(&mut text[17..19], at.second().into());
    text
}

/// Writes `n` in decimal into all of `out`, zero-padded on the left (the high digits that do
/// not fit are dropped).
fn digits(out: &mut [u8], mut n: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Appends `secs` and `nanos` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (milliseconds).
fn push_ms(out: &mut Vec<u8>, secs: u64, nanos: u32) {
    let mut frac = *b".000Z";
    digits(&mut frac[1..4], nanos / 1_000_000);
    out.extend_from_slice(&second_text(secs));
    out.extend_from_slice(&frac);
}

/// Appends the wall clock now as RFC 3339 with milliseconds (`2026-12-07T05:04:08.425Z`), the
/// time stamp of an event line.
pub fn push_now_ms(out: &mut Vec<u8>) {
    match now() {
        Some((secs, nanos)) => push_ms(out, secs, nanos),
        None => out.extend_from_slice(far_rfc3339_ms(time::OffsetDateTime::now_utc()).as_bytes()),
    }
}

/// A time before the epoch or past the year 9999, formatted afresh.
fn far_rfc3339_ms(at: time::OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    format!(
        "{}.{:03}Z",
        at.format(&fmt).unwrap_or_default(),
        at.millisecond()
    )
}

/// `secs` and `nanos` since the epoch as `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` (microseconds).
fn micros_text(secs: u64, nanos: u32) -> [u8; 27] {
    let mut text = [0u8; 27];
    text[..19].copy_from_slice(&second_text(secs));
    text[19] = b'.';
    digits(&mut text[20..26], nanos / 1_000);
    text[26] = b'Z';
    text
}

/// The log lines' clock: the same text as tracing-subscriber's `SystemTime`
/// (`2026-12-07T05:04:08.425503Z`), the seconds kept; times it does not keep (before the epoch,
/// past 9999) go to `SystemTime` itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogClock;

impl LogClock {
    /// Appends the time now, as [`FormatTime::format_time`] writes it.
    pub fn push_now(out: &mut Vec<u8>) {
        match now() {
            Some((secs, nanos)) => out.extend_from_slice(&micros_text(secs, nanos)),
            None => {
                let mut s = String::new();
                let _ =
                    tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut s));
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

impl FormatTime for LogClock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        match now() {
            Some((secs, nanos)) => {
                let text = micros_text(secs, nanos);
                w.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
            }
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(secs: u64, nanos: u32) -> String {
        let mut out = Vec::new();
        push_ms(&mut out, secs, nanos);
        String::from_utf8(out).unwrap()
    }

    fn secs_of(at: time::OffsetDateTime) -> u64 {
        u64::try_from(at.unix_timestamp()).unwrap()
    }

    #[test]
    fn milliseconds_keep_the_second_and_change_with_it() {
        let at = secs_of(time::macros::datetime!(2026-12-07 03:04:05 UTC));
        assert_eq!(ms(at, 678_900_000), "2026-12-07T03:04:05.678Z");
        assert_eq!(ms(at, 900_000_000), "2026-12-07T03:04:05.900Z");
        assert_eq!(ms(at + 1, 1_000_000), "2026-12-07T03:04:06.001Z");
        assert_eq!(ms(at, 0), "2026-12-07T03:04:05.000Z");
        let before = secs_of(time::macros::datetime!(1999-12-31 23:59:59 UTC));
        assert_eq!(ms(before, 999_999_999), "1999-12-31T23:59:59.999Z");
        let last = secs_of(time::macros::datetime!(9999-12-31 23:59:59 UTC));
        assert_eq!(last + 1, YEAR_10000);
        assert_eq!(ms(last, 0), "9999-12-31T23:59:59.000Z");
        assert_eq!(ms(0, 0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn microseconds_as_tracing_writes_them() {
        let at = secs_of(time::macros::datetime!(2026-12-07 05:04:08 UTC));
        let text = micros_text(at, 425_503_999);
        assert_eq!(&text, b"2026-12-07T05:04:08.425503Z");
        assert_eq!(&micros_text(at, 7_000), b"2026-12-07T05:04:08.000007Z");
    }

    #[test]
    fn far_times_are_formatted_afresh() {
        let at = time::macros::datetime!(1969-07-20 20:17:40.5 UTC);
        assert_eq!(far_rfc3339_ms(at), "1969-07-20T20:17:40.500Z");
    }

    /// The log clock against tracing-subscriber's own: the same text up to the second whenever
    /// that second did not change while both were read.
    #[test]
    fn the_log_clock_reads_as_tracing_subscribers() {
        let format = |t: &dyn FormatTime| {
            let mut s = String::new();
            t.format_time(&mut Writer::new(&mut s)).unwrap();
            s
        };
        for _ in 0..100 {
            let theirs = format(&tracing_subscriber::fmt::time::SystemTime);
            let ours = format(&LogClock);
            let again = format(&tracing_subscriber::fmt::time::SystemTime);
            if theirs[..19] != again[..19] {
                continue;
            }
            assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
            assert_eq!(ours[..19], theirs[..19]);
            assert_eq!(&ours[19..20], ".");
            assert!(ours.ends_with('Z'));
            let mut pushed = Vec::new();
            LogClock::push_now(&mut pushed);
            assert_eq!(pushed.len(), ours.len());
            return;
        }
        panic!("the second changed between every pair of reads");
    }
}
