//! Errors of the codec, each saying what the peer must be told.

use thiserror::Error;

use crate::{command::CommandId, pdu::Pdu, status::CommandStatus};

/// A value does not fit the field it was meant for.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldError {
    #[error("{len} octets where at most {max} fit")]
    TooLong { len: usize, max: usize },
    #[error("NUL octet inside a C-Octet String")]
    InteriorNul,
    #[error("time is neither empty nor 16 characters YYMMDDhhmmsstnnp")]
    BadTime,
}

/// A complete frame whose body could not be decoded.
///
/// The connection is still in step (the frame's length was sound), so the
/// session answers and carries on: [`PduError::response`] is what to send.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PduError {
    /// The peer must be answered with `generic_nack` / `ESME_RINVCMDID`.
    #[error("unknown command_id {command_id:#010x} (sequence_number {sequence_number})")]
    UnknownCommandId { command_id: u32, sequence_number: u32 },
    /// The frame's `command_length` does not match its size (only possible
    /// when [`crate::decode_frame`] is given octets that did not come from the codec).
    #[error("command_length {command_length} on a frame of {frame_len} octets")]
    InvalidCommandLength {
        command_length: u32,
        frame_len: usize,
        sequence_number: u32,
    },
    /// The body is malformed; `status` is the specification's status for the
    /// first field found wrong.
    #[error("{command_id} (sequence_number {sequence_number}): invalid {field}: {status}")]
    InvalidBody {
        command_id: CommandId,
        sequence_number: u32,
        status: CommandStatus,
        field: &'static str,
    },
}

impl PduError {
    pub fn sequence_number(&self) -> u32 {
        match self {
            PduError::UnknownCommandId { sequence_number, .. }
            | PduError::InvalidCommandLength { sequence_number, .. }
            | PduError::InvalidBody { sequence_number, .. } => *sequence_number,
        }
    }

    /// The status the peer must be told.
    pub fn status(&self) -> CommandStatus {
        match self {
            PduError::UnknownCommandId { .. } => CommandStatus::ESME_RINVCMDID,
            PduError::InvalidCommandLength { .. } => CommandStatus::ESME_RINVCMDLEN,
            PduError::InvalidBody { status, .. } => *status,
        }
    }

    /// The PDU that answers the bad one: `generic_nack` for an unknown
    /// command, the request's own response carrying the status for a bad
    /// request, and nothing for a bad response (responses are never answered;
    /// the caller logs it and fails the request it belonged to).
    pub fn response(&self) -> Option<Pdu> {
        match self {
            PduError::UnknownCommandId { sequence_number, .. } => {
                Some(Pdu::generic_nack(*sequence_number, CommandStatus::ESME_RINVCMDID))
            }
            PduError::InvalidCommandLength { sequence_number, .. } => {
                Some(Pdu::generic_nack(*sequence_number, CommandStatus::ESME_RINVCMDLEN))
            }
            // A body shorter than its fields means command_length is wrong
            // for the PDU: that is what generic_nack is for (section 2.9).
            // Responses are never answered, not even with generic_nack.
            PduError::InvalidBody {
                command_id,
                sequence_number,
                status: CommandStatus::ESME_RINVCMDLEN,
                ..
            } if !command_id.is_response() => Some(Pdu::generic_nack(*sequence_number, CommandStatus::ESME_RINVCMDLEN)),
            PduError::InvalidBody {
                command_id,
                sequence_number,
                status,
                ..
            } => {
                let resp = command_id.response()?;
                Some(Pdu::error_response(resp, *sequence_number, *status))
            }
        }
    }
}

/// The byte stream cannot be cut into frames any more; the connection must
/// be closed (after a best-effort `generic_nack`).
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("command_length {0} is shorter than the 16-octet header")]
    CommandLengthTooShort(u32),
    #[error("command_length {length} exceeds the maximum of {max}")]
    CommandLengthTooLong { length: u32, max: u32 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A PDU that cannot be written because a value breaks the specification.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("short_message of {0} octets; at most 254 fit (use message_payload)")]
    ShortMessageTooLong(usize),
    #[error("short_message and message_payload must not both be used")]
    ShortMessageAndPayload,
    #[error("TLV {tag:#06x} value of {len} octets exceeds 65535")]
    TlvTooLong { tag: u16, len: usize },
    #[error("TLV {tag:#06x} value of {len} octets is not valid for that parameter")]
    InvalidTlv { tag: u16, len: usize },
    #[error("submit_multi with {0} destinations; 1 to 254 fit")]
    DestinationCount(usize),
    #[error("submit_multi_resp with {0} unsuccessful SMEs; at most 255 fit")]
    TooManyUnsuccessful(usize),
    #[error("PDU of {0} octets exceeds the u32 command_length")]
    TooLarge(usize),
}
