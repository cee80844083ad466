//! RTP/UDP audio (issue 3).

pub mod audio;
pub mod jitter;
pub mod session;
