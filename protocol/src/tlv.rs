//! Optional parameters (TLVs), section 5.3.
//!
//! Every TLV SMPP 3.4 defines has a variant with a typed value. A tag we do
//! not know is kept as [`Tlv::Unknown`] with its value octets untouched, so a
//! PDU that passes through the gateway re-encodes byte for byte.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{status::CommandStatus, types::COctetString};

/// `network_error_code`: network type and the network's own error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetworkErrorCode {
    /// 1 ANSI-136, 2 IS-95, 3 GSM, 4 reserved.
    pub network_type: u8,
    pub error_code: u16,
}

/// Why a TLV value was refused; mapped to the status the peer is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TlvValueError {
    pub status: CommandStatus,
    pub field: &'static str,
}

macro_rules! tlvs {
    (
        integers { $($iname:ident($ity:ty) = $itag:literal, $ifield:literal;)* }
        octets { $($oname:ident = $otag:literal, $omin:literal..=$omax:literal, $ofield:literal;)* }
        cstrings { $($cname:ident = $ctag:literal, $cmax:literal, $cfield:literal;)* }
    ) => {
        /// One optional parameter.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum Tlv {
            $(
                #[doc = concat!("`", $ifield, "` (", stringify!($itag), ")")]
                $iname($ity),
            )*
            $(
                #[doc = concat!("`", $ofield, "` (", stringify!($otag), "), ", stringify!($omin), " to ", stringify!($omax), " octets")]
                $oname(Bytes),
            )*
            $(
                #[doc = concat!("`", $cfield, "` (", stringify!($ctag), "), C-Octet String")]
                $cname(COctetString<$cmax>),
            )*
            /// `network_error_code` (0x0423).
            NetworkErrorCode(NetworkErrorCode),
            /// `message_payload` (0x0424): the message when it does not fit `short_message`.
            MessagePayload(Bytes),
            /// `alert_on_message_delivery` (0x130C): present or absent, no value.
            AlertOnMessageDelivery,
            /// A tag SMPP 3.4 does not define, kept byte-exact.
            Unknown { tag: u16, value: Bytes },
        }

        /// Tags of the TLVs SMPP 3.4 defines.
        pub mod tag {
            $(
                #[allow(non_upper_case_globals)]
                pub const $iname: u16 = $itag;
            )*
            $(
                #[allow(non_upper_case_globals)]
                pub const $oname: u16 = $otag;
            )*
            $(
                #[allow(non_upper_case_globals)]
                pub const $cname: u16 = $ctag;
            )*
            #[allow(non_upper_case_globals)]
            pub const NetworkErrorCode: u16 = 0x0423;
            #[allow(non_upper_case_globals)]
            pub const MessagePayload: u16 = 0x0424;
            #[allow(non_upper_case_globals)]
            pub const AlertOnMessageDelivery: u16 = 0x130C;
        }

        impl Tlv {
            /// The tag written on the wire.
            pub fn tag(&self) -> u16 {
                match self {
                    $(Tlv::$iname(_) => $itag,)*
                    $(Tlv::$oname(_) => $otag,)*
                    $(Tlv::$cname(_) => $ctag,)*
                    Tlv::NetworkErrorCode(_) => 0x0423,
                    Tlv::MessagePayload(_) => 0x0424,
                    Tlv::AlertOnMessageDelivery => 0x130C,
                    Tlv::Unknown { tag, .. } => *tag,
                }
            }

            /// The SMPP name of the parameter, `None` for an unknown tag.
            pub fn name(&self) -> Option<&'static str> {
                Some(match self {
                    $(Tlv::$iname(_) => $ifield,)*
                    $(Tlv::$oname(_) => $ofield,)*
                    $(Tlv::$cname(_) => $cfield,)*
                    Tlv::NetworkErrorCode(_) => "network_error_code",
                    Tlv::MessagePayload(_) => "message_payload",
                    Tlv::AlertOnMessageDelivery => "alert_on_message_delivery",
                    Tlv::Unknown { .. } => return None,
                })
            }

            /// Length of the value octets.
            pub fn value_len(&self) -> usize {
                match self {
                    $(Tlv::$iname(_) => std::mem::size_of::<$ity>(),)*
                    $(Tlv::$oname(v) => v.len(),)*
                    $(Tlv::$cname(v) => v.len() + 1,)*
                    Tlv::NetworkErrorCode(_) => 3,
                    Tlv::MessagePayload(v) => v.len(),
                    Tlv::AlertOnMessageDelivery => 0,
                    Tlv::Unknown { value, .. } => value.len(),
                }
            }

            /// Checks what the type cannot: the length range of octet-string
            /// values, and that an `Unknown` carrying a tag SMPP 3.4 defines
            /// holds a value valid for it. The decoder would refuse either.
            pub(crate) fn check_encodable(&self) -> Result<(), crate::error::EncodeError> {
                let valid = match self {
                    $(Tlv::$oname(v) => ($omin..=$omax).contains(&v.len()),)*
                    Tlv::Unknown { tag, value } => Tlv::from_value(value, *tag, value).is_ok(),
                    _ => true,
                };
                if valid {
                    Ok(())
                } else {
                    Err(crate::error::EncodeError::InvalidTlv { tag: self.tag(), len: self.value_len() })
                }
            }

            /// Writes the value octets (not tag or length).
            pub(crate) fn put_value(&self, dst: &mut BytesMut) {
                match self {
                    $(Tlv::$iname(v) => dst.put_slice(&v.to_be_bytes()),)*
                    $(Tlv::$oname(v) => dst.put_slice(v),)*
                    $(Tlv::$cname(v) => {
                        dst.put_slice(v.as_bytes());
                        dst.put_u8(0);
                    })*
                    Tlv::NetworkErrorCode(n) => {
                        dst.put_u8(n.network_type);
                        dst.put_u16(n.error_code);
                    }
                    Tlv::MessagePayload(v) => dst.put_slice(v),
                    Tlv::AlertOnMessageDelivery => {}
                    Tlv::Unknown { value, .. } => dst.put_slice(value),
                }
            }

            /// Builds the typed TLV from a tag and its value octets, which
            /// are a slice of `frame` (so octet values are not copied).
            pub(crate) fn from_value(frame: &Bytes, tag: u16, value: &[u8]) -> Result<Tlv, TlvValueError> {
                match tag {
                    $(
                        $itag => {
                            let raw: [u8; std::mem::size_of::<$ity>()] = value.try_into().map_err(|_| TlvValueError {
                                status: CommandStatus::ESME_RINVPARLEN,
                                field: $ifield,
                            })?;
                            Ok(Tlv::$iname(<$ity>::from_be_bytes(raw)))
                        }
                    )*
                    $(
                        $otag => {
                            if !($omin..=$omax).contains(&value.len()) {
                                return Err(TlvValueError { status: CommandStatus::ESME_RINVPARLEN, field: $ofield });
                            }
                            Ok(Tlv::$oname(frame.slice_ref(value)))
                        }
                    )*
                    $(
                        $ctag => {
                            // The specification wants a NUL; some SMSCs leave it
                            // out. Accept both, refuse a NUL inside the value.
                            let text = value.strip_suffix(&[0]).unwrap_or(value);
                            if text.len() >= $cmax {
                                return Err(TlvValueError { status: CommandStatus::ESME_RINVPARLEN, field: $cfield });
                            }
                            if text.contains(&0) {
                                return Err(TlvValueError { status: CommandStatus::ESME_RINVOPTPARAMVAL, field: $cfield });
                            }
                            Ok(Tlv::$cname(COctetString::from_checked(frame.slice_ref(text))))
                        }
                    )*
                    0x0423 => match value {
                        [network_type, hi, lo] => Ok(Tlv::NetworkErrorCode(NetworkErrorCode {
                            network_type: *network_type,
                            error_code: u16::from_be_bytes([*hi, *lo]),
                        })),
                        _ => Err(TlvValueError { status: CommandStatus::ESME_RINVPARLEN, field: "network_error_code" }),
                    },
                    0x0424 => Ok(Tlv::MessagePayload(frame.slice_ref(value))),
                    0x130C => {
                        if value.is_empty() {
                            Ok(Tlv::AlertOnMessageDelivery)
                        } else {
                            Err(TlvValueError { status: CommandStatus::ESME_RINVPARLEN, field: "alert_on_message_delivery" })
                        }
                    }
                    _ => Ok(Tlv::Unknown { tag, value: frame.slice_ref(value) }),
                }
            }
        }
    };
}

