//! Runs the malformed-input corpus in `conformance/malformed` (format described
//! in `conformance/README.md`) through `SmppCodec::default()` and checks every
//! outcome exactly: what the decoder yields for each frame, the status, and
//! the PDU the session must answer with.
//!
//! With `SMSMAX_FUZZ_SEED_DIR=<dir>` set, `write_fuzz_seeds` also writes each
//! case's octets and a set of valid PDUs there, to seed the fuzzer
//! (see `protocol/fuzz/README.md`).

use std::{
    fs,
    path::{Path, PathBuf},
};

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use smsmax_protocol::{
    decode_frame,
    pdu::{
        AlertNotification, Bind, BindResp, Body, CancelSm, DataSm, DataSmResp, DestAddress, Outbind, QuerySm,
        QuerySmResp, ReplaceSm, SubmitMulti, SubmitMultiResp, SubmitSm, SubmitSmResp, UnsuccessSme,
    },
    tlv::NetworkErrorCode,
    types::{Address, COctetString, SmppTime},
    CommandId, CommandStatus, FrameError, Pdu, PduError, SmppCodec, Tlv,
};
use tokio_util::codec::Decoder;

/// One corpus file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    description: String,
    hex: String,
    expect: Expect,
}

/// One outcome, or the outcomes of several frames in order.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expect {
    One(String),
    Sequence(Vec<String>),
}

/// What one call of `Decoder::decode` must give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `ok:<command>`: a PDU of that command.
    Ok(CommandId),
    /// `generic_nack:<STATUS>`: an error answered with generic_nack.
    GenericNack(CommandStatus),
    /// `response:<response command>:<STATUS>`: a bad request answered with its own response.
    Response(CommandId, CommandStatus),
    /// `invalid:<command>:<STATUS>`: a bad PDU that gets no answer (a response, outbind, alert_notification).
    Invalid(CommandId, CommandStatus),
    /// `incomplete`: no frame yet; the octets left wait for more.
    Incomplete,
    /// `frame_error:too_short`
    TooShort,
    /// `frame_error:too_long`
    TooLong,
}

impl Outcome {
    fn is_final(self) -> bool {
        matches!(self, Outcome::Incomplete | Outcome::TooShort | Outcome::TooLong)
    }
}

fn command_id(name: &str) -> Result<CommandId, String> {
    CommandId::ALL
        .into_iter()
        .find(|id| id.name() == name)
        .ok_or_else(|| format!("unknown command name {name:?}"))
}

fn status(name: &str) -> Result<CommandStatus, String> {
    (0..=0x1FF)
        .map(CommandStatus)
        .find(|s| s.name() == Some(name))
        .ok_or_else(|| format!("unknown status name {name:?}"))
}

fn parse_outcome(text: &str) -> Result<Outcome, String> {
    let parts: Vec<&str> = text.split(':').collect();
    Ok(match parts.as_slice() {
        ["ok", cmd] => Outcome::Ok(command_id(cmd)?),
        ["generic_nack", st] => Outcome::GenericNack(status(st)?),
        ["response", cmd, st] => {
            let id = command_id(cmd)?;
            if !id.is_response() || id == CommandId::GenericNack {
                return Err(format!("{cmd} is not the response of a request"));
            }
            Outcome::Response(id, status(st)?)
        }
        ["invalid", cmd, st] => Outcome::Invalid(command_id(cmd)?, status(st)?),
        ["incomplete"] => Outcome::Incomplete,
        ["frame_error", "too_short"] => Outcome::TooShort,
        ["frame_error", "too_long"] => Outcome::TooLong,
        _ => return Err(format!("unknown expectation {text:?}")),
    })
}

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    hex::decode(&digits).map_err(|e| format!("hex: {e}"))
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/malformed")
}

