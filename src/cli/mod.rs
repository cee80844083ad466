//! The desktop binary's pieces: arguments, event log, commands.

pub mod args;
pub mod events;
pub mod instance;
pub mod media;
pub mod run;
