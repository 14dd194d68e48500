//! The encoder: a [`Pdu`] straight into a `BytesMut`.
//!
//! The header is written with a zero `command_length`, the body after it,
//! and the length patched in at the end, so nothing is allocated besides
//! the growth of the caller's buffer (which a session reuses).

use bytes::{BufMut, BytesMut};

use crate::{
    error::EncodeError,
    pdu::*,
    tlv::{put_tlvs, Tlv},
    types::{Address, COctetString, SmppTime},
};

impl Pdu {
    /// Appends the encoded PDU to `dst`. On error `dst` is left as it was.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let start = dst.len();
        dst.reserve(HEADER_LEN + self.body.size_hint());
        dst.put_u32(0);
        dst.put_u32(self.command_id().as_u32());
        dst.put_u32(self.command_status.0);
        dst.put_u32(self.sequence_number);
        let omit_body =
            self.command_id().is_response() && !self.command_status.is_ok() && self.body.is_empty_response();
        if !omit_body {
            if let Err(e) = self.body.put(dst) {
                dst.truncate(start);
                return Err(e);
            }
        }
        let len = dst.len() - start;
        let Ok(len32) = u32::try_from(len) else {
            dst.truncate(start);
            return Err(EncodeError::TooLarge(len));
        };
        dst[start..start + 4].copy_from_slice(&len32.to_be_bytes());
        Ok(())
    }

    /// The PDU as a fresh buffer (tests and tools; the hot path reuses one).
    pub fn to_bytes(&self) -> Result<bytes::Bytes, EncodeError> {
        let mut buf = BytesMut::new();
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

fn put_cstr<const MAX: usize>(dst: &mut BytesMut, value: &COctetString<MAX>) {
    dst.put_slice(value.as_bytes());
    dst.put_u8(0);
}

fn put_time(dst: &mut BytesMut, value: &SmppTime) {
    dst.put_slice(value.as_bytes());
    dst.put_u8(0);
}

fn put_address<const MAX: usize>(dst: &mut BytesMut, value: &Address<MAX>) {
    dst.put_u8(value.ton);
    dst.put_u8(value.npi);
    put_cstr(dst, &value.addr);
}

fn put_short_message(dst: &mut BytesMut, short_message: &[u8], tlvs: &[Tlv]) -> Result<(), EncodeError> {
    let sm_length = u8::try_from(short_message.len())
        .ok()
        .filter(|len| *len <= 254)
        .ok_or(EncodeError::ShortMessageTooLong(short_message.len()))?;
    let payload_tag = crate::tlv::tag::MessagePayload;
    if sm_length > 0
        && tlvs.iter().any(|t| {
            matches!(t, Tlv::MessagePayload(_)) || matches!(t, Tlv::Unknown { tag, .. } if *tag == payload_tag)
        })
    {
        return Err(EncodeError::ShortMessageAndPayload);
    }
    dst.put_u8(sm_length);
    dst.put_slice(short_message);
    Ok(())
}

fn tlvs_len(tlvs: &[Tlv]) -> usize {
    tlvs.iter().map(|t| 4 + t.value_len()).sum()
}

impl Body {
    /// Roughly the body's encoded size, to reserve once.
    fn size_hint(&self) -> usize {
        match self {
            Body::SubmitSm(sm) | Body::DeliverSm(sm) => 96 + sm.short_message.len() + tlvs_len(&sm.tlvs),
            Body::SubmitMulti(sm) => 64 + sm.dest_addresses.len() * 24 + sm.short_message.len() + tlvs_len(&sm.tlvs),
            Body::SubmitMultiResp(r) => 66 + r.unsuccess_smes.len() * 28,
            Body::DataSm(d) => 160 + tlvs_len(&d.tlvs),
            Body::DataSmResp(r) => 66 + tlvs_len(&r.tlvs),
            Body::AlertNotification(a) => 140 + tlvs_len(&a.tlvs),
            Body::ReplaceSm(r) => 128 + r.short_message.len(),
            _ => 96,
        }
    }

    /// `true` when every field is empty: the body an error response may omit.
    fn is_empty_response(&self) -> bool {
        match self {
            Body::BindReceiverResp(r) | Body::BindTransmitterResp(r) | Body::BindTransceiverResp(r) => {
                r.system_id.is_empty() && r.tlvs.is_empty()
            }
            Body::SubmitSmResp(r) | Body::DeliverSmResp(r) => r.message_id.is_empty(),
            Body::DataSmResp(r) => r.message_id.is_empty() && r.tlvs.is_empty(),
            Body::SubmitMultiResp(r) => r.message_id.is_empty() && r.unsuccess_smes.is_empty(),
            Body::QuerySmResp(r) => *r == QuerySmResp::default(),
            _ => false,
        }
    }

    fn put(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Body::GenericNack
            | Body::Unbind
            | Body::UnbindResp
            | Body::EnquireLink
            | Body::EnquireLinkResp
            | Body::ReplaceSmResp
            | Body::CancelSmResp => {}
            Body::BindReceiver(b) | Body::BindTransmitter(b) | Body::BindTransceiver(b) => {
                put_cstr(dst, &b.system_id);
                put_cstr(dst, &b.password);
                put_cstr(dst, &b.system_type);
                dst.put_u8(b.interface_version);
                dst.put_u8(b.addr_ton);
                dst.put_u8(b.addr_npi);
                put_cstr(dst, &b.address_range);
            }
            Body::BindReceiverResp(r) | Body::BindTransmitterResp(r) | Body::BindTransceiverResp(r) => {
                put_cstr(dst, &r.system_id);
                put_tlvs(&r.tlvs, dst)?;
            }
            Body::Outbind(o) => {
                put_cstr(dst, &o.system_id);
                put_cstr(dst, &o.password);
            }
            Body::SubmitSm(sm) | Body::DeliverSm(sm) => {
                put_cstr(dst, &sm.service_type);
                put_address(dst, &sm.source);
                put_address(dst, &sm.dest);
                dst.put_u8(sm.esm_class);
                dst.put_u8(sm.protocol_id);
                dst.put_u8(sm.priority_flag);
                put_time(dst, &sm.schedule_delivery_time);
                put_time(dst, &sm.validity_period);
                dst.put_u8(sm.registered_delivery);
                dst.put_u8(sm.replace_if_present_flag);
                dst.put_u8(sm.data_coding);
                dst.put_u8(sm.sm_default_msg_id);
                put_short_message(dst, &sm.short_message, &sm.tlvs)?;
                put_tlvs(&sm.tlvs, dst)?;
            }
            Body::SubmitSmResp(r) | Body::DeliverSmResp(r) => put_cstr(dst, &r.message_id),
            Body::SubmitMulti(sm) => {
                let count = sm.dest_addresses.len();
                let number_of_dests = u8::try_from(count)
                    .ok()
                    .filter(|n| (1..=254).contains(n))
                    .ok_or(EncodeError::DestinationCount(count))?;
                put_cstr(dst, &sm.service_type);
                put_address(dst, &sm.source);
                dst.put_u8(number_of_dests);
                for dest in &sm.dest_addresses {
                    match dest {
                        DestAddress::SmeAddress(a) => {
                            dst.put_u8(1);
                            put_address(dst, a);
                        }
                        DestAddress::DistributionList(name) => {
                            dst.put_u8(2);
                            put_cstr(dst, name);
                        }
                    }
                }
                dst.put_u8(sm.esm_class);
                dst.put_u8(sm.protocol_id);
                dst.put_u8(sm.priority_flag);
                put_time(dst, &sm.schedule_delivery_time);
                put_time(dst, &sm.validity_period);
                dst.put_u8(sm.registered_delivery);
                dst.put_u8(sm.replace_if_present_flag);
                dst.put_u8(sm.data_coding);
                dst.put_u8(sm.sm_default_msg_id);
                put_short_message(dst, &sm.short_message, &sm.tlvs)?;
                put_tlvs(&sm.tlvs, dst)?;
            }
            Body::SubmitMultiResp(r) => {
                let count = r.unsuccess_smes.len();
                let no_unsuccess = u8::try_from(count).map_err(|_| EncodeError::TooManyUnsuccessful(count))?;
                put_cstr(dst, &r.message_id);
                dst.put_u8(no_unsuccess);
                for sme in &r.unsuccess_smes {
                    put_address(dst, &sme.address);
                    dst.put_u32(sme.error_status_code.0);
                }
            }
            Body::DataSm(d) => {
                put_cstr(dst, &d.service_type);
                put_address(dst, &d.source);
                put_address(dst, &d.dest);
                dst.put_u8(d.esm_class);
                dst.put_u8(d.registered_delivery);
                dst.put_u8(d.data_coding);
                put_tlvs(&d.tlvs, dst)?;
            }
            Body::DataSmResp(r) => {
                put_cstr(dst, &r.message_id);
                put_tlvs(&r.tlvs, dst)?;
            }
            Body::QuerySm(q) => {
                put_cstr(dst, &q.message_id);
                put_address(dst, &q.source);
            }
            Body::QuerySmResp(r) => {
                put_cstr(dst, &r.message_id);
                put_time(dst, &r.final_date);
                dst.put_u8(r.message_state);
                dst.put_u8(r.error_code);
            }
            Body::CancelSm(c) => {
                put_cstr(dst, &c.service_type);
                put_cstr(dst, &c.message_id);
                put_address(dst, &c.source);
                put_address(dst, &c.dest);
            }
            Body::ReplaceSm(r) => {
                put_cstr(dst, &r.message_id);
                put_address(dst, &r.source);
                put_time(dst, &r.schedule_delivery_time);
                put_time(dst, &r.validity_period);
                dst.put_u8(r.registered_delivery);
                dst.put_u8(r.sm_default_msg_id);
                put_short_message(dst, &r.short_message, &[])?;
            }
            Body::AlertNotification(a) => {
                put_address(dst, &a.source);
                put_address(dst, &a.esme);
                put_tlvs(&a.tlvs, dst)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::{error::EncodeError, pdu::SubmitSm, tlv::Tlv, Body, Pdu};

    fn encode_with(tlvs: Vec<Tlv>, short_message: &'static [u8]) -> Result<Bytes, EncodeError> {
        let sm = SubmitSm {
            short_message: Bytes::from_static(short_message),
            tlvs,
            ..SubmitSm::default()
        };
        Pdu::new(1, Body::SubmitSm(sm)).to_bytes()
    }

    #[test]
    fn tlv_values_the_decoder_would_refuse_are_not_written() {
        assert_eq!(
            encode_with(vec![Tlv::ItsSessionInfo(Bytes::from_static(&[1]))], b""),
            Err(EncodeError::InvalidTlv { tag: 0x1383, len: 1 })
        );
        assert_eq!(
            encode_with(vec![Tlv::CallbackNum(Bytes::new())], b""),
            Err(EncodeError::InvalidTlv { tag: 0x0381, len: 0 })
        );
        let short_ref = Tlv::Unknown {
            tag: 0x020C,
            value: Bytes::from_static(&[1]),
        };
        assert_eq!(
            encode_with(vec![short_ref], b""),
            Err(EncodeError::InvalidTlv { tag: 0x020C, len: 1 })
        );
        let payload = Tlv::Unknown {
            tag: 0x0424,
            value: Bytes::from_static(b"x"),
        };
        assert_eq!(
            encode_with(vec![payload], b"hi"),
            Err(EncodeError::ShortMessageAndPayload)
        );
        // A vendor tag and a well-formed known tag sent as Unknown are fine.
        let vendor = Tlv::Unknown {
            tag: 0x1400,
            value: Bytes::from_static(&[1]),
        };
        let known = Tlv::Unknown {
            tag: 0x020C,
            value: Bytes::from_static(&[0, 1]),
        };
        assert!(encode_with(vec![vendor, known], b"hi").is_ok());
    }
}
