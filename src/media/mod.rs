//! RTP/UDP audio (issue 3).

pub mod audio;
pub mod codec;
pub mod jitter;
pub mod pipeline;
pub mod quality;
pub mod session;
