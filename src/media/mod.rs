//! RTP/UDP audio: codecs, jitter buffer, RTP/RTCP session, the real-time audio callback and its
//! backends, and the per-call pipeline that joins them. Sans-IO except `audio`'s backends.

pub mod audio;
pub mod codec;
pub mod jitter;
mod pcm;
pub mod pipeline;
pub mod quality;
mod report;
pub mod session;
pub mod stun;
pub mod tone_detect;

pub use report::{MediaReport, MediaSnapshot};
