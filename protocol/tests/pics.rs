//! Keeps conformance/PICS.md true on the codec side: every SMPP 3.4
//! operation and TLV is listed once, with the right code, and the codec
//! supports each one.

use std::collections::HashSet;

use bytes::Bytes;
use smsmax_protocol::{
    decode_frame,
    pdu::{Pdu, SubmitSm},
    Body, CommandId, Tlv,
};

fn pics() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../conformance/PICS.md");
    std::fs::read_to_string(path).expect("conformance/PICS.md exists")
}

/// Rows of the table that follows `heading`: cells without the outer pipes.
fn rows(text: &str, heading: &str) -> Vec<Vec<String>> {
    let section = text.split(heading).nth(1).expect("section present");
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

fn hex(cell: &str) -> u32 {
    u32::from_str_radix(cell.trim_start_matches("0x"), 16).expect("hex code")
}

#[test]
fn every_operation_is_listed_once_with_its_command_id() {
    let rows = rows(&pics(), "## Operations");
    let mut listed = HashSet::new();
    for row in &rows {
        let id = CommandId::from_u32(hex(&row[1])).unwrap_or_else(|| panic!("unknown command_id in {row:?}"));
        assert_eq!(id.name(), row[0], "name matches command_id");
        assert_eq!(row[2], "yes", "codec column of {}", row[0]);
        assert!(listed.insert(id), "{} listed twice", row[0]);
    }
    for id in CommandId::ALL {
        assert!(listed.contains(&id), "{} missing from PICS.md", id.name());
    }
}

#[test]
fn every_tlv_is_listed_once_and_decodes_to_its_typed_value() {
    let rows = rows(&pics(), "## Optional parameters (TLVs)");
    assert_eq!(rows.len(), 44, "SMPP 3.4 defines 44 TLVs");
    let mut listed = HashSet::new();
    for row in &rows {
        let tag = hex(&row[1]) as u16;
        assert!(listed.insert(tag), "{} listed twice", row[0]);
        assert_eq!(row[2], "yes");
        // Send the tag with values of every plausible length: at least one
        // must decode to the typed TLV of that name (not `Unknown`).
        let typed = (0..=4usize).find_map(|len| {
            let value = if row[0] == "receipted_message_id" || row[0] == "additional_status_info_text" {
                Bytes::from_static(b"ab\0")
            } else {
                Bytes::from(vec![0x31; len])
            };
            let sm = SubmitSm {
                dest: smsmax_protocol::types::Address::new(1, 1, "1").unwrap(),
                tlvs: vec![Tlv::Unknown { tag, value }],
                ..SubmitSm::default()
            };
            let wire = Pdu::new(1, Body::SubmitSm(sm)).to_bytes().ok()?;
            match decode_frame(&wire).ok()?.body {
                Body::SubmitSm(sm) => sm.tlvs.into_iter().next().filter(|t| !matches!(t, Tlv::Unknown { .. })),
                _ => None,
            }
        });
        let typed = typed.unwrap_or_else(|| panic!("{} ({tag:#06x}) is not decoded as a typed TLV", row[0]));
        assert_eq!(typed.name(), Some(row[0].as_str()));
        assert_eq!(typed.tag(), tag);
    }
}
