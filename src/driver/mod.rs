//! The tokio driver: sockets, clock, and the public async API. TODO(lead): implement.

/// The running user agent.
pub struct UserAgent {}

/// A call, as the application holds it.
pub struct Call {}
