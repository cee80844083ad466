//! The desktop binary's pieces: arguments, configuration file, event log, live status, reports,
//! commands.

pub mod args;
pub mod check;
pub mod clock;
pub mod config;
pub mod events;
pub mod exit;
pub mod instance;
pub mod load;
pub mod logline;
pub mod media;
pub mod members;
pub mod out;
pub mod pcap;
pub mod report;
pub mod run;
pub mod srtp;
pub mod status;
pub mod tls;
