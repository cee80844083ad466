//! REGISTER with refresh, retry and RFC 5626 outbound. TODO(helper: registration): implement.
