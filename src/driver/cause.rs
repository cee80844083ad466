//! Causes in words: what the driver puts in a flow's close reason and in errors about sockets,
//! so the application can show the operation, the address and the OS cause in one line.

/// An OS error as a short lowercase phrase without the `(os error N)` suffix:
/// `connection refused`, `address already in use`, `network is unreachable`.
pub fn io_cause(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => format!("{:?}", e.kind()).to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_short_phrases() {
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(io_cause(&e), "connection refused");
        let e = std::io::Error::from_raw_os_error(98);
        assert_eq!(io_cause(&e), "address already in use");
        let e = std::io::Error::other("Custom thing");
        assert_eq!(io_cause(&e), "custom thing");
    }
}
