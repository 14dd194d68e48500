//! SMSMax: a native SMPP 3.4 gateway.
//!
//! The wire format lives in the `smsmax-protocol` crate; this crate is the gateway built on it.

pub use smsmax_protocol as protocol;

pub mod bench;
pub mod client;
pub mod config;
pub mod demo;
pub mod dlr;
pub mod esme;
pub mod ids;
pub mod logging;
pub mod password;
pub mod queue;
pub mod relay;
pub mod serve;
pub mod sim;
pub mod smpp_time;
pub mod store;
pub mod upstream;

/// The version of this build, as printed by `smsmax --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
