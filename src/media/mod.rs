//! RTP/UDP audio (issue 3).
pub mod codec;