/// Every case, parsed; panics on an empty corpus or a file that does not parse.
fn load_corpus() -> Vec<(Case, Vec<u8>, Vec<Outcome>)> {
    let dir = corpus_dir();
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "{} holds no case", dir.display());
    let mut cases = Vec::new();
    for path in paths {
        let load = || -> Result<(Case, Vec<u8>, Vec<Outcome>), String> {
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                return Err("not a .toml file".into());
            }
            let text = fs::read_to_string(&path).map_err(|e| e.to_string())?;
            let case: Case = toml::from_str(&text).map_err(|e| e.to_string())?;
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            if case.name != stem {
                return Err(format!("name {:?} differs from the file name", case.name));
            }
            if case.description.trim().is_empty() {
                return Err("empty description".into());
            }
            let bytes = parse_hex(&case.hex)?;
            if bytes.is_empty() {
                return Err("no octets".into());
            }
            let texts = match &case.expect {
                Expect::One(one) => vec![one.clone()],
                Expect::Sequence(many) => many.clone(),
            };
            let outcomes = texts.iter().map(|t| parse_outcome(t)).collect::<Result<Vec<_>, _>>()?;
            match outcomes.iter().position(|o| o.is_final()) {
                _ if outcomes.is_empty() => return Err("empty expect".into()),
                Some(i) if i + 1 != outcomes.len() => {
                    return Err("incomplete / frame_error can only be the last outcome".into())
                }
                _ => {}
            }
            Ok((case, bytes, outcomes))
        };
        cases.push(load().unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    cases
}

/// Feeds `bytes` to a fresh codec and checks each outcome in turn.
fn run_case(bytes: &[u8], outcomes: &[Outcome]) -> Result<(), String> {
    let mut codec = SmppCodec::default();
    let mut buf = BytesMut::from(bytes);
    for (n, want) in outcomes.iter().enumerate() {
        let at = format!("outcome {} ({want:?})", n + 1);
        let before = buf.len();
        let header_seq = buf.get(12..16).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let got = codec.decode(&mut buf);
        match (*want, got) {
            (Outcome::Incomplete, Ok(None)) => {
                if buf.is_empty() || buf.len() != before {
                    return Err(format!("{at}: {before} octets waiting, {} left", buf.len()));
                }
                // Still waiting when asked again.
                if !matches!(codec.decode(&mut buf), Ok(None)) {
                    return Err(format!("{at}: a second decode did not wait"));
                }
            }
            (Outcome::TooShort, Err(FrameError::CommandLengthTooShort(_))) => {}
            (Outcome::TooLong, Err(FrameError::CommandLengthTooLong { .. })) => {}
            (Outcome::Ok(id), Ok(Some(Ok(pdu)))) => {
                if pdu.command_id() != id || Some(pdu.sequence_number) != header_seq {
                    return Err(format!("{at}: got {pdu:?}"));
                }
                let wire = pdu.to_bytes().map_err(|e| format!("{at}: re-encode: {e}"))?;
                let again = decode_frame(&wire).map_err(|e| format!("{at}: re-decode: {e}"))?;
                if again != pdu {
                    return Err(format!("{at}: re-decoded {again:?} != {pdu:?}"));
                }
            }
            (Outcome::GenericNack(st), Ok(Some(Err(err)))) => {
                let expected = Pdu::generic_nack(header_seq.unwrap_or_default(), st);
                if err.status() != st || err.response().as_ref() != Some(&expected) {
                    return Err(format!("{at}: got {err:?} answered with {:?}", err.response()));
                }
            }
            (Outcome::Response(id, st), Ok(Some(Err(err)))) => {
                let answer = err.response();
                let ok = matches!(err, PduError::InvalidBody { .. })
                    && err.status() == st
                    && Some(err.sequence_number()) == header_seq
                    && answer.as_ref().is_some_and(|a| {
                        a.command_id() == id && Some(a.sequence_number) == header_seq && a.command_status == st
                    });
                if !ok {
                    return Err(format!("{at}: got {err:?} answered with {answer:?}"));
                }
                answer
                    .expect("checked")
                    .to_bytes()
                    .map_err(|e| format!("{at}: the answer does not encode: {e}"))?;
            }
            (Outcome::Invalid(id, st), Ok(Some(Err(err)))) => {
                let ok = matches!(err, PduError::InvalidBody { command_id, .. } if command_id == id)
                    && err.status() == st
                    && Some(err.sequence_number()) == header_seq
                    && err.response().is_none();
                if !ok {
                    return Err(format!("{at}: got {err:?} answered with {:?}", err.response()));
                }
            }
            (_, got) => return Err(format!("{at}: got {got:?}")),
        }
    }
    if !outcomes.last().is_some_and(|o| o.is_final()) {
        // Every octet accounted for: nothing left, and the decoder waits.
        if !buf.is_empty() {
            return Err(format!("{} octets left over after the last outcome", buf.len()));
        }
        if !matches!(codec.decode(&mut buf), Ok(None)) {
            return Err("the decoder yields more than the outcomes listed".into());
        }
    }
    Ok(())
}

