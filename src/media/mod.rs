//! RTP/UDP audio (issue 3).
pub mod jitter;
pub mod session;