tlvs! {
    integers {
        DestAddrSubunit(u8) = 0x0005, "dest_addr_subunit";
        DestNetworkType(u8) = 0x0006, "dest_network_type";
        DestBearerType(u8) = 0x0007, "dest_bearer_type";
        DestTelematicsId(u16) = 0x0008, "dest_telematics_id";
        SourceAddrSubunit(u8) = 0x000D, "source_addr_subunit";
        SourceNetworkType(u8) = 0x000E, "source_network_type";
        SourceBearerType(u8) = 0x000F, "source_bearer_type";
        SourceTelematicsId(u8) = 0x0010, "source_telematics_id";
        QosTimeToLive(u32) = 0x0017, "qos_time_to_live";
        PayloadType(u8) = 0x0019, "payload_type";
        MsMsgWaitFacilities(u8) = 0x0030, "ms_msg_wait_facilities";
        PrivacyIndicator(u8) = 0x0201, "privacy_indicator";
        UserMessageReference(u16) = 0x0204, "user_message_reference";
        UserResponseCode(u8) = 0x0205, "user_response_code";
        SourcePort(u16) = 0x020A, "source_port";
        DestinationPort(u16) = 0x020B, "destination_port";
        SarMsgRefNum(u16) = 0x020C, "sar_msg_ref_num";
        LanguageIndicator(u8) = 0x020D, "language_indicator";
        SarTotalSegments(u8) = 0x020E, "sar_total_segments";
        SarSegmentSeqnum(u8) = 0x020F, "sar_segment_seqnum";
        ScInterfaceVersion(u8) = 0x0210, "sc_interface_version";
        CallbackNumPresInd(u8) = 0x0302, "callback_num_pres_ind";
        NumberOfMessages(u8) = 0x0304, "number_of_messages";
        DpfResult(u8) = 0x0420, "dpf_result";
        SetDpf(u8) = 0x0421, "set_dpf";
        MsAvailabilityStatus(u8) = 0x0422, "ms_availability_status";
        DeliveryFailureReason(u8) = 0x0425, "delivery_failure_reason";
        MoreMessagesToSend(u8) = 0x0426, "more_messages_to_send";
        MessageState(u8) = 0x0427, "message_state";
        UssdServiceOp(u8) = 0x0501, "ussd_service_op";
        DisplayTime(u8) = 0x1201, "display_time";
        SmsSignal(u16) = 0x1203, "sms_signal";
        MsValidity(u8) = 0x1204, "ms_validity";
        ItsReplyType(u8) = 0x1380, "its_reply_type";
    }
    octets {
        SourceSubaddress = 0x0202, 2..=23, "source_subaddress";
        DestSubaddress = 0x0203, 2..=23, "dest_subaddress";
        CallbackNumAtag = 0x0303, 0..=65, "callback_num_atag";
        CallbackNum = 0x0381, 4..=19, "callback_num";
        ItsSessionInfo = 0x1383, 2..=2, "its_session_info";
    }
    cstrings {
        AdditionalStatusInfoText = 0x001D, 256, "additional_status_info_text";
        ReceiptedMessageId = 0x001E, 65, "receipted_message_id";
    }
}

