//! The journal of the in-memory storage engine: the append-only file layer ([`log`]).

pub mod log;
