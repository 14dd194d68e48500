//! The decoder: one complete frame in, one [`Pdu`] (or the status to answer) out.
//!
//! Written with nom over the frame's octets. Every variable-length value is
//! returned as a slice of the frame (`Bytes::slice_ref`), so decoding copies
//! no message text. Each field knows the status the specification gives for
//! it, and the first field found wrong decides the answer to the peer.

use bytes::Bytes;
use nom::{
    bytes::complete::take,
    error::{ErrorKind, ParseError},
    number::complete::{be_u32, be_u8},
    IResult, Parser,
};

use crate::{
    command::CommandId,
    error::PduError,
    pdu::*,
    status::CommandStatus,
    tlv::{split_tlv, Tlv},
    types::{Address, COctetString, SmppTime},
};

/// Why a body did not parse: the status to answer with and the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BodyError {
    status: CommandStatus,
    field: &'static str,
}

impl BodyError {
    fn new(status: CommandStatus, field: &'static str) -> Self {
        BodyError { status, field }
    }
}

impl<I> ParseError<I> for BodyError {
    /// A nom primitive ran out of input: the body is shorter than its fields.
    fn from_error_kind(_input: I, _kind: ErrorKind) -> Self {
        BodyError::new(CommandStatus::ESME_RINVCMDLEN, "command_length")
    }