#[test]
fn malformed_corpus() {
    let cases = load_corpus();
    let mut failures = Vec::new();
    for (case, bytes, outcomes) in &cases {
        if let Err(e) = run_case(bytes, outcomes) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{} malformed-corpus cases passed", cases.len());
}

fn cstr<const MAX: usize>(s: &str) -> COctetString<MAX> {
    COctetString::try_from(s).expect("fits")
}

fn addr<const MAX: usize>(s: &str) -> Address<MAX> {
    Address::new(1, 1, s).expect("fits")
}

/// Valid PDUs of most commands, to seed the fuzzer with well-formed frames.
fn valid_pdus() -> Vec<Pdu> {
    let bind = Bind {
        system_id: cstr("smsmax"),
        password: cstr("secret"),
        system_type: cstr("VMA"),
        interface_version: 0x34,
        addr_ton: 1,
        addr_npi: 1,
        address_range: cstr("^4670"),
    };
    let submit = SubmitSm {
        service_type: cstr("CMT"),
        source: addr("46701234567"),
        dest: addr("46709876543"),
        registered_delivery: 1,
        schedule_delivery_time: SmppTime::try_from("260101120000004+").expect("time"),
        validity_period: SmppTime::try_from("000001000000000R").expect("time"),
        short_message: Bytes::from_static(b"Hello"),
        tlvs: vec![
            Tlv::SarMsgRefNum(7),
            Tlv::SarTotalSegments(2),
            Tlv::SarSegmentSeqnum(1),
            Tlv::Unknown {
                tag: 0x1400,
                value: Bytes::from_static(&[1, 2, 3]),
            },
        ],
        ..SubmitSm::default()
    };
    let receipt = SubmitSm {
        source: addr("46709876543"),
        dest: addr("46701234567"),
        esm_class: 0x04,
        short_message: Bytes::from_static(b"id:0A1B2C3D sub:001 dlvrd:001 stat:DELIVRD err:000"),
        tlvs: vec![
            Tlv::ReceiptedMessageId(cstr("0A1B2C3D")),
            Tlv::MessageState(2),
            Tlv::NetworkErrorCode(NetworkErrorCode {
                network_type: 3,
                error_code: 0,
            }),
        ],
        ..SubmitSm::default()
    };
    vec![
        Pdu::new(1, Body::BindTransceiver(bind.clone())),
        Pdu::new(2, Body::BindTransmitter(bind.clone())),
        Pdu::new(3, Body::BindReceiver(bind)),
        Pdu::new(
            1,
            Body::BindTransceiverResp(BindResp {
                system_id: cstr("smsc"),
                tlvs: vec![Tlv::ScInterfaceVersion(0x34)],
            }),
        ),
        Pdu::with_status(
            2,
            CommandStatus::ESME_RBINDFAIL,
            Body::empty_response(CommandId::BindTransmitterResp),
        ),
        Pdu::new(4, Body::SubmitSm(submit.clone())),
        Pdu::new(
            5,
            Body::SubmitSm(SubmitSm {
                short_message: Bytes::new(),
                tlvs: vec![Tlv::MessagePayload(Bytes::from(vec![b'x'; 300]))],
                ..submit.clone()
            }),
        ),
        Pdu::new(
            4,
            SubmitSmResp {
                message_id: cstr("0A1B2C3D"),
            },
        ),
        Pdu::with_status(
            4,
            CommandStatus::ESME_RTHROTTLED,
            Body::empty_response(CommandId::SubmitSmResp),
        ),
        Pdu::new(6, Body::DeliverSm(receipt)),
        Pdu::new(6, Body::DeliverSmResp(SubmitSmResp::default())),
        Pdu::new(
            7,
            SubmitMulti {
                service_type: cstr(""),
                source: addr("46701234567"),
                dest_addresses: vec![
                    DestAddress::SmeAddress(addr("46709876543")),
                    DestAddress::DistributionList(cstr("friends")),
                ],
                short_message: Bytes::from_static(b"Hi all"),
                ..SubmitMulti::default()
            },
        ),
        Pdu::new(
            7,
            SubmitMultiResp {
                message_id: cstr("m1"),
                unsuccess_smes: vec![UnsuccessSme {
                    address: addr("46709876543"),
                    error_status_code: CommandStatus::ESME_RINVDSTADR,
                }],
            },
        ),
        Pdu::new(
            8,
            DataSm {
                service_type: cstr("WAP"),
                source: Address::new(5, 0, "smsmax-alphanumeric-sender").expect("fits"),
                dest: addr("46709876543"),
                tlvs: vec![
                    Tlv::MessagePayload(Bytes::from_static(b"payload")),
                    Tlv::SourcePort(9200),
                    Tlv::DestinationPort(2948),
                ],
                ..DataSm::default()
            },
        ),
        Pdu::new(
            8,
            DataSmResp {
                message_id: cstr("d1"),
                tlvs: vec![Tlv::AdditionalStatusInfoText(cstr("queued"))],
            },
        ),
        Pdu::new(
            9,
            QuerySm {
                message_id: cstr("0A1B2C3D"),
                source: addr("46701234567"),
            },
        ),
        Pdu::new(
            9,
            QuerySmResp {
                message_id: cstr("0A1B2C3D"),
                final_date: SmppTime::try_from("260101120000004+").expect("time"),
                message_state: 2,
                error_code: 0,
            },
        ),
        Pdu::new(
            10,
            CancelSm {
                service_type: cstr(""),
                message_id: cstr("0A1B2C3D"),
                source: addr("46701234567"),
                dest: addr("46709876543"),
            },
        ),
        Pdu::new(10, Body::CancelSmResp),
        Pdu::new(
            11,
            ReplaceSm {
                message_id: cstr("0A1B2C3D"),
                source: addr("46701234567"),
                short_message: Bytes::from_static(b"Replaced"),
                ..ReplaceSm::default()
            },
        ),
        Pdu::new(11, Body::ReplaceSmResp),
        Pdu::new(
            12,
            Outbind {
                system_id: cstr("smsc"),
                password: cstr("pw"),
            },
        ),
        Pdu::new(
            13,
            AlertNotification {
                source: addr("46709876543"),
                esme: addr("46701234567"),
                tlvs: vec![Tlv::MsAvailabilityStatus(0)],
            },
        ),
        Pdu::new(14, Body::EnquireLink),
        Pdu::new(14, Body::EnquireLinkResp),
        Pdu::new(15, Body::Unbind),
        Pdu::new(15, Body::UnbindResp),
        Pdu::generic_nack(16, CommandStatus::ESME_RINVCMDID),
    ]
}

#[test]
fn valid_pdus_pass_the_codec() {
    let mut codec = SmppCodec::default();
    for pdu in valid_pdus() {
        let mut buf = BytesMut::from(&pdu.to_bytes().expect("encodes")[..]);
        let decoded = codec
            .decode(&mut buf)
            .expect("framed")
            .expect("whole")
            .expect("decodes");
        assert_eq!(decoded, pdu);
        assert!(buf.is_empty());
    }
}

/// Writes fuzz seeds when `SMSMAX_FUZZ_SEED_DIR` is set; does nothing otherwise.
#[test]
fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("SMSMAX_FUZZ_SEED_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    fs::create_dir_all(&dir).expect("seed directory");
    for (case, bytes, _) in load_corpus() {
        fs::write(dir.join(format!("malformed-{}", case.name)), bytes).expect("write seed");
    }
    let pdus = valid_pdus();
    let mut stream = Vec::new();
    for pdu in &pdus {
        let wire = pdu.to_bytes().expect("encodes");
        stream.extend_from_slice(&wire);
        let name = format!("valid-{}-{}", pdu.command_id().name(), pdu.sequence_number);
        fs::write(dir.join(name), &wire).expect("write seed");
    }
    // All valid PDUs back to back, as one read of a busy session.
    fs::write(dir.join("valid-stream"), stream).expect("write seed");
}