/// Writes each TLV as tag, length, value (how the gateway stores a message's TLVs).
pub fn put_tlvs(tlvs: &[Tlv], dst: &mut BytesMut) -> Result<(), crate::error::EncodeError> {
    for tlv in tlvs {
        tlv.check_encodable()?;
        let len = tlv.value_len();
        let len16 = u16::try_from(len).map_err(|_| crate::error::EncodeError::TlvTooLong { tag: tlv.tag(), len })?;
        dst.put_u16(tlv.tag());
        dst.put_u16(len16);
        tlv.put_value(dst);
    }
    Ok(())
}

/// Why stored TLV octets could not be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoredTlvError {
    /// The octets end inside a tag, length or value.
    #[error("TLV stream truncated at offset {offset}")]
    Truncated { offset: usize },
    /// A value the decoder refuses (wrong length, bad C-string).
    #[error("TLV 0x{tag:04X} ({field}): {status}")]
    Value {
        tag: u16,
        field: &'static str,
        status: CommandStatus,
    },
}

/// Reads back TLVs written by [`put_tlvs`] (tag, length, value each). Values are
/// slices of `octets` (not copied).
pub fn decode_tlvs(octets: &Bytes) -> Result<Vec<Tlv>, StoredTlvError> {
    let mut tlvs = Vec::new();
    let mut rest: &[u8] = octets;
    while !rest.is_empty() {
        let offset = octets.len() - rest.len();
        let (tag, value, after) = split_tlv(rest).ok_or(StoredTlvError::Truncated { offset })?;
        let tlv = Tlv::from_value(octets, tag, value).map_err(|e| StoredTlvError::Value {
            tag,
            field: e.field,
            status: e.status,
        })?;
        tlvs.push(tlv);
        rest = after;
    }
    Ok(tlvs)
}