    fn append(_input: I, _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

type Res<'a, T> = IResult<&'a [u8], T, BodyError>;

fn fail<T>(status: CommandStatus, field: &'static str) -> Result<T, nom::Err<BodyError>> {
    Err(nom::Err::Error(BodyError::new(status, field)))
}

/// Decodes one frame: the 16-octet header followed by the body, exactly
/// `command_length` octets (as the [`crate::codec::SmppCodec`] delivers).
pub fn decode_frame(frame: &Bytes) -> Result<Pdu, PduError> {
    let Some(header) = frame.first_chunk::<HEADER_LEN>() else {
        return Err(PduError::InvalidCommandLength {
            command_length: 0,
            frame_len: frame.len(),
            sequence_number: 0,
        });
    };
    let word = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let (command_length, command_id, command_status, sequence_number) = (word(0), word(4), word(8), word(12));
    let body = &frame[HEADER_LEN..];
    if command_length as usize != frame.len() {
        return Err(PduError::InvalidCommandLength {
            command_length,
            frame_len: frame.len(),
            sequence_number,
        });
    }
    let Some(id) = CommandId::from_u32(command_id) else {
        return Err(PduError::UnknownCommandId {
            command_id,
            sequence_number,
        });
    };
    let command_status = CommandStatus(command_status);
    if id.is_response() && body.is_empty() {
        // SMSCs leave out the body of a failed response (the specification
        // even asks for that for submit_sm_resp and the bind responses), and
        // some ESMEs send deliver_sm_resp without its (unused) message_id.
        return Ok(Pdu {
            command_status,
            sequence_number,
            body: Body::empty_response(id),
        });
    }
    Fields { frame }.pdu(id, command_status, sequence_number, body)
}

/// Field parsers that slice values out of `frame`.
struct Fields<'f> {
    frame: &'f Bytes,
}

impl<'f> Fields<'f> {
    /// The PDU whose body is `i`. Inlined into [`decode_frame`] together with
    /// the parsers, so the PDU is built once, in place, rather than moved
    /// from result to result (a `Pdu` is 256 octets).
    #[inline(always)]
    fn pdu(
        &self,
        id: CommandId,
        command_status: CommandStatus,
        sequence_number: u32,
        i: &'f [u8],
    ) -> Result<Pdu, PduError> {
        let invalid = |BodyError { status, field }| PduError::InvalidBody {
            command_id: id,
            sequence_number,
            status,
            field,
        };
        // Every body parser consumes the TLVs to the end, or must stop at the
        // end; octets left over mean command_length lied.
        macro_rules! parse {
            ($variant:ident) => {{
                at_end(i).map_err(invalid)?;
                Body::$variant
            }};
            ($parser:ident, $variant:ident) => {{
                let (rest, value) = self.$parser(i).map_err(|e| invalid(body_error(e)))?;
                at_end(rest).map_err(invalid)?;
                Body::$variant(value)
            }};
        }
        // Each arm builds the whole PDU, so the body is written where the
        // caller will find it.
        macro_rules! pdu {
            ($($body:tt)*) => {
                Ok(Pdu {
                    command_status,
                    sequence_number,
                    body: parse!($($body)*),
                })
            };
        }
        match id {
            CommandId::GenericNack => pdu!(GenericNack),
            CommandId::Unbind => pdu!(Unbind),
            CommandId::UnbindResp => pdu!(UnbindResp),
            CommandId::EnquireLink => pdu!(EnquireLink),
            CommandId::EnquireLinkResp => pdu!(EnquireLinkResp),
            CommandId::ReplaceSmResp => pdu!(ReplaceSmResp),
            CommandId::CancelSmResp => pdu!(CancelSmResp),
            CommandId::BindReceiver => pdu!(bind, BindReceiver),
            CommandId::BindTransmitter => pdu!(bind, BindTransmitter),
            CommandId::BindTransceiver => pdu!(bind, BindTransceiver),
            CommandId::BindReceiverResp => pdu!(bind_resp, BindReceiverResp),
            CommandId::BindTransmitterResp => pdu!(bind_resp, BindTransmitterResp),
            CommandId::BindTransceiverResp => pdu!(bind_resp, BindTransceiverResp),
            CommandId::Outbind => pdu!(outbind, Outbind),
            CommandId::SubmitSm => pdu!(submit_sm, SubmitSm),
            CommandId::DeliverSm => pdu!(submit_sm, DeliverSm),
            CommandId::SubmitSmResp => pdu!(message_id_resp, SubmitSmResp),
            CommandId::DeliverSmResp => pdu!(message_id_resp, DeliverSmResp),
            CommandId::SubmitMulti => pdu!(submit_multi, SubmitMulti),
            CommandId::SubmitMultiResp => pdu!(submit_multi_resp, SubmitMultiResp),
            CommandId::DataSm => pdu!(data_sm, DataSm),
            CommandId::DataSmResp => pdu!(data_sm_resp, DataSmResp),
            CommandId::QuerySm => pdu!(query_sm, QuerySm),
            CommandId::QuerySmResp => pdu!(query_sm_resp, QuerySmResp),
            CommandId::CancelSm => pdu!(cancel_sm, CancelSm),
            CommandId::ReplaceSm => pdu!(replace_sm, ReplaceSm),
            CommandId::AlertNotification => pdu!(alert_notification, AlertNotification),
        }
    }

    #[inline(always)]
    fn int8(i: &'f [u8], field: &'static str) -> Res<'f, u8> {
        be_u8(i).map_err(|e: nom::Err<BodyError>| e.map(|_| BodyError::new(CommandStatus::ESME_RINVCMDLEN, field)))
    }

