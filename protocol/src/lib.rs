//! `smsmax-protocol`: the SMPP 3.4 wire format and nothing else.
//!
//! - [`pdu`]: every operation and its response as a typed body;
//!   [`tlv`]: every optional parameter with a typed value.
//! - [`decode_frame`] (nom, zero-copy) and [`Pdu::encode`] (straight into
//!   `BytesMut`); [`codec::SmppCodec`] frames a tokio stream with both.
//! - Errors say what the peer must be told: [`PduError::response`].
//!
//! No sockets, no runtime, no storage: the gateway builds on this.

pub mod codec;
pub mod command;
pub mod concat;
mod decode;
mod encode;
pub mod error;
pub mod pdu;
pub mod receipt;
pub mod status;
pub mod text;
pub mod tlv;
pub mod types;

pub use codec::SmppCodec;
pub use command::CommandId;
pub use decode::decode_frame;
pub use error::{EncodeError, FieldError, FrameError, PduError};
pub use pdu::{Body, Pdu};
pub use status::CommandStatus;
pub use tlv::Tlv;
