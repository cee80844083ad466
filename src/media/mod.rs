//! RTP/UDP audio (issue 3).
