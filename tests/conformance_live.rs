//! The conformance material against a live gateway over TCP:
//!
//! - every case of the malformed-input corpus (`conformance/malformed`) gets
//!   the right answer or a clean close, while a session bound alongside
//!   keeps working throughout;
//! - every operation conformance/PICS.md marks `yes` on the SMSC side is
//!   served, and every one marked `refused` gets generic_nack ESME_RINVCMDID.

mod common;

use std::time::Duration;

use common::{connect, hex, Esme, PASSWORD};
use futures::StreamExt;
use smsmax_protocol::{
    pdu::{Bind, CancelSm, DataSm, QuerySm, ReplaceSm, SubmitMulti, SubmitSm},
    types::Address,
    Body, CommandId, CommandStatus, Pdu,
};
use tokio::net::TcpStream;

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    hex: String,
    expect: Expect,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Expect {
    One(String),
    Many(Vec<String>),
}

fn corpus() -> Vec<Case> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/malformed");
    let mut cases: Vec<Case> = std::fs::read_dir(dir)
        .expect("corpus directory")
        .map(|entry| {
            let path = entry.unwrap().path();
            toml::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect();
    assert!(cases.len() >= 40, "the corpus is there");
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// What arrived within `wait`: a PDU, a close, or nothing.
#[derive(Debug)]
enum Heard {
    Pdu(Box<Pdu>),
    Closed,
    Nothing,
}

async fn listen(esme: &mut Esme<TcpStream>, wait: Duration) -> Heard {
    match tokio::time::timeout(wait, esme.framed.next()).await {
        Ok(Some(Ok(Ok(pdu)))) => Heard::Pdu(Box::new(pdu)),
        Ok(Some(Ok(Err(e)))) => panic!("the gateway sent a malformed PDU: {e}"),
        Ok(Some(Err(_)) | None) => Heard::Closed,
        Err(_) => Heard::Nothing,
    }
}

fn command_by_name(name: &str) -> CommandId {
    CommandId::ALL
        .into_iter()
        .find(|id| id.name() == name)
        .unwrap_or_else(|| panic!("unknown command {name}"))
}

fn status_by_name(name: &str) -> CommandStatus {
    (0..=0x1FFu32)
        .map(CommandStatus)
        .find(|s| s.name() == Some(name))
        .unwrap_or_else(|| panic!("unknown status {name}"))
}

async fn bound(addr: std::net::SocketAddr) -> Esme<TcpStream> {
    let mut esme = connect(addr).await;
    assert_eq!(
        esme.bind("transceiver", "alice", PASSWORD).await,
        CommandStatus::ESME_ROK
    );
    esme
}

async fn bystander_still_works(bystander: &mut Esme<TcpStream>, case: &str) {
    let resp = bystander.call(Body::EnquireLink).await;
    assert_eq!(resp.command_id(), CommandId::EnquireLinkResp, "bystander after {case}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_corpus_against_a_live_gateway() {
    let gw = common::start("").await;
    let mut bystander = bound(gw.addr).await;
    let quiet = Duration::from_millis(150);
    for case in corpus() {
        let expectations = match &case.expect {
            Expect::One(e) => vec![e.clone()],
            Expect::Many(v) => v.clone(),
        };
        let mut esme = bound(gw.addr).await;
        esme.send_raw(&hex(&case.hex)).await;
        let mut open = true;
        let mut partial_frame_pending = false;
        for expect in &expectations {
            let parts: Vec<&str> = expect.split(':').collect();
            let what = format!("{}: {expect}", case.name);
            match parts.as_slice() {
                ["response", command, status] => match listen(&mut esme, Duration::from_secs(5)).await {
                    Heard::Pdu(pdu) => {
                        let status = status_by_name(status);
                        // A body too short for its fields is answered with
                        // generic_nack where the codec says so.
                        assert!(
                            pdu.command_id() == command_by_name(command) || pdu.command_id() == CommandId::GenericNack,
                            "{what}: got {pdu:?}"
                        );
                        assert_eq!(pdu.command_status, status, "{what}");
                    }
                    other => panic!("{what}: got {other:?}"),
                },
                ["generic_nack", status] => match listen(&mut esme, Duration::from_secs(5)).await {
                    Heard::Pdu(pdu) => {
                        assert_eq!(pdu.command_id(), CommandId::GenericNack, "{what}");
                        assert_eq!(pdu.command_status, status_by_name(status), "{what}");
                    }
                    other => panic!("{what}: got {other:?}"),
                },
                ["ok", command] => {
                    let id = command_by_name(command);
                    let refused = matches!(
                        id,
                        CommandId::DeliverSm | CommandId::Outbind | CommandId::AlertNotification
                    );
                    if refused {
                        match listen(&mut esme, Duration::from_secs(5)).await {
                            Heard::Pdu(pdu) => {
                                assert_eq!(pdu.command_id(), CommandId::GenericNack, "{what}");
                                assert_eq!(pdu.command_status, CommandStatus::ESME_RINVCMDID, "{what}");
                            }
                            other => panic!("{what}: got {other:?}"),
                        }
                    } else if let Some(response) = id.response() {
                        match listen(&mut esme, Duration::from_secs(5)).await {
                            Heard::Pdu(pdu) => assert_eq!(pdu.command_id(), response, "{what}"),
                            other => panic!("{what}: got {other:?}"),
                        }
                    } else {
                        // A response (to nothing we sent): no answer.
                        assert!(matches!(listen(&mut esme, quiet).await, Heard::Nothing), "{what}");
                    }
                }
                ["invalid", ..] => {
                    assert!(matches!(listen(&mut esme, quiet).await, Heard::Nothing), "{what}");
                }
                ["incomplete"] => {
                    assert!(matches!(listen(&mut esme, quiet).await, Heard::Nothing), "{what}");
                    partial_frame_pending = true;
                }
                ["frame_error", _] => {
                    match listen(&mut esme, Duration::from_secs(5)).await {
                        Heard::Pdu(pdu) => {
                            assert_eq!(pdu.command_id(), CommandId::GenericNack, "{what}");
                            assert_eq!(pdu.command_status, CommandStatus::ESME_RINVCMDLEN, "{what}");
                            assert!(
                                matches!(listen(&mut esme, Duration::from_secs(5)).await, Heard::Closed),
                                "{what}: closed after the nack"
                            );
                        }
                        Heard::Closed => {}
                        Heard::Nothing => panic!("{what}: the connection stayed open"),
                    }
                    open = false;
                }
                _ => panic!("{what}: unknown expectation"),
            }
        }
        if open && !partial_frame_pending {
            // The case's own session is still in step.
            let resp = esme.call(Body::EnquireLink).await;
            assert_eq!(
                resp.command_id(),
                CommandId::EnquireLinkResp,
                "{} still in step",
                case.name
            );
        }
        drop(esme);
        bystander_still_works(&mut bystander, &case.name).await;
    }
    gw.running.stop().await.unwrap();
}

/// A minimal valid request for each operation.
fn request(id: CommandId) -> Option<Body> {
    let addr = |a: &str| Address::new(1, 1, a).unwrap();
    let sm = SubmitSm {
        source: addr("447700900001"),
        dest: addr("447700900002"),
        short_message: bytes::Bytes::from_static(b"pics"),
        ..SubmitSm::default()
    };
    let bind = Bind {
        system_id: "alice".try_into().unwrap(),
        password: PASSWORD.try_into().unwrap(),
        interface_version: 0x34,
        ..Bind::default()
    };
    Some(match id {
        CommandId::BindTransmitter => Body::BindTransmitter(bind),
        CommandId::BindReceiver => Body::BindReceiver(bind),
        CommandId::BindTransceiver => Body::BindTransceiver(bind),
        CommandId::Outbind => Body::Outbind(Default::default()),
        CommandId::Unbind => Body::Unbind,
        CommandId::SubmitSm => Body::SubmitSm(sm),
        CommandId::SubmitMulti => Body::SubmitMulti(SubmitMulti {
            source: sm.source.clone(),
            dest_addresses: vec![smsmax_protocol::pdu::DestAddress::SmeAddress(addr("447700900003"))],
            short_message: sm.short_message.clone(),
            ..SubmitMulti::default()
        }),
        CommandId::DataSm => Body::DataSm(DataSm {
            source: Address::new(1, 1, "447700900001").unwrap(),
            dest: Address::new(1, 1, "447700900002").unwrap(),
            tlvs: vec![smsmax_protocol::Tlv::MessagePayload(bytes::Bytes::from_static(b"pics"))],
            ..DataSm::default()
        }),
        CommandId::DeliverSm => Body::DeliverSm(sm),
        CommandId::QuerySm => Body::QuerySm(QuerySm {
            message_id: "unknown".try_into().unwrap(),
            ..QuerySm::default()
        }),
        CommandId::CancelSm => Body::CancelSm(CancelSm {
            message_id: "unknown".try_into().unwrap(),
            ..CancelSm::default()
        }),
        CommandId::ReplaceSm => Body::ReplaceSm(ReplaceSm {
            message_id: "unknown".try_into().unwrap(),
            ..ReplaceSm::default()
        }),
        CommandId::EnquireLink => Body::EnquireLink,
        CommandId::AlertNotification => Body::AlertNotification(Default::default()),
        _ => return None,
    })
}

#[tokio::test]
async fn pics_smsc_column_matches_the_live_gateway() {
    let pics = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/PICS.md")).unwrap();
    let table = pics.split("## Operations").nth(1).unwrap();
    let rows: Vec<Vec<String>> = table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    let gw = common::start("").await;
    let mut checked = 0;
    for row in rows {
        let id = command_by_name(&row[0]);
        let smsc = row[3].as_str();
        if id.is_response() {
            assert!(
                matches!(smsc, "sent" | "accepted"),
                "{}: a response is sent or accepted",
                row[0]
            );
            continue;
        }
        let body = request(id).unwrap_or_else(|| panic!("no request built for {}", row[0]));
        // Binds are tried on a fresh connection; everything else on a bound one.
        let mut esme = if matches!(
            body,
            Body::BindTransmitter(_) | Body::BindReceiver(_) | Body::BindTransceiver(_)
        ) {
            connect(gw.addr).await
        } else {
            bound(gw.addr).await
        };
        let resp = esme.call(body).await;
        match smsc {
            "yes" => {
                assert_eq!(Some(resp.command_id()), id.response(), "{} is served", row[0]);
                assert_ne!(resp.command_status, CommandStatus::ESME_RINVCMDID, "{}", row[0]);
            }
            "refused" => {
                assert_eq!(resp.command_id(), CommandId::GenericNack, "{} is refused", row[0]);
                assert_eq!(resp.command_status, CommandStatus::ESME_RINVCMDID, "{}", row[0]);
            }
            other => panic!("{}: unknown SMSC-side value {other}", row[0]),
        }
        checked += 1;
    }
    assert_eq!(checked, 14, "every request operation checked");
    gw.running.stop().await.unwrap();
}