/// Splits the first TLV off `octets`: its tag, its value and the octets after
/// it, or `None` when they end inside the tag, length or value.
#[inline]
pub(crate) fn split_tlv(octets: &[u8]) -> Option<(u16, &[u8], &[u8])> {
    let ([t0, t1, l0, l1], rest) = octets.split_first_chunk::<4>()?;
    let len = usize::from(u16::from_be_bytes([*l0, *l1]));
    (len <= rest.len()).then(|| (u16::from_be_bytes([*t0, *t1]), &rest[..len], &rest[len..]))
}

/// Finds the first TLV a closure picks (`find_tlv(&tlvs, |t| match t { Tlv::X(v) => Some(v), _ => None })`).
pub fn find_tlv<'a, T>(tlvs: &'a [Tlv], pick: impl FnMut(&'a Tlv) -> Option<T>) -> Option<T> {
    tlvs.iter().find_map(pick)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(tag: u16, value: &'static [u8]) -> Result<Tlv, TlvValueError> {
        let frame = Bytes::from_static(value);
        Tlv::from_value(&frame, tag, &frame)
    }

    #[test]
    fn stored_tlvs_round_trip() {
        let tlvs = vec![
            Tlv::SarMsgRefNum(0x1234),
            Tlv::MessagePayload(Bytes::from_static(b"hello payload")),
            Tlv::ReceiptedMessageId(COctetString::from_checked(Bytes::from_static(b"abc"))),
        ];
        let mut buf = BytesMut::new();
        put_tlvs(&tlvs, &mut buf).unwrap();
        let octets = buf.freeze();
        assert_eq!(decode_tlvs(&octets).unwrap(), tlvs);
        assert_eq!(decode_tlvs(&Bytes::new()).unwrap(), vec![]);
        assert_eq!(
            decode_tlvs(&octets.slice(..octets.len() - 1)),
            Err(StoredTlvError::Truncated { offset: 6 + 4 + 13 })
        );
        assert_eq!(
            decode_tlvs(&Bytes::from_static(&[0x02])),
            Err(StoredTlvError::Truncated { offset: 0 })
        );
        // sar_msg_ref_num with a 3-octet value.
        assert!(matches!(
            decode_tlvs(&Bytes::from_static(&[0x02, 0x0C, 0, 3, 1, 2, 3])),
            Err(StoredTlvError::Value { tag: 0x020C, .. })
        ));
    }

    #[test]
    fn typed_values_decode_and_report_their_length() {
        assert_eq!(decode(0x020C, &[0x12, 0x34]), Ok(Tlv::SarMsgRefNum(0x1234)));
        assert_eq!(decode(0x0017, &[0, 0, 1, 0]), Ok(Tlv::QosTimeToLive(256)));
        assert_eq!(
            decode(0x0423, &[3, 0x00, 0x0B]),
            Ok(Tlv::NetworkErrorCode(NetworkErrorCode {
                network_type: 3,
                error_code: 11
            }))
        );
        let id = decode(0x001E, b"abc\0").unwrap();
        assert_eq!(id, Tlv::ReceiptedMessageId(COctetString::try_from("abc").unwrap()));
        assert_eq!(id.value_len(), 4);
        // Some SMSCs forget the NUL: accepted.
        assert_eq!(decode(0x001E, b"abc"), Ok(id));
        assert_eq!(decode(0x130C, &[]), Ok(Tlv::AlertOnMessageDelivery));
    }

    #[test]
    fn wrong_lengths_give_rinvparlen() {
        let err = decode(0x020C, &[1]).unwrap_err();
        assert_eq!(err.status, CommandStatus::ESME_RINVPARLEN);
        assert_eq!(err.field, "sar_msg_ref_num");
        assert_eq!(
            decode(0x0423, &[3, 0]).unwrap_err().status,
            CommandStatus::ESME_RINVPARLEN
        );
        assert_eq!(
            decode(0x0381, &[1, 2]).unwrap_err().status,
            CommandStatus::ESME_RINVPARLEN
        );
        assert_eq!(decode(0x130C, &[1]).unwrap_err().status, CommandStatus::ESME_RINVPARLEN);
        assert_eq!(
            decode(0x001E, b"a\0b\0").unwrap_err().status,
            CommandStatus::ESME_RINVOPTPARAMVAL
        );
    }

    #[test]
    fn unknown_tags_are_kept() {
        assert_eq!(
            decode(0x1400, &[9, 8, 7]),
            Ok(Tlv::Unknown {
                tag: 0x1400,
                value: Bytes::from_static(&[9, 8, 7])
            })
        );
    }
}
