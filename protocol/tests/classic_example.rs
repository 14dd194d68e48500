//! The widely published 60-octet submit_sm example (sequence 5, "555" to
//! "555555555", "Hello wikipedia"), laid out field by field after the
//! SMPP 3.4 submit_sm table (section 4.4.1).

use bytes::Bytes;
use smsmax_protocol::{decode_frame, Body, CommandStatus};

const SUBMIT_SM: &str = "0000003C000000040000000000000005\
                         00\
                         0208 35353500\
                         0101 35353535353535353500\
                         00 00 00 00 00\
                         00 00 00 00\
                         0F 48656C6C6F2077696B697065646961";

#[test]
fn decodes_and_re_encodes_byte_for_byte() {
    let wire = Bytes::from(hex::decode(SUBMIT_SM.replace(' ', "")).unwrap());
    let pdu = decode_frame(&wire).unwrap();
    assert_eq!(pdu.sequence_number, 5);
    assert_eq!(pdu.command_status, CommandStatus::ESME_ROK);
    let Body::SubmitSm(sm) = &pdu.body else {
        panic!("not a submit_sm: {pdu:?}")
    };
    assert_eq!(
        (sm.source.ton, sm.source.npi, sm.source.addr.as_str()),
        (2, 8, Some("555"))
    );
    assert_eq!(
        (sm.dest.ton, sm.dest.npi, sm.dest.addr.as_str()),
        (1, 1, Some("555555555"))
    );
    assert_eq!(&sm.short_message[..], b"Hello wikipedia");
    assert!(sm.tlvs.is_empty());
    assert_eq!(pdu.to_bytes().unwrap(), wire);
}
