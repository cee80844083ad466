//! The simulated phone moved to [`crate::platform::sim`] (one phone for every test: the OS,
//! the server and the core together); these names stay for the tests that use them.

pub use crate::platform::sim::{phone_config, Held, Phone, PHONE_ADDR, SERVER_ADDR};
