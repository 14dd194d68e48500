//! Runs arbitrary octets through the `SmppCodec` decoder loop, as a session
//! reading a socket would. Every PDU that decodes must re-encode, decode again
//! to an equal PDU, and re-encode to the same octets; every decode error must
//! yield an answer (or none) that itself encodes and decodes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use smsmax_protocol::{decode_frame, SmppCodec};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = SmppCodec::default();
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match codec.decode(&mut buf) {
            Ok(Some(Ok(pdu))) => {
                assert!(buf.len() < before, "a decoded frame must consume octets");
                let wire = pdu.to_bytes().expect("a decoded PDU must re-encode");
                // decode_frame rather than the codec: a PDU at the codec's
                // maximum may legitimately grow (a NUL-less C-string TLV gets
                // its NUL back), and the codec would refuse it for its length.
                let again = decode_frame(&wire).expect("a re-encoded PDU must decode");
                assert_eq!(again, pdu, "decode(encode(pdu)) != pdu");
                assert_eq!(again.to_bytes().expect("re-encode"), wire, "encoding is not stable");
            }
            Ok(Some(Err(err))) => {
                assert!(buf.len() < before, "a rejected frame must consume octets");
                if let Some(answer) = err.response() {
                    assert_eq!(answer.sequence_number, err.sequence_number());
                    assert_eq!(answer.command_status, err.status());
                    let wire = answer.to_bytes().expect("the answer must encode");
                    assert_eq!(decode_frame(&wire).expect("the answer must decode"), answer);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
});
