//! `command_id`: which operation a PDU carries.

/// Every SMPP 3.4 operation and its response (section 5.1.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CommandId {
    GenericNack = 0x8000_0000,
    BindReceiver = 0x0000_0001,
    BindReceiverResp = 0x8000_0001,
    BindTransmitter = 0x0000_0002,
    BindTransmitterResp = 0x8000_0002,
    QuerySm = 0x0000_0003,
    QuerySmResp = 0x8000_0003,
    SubmitSm = 0x0000_0004,
    SubmitSmResp = 0x8000_0004,
    DeliverSm = 0x0000_0005,
    DeliverSmResp = 0x8000_0005,
    Unbind = 0x0000_0006,
    UnbindResp = 0x8000_0006,
    ReplaceSm = 0x0000_0007,
    ReplaceSmResp = 0x8000_0007,
    CancelSm = 0x0000_0008,
    CancelSmResp = 0x8000_0008,
    BindTransceiver = 0x0000_0009,
    BindTransceiverResp = 0x8000_0009,
    Outbind = 0x0000_000B,
    EnquireLink = 0x0000_0015,
    EnquireLinkResp = 0x8000_0015,
    SubmitMulti = 0x0000_0021,
    SubmitMultiResp = 0x8000_0021,
    AlertNotification = 0x0000_0102,
    DataSm = 0x0000_0103,
    DataSmResp = 0x8000_0103,
}

impl CommandId {
    /// All operations, in the order of the specification's table.
    pub const ALL: [CommandId; 27] = [
        CommandId::GenericNack,
        CommandId::BindReceiver,
        CommandId::BindReceiverResp,
        CommandId::BindTransmitter,
        CommandId::BindTransmitterResp,
        CommandId::QuerySm,
        CommandId::QuerySmResp,
        CommandId::SubmitSm,
        CommandId::SubmitSmResp,
        CommandId::DeliverSm,
        CommandId::DeliverSmResp,
        CommandId::Unbind,
        CommandId::UnbindResp,
        CommandId::ReplaceSm,
        CommandId::ReplaceSmResp,
        CommandId::CancelSm,
        CommandId::CancelSmResp,
        CommandId::BindTransceiver,
        CommandId::BindTransceiverResp,
        CommandId::Outbind,
        CommandId::EnquireLink,
        CommandId::EnquireLinkResp,
        CommandId::SubmitMulti,
        CommandId::SubmitMultiResp,
        CommandId::AlertNotification,
        CommandId::DataSm,
        CommandId::DataSmResp,
    ];

    /// The id for a raw `command_id`, or `None` for one SMPP 3.4 does not define.
    pub const fn from_u32(value: u32) -> Option<CommandId> {
        use CommandId::*;
        Some(match value {
            0x8000_0000 => GenericNack,
            0x0000_0001 => BindReceiver,
            0x8000_0001 => BindReceiverResp,
            0x0000_0002 => BindTransmitter,
            0x8000_0002 => BindTransmitterResp,
            0x0000_0003 => QuerySm,
            0x8000_0003 => QuerySmResp,
            0x0000_0004 => SubmitSm,
            0x8000_0004 => SubmitSmResp,
            0x0000_0005 => DeliverSm,
            0x8000_0005 => DeliverSmResp,
            0x0000_0006 => Unbind,
            0x8000_0006 => UnbindResp,
            0x0000_0007 => ReplaceSm,
            0x8000_0007 => ReplaceSmResp,
            0x0000_0008 => CancelSm,
            0x8000_0008 => CancelSmResp,
            0x0000_0009 => BindTransceiver,
            0x8000_0009 => BindTransceiverResp,
            0x0000_000B => Outbind,
            0x0000_0015 => EnquireLink,
            0x8000_0015 => EnquireLinkResp,
            0x0000_0021 => SubmitMulti,
            0x8000_0021 => SubmitMultiResp,
            0x0000_0102 => AlertNotification,
            0x0000_0103 => DataSm,
            0x8000_0103 => DataSmResp,
            _ => return None,
        })
    }

    /// The raw value written on the wire.
    pub const fn as_u32(self) -> u32 {
        self as u32
    }

    /// `true` for response PDUs (bit 31 set), including `generic_nack`.
    pub const fn is_response(self) -> bool {
        self.as_u32() & 0x8000_0000 != 0
    }

    /// The response that answers this request; `None` for responses and for
    /// the two requests that have none (`outbind`, `alert_notification`).
    pub const fn response(self) -> Option<CommandId> {
        match self {
            CommandId::Outbind | CommandId::AlertNotification => None,
            _ if self.is_response() => None,
            _ => CommandId::from_u32(self.as_u32() | 0x8000_0000),
        }
    }

    /// The SMPP name of the operation (`submit_sm`).
    pub const fn name(self) -> &'static str {
        use CommandId::*;
        match self {
            GenericNack => "generic_nack",
            BindReceiver => "bind_receiver",
            BindReceiverResp => "bind_receiver_resp",
            BindTransmitter => "bind_transmitter",
            BindTransmitterResp => "bind_transmitter_resp",
            QuerySm => "query_sm",
            QuerySmResp => "query_sm_resp",
            SubmitSm => "submit_sm",
            SubmitSmResp => "submit_sm_resp",
            DeliverSm => "deliver_sm",
            DeliverSmResp => "deliver_sm_resp",
            Unbind => "unbind",
            UnbindResp => "unbind_resp",
            ReplaceSm => "replace_sm",
            ReplaceSmResp => "replace_sm_resp",
            CancelSm => "cancel_sm",
            CancelSmResp => "cancel_sm_resp",
            BindTransceiver => "bind_transceiver",
            BindTransceiverResp => "bind_transceiver_resp",
            Outbind => "outbind",
            EnquireLink => "enquire_link",
            EnquireLinkResp => "enquire_link_resp",
            SubmitMulti => "submit_multi",
            SubmitMultiResp => "submit_multi_resp",
            AlertNotification => "alert_notification",
            DataSm => "data_sm",
            DataSmResp => "data_sm_resp",
        }
    }
}

impl std::fmt::Display for CommandId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_round_trips_and_pairs_with_its_response() {
        for id in CommandId::ALL {
            assert_eq!(CommandId::from_u32(id.as_u32()), Some(id));
            if let Some(resp) = id.response() {
                assert!(resp.is_response());
                assert_eq!(resp.as_u32() & 0x7FFF_FFFF, id.as_u32());
            }
        }
        assert_eq!(CommandId::SubmitSm.response(), Some(CommandId::SubmitSmResp));
        assert_eq!(CommandId::Outbind.response(), None);
        assert_eq!(CommandId::from_u32(0x0000_000A), None);
    }
}
