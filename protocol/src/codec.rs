//! Framing for tokio: cuts a byte stream into SMPP frames and writes PDUs.
//!
//! The decoder reads `command_length` first and refuses a frame that is
//! shorter than the header or longer than the configured maximum before it
//! reserves a single octet for it; a peer cannot make us allocate by lying.
//! A frame that arrives whole but does not decode is *not* a stream error:
//! it is yielded as `Err(PduError)` so the session can answer it and go on.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::{
    decode::decode_frame,
    error::{FrameError, PduError},
    pdu::{Pdu, HEADER_LEN},
};

/// The default maximum `command_length`: a submit_multi to 254 destinations
/// with a full message_payload stays well below it.
pub const DEFAULT_MAX_COMMAND_LENGTH: u32 = 64 * 1024;

/// Tokio codec for SMPP 3.4.
#[derive(Clone, Copy, Debug)]
pub struct SmppCodec {
    max_command_length: u32,
}

impl SmppCodec {
    /// A codec that refuses frames longer than `max_command_length` octets.
    /// Values below the 16-octet header are raised to it.
    pub fn new(max_command_length: u32) -> Self {
        SmppCodec {
            max_command_length: max_command_length.max(HEADER_LEN as u32),
        }
    }

    pub fn max_command_length(&self) -> u32 {
        self.max_command_length
    }
}

impl Default for SmppCodec {
    fn default() -> Self {
        SmppCodec::new(DEFAULT_MAX_COMMAND_LENGTH)
    }
}

impl Decoder for SmppCodec {
    type Item = Result<Pdu, PduError>;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, FrameError> {
        let Some(length_octets) = src.get(..4) else {
            return Ok(None);
        };
        let command_length =
            u32::from_be_bytes([length_octets[0], length_octets[1], length_octets[2], length_octets[3]]);
        if command_length < HEADER_LEN as u32 {
            return Err(FrameError::CommandLengthTooShort(command_length));
        }
        if command_length > self.max_command_length {
            return Err(FrameError::CommandLengthTooLong {
                length: command_length,
                max: self.max_command_length,
            });
        }
        let length = command_length as usize;
        if src.len() < length {
            src.reserve(length - src.len());
            return Ok(None);
        }
        let frame = src.split_to(length).freeze();
        Ok(Some(decode_frame(&frame)))
    }
}

impl Encoder<&Pdu> for SmppCodec {
    type Error = FrameError;

    fn encode(&mut self, pdu: &Pdu, dst: &mut BytesMut) -> Result<(), FrameError> {
        pdu.encode(dst)
            .map_err(|e| FrameError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))
    }
}

impl Encoder<Pdu> for SmppCodec {
    type Error = FrameError;

    fn encode(&mut self, pdu: Pdu, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode(&pdu, dst)
    }
}