    /// A C-Octet String of at most `MAX` octets with its NUL. No NUL within
    /// `MAX` octets (an over-long value, or one whose NUL is missing) gives the
    /// field's own status.
    #[inline(always)]
    fn cstr<const MAX: usize>(
        &self,
        i: &'f [u8],
        status: CommandStatus,
        field: &'static str,
    ) -> Res<'f, COctetString<MAX>> {
        let (rest, value) = Self::cstr_octets::<MAX>(i, status, field)?;
        Ok((rest, COctetString::from_checked(self.slice(value))))
    }

    /// `value`, a part of the frame, as a slice of it: a reference count,
    /// not a copy (and not even that for the many empty fields).
    #[inline(always)]
    fn slice(&self, value: &'f [u8]) -> Bytes {
        if value.is_empty() {
            Bytes::new()
        } else {
            self.frame.slice_ref(value)
        }
    }

    /// The octets of a C-Octet String (see [`Self::cstr`]), not yet sliced
    /// out of the frame.
    #[inline(always)]
    fn cstr_octets<const MAX: usize>(i: &'f [u8], status: CommandStatus, field: &'static str) -> Res<'f, &'f [u8]> {
        // The NUL must be among the first MAX octets: only they are searched.
        match i[..i.len().min(MAX)].iter().position(|&b| b == 0) {
            Some(len) => Ok((&i[len + 1..], &i[..len])),
            // The body ended inside the string: command_length is too short
            // for the PDU (generic_nack ESME_RINVCMDLEN, section 2.9).
            None if i.len() < MAX => fail(CommandStatus::ESME_RINVCMDLEN, field),
            // MAX octets without a NUL: the value is too long for its field.
            None => fail(status, field),
        }
    }

    #[inline(always)]
    fn time(&self, i: &'f [u8], status: CommandStatus, field: &'static str) -> Res<'f, SmppTime> {
        let (rest, value) = Self::cstr_octets::<17>(i, status, field)?;
        if !SmppTime::is_well_formed(value) {
            return fail(status, field);
        }
        Ok((rest, SmppTime::from_checked(self.slice(value))))
    }

    #[inline(always)]
    fn source<const MAX: usize>(&self, i: &'f [u8]) -> Res<'f, Address<MAX>> {
        let (i, ton) = Self::int8(i, "source_addr_ton")?;
        let (i, npi) = Self::int8(i, "source_addr_npi")?;
        let (i, addr) = self.cstr::<MAX>(i, CommandStatus::ESME_RINVSRCADR, "source_addr")?;
        Ok((i, Address { ton, npi, addr }))
    }

    #[inline(always)]
    fn dest<const MAX: usize>(&self, i: &'f [u8]) -> Res<'f, Address<MAX>> {
        let (i, ton) = Self::int8(i, "dest_addr_ton")?;
        let (i, npi) = Self::int8(i, "dest_addr_npi")?;
        let (i, addr) = self.cstr::<MAX>(i, CommandStatus::ESME_RINVDSTADR, "destination_addr")?;
        Ok((i, Address { ton, npi, addr }))
    }

    #[inline(always)]
    fn message_id(&self, i: &'f [u8]) -> Res<'f, crate::types::MessageId> {
        self.cstr(i, CommandStatus::ESME_RINVMSGID, "message_id")
    }

    #[inline(always)]
    fn service_type(&self, i: &'f [u8]) -> Res<'f, crate::types::ServiceType> {
        self.cstr(i, CommandStatus::ESME_RINVSERTYP, "service_type")
    }

    /// sm_length then that many octets.
    #[inline(always)]
    fn short_message(&self, i: &'f [u8]) -> Res<'f, Bytes> {
        let (i, sm_length) = Self::int8(i, "sm_length")?;
        if sm_length > 254 {
            return fail(CommandStatus::ESME_RINVMSGLEN, "sm_length");
        }
        let (i, sm) = take(sm_length)
            .parse(i)
            .map_err(|e: nom::Err<BodyError>| e.map(|_| BodyError::new(CommandStatus::ESME_RINVMSGLEN, "sm_length")))?;
        Ok((i, self.slice(sm)))
    }

    /// TLVs to the end of the body.
    #[inline(always)]
    fn tlvs(&self, mut i: &'f [u8]) -> Res<'f, Vec<Tlv>> {
        let mut tlvs = Vec::new();
        while !i.is_empty() {
            let Some((tag, value, rest)) = split_tlv(i) else {
                return fail(CommandStatus::ESME_RINVOPTPARSTREAM, "optional parameters");
            };
            let tlv = Tlv::from_value(self.frame, tag, value)
                .map_err(|e| nom::Err::Error(BodyError::new(e.status, e.field)))?;
            tlvs.push(tlv);
            i = rest;
        }
        Ok((i, tlvs))
    }

    #[inline(always)]
    fn bind(&self, i: &'f [u8]) -> Res<'f, Bind> {
        let (i, system_id) = self.cstr(i, CommandStatus::ESME_RINVSYSID, "system_id")?;
        let (i, password) = self.cstr(i, CommandStatus::ESME_RINVPASWD, "password")?;
        let (i, system_type) = self.cstr(i, CommandStatus::ESME_RINVSYSTYP, "system_type")?;
        let (i, interface_version) = Self::int8(i, "interface_version")?;
        let (i, addr_ton) = Self::int8(i, "addr_ton")?;
        let (i, addr_npi) = Self::int8(i, "addr_npi")?;
        let (i, address_range) = self.cstr(i, CommandStatus::ESME_RINVPARLEN, "address_range")?;
        Ok((
            i,
            Bind {
                system_id,
                password,
                system_type,
                interface_version,
                addr_ton,
                addr_npi,
                address_range,
            },
        ))
    }

    #[inline(always)]
    fn bind_resp(&self, i: &'f [u8]) -> Res<'f, BindResp> {
        let (i, system_id) = self.cstr(i, CommandStatus::ESME_RINVSYSID, "system_id")?;
        let (i, tlvs) = self.tlvs(i)?;
        Ok((i, BindResp { system_id, tlvs }))
    }

    #[inline(always)]
    fn outbind(&self, i: &'f [u8]) -> Res<'f, Outbind> {
        let (i, system_id) = self.cstr(i, CommandStatus::ESME_RINVSYSID, "system_id")?;
        let (i, password) = self.cstr(i, CommandStatus::ESME_RINVPASWD, "password")?;
        Ok((i, Outbind { system_id, password }))
    }

    #[inline(always)]
    fn submit_sm(&self, i: &'f [u8]) -> Res<'f, SubmitSm> {
        let (i, service_type) = self.service_type(i)?;
        let (i, source) = self.source(i)?;
        let (i, dest) = self.dest(i)?;
        let (i, esm_class) = Self::int8(i, "esm_class")?;
        let (i, protocol_id) = Self::int8(i, "protocol_id")?;
        let (i, priority_flag) = Self::int8(i, "priority_flag")?;
        let (i, schedule_delivery_time) = self.time(i, CommandStatus::ESME_RINVSCHED, "schedule_delivery_time")?;
        let (i, validity_period) = self.time(i, CommandStatus::ESME_RINVEXPIRY, "validity_period")?;
        let (i, registered_delivery) = Self::int8(i, "registered_delivery")?;
        let (i, replace_if_present_flag) = Self::int8(i, "replace_if_present_flag")?;
        let (i, data_coding) = Self::int8(i, "data_coding")?;
        let (i, sm_default_msg_id) = Self::int8(i, "sm_default_msg_id")?;
        let (i, short_message) = self.short_message(i)?;
        let (i, tlvs) = self.tlvs(i)?;
        check_one_message(&short_message, &tlvs)?;
        Ok((
            i,
            SubmitSm {
                service_type,
                source,
                dest,
                esm_class,
                protocol_id,
                priority_flag,
                schedule_delivery_time,
                validity_period,
                registered_delivery,
                replace_if_present_flag,
                data_coding,
                sm_default_msg_id,
                short_message,
                tlvs,
            },
        ))
    }

    #[inline(always)]
    fn message_id_resp(&self, i: &'f [u8]) -> Res<'f, SubmitSmResp> {
        let (i, message_id) = self.message_id(i)?;
        Ok((i, SubmitSmResp { message_id }))
    }

    #[inline(always)]
    fn submit_multi(&self, i: &'f [u8]) -> Res<'f, SubmitMulti> {
        let (i, service_type) = self.service_type(i)?;
        let (i, source) = self.source(i)?;
        let (mut i, number_of_dests) = Self::int8(i, "number_of_dests")?;
        if number_of_dests == 0 || number_of_dests > 254 {
            return fail(CommandStatus::ESME_RINVNUMDESTS, "number_of_dests");
        }
        let mut dest_addresses = Vec::with_capacity(number_of_dests as usize);
        for _ in 0..number_of_dests {
            let (rest, dest_flag) = Self::int8(i, "dest_flag")?;
            let (rest, dest) = match dest_flag {
                1 => {
                    let (rest, a) = self.dest(rest)?;
                    (rest, DestAddress::SmeAddress(a))
                }
                2 => {
                    let (rest, name) = self.cstr(rest, CommandStatus::ESME_RINVDLNAME, "dl_name")?;
                    (rest, DestAddress::DistributionList(name))
                }
                _ => return fail(CommandStatus::ESME_RINVDESTFLAG, "dest_flag"),
            };
            dest_addresses.push(dest);
            i = rest;
        }
        let (i, esm_class) = Self::int8(i, "esm_class")?;
        let (i, protocol_id) = Self::int8(i, "protocol_id")?;
        let (i, priority_flag) = Self::int8(i, "priority_flag")?;
        let (i, schedule_delivery_time) = self.time(i, CommandStatus::ESME_RINVSCHED, "schedule_delivery_time")?;
        let (i, validity_period) = self.time(i, CommandStatus::ESME_RINVEXPIRY, "validity_period")?;
        let (i, registered_delivery) = Self::int8(i, "registered_delivery")?;
        let (i, replace_if_present_flag) = Self::int8(i, "replace_if_present_flag")?;
        let (i, data_coding) = Self::int8(i, "data_coding")?;
        let (i, sm_default_msg_id) = Self::int8(i, "sm_default_msg_id")?;
        let (i, short_message) = self.short_message(i)?;
        let (i, tlvs) = self.tlvs(i)?;
        check_one_message(&short_message, &tlvs)?;
        Ok((
            i,
            SubmitMulti {
                service_type,
                source,
                dest_addresses,
                esm_class,
                protocol_id,
                priority_flag,
                schedule_delivery_time,
                validity_period,
                registered_delivery,
                replace_if_present_flag,
                data_coding,
                sm_default_msg_id,
                short_message,
                tlvs,
            },
        ))
    }

    #[inline(always)]
    fn submit_multi_resp(&self, i: &'f [u8]) -> Res<'f, SubmitMultiResp> {
        let (i, message_id) = self.message_id(i)?;
        let (mut i, no_unsuccess) = Self::int8(i, "no_unsuccess")?;
        let mut unsuccess_smes = Vec::with_capacity(no_unsuccess as usize);
        for _ in 0..no_unsuccess {
            let (rest, address) = self.dest(i)?;
            let (rest, code) = be_u32(rest).map_err(|e: nom::Err<BodyError>| {
                e.map(|_| BodyError::new(CommandStatus::ESME_RINVCMDLEN, "error_status_code"))
            })?;
            unsuccess_smes.push(UnsuccessSme {
                address,
                error_status_code: CommandStatus(code),
            });
            i = rest;
        }
        Ok((
            i,
            SubmitMultiResp {
                message_id,
                unsuccess_smes,
            },
        ))
    }

    #[inline(always)]
    fn data_sm(&self, i: &'f [u8]) -> Res<'f, DataSm> {
        let (i, service_type) = self.service_type(i)?;
        let (i, source) = self.source(i)?;
        let (i, dest) = self.dest(i)?;
        let (i, esm_class) = Self::int8(i, "esm_class")?;
        let (i, registered_delivery) = Self::int8(i, "registered_delivery")?;
        let (i, data_coding) = Self::int8(i, "data_coding")?;
        let (i, tlvs) = self.tlvs(i)?;
        Ok((
            i,
            DataSm {
                service_type,
                source,
                dest,
                esm_class,
                registered_delivery,
                data_coding,
                tlvs,
            },
        ))
    }

    #[inline(always)]
    fn data_sm_resp(&self, i: &'f [u8]) -> Res<'f, DataSmResp> {
        let (i, message_id) = self.message_id(i)?;
        let (i, tlvs) = self.tlvs(i)?;
        Ok((i, DataSmResp { message_id, tlvs }))
    }

    #[inline(always)]
    fn query_sm(&self, i: &'f [u8]) -> Res<'f, QuerySm> {
        let (i, message_id) = self.message_id(i)?;
        let (i, source) = self.source(i)?;
        Ok((i, QuerySm { message_id, source }))
    }

    #[inline(always)]
    fn query_sm_resp(&self, i: &'f [u8]) -> Res<'f, QuerySmResp> {
        let (i, message_id) = self.message_id(i)?;
        let (i, final_date) = self.time(i, CommandStatus::ESME_RINVCMDLEN, "final_date")?;
        let (i, message_state) = Self::int8(i, "message_state")?;
        let (i, error_code) = Self::int8(i, "error_code")?;
        Ok((
            i,
            QuerySmResp {
                message_id,
                final_date,
                message_state,
                error_code,
            },
        ))
    }

    #[inline(always)]
    fn cancel_sm(&self, i: &'f [u8]) -> Res<'f, CancelSm> {
        let (i, service_type) = self.service_type(i)?;
        let (i, message_id) = self.message_id(i)?;
        let (i, source) = self.source(i)?;
        let (i, dest) = self.dest(i)?;
        Ok((
            i,
            CancelSm {
                service_type,
                message_id,
                source,
                dest,
            },
        ))
    }

    #[inline(always)]
    fn replace_sm(&self, i: &'f [u8]) -> Res<'f, ReplaceSm> {
        let (i, message_id) = self.message_id(i)?;
        let (i, source) = self.source(i)?;
        let (i, schedule_delivery_time) = self.time(i, CommandStatus::ESME_RINVSCHED, "schedule_delivery_time")?;
        let (i, validity_period) = self.time(i, CommandStatus::ESME_RINVEXPIRY, "validity_period")?;
        let (i, registered_delivery) = Self::int8(i, "registered_delivery")?;
        let (i, sm_default_msg_id) = Self::int8(i, "sm_default_msg_id")?;
        let (i, short_message) = self.short_message(i)?;
        Ok((
            i,
            ReplaceSm {
                message_id,
                source,
                schedule_delivery_time,
                validity_period,
                registered_delivery,
                sm_default_msg_id,
                short_message,
            },
        ))
    }

    #[inline(always)]
    fn alert_notification(&self, i: &'f [u8]) -> Res<'f, AlertNotification> {
        let (i, source) = self.source(i)?;
        let (i, ton) = Self::int8(i, "esme_addr_ton")?;
        let (i, npi) = Self::int8(i, "esme_addr_npi")?;
        let (i, addr) = self.cstr::<65>(i, CommandStatus::ESME_RINVDSTADR, "esme_addr")?;
        let (i, tlvs) = self.tlvs(i)?;
        Ok((
            i,
            AlertNotification {
                source,
                esme: Address { ton, npi, addr },
                tlvs,
            },
        ))
    }
}

/// A parser's error as the body's error.
#[inline(always)]
fn body_error(e: nom::Err<BodyError>) -> BodyError {
    match e {
        nom::Err::Error(e) | nom::Err::Failure(e) => e,
        nom::Err::Incomplete(_) => BodyError::new(CommandStatus::ESME_RINVCMDLEN, "command_length"),
    }
}

/// Octets left over after the body mean command_length lied.
#[inline(always)]
fn at_end(rest: &[u8]) -> Result<(), BodyError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(BodyError::new(CommandStatus::ESME_RINVCMDLEN, "command_length"))
    }
}

/// short_message and message_payload must not both carry the message
/// (section 4.4.1): sm_length must then be zero.
fn check_one_message(short_message: &Bytes, tlvs: &[Tlv]) -> Result<(), nom::Err<BodyError>> {
    if !short_message.is_empty() && tlvs.iter().any(|t| matches!(t, Tlv::MessagePayload(_))) {
        return fail(CommandStatus::ESME_RINVMSGLEN, "sm_length");
    }
    Ok(())
}
