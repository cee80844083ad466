//! DTMF in SIP INFO bodies: `application/dtmf-relay` (`Signal=5` / `Duration=160` lines, the
//! de-facto format of Cisco and most PBXes) and `application/dtmf` (the digit alone).

/// The digit an INFO body carries, if its content type is one of the DTMF ones and the digit
/// is `0-9 * # A-D` (`a-d` accepted; `10`/`11` read as `*`/`#`, as some phones send).
pub fn digit(content_type: &str, body: &[u8]) -> Option<char> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body).ok()?;
    let value = match ct.as_str() {
        "application/dtmf-relay" => text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?,
        "application/dtmf" => text.trim(),
        _ => return None,
    };
    match value {
        "10" => Some('*'),
        "11" => Some('#'),
        v if v.chars().count() == 1 => {
            let c = v.chars().next()?.to_ascii_uppercase();
            matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_relay_and_plain_bodies() {
        let relay = b"Signal=5\r\nDuration=160\r\n";
        assert_eq!(digit("application/dtmf-relay", relay), Some('5'));
        assert_eq!(
            digit("Application/DTMF-Relay; x=1", b"Signal= #\r\n"),
            Some('#')
        );
        assert_eq!(digit("application/dtmf-relay", b"Signal=11\r\n"), Some('#'));
        assert_eq!(digit("application/dtmf", b"b\r\n"), Some('B'));
        assert_eq!(digit("application/dtmf-relay", b"Signal=x\r\n"), None);
        assert_eq!(digit("application/dtmf-relay", b"Duration=160\r\n"), None);
        assert_eq!(digit("text/plain", b"Signal=5"), None);
        assert_eq!(digit("application/dtmf", &[0xff, 0xfe]), None);
    }
}
