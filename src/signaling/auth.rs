//! HTTP digest for SIP (RFC 3261 §22, RFC 2617, RFC 8760). TODO(helper: registration): implement.
