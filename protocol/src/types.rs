//! Field types whose limits come from the specification.
//!
//! A `COctetString<MAX>` can only hold what the field allows: at most
//! `MAX - 1` octets (the specification counts the terminating NUL in the
//! maximum) and no NUL inside. Values decoded from the wire are slices of the
//! received frame, so holding one costs a reference count, not a copy.

use std::fmt;

use bytes::Bytes;

use crate::error::FieldError;

/// An SMPP C-Octet String of at most `MAX` octets including the NUL.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct COctetString<const MAX: usize>(Bytes);

impl<const MAX: usize> COctetString<MAX> {
    /// The largest number of octets the value may hold (the NUL excluded).
    pub const MAX_VALUE_LEN: usize = MAX - 1;

    /// An empty string (the value SMPP calls NULL).
    pub const fn empty() -> Self {
        COctetString(Bytes::new())
    }

    /// Checks the limits and wraps the value.
    pub fn new(value: impl Into<Bytes>) -> Result<Self, FieldError> {
        let value = value.into();
        if value.len() > Self::MAX_VALUE_LEN {
            return Err(FieldError::TooLong {
                len: value.len(),
                max: Self::MAX_VALUE_LEN,
            });
        }
        if value.contains(&0) {
            return Err(FieldError::InteriorNul);
        }
        Ok(COctetString(value))
    }

    /// Wraps a value the caller has already checked (the decoder does).
    pub(crate) fn from_checked(value: Bytes) -> Self {
        debug_assert!(value.len() <= Self::MAX_VALUE_LEN && !value.contains(&0));
        COctetString(value)
    }

    /// The octets, without the terminating NUL.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The octets as a shared buffer.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The value as text, if it is UTF-8 (SMPP strings are ASCII in practice).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The value as text, replacing octets that are not UTF-8.
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<const MAX: usize> fmt::Debug for COctetString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => write!(f, "{s:?}"),
            None => write!(f, "{:?}", self.0),
        }
    }
}

