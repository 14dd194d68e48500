//! PDUs: the header fields and one body type per operation.

use bytes::Bytes;

use crate::{
    command::CommandId,
    status::CommandStatus,
    tlv::Tlv,
    types::{
        Address, AddressRange, DistributionListName, MessageId, Password, ServiceType, SmppTime, SystemId, SystemType,
    },
};

/// The SMPP version this crate speaks, as written in `interface_version`.
pub const INTERFACE_VERSION_34: u8 = 0x34;

/// The 16-octet header's length.
pub const HEADER_LEN: usize = 16;

/// One SMPP PDU: header fields and body. `command_length` is not stored; the
/// encoder computes it and the decoder checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    pub command_status: CommandStatus,
    pub sequence_number: u32,
    pub body: Body,
}

impl Pdu {
    /// A request (or a successful response) with status `ESME_ROK`.
    pub fn new(sequence_number: u32, body: impl Into<Body>) -> Pdu {
        Pdu {
            command_status: CommandStatus::ESME_ROK,
            sequence_number,
            body: body.into(),
        }
    }

    /// A PDU with an explicit status.
    pub fn with_status(sequence_number: u32, command_status: CommandStatus, body: impl Into<Body>) -> Pdu {
        Pdu {
            command_status,
            sequence_number,
            body: body.into(),
        }
    }

    /// `generic_nack` with the given status.
    pub fn generic_nack(sequence_number: u32, status: CommandStatus) -> Pdu {
        Pdu::with_status(sequence_number, status, Body::GenericNack)
    }

    /// The response `response_id` with an empty body and an error status.
    /// Panics never: `response_id` that is not a response gives `generic_nack`.
    pub fn error_response(response_id: CommandId, sequence_number: u32, status: CommandStatus) -> Pdu {
        Pdu::with_status(sequence_number, status, Body::empty_response(response_id))
    }

    pub fn command_id(&self) -> CommandId {
        self.body.command_id()
    }
}

/// `bind_transmitter`, `bind_receiver` and `bind_transceiver` (section 4.1).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Bind {
    pub system_id: SystemId,
    pub password: Password,
    pub system_type: SystemType,
    pub interface_version: u8,
    pub addr_ton: u8,
    pub addr_npi: u8,
    pub address_range: AddressRange,
}

/// The three bind responses. `sc_interface_version` travels as a TLV.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BindResp {
    pub system_id: SystemId,
    pub tlvs: Vec<Tlv>,
}

/// `outbind` (section 4.1.7).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Outbind {
    pub system_id: SystemId,
    pub password: Password,
}

/// `submit_sm` (section 4.4.1). `deliver_sm` has the same wire layout and
/// uses this type too (see [`DeliverSm`]).
///
/// `short_message` is a slice of the received frame: holding it copies
/// nothing. Its length is `sm_length`, so the two cannot disagree.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SubmitSm {
    pub service_type: ServiceType,
    pub source: Address<21>,
    pub dest: Address<21>,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: SmppTime,
    pub validity_period: SmppTime,
    pub registered_delivery: u8,
    pub replace_if_present_flag: u8,
    pub data_coding: u8,
    pub sm_default_msg_id: u8,
    pub short_message: Bytes,
    pub tlvs: Vec<Tlv>,
}

/// `deliver_sm` (section 4.6.1): the layout of `submit_sm`, where
/// `schedule_delivery_time`, `validity_period`, `replace_if_present_flag`
/// and `sm_default_msg_id` are unused (NULL / 0).
pub type DeliverSm = SubmitSm;

impl SubmitSm {
    /// The message octets: `short_message`, or the `message_payload` TLV
    /// when the message did not fit.
    pub fn message(&self) -> &Bytes {
        if self.short_message.is_empty() {
            for tlv in &self.tlvs {
                if let Tlv::MessagePayload(payload) = tlv {
                    return payload;
                }
            }
        }
        &self.short_message
    }

    /// `true` when esm_class marks this deliver_sm as an SMSC delivery receipt.
    pub fn is_delivery_receipt(&self) -> bool {
        self.esm_class & crate::types::esm_class::TYPE_MASK == crate::types::esm_class::DELIVERY_RECEIPT
    }
}

