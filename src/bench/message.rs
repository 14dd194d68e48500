//! The messages the load generator sends: a mix of GSM 7-bit, UCS-2 and
//! long (3-part, UDH-concatenated) texts, each carrying the run id and a
//! unique message number so that an SMSC simulator can detect loss and
//! duplicates.
//!
//! Every text starts `SMSMax bench <run> #<n> ` (run: 8 hex digits, n:
//! decimal from 1). A long message carries it in its first part; its parts
//! share the UDH reference `n mod 256`.

use std::{fmt, str::FromStr};

use bytes::Bytes;
use smsmax_protocol::{
    concat::{self, ConcatMethod},
    pdu::SubmitSm,
    text::TextEncoding,
    types::{esm_class, registered_delivery, Address},
};

/// One kind of message in the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One part, GSM 7-bit.
    Gsm,
    /// One part, UCS-2.
    Ucs2,
    /// Three parts, GSM 7-bit, concatenated with an 8-bit-reference UDH.
    Long,
}

/// Shares of each kind, as weights (`gsm=80,ucs2=10,long=10`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mix {
    pub gsm: u32,
    pub ucs2: u32,
    pub long: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            gsm: 100,
            ucs2: 0,
            long: 0,
        }
    }
}

impl Mix {
    fn total(&self) -> u64 {
        u64::from(self.gsm) + u64::from(self.ucs2) + u64::from(self.long)
    }

    /// The kind of message number `n`: deterministic, spread evenly, in
    /// the proportions of the weights.
    pub fn pick(&self, n: u64) -> Kind {
        let total = self.total().max(1);
        // A multiplicative hash spreads the kinds instead of sending them in blocks.
        let slot = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % total;
        if slot < u64::from(self.gsm) {
            Kind::Gsm
        } else if slot < u64::from(self.gsm) + u64::from(self.ucs2) {
            Kind::Ucs2
        } else {
            Kind::Long
        }
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut mix = Mix {
            gsm: 0,
            ucs2: 0,
            long: 0,
        };
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, weight) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected KIND=WEIGHT, e.g. gsm=80"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("`{item}`: the weight must be a whole number"))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "gsm" | "gsm7" => mix.gsm = weight,
                "ucs2" => mix.ucs2 = weight,
                "long" => mix.long = weight,
                other => return Err(format!("unknown message kind `{other}` (gsm, ucs2, long)")),
            }
        }
        if mix.total() == 0 {
            return Err("the mix has no message kind with a weight above 0".to_string());
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gsm={},ucs2={},long={}", self.gsm, self.ucs2, self.long)
    }
}

/// Fields every submit_sm of a run shares.
#[derive(Clone, Debug)]
pub struct Template {
    pub run: u32,
    pub source: Address<21>,
    /// Destination: this prefix followed by digits of the message number.
    pub dest_prefix: String,
    pub receipts: bool,
}

const FILLER: &str = "The quick brown fox jumps over the lazy dog. ";
/// GSM septets of a long message: three parts of at most 153.
const LONG_SEPTETS: usize = 420;

impl Template {
    /// The text of message `n`.
    pub fn text(&self, kind: Kind, n: u64) -> String {
        let head = format!("SMSMax bench {:08x} #{n} ", self.run);
        match kind {
            Kind::Gsm => format!("{head}GSM 7-bit load test message"),
            Kind::Ucs2 => format!("{head}UCS-2 Привет мир 你好"),
            Kind::Long => {
                let mut text = head;
                while text.len() < LONG_SEPTETS {
                    text.push_str(FILLER);
                }
                text.truncate(LONG_SEPTETS);
                text
            }
        }
    }

    fn dest(&self, n: u64) -> Address<21> {
        // Up to 15 digits in all (E.164); the number's low digits fill the rest.
        let room = 15usize.saturating_sub(self.dest_prefix.len()).clamp(1, 8);
        let modulus = 10u64.pow(room as u32);
        let addr = format!("{}{:0width$}", self.dest_prefix, n % modulus, width = room);
        Address::new(1, 1, &addr).unwrap_or_default()
    }

    /// The submit_sm PDUs of message `n`, in the order they must be sent.
    pub fn parts(&self, kind: Kind, n: u64) -> Vec<SubmitSm> {
        let text = self.text(kind, n);
        let encoding = match kind {
            Kind::Ucs2 => TextEncoding::Ucs2,
            Kind::Gsm | Kind::Long => TextEncoding::Gsm7,
        };
        let parts = match concat::split(&text, encoding, ConcatMethod::Udh8, (n & 0xFFFF) as u16) {
            Ok(parts) => parts,
            // Our own texts always encode; fall back to the raw octets regardless.
            Err(_) => vec![concat::Part {
                short_message: Bytes::from(text.into_bytes()),
                udhi: false,
                sar: None,
            }],
        };
        let dest = self.dest(n);
        parts
            .into_iter()
            .map(|part| SubmitSm {
                source: self.source.clone(),
                dest: dest.clone(),
                esm_class: if part.udhi { esm_class::UDHI } else { 0 },
                registered_delivery: if self.receipts {
                    registered_delivery::RECEIPT_ALWAYS
                } else {
                    0
                },
                data_coding: encoding.data_coding(),
                short_message: part.short_message,
                ..SubmitSm::default()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template {
            run: 0xabcd,
            source: Address::new(1, 1, "447700900001").unwrap(),
            dest_prefix: "4477009".to_string(),
            receipts: true,
        }
    }

    #[test]
    fn mix_parses_and_picks_in_proportion() {
        let mix: Mix = "gsm=80, ucs2=10,long=10".parse().unwrap();
        assert_eq!(
            mix,
            Mix {
                gsm: 80,
                ucs2: 10,
                long: 10
            }
        );
        let mut counts = [0u32; 3];
        for n in 1..=100_000 {
            counts[mix.pick(n) as usize] += 1;
        }
        assert!((78_000..82_000).contains(&counts[0]), "{counts:?}");
        assert!((9_000..11_000).contains(&counts[1]), "{counts:?}");
        assert!((9_000..11_000).contains(&counts[2]), "{counts:?}");
        assert!("gsm=0".parse::<Mix>().is_err());
        assert!("sms=1".parse::<Mix>().is_err());
        assert!("gsm".parse::<Mix>().is_err());
        assert_eq!("long=1".parse::<Mix>().unwrap().pick(7), Kind::Long);
    }

    #[test]
    fn parts_per_kind() {
        let t = template();
        let gsm = t.parts(Kind::Gsm, 42);
        assert_eq!(gsm.len(), 1);
        assert_eq!(gsm[0].data_coding, 0);
        assert_eq!(gsm[0].registered_delivery, 1);
        assert!(String::from_utf8_lossy(&gsm[0].short_message).contains("#42 "));
        assert_eq!(gsm[0].dest.addr.as_str(), Some("447700900000042"));

        let ucs2 = t.parts(Kind::Ucs2, 43);
        assert_eq!(ucs2.len(), 1);
        assert_eq!(ucs2[0].data_coding, 8);
        assert!(ucs2[0].short_message.len() <= 140);

        let long = t.parts(Kind::Long, 300);
        assert_eq!(long.len(), 3);
        for (i, part) in long.iter().enumerate() {
            assert_eq!(part.esm_class, esm_class::UDHI);
            // UDHL 5, IEI 0, length 3, reference, total, seqnum.
            assert_eq!(&part.short_message[..6], &[5, 0, 3, (300 & 0xFF) as u8, 3, i as u8 + 1]);
            assert!(part.short_message.len() <= 6 + 153);
        }
    }
}
