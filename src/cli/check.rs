//! Input checked up front: before any device is probed or socket opened, each flag that can be
//! wrong is checked and a mistake is one clear line with exit status 2.

use super::args::{CallArgs, ListenArgs, MediaArgs};
use super::exit::Fail;
use std::path::Path;
use wakeline::signaling::message::Uri;

/// RFC 4733 events we can send: `0`-`9`, `*`, `#`, `A`-`D` (either case).
pub fn dtmf_digits(digits: &str) -> Result<(), Fail> {
    if digits.is_empty() {
        return Err(Fail::usage("--dtmf: no digits given"));
    }
    match digits
        .chars()
        .find(|c| !matches!(c.to_ascii_uppercase(), '0'..='9' | '*' | '#' | 'A'..='D'))
    {
        Some(c) => Err(Fail::usage(format!(
            "--dtmf {digits}: {c:?} is not a DTMF digit (0-9 * # A-D)"
        ))),
        None => Ok(()),
    }
}

/// A file we will write later (`--record`, `--summary`, `--report`, `--pcap`): its folder
/// exists and we may create files there. Nothing is left behind.
pub fn writable(flag: &str, path: &Path) -> Result<(), Fail> {
    let existed = path.exists();
    if path.is_dir() {
        return Err(Fail::usage(format!(
            "{flag} {}: is a directory",
            path.display()
        )));
    }
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        }
        Err(e) => Err(Fail::usage(format!(
            "{flag} {}: cannot write there: {}",
            path.display(),
            wakeline::driver::io_cause(&e)
        ))),
    }
}

/// A SIP URI given on the command line.
pub fn uri(flag: &str, text: &str) -> Result<(), Fail> {
    Uri::parse(text)
        .map(drop)
        .map_err(|e| Fail::usage(format!("{flag} {text}: {e}")))
}

fn media(m: &MediaArgs) -> Result<(), Fail> {
    super::media::codecs(&m.codecs)?;
    let files = [
        ("--record", &m.record),
        ("--summary", &m.summary),
        ("--report", &m.report),
        ("--pcap", &m.pcap),
    ];
    for (flag, path) in files {
        if let Some(p) = path {
            writable(flag, p)?;
        }
    }
    Ok(())
}

fn account(a: &super::args::AccountArgs) -> Result<(), Fail> {
    if let Some(r) = &a.registrar {
        uri("--registrar", r)?;
    }
    if let Some(p) = &a.proxy {
        uri("--proxy", p)?;
    }
    Ok(())
}

/// Everything `call` can check before it starts.
pub fn call_args(args: &CallArgs) -> Result<(), Fail> {
    if let Some(u) = &args.uri {
        uri("call", u)?;
    }
    if let Some(d) = &args.dtmf {
        dtmf_digits(d)?;
    }
    account(&args.account)?;
    media(&args.media)
}

/// Everything `listen` can check before it starts.
pub fn listen_args(args: &ListenArgs) -> Result<(), Fail> {
    account(&args.account)?;
    media(&args.media)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::exit::Exit;

    #[test]
    fn dtmf_digits_are_checked() {
        assert!(dtmf_digits("0123456789*#ABCDabcd").is_ok());
        let e = dtmf_digits("12x").unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert!(e.msg.contains("'x'"), "{}", e.msg);
        assert!(dtmf_digits("").is_err());
    }

    #[test]
    fn a_file_in_a_missing_folder_is_refused_and_nothing_is_left_behind() {
        let e = writable("--record", Path::new("/no/such/dir/x.wav")).unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert!(
            e.msg
                .starts_with("--record /no/such/dir/x.wav: cannot write there"),
            "{}",
            e.msg
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        writable("--record", &p).unwrap();
        assert!(!p.exists());
        assert!(writable("--record", dir.path()).is_err());
    }

    #[test]
    fn bad_uris_are_refused() {
        assert!(uri("call", "sip:bob@127.0.0.1:5080;transport=tcp").is_ok());
        assert_eq!(uri("call", "bob").unwrap_err().exit, Exit::Usage);
    }
}