/// `submit_sm_resp` (section 4.4.2); also `deliver_sm_resp`, whose
/// `message_id` is unused.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SubmitSmResp {
    pub message_id: MessageId,
}

/// `deliver_sm_resp` (section 4.6.2).
pub type DeliverSmResp = SubmitSmResp;

/// One destination of a `submit_multi`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestAddress {
    /// dest_flag 1: an SME address.
    SmeAddress(Address<21>),
    /// dest_flag 2: a distribution list name.
    DistributionList(DistributionListName),
}

/// `submit_multi` (section 4.5.1).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SubmitMulti {
    pub service_type: ServiceType,
    pub source: Address<21>,
    /// At most 254 (number_of_dests is one octet and 255 is reserved).
    pub dest_addresses: Vec<DestAddress>,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: SmppTime,
    pub validity_period: SmppTime,
    pub registered_delivery: u8,
    pub replace_if_present_flag: u8,
    pub data_coding: u8,
    pub sm_default_msg_id: u8,
    pub short_message: Bytes,
    pub tlvs: Vec<Tlv>,
}

/// A destination `submit_multi` could not reach, with its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsuccessSme {
    pub address: Address<21>,
    pub error_status_code: CommandStatus,
}

/// `submit_multi_resp` (section 4.5.2).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SubmitMultiResp {
    pub message_id: MessageId,
    pub unsuccess_smes: Vec<UnsuccessSme>,
}

/// `data_sm` (section 4.7.1).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DataSm {
    pub service_type: ServiceType,
    pub source: Address<65>,
    pub dest: Address<65>,
    pub esm_class: u8,
    pub registered_delivery: u8,
    pub data_coding: u8,
    pub tlvs: Vec<Tlv>,
}

/// `data_sm_resp` (section 4.7.2).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DataSmResp {
    pub message_id: MessageId,
    pub tlvs: Vec<Tlv>,
}

/// `query_sm` (section 4.8.1).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct QuerySm {
    pub message_id: MessageId,
    pub source: Address<21>,
}

/// `query_sm_resp` (section 4.8.2).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct QuerySmResp {
    pub message_id: MessageId,
    pub final_date: SmppTime,
    /// See [`crate::types::MessageState`].
    pub message_state: u8,
    pub error_code: u8,
}

/// `cancel_sm` (section 4.9.1).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CancelSm {
    pub service_type: ServiceType,
    pub message_id: MessageId,
    pub source: Address<21>,
    pub dest: Address<21>,
}

/// `replace_sm` (section 4.10.1).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReplaceSm {
    pub message_id: MessageId,
    pub source: Address<21>,
    pub schedule_delivery_time: SmppTime,
    pub validity_period: SmppTime,
    pub registered_delivery: u8,
    pub sm_default_msg_id: u8,
    pub short_message: Bytes,
}

/// `alert_notification` (section 4.12.1).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AlertNotification {
    pub source: Address<65>,
    pub esme: Address<65>,
    pub tlvs: Vec<Tlv>,
}

/// The body of a PDU; the variant fixes the `command_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    GenericNack,
    BindReceiver(Bind),
    BindReceiverResp(BindResp),
    BindTransmitter(Bind),
    BindTransmitterResp(BindResp),
    QuerySm(QuerySm),
    QuerySmResp(QuerySmResp),
    SubmitSm(SubmitSm),
    SubmitSmResp(SubmitSmResp),
    DeliverSm(DeliverSm),
    DeliverSmResp(DeliverSmResp),
    Unbind,
    UnbindResp,
    ReplaceSm(ReplaceSm),
    ReplaceSmResp,
    CancelSm(CancelSm),
    CancelSmResp,
    BindTransceiver(Bind),
    BindTransceiverResp(BindResp),
    Outbind(Outbind),
    EnquireLink,
    EnquireLinkResp,
    SubmitMulti(SubmitMulti),
    SubmitMultiResp(SubmitMultiResp),
    AlertNotification(AlertNotification),
    DataSm(DataSm),
    DataSmResp(DataSmResp),
}

