//! RFC 5626 §4.4.1 CRLF keep-alive on the control flow. TODO(helper: registration): implement.