impl<const MAX: usize> TryFrom<&str> for COctetString<MAX> {
    type Error = FieldError;
    fn try_from(value: &str) -> Result<Self, FieldError> {
        COctetString::new(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl<const MAX: usize> TryFrom<String> for COctetString<MAX> {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, FieldError> {
        COctetString::new(Bytes::from(value))
    }
}

impl<const MAX: usize> TryFrom<&'static [u8]> for COctetString<MAX> {
    type Error = FieldError;
    fn try_from(value: &'static [u8]) -> Result<Self, FieldError> {
        COctetString::new(Bytes::from_static(value))
    }
}

/// `system_id`: 16 octets with the NUL.
pub type SystemId = COctetString<16>;
/// `password`: 9 octets with the NUL.
pub type Password = COctetString<9>;
/// `system_type`: 13 octets with the NUL.
pub type SystemType = COctetString<13>;
/// `service_type`: 6 octets with the NUL.
pub type ServiceType = COctetString<6>;
/// `address_range` in a bind: 41 octets with the NUL.
pub type AddressRange = COctetString<41>;
/// `message_id`: 65 octets with the NUL.
pub type MessageId = COctetString<65>;
/// `dl_name` in submit_multi: 21 octets with the NUL.
pub type DistributionListName = COctetString<21>;

/// An SMPP time field (`schedule_delivery_time`, `validity_period`,
/// `final_date`): empty, or exactly 16 characters `YYMMDDhhmmsstnnp`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct SmppTime(COctetString<17>);

impl SmppTime {
    /// The empty time (SMPP NULL: immediate delivery / default validity).
    pub const fn empty() -> Self {
        SmppTime(COctetString::empty())
    }

    /// Checks the shape: empty or 16 octets whose last is `+`, `-` or `R`
    /// and whose first twelve are digits. The values are checked where
    /// they are used; the codec only guarantees the format.
    pub fn new(value: impl Into<Bytes>) -> Result<Self, FieldError> {
        let value: Bytes = value.into();
        if !Self::is_well_formed(&value) {
            return Err(FieldError::BadTime);
        }
        Ok(SmppTime(COctetString::new(value)?))
    }

    pub(crate) fn is_well_formed(value: &[u8]) -> bool {
        match value {
            [] => true,
            [digits @ .., tenths, n1, n2, p] if digits.len() == 12 => {
                digits.iter().all(u8::is_ascii_digit)
                    && tenths.is_ascii_digit()
                    && n1.is_ascii_digit()
                    && n2.is_ascii_digit()
                    && matches!(p, b'+' | b'-' | b'R')
            }
            _ => false,
        }
    }

    pub(crate) fn from_checked(value: Bytes) -> Self {
        SmppTime(COctetString::from_checked(value))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn as_str(&self) -> Option<&str> {
        self.0.as_str()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `true` for a relative time (`…R`).
    pub fn is_relative(&self) -> bool {
        self.as_bytes().last() == Some(&b'R')
    }
}

impl fmt::Debug for SmppTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<&str> for SmppTime {
    type Error = FieldError;
    fn try_from(value: &str) -> Result<Self, FieldError> {
        SmppTime::new(Bytes::copy_from_slice(value.as_bytes()))
    }
}

/// Type of number (`*_addr_ton`), section 5.2.5.
pub mod ton {
    pub const UNKNOWN: u8 = 0x00;
    pub const INTERNATIONAL: u8 = 0x01;
    pub const NATIONAL: u8 = 0x02;
    pub const NETWORK_SPECIFIC: u8 = 0x03;
    pub const SUBSCRIBER_NUMBER: u8 = 0x04;
    pub const ALPHANUMERIC: u8 = 0x05;
    pub const ABBREVIATED: u8 = 0x06;
}

/// Numbering plan indicator (`*_addr_npi`), section 5.2.6.
pub mod npi {
    pub const UNKNOWN: u8 = 0x00;
    pub const ISDN: u8 = 0x01;
    pub const DATA: u8 = 0x03;
    pub const TELEX: u8 = 0x04;
    pub const LAND_MOBILE: u8 = 0x06;
    pub const NATIONAL: u8 = 0x08;
    pub const PRIVATE: u8 = 0x09;
    pub const ERMES: u8 = 0x0A;
    pub const INTERNET: u8 = 0x0E;
    pub const WAP_CLIENT_ID: u8 = 0x12;
}

/// `esm_class` bits, section 5.2.12.
pub mod esm_class {
    /// Message mode mask (bits 1-0).
    pub const MODE_MASK: u8 = 0x03;
    /// Message type mask (bits 5-2).
    pub const TYPE_MASK: u8 = 0x3C;
    /// Message type: SMSC delivery receipt (deliver_sm).
    pub const DELIVERY_RECEIPT: u8 = 0x04;
    /// Message type: SME delivery acknowledgement.
    pub const DELIVERY_ACK: u8 = 0x08;
    /// Message type: SME manual/user acknowledgement.
    pub const USER_ACK: u8 = 0x10;
    /// Message type: intermediate delivery notification.
    pub const INTERMEDIATE_NOTIFICATION: u8 = 0x20;
    /// GSM feature: UDH indicator.
    pub const UDHI: u8 = 0x40;
    /// GSM feature: reply path.
    pub const REPLY_PATH: u8 = 0x80;
}

/// `registered_delivery` bits, section 5.2.17.
pub mod registered_delivery {
    /// SMSC delivery receipt mask (bits 1-0).
    pub const RECEIPT_MASK: u8 = 0x03;
    /// Receipt on success or failure.
    pub const RECEIPT_ALWAYS: u8 = 0x01;
    /// Receipt on failure only.
    pub const RECEIPT_ON_FAILURE: u8 = 0x02;
    /// Intermediate notification requested.
    pub const INTERMEDIATE: u8 = 0x10;
}

/// An SME address: TON, NPI and the address itself, of at most `MAX`
/// octets with the NUL (21 in most PDUs, 65 in data_sm and alert_notification).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Address<const MAX: usize> {
    pub ton: u8,
    pub npi: u8,
    pub addr: COctetString<MAX>,
}

impl<const MAX: usize> Address<MAX> {
    pub fn new(ton: u8, npi: u8, addr: &str) -> Result<Self, FieldError> {
        Ok(Address {
            ton,
            npi,
            addr: COctetString::try_from(addr)?,
        })
    }
}

/// `message_state`, section 5.2.28.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageState {
    Enroute = 1,
    Delivered = 2,
    Expired = 3,
    Deleted = 4,
    Undeliverable = 5,
    Accepted = 6,
    Unknown = 7,
    Rejected = 8,
}

impl MessageState {
    pub const fn from_u8(value: u8) -> Option<MessageState> {
        use MessageState::*;
        Some(match value {
            1 => Enroute,
            2 => Delivered,
            3 => Expired,
            4 => Deleted,
            5 => Undeliverable,
            6 => Accepted,
            7 => Unknown,
            8 => Rejected,
            _ => return None,
        })
    }

    /// `true` once the message will not change state again.
    pub const fn is_final(self) -> bool {
        !matches!(
            self,
            MessageState::Enroute | MessageState::Accepted | MessageState::Unknown
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_octet_string_limits() {
        assert!(SystemId::try_from("abcdefghijklmno").is_ok());
        assert_eq!(
            SystemId::try_from("abcdefghijklmnop"),
            Err(FieldError::TooLong { len: 16, max: 15 })
        );
        assert_eq!(SystemId::try_from("a\0b"), Err(FieldError::InteriorNul));
    }

    #[test]
    fn smpp_time_shape() {
        assert!(SmppTime::try_from("").is_ok());
        assert!(SmppTime::try_from("020610233429000R").is_ok());
        assert!(SmppTime::try_from("260101120000004+").is_ok());
        assert!(SmppTime::try_from("26010112000000+").is_err());
        assert!(SmppTime::try_from("2601011200000x4+").is_err());
        assert!(SmppTime::try_from("260101120000004*").is_err());
        assert!(SmppTime::try_from("000000010000000R").unwrap().is_relative());
    }
}
