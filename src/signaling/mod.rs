//! SIP signaling, sans-IO: no sockets, no clock, no tokio. Everything here is driven through
//! [`core::SignalingCore`] with explicit `now: Instant` values.

pub mod auth;
pub mod config;
pub mod core;
pub mod datagram;
pub mod dialog;
pub mod dtmf_info;
pub mod framing;
pub mod invite;
pub mod keepalive;
pub mod message;
pub mod registration;
pub mod rfc3263;
pub mod sdp;
pub mod transaction;
pub mod transport;