impl Body {
    pub fn command_id(&self) -> CommandId {
        match self {
            Body::GenericNack => CommandId::GenericNack,
            Body::BindReceiver(_) => CommandId::BindReceiver,
            Body::BindReceiverResp(_) => CommandId::BindReceiverResp,
            Body::BindTransmitter(_) => CommandId::BindTransmitter,
            Body::BindTransmitterResp(_) => CommandId::BindTransmitterResp,
            Body::QuerySm(_) => CommandId::QuerySm,
            Body::QuerySmResp(_) => CommandId::QuerySmResp,
            Body::SubmitSm(_) => CommandId::SubmitSm,
            Body::SubmitSmResp(_) => CommandId::SubmitSmResp,
            Body::DeliverSm(_) => CommandId::DeliverSm,
            Body::DeliverSmResp(_) => CommandId::DeliverSmResp,
            Body::Unbind => CommandId::Unbind,
            Body::UnbindResp => CommandId::UnbindResp,
            Body::ReplaceSm(_) => CommandId::ReplaceSm,
            Body::ReplaceSmResp => CommandId::ReplaceSmResp,
            Body::CancelSm(_) => CommandId::CancelSm,
            Body::CancelSmResp => CommandId::CancelSmResp,
            Body::BindTransceiver(_) => CommandId::BindTransceiver,
            Body::BindTransceiverResp(_) => CommandId::BindTransceiverResp,
            Body::Outbind(_) => CommandId::Outbind,
            Body::EnquireLink => CommandId::EnquireLink,
            Body::EnquireLinkResp => CommandId::EnquireLinkResp,
            Body::SubmitMulti(_) => CommandId::SubmitMulti,
            Body::SubmitMultiResp(_) => CommandId::SubmitMultiResp,
            Body::AlertNotification(_) => CommandId::AlertNotification,
            Body::DataSm(_) => CommandId::DataSm,
            Body::DataSmResp(_) => CommandId::DataSmResp,
        }
    }

    /// The body of `response_id` with every field empty: what an error
    /// response carries (the encoder then omits it where the specification
    /// says the body is not returned). A request id gives `generic_nack`.
    pub fn empty_response(response_id: CommandId) -> Body {
        match response_id {
            CommandId::BindReceiverResp => Body::BindReceiverResp(BindResp::default()),
            CommandId::BindTransmitterResp => Body::BindTransmitterResp(BindResp::default()),
            CommandId::BindTransceiverResp => Body::BindTransceiverResp(BindResp::default()),
            CommandId::QuerySmResp => Body::QuerySmResp(QuerySmResp::default()),
            CommandId::SubmitSmResp => Body::SubmitSmResp(SubmitSmResp::default()),
            CommandId::DeliverSmResp => Body::DeliverSmResp(DeliverSmResp::default()),
            CommandId::UnbindResp => Body::UnbindResp,
            CommandId::ReplaceSmResp => Body::ReplaceSmResp,
            CommandId::CancelSmResp => Body::CancelSmResp,
            CommandId::EnquireLinkResp => Body::EnquireLinkResp,
            CommandId::SubmitMultiResp => Body::SubmitMultiResp(SubmitMultiResp::default()),
            CommandId::DataSmResp => Body::DataSmResp(DataSmResp::default()),
            _ => Body::GenericNack,
        }
    }
}

macro_rules! body_from {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(impl From<$ty> for Body {
            fn from(value: $ty) -> Body {
                Body::$variant(value)
            }
        })*
    };
}

body_from! {
    SubmitSm => SubmitSm,
    SubmitSmResp => SubmitSmResp,
    SubmitMulti => SubmitMulti,
    SubmitMultiResp => SubmitMultiResp,
    DataSm => DataSm,
    DataSmResp => DataSmResp,
    QuerySm => QuerySm,
    QuerySmResp => QuerySmResp,
    CancelSm => CancelSm,
    ReplaceSm => ReplaceSm,
    Outbind => Outbind,
    AlertNotification => AlertNotification,
}
