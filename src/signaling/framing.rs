//! TCP stream framing: bytes in, SIP messages and RFC 5626 keep-alives out.
//! TODO(helper: message): implement.
