//! SMPP 3.4 delivery receipts (Appendix B).
//!
//! An SMSC reports the fate of a submitted message by sending a
//! `deliver_sm` whose `esm_class` marks it as a delivery receipt and whose
//! `short_message` carries a loosely specified text:
//!
//! ```text
//! id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text: . . . . . . . . .
//! ```
//!
//! Appendix B only calls this format "vendor specific" and real carriers
//! deviate from it in every possible way: key case (`ID:`, `Stat:`), key
//! spelling (`submit_date`, `submitdate`), field order, missing or extra
//! fields (`mcc:`, `mnc:`), 12-digit dates with seconds, full-word states
//! (`DELIVERED`), free-text error codes and so on. The parser here is
//! therefore deliberately tolerant: only `id` and `stat` are required,
//! everything else is optional, and [`Receipt::parse`] turns a malformed
//! optional value into `None` instead of discarding the whole receipt (a
//! receipt with a broken `done date` still tells us the message was
//! delivered). [`Receipt::parse_strict`] reports such values as typed errors
//! for callers that want to know.
//!
//! Parsing is a single left-to-right pass over the input without regexes;
//! [`ReceiptRef`] borrows every string from the input, and [`Receipt`] only
//! allocates the strings it owns.
//!
//! Message ids are kept exactly as sent. Carriers are inconsistent about the
//! id format (hex in `submit_sm_resp`, decimal in the receipt, or differing
//! case or leading zeros), so [`normalise_message_id`] maps an id to a
//! canonical form that the gateway can use to correlate the two.

use std::fmt;
use std::str::FromStr;

/// Maximum number of characters of the original message that Appendix B puts
/// in the `text:` field.
pub const RECEIPT_TEXT_MAX_CHARS: usize = 20;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a delivery receipt could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// There is no `id:` field, or it is empty; without it the receipt
    /// cannot be correlated with a submitted message.
    #[error("delivery receipt has no `id:` value")]
    MissingId,
    /// There is no `stat:` field, or it is empty; without it the receipt
    /// says nothing about the message.
    #[error("delivery receipt has no `stat:` value")]
    MissingStat,
    /// `sub:` or `dlvrd:` is not a decimal number fitting in a `u32`
    /// (only reported by [`Receipt::parse_strict`]).
    #[error("delivery receipt `{field}:` value {value:?} is not a decimal count")]
    InvalidCount {
        /// The SMPP field name (`sub` or `dlvrd`).
        field: &'static str,
        /// The offending value as sent.
        value: String,
    },
    /// `submit date:` or `done date:` is not a valid date (only reported by
    /// [`Receipt::parse_strict`]).
    #[error("delivery receipt `{field}:` value {value:?} is not a valid date: {source}")]
    InvalidDate {
        /// The SMPP field name (`submit date` or `done date`).
        field: &'static str,
        /// The offending value as sent.
        value: String,
        /// What is wrong with it.
        #[source]
        source: DateError,
    },
}

/// Why a `YYMMDDhhmm[ss]` receipt date is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// The value is neither 10 (`YYMMDDhhmm`) nor 12 (`YYMMDDhhmmss`) bytes.
    #[error("expected 10 (YYMMDDhhmm) or 12 (YYMMDDhhmmss) digits, got {0} bytes")]
    Length(usize),
    /// The value contains something other than ASCII digits.
    #[error("date contains a non-digit character")]
    NotDigit,
    /// Two-digit year above 99 (only possible through [`ReceiptDate::new`]).
    #[error("year {0} is out of range 00..=99")]
    Year(u8),
    /// Month outside 1..=12.
    #[error("month {0} is out of range 01..=12")]
    Month(u8),
    /// Day outside the month (leap years are taken into account).
    #[error("day {day} is out of range for month {month}")]
    Day {
        /// The offending day.
        day: u8,
        /// The month it was checked against.
        month: u8,
    },
    /// Hour outside 0..=23.
    #[error("hour {0} is out of range 00..=23")]
    Hour(u8),
    /// Minute outside 0..=59.
    #[error("minute {0} is out of range 00..=59")]
    Minute(u8),
    /// Second outside 0..=59.
    #[error("second {0} is out of range 00..=59")]
    Second(u8),
}

// ---------------------------------------------------------------------------
// ReceiptState
// ---------------------------------------------------------------------------

/// The `stat:` field of a delivery receipt, i.e. the final (or intermediate)
/// state of the message.
///
/// The known variants correspond to the SMPP 3.4 `message_state` values
/// (section 5.2.28); their 7-character Appendix B spellings are produced by
/// [`ReceiptState::as_str`]. Anything a carrier sends that is not recognised
/// is kept verbatim in [`ReceiptState::Other`] so that a new spelling never
/// makes a receipt unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReceiptState {
    /// `ENROUTE`: the message is still being delivered.
    Enroute,
    /// `DELIVRD`: the message reached the handset.
    Delivered,
    /// `EXPIRED`: the validity period elapsed before delivery.
    Expired,
    /// `DELETED`: the message was cancelled or deleted.
    Deleted,
    /// `UNDELIV`: the message cannot be delivered.
    Undeliverable,
    /// `ACCEPTD`: the message was accepted (e.g. read on behalf of the subscriber).
    Accepted,
    /// `UNKNOWN`: the SMSC does not know the message state.
    Unknown,
    /// `REJECTD`: the message was rejected.
    Rejected,
    /// An unrecognised state, kept exactly as sent.
    Other(String),
}

impl ReceiptState {
    /// Recognises a `stat:` value: the Appendix B 7-character names and the
    /// common full-word carrier variants, in any case. Never fails; an
    /// unrecognised value becomes [`ReceiptState::Other`].
    pub fn parse(stat: &str) -> Self {
        Self::known(stat).unwrap_or_else(|| Self::Other(stat.to_owned()))
    }

    /// Like [`parse`](Self::parse) but without allocating: `None` for an
    /// unrecognised value.
    pub fn known(stat: &str) -> Option<Self> {
        let is = |name: &str| stat.eq_ignore_ascii_case(name);
        let state = if is("DELIVRD") || is("DELIVERED") {
            Self::Delivered
        } else if is("UNDELIV") || is("UNDELIVERABLE") || is("UNDELIVERED") {
            Self::Undeliverable
        } else if is("EXPIRED") {
            Self::Expired
        } else if is("REJECTD") || is("REJECTED") {
            Self::Rejected
        } else if is("ACCEPTD") || is("ACCEPTED") {
            Self::Accepted
        } else if is("ENROUTE") || is("EN_ROUTE") {
            Self::Enroute
        } else if is("DELETED") {
            Self::Deleted
        } else if is("UNKNOWN") {
            Self::Unknown
        } else {
            return None;
        };
        Some(state)
    }

    /// The Appendix B spelling (`DELIVRD`, `UNDELIV`, ...), or the value as
    /// sent for [`ReceiptState::Other`].
    pub fn as_str(&self) -> &str {
        match self {
            Self::Enroute => "ENROUTE",
            Self::Delivered => "DELIVRD",
            Self::Expired => "EXPIRED",
            Self::Deleted => "DELETED",
            Self::Undeliverable => "UNDELIV",
            Self::Accepted => "ACCEPTD",
            Self::Unknown => "UNKNOWN",
            Self::Rejected => "REJECTD",
            Self::Other(other) => other,
        }
    }

    /// The SMPP 3.4 `message_state` TLV value (section 5.2.28), or `None`
    /// for [`ReceiptState::Other`], which has no defined value.
    pub fn message_state(&self) -> Option<u8> {
        Some(match self {
            Self::Enroute => 1,
            Self::Delivered => 2,
            Self::Expired => 3,
            Self::Deleted => 4,
            Self::Undeliverable => 5,
            Self::Accepted => 6,
            Self::Unknown => 7,
            Self::Rejected => 8,
            Self::Other(_) => return None,
        })
    }

    /// The state for an SMPP 3.4 `message_state` TLV value, or `None` for a
    /// value SMPP 3.4 does not define (0 and 9 are SMPP 5.0 additions).
    pub fn from_message_state(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Enroute,
            2 => Self::Delivered,
            3 => Self::Expired,
            4 => Self::Deleted,
            5 => Self::Undeliverable,
            6 => Self::Accepted,
            7 => Self::Unknown,
            8 => Self::Rejected,
            _ => return None,
        })
    }

    /// Whether no further receipt is expected for the message.
    ///
    /// `ENROUTE` is explicitly intermediate. `UNKNOWN` is not final either:
    /// the SMPP specification describes it as an SMSC-internal problem that
    /// "may be intermediate or permanent", so the gateway should keep
    /// waiting (and let its own expiry handle it). Unrecognised states are
    /// treated as not final for the same reason.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Delivered | Self::Expired | Self::Deleted | Self::Undeliverable | Self::Accepted | Self::Rejected
        )
    }
}

impl fmt::Display for ReceiptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReceiptState {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

impl From<&str> for ReceiptState {
    fn from(s: &str) -> Self {
        Self::parse(s)
    }
}

// ---------------------------------------------------------------------------
// ReceiptDate
// ---------------------------------------------------------------------------

/// A `submit date:` / `done date:` value: `YYMMDDhhmm` as in Appendix B, or
/// `YYMMDDhhmmss` as many carriers send.
///
/// The year is kept as the two digits sent (`0..=99`, meaning 2000..=2099,
/// see [`full_year`](Self::full_year)); no time zone is implied, receipts
/// carry SMSC local time. Fields are private so that every value is valid
/// and therefore formats back into something [`ReceiptDate::parse`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiptDate {
    year: u8,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: Option<u8>,
}

impl ReceiptDate {
    /// Writes `YYMMDDhhmm`, or `YYMMDDhhmmss` when it has seconds, two
    /// digits at a time (no `write!` padding: this runs for every receipt
    /// the gateway and the simulator build).
    fn write_digits<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        let fields = [self.year, self.month, self.day, self.hour, self.minute];
        for n in fields.into_iter().chain(self.second) {
            out.write_char(char::from(b'0' + n / 10))?;
            out.write_char(char::from(b'0' + n % 10))?;
        }
        Ok(())
    }

    /// Builds a validated date. `year` is the two-digit year (`0..=99`).
    pub fn new(year: u8, month: u8, day: u8, hour: u8, minute: u8, second: Option<u8>) -> Result<Self, DateError> {
        if year > 99 {
            return Err(DateError::Year(year));
        }
        if !(1..=12).contains(&month) {
            return Err(DateError::Month(month));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(DateError::Day { day, month });
        }
        if hour > 23 {
            return Err(DateError::Hour(hour));
        }
        if minute > 59 {
            return Err(DateError::Minute(minute));
        }
        if let Some(second) = second.filter(|&s| s > 59) {
            return Err(DateError::Second(second));
        }
        Ok(Self {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// Parses `YYMMDDhhmm` or `YYMMDDhhmmss` (exactly 10 or 12 ASCII digits).
    pub fn parse(value: &str) -> Result<Self, DateError> {
        let bytes = value.as_bytes();
        if bytes.len() != 10 && bytes.len() != 12 {
            return Err(DateError::Length(bytes.len()));
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(DateError::NotDigit);
        }
        // The length and digit checks above make every `two_digits` call
        // below succeed; the `ok_or` only avoids indexing.
        let pair = |at: usize| two_digits(bytes, at).ok_or(DateError::NotDigit);
        let second = if bytes.len() == 12 { Some(pair(10)?) } else { None };
        Self::new(pair(0)?, pair(2)?, pair(4)?, pair(6)?, pair(8)?, second)
    }

    /// The two-digit year as sent (`0..=99`).
    pub const fn year(&self) -> u8 {
        self.year
    }

    /// The year assuming the 21st century, as every live SMSC does.
    pub const fn full_year(&self) -> u16 {
        2000 + self.year as u16
    }

    /// Month, `1..=12`.
    pub const fn month(&self) -> u8 {
        self.month
    }

    /// Day of month, `1..=31`.
    pub const fn day(&self) -> u8 {
        self.day
    }

    /// Hour, `0..=23`.
    pub const fn hour(&self) -> u8 {
        self.hour
    }

    /// Minute, `0..=59`.
    pub const fn minute(&self) -> u8 {
        self.minute
    }

    /// Second, `0..=59`, when the carrier sent a 12-digit date.
    pub const fn second(&self) -> Option<u8> {
        self.second
    }
}

/// Formats as `YYMMDDhhmm`, or `YYMMDDhhmmss` when the second is known, so
/// that a 12-digit date survives a round trip.
impl fmt::Display for ReceiptDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_digits(f)
    }
}

impl FromStr for ReceiptDate {
    type Err = DateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn days_in_month(year: u8, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        // 2000..=2099: every year divisible by 4 is a leap year (2000 is one).
        2 if year & 3 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

fn two_digits(bytes: &[u8], at: usize) -> Option<u8> {
    let tens = bytes.get(at)?.checked_sub(b'0')?;
    let units = bytes.get(at + 1)?.checked_sub(b'0')?;
    (tens <= 9 && units <= 9).then_some(tens * 10 + units)
}

// ---------------------------------------------------------------------------
// Scanner
// ---------------------------------------------------------------------------

/// The fields a receipt scanner recognises. Unknown keys still end the
/// previous field's value, which is what keeps `mcc:234` out of `err:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Stat,
    Err,
    Text,
    Unknown,
}

impl Key {
    /// Classifies a key name, ignoring ASCII case and `_` / `-`, so that
    /// `Submit_Date`, `submit-date` and `SUBMITDATE` are all `submit date`.
    /// The name is folded into a small stack buffer: no allocation, and one
    /// slice `match` instead of a comparison per candidate.
    fn classify(name: &str) -> Self {
        let mut folded = [0u8; 10];
        let mut len = 0;
        for b in name.bytes().filter(|&b| b != b'_' && b != b'-') {
            let Some(slot) = folded.get_mut(len) else {
                return Self::Unknown;
            };
            *slot = b.to_ascii_lowercase();
            len += 1;
        }
        match folded.get(..len).unwrap_or_default() {
            b"id" => Self::Id,
            b"stat" | b"status" => Self::Stat,
            b"err" | b"error" => Self::Err,
            b"sub" => Self::Sub,
            b"dlvrd" => Self::Dlvrd,
            b"submitdate" => Self::SubmitDate,
            b"donedate" => Self::DoneDate,
            b"text" => Self::Text,
            _ => Self::Unknown,
        }
    }
}

/// Word separators: ASCII whitespace, plus NUL because some SMSCs pad the
/// `short_message` with it.
fn is_separator(c: char) -> bool {
    c.is_ascii_whitespace() || c == '\0'
}

fn is_separator_byte(b: u8) -> bool {
    b.is_ascii_whitespace() || b == 0
}

fn trim_separators(s: &str) -> &str {
    s.trim_matches(is_separator)
}

fn first_token(s: &str) -> Option<&str> {
    s.split(is_separator).find(|token| !token.is_empty())
}

/// If `word` looks like `key:value`, returns the key and the byte offset of
/// the value within `word`. A key must start with a letter and contain only
/// letters, digits, `_` or `-`: this keeps times such as `12:30` or ids such
/// as `a:b` in values from being taken for keys.
fn split_key(word: &str) -> Option<(&str, usize)> {
    let colon = word.find(':')?;
    let name = word.get(..colon)?;
    let mut bytes = name.bytes();
    let first_is_letter = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (first_is_letter && rest_ok).then_some((name, colon + 1))
}

/// Raw, untrimmed value slices of the recognised fields. The first
/// occurrence of a key wins.
#[derive(Debug, Default)]
struct RawFields<'a> {
    id: Option<&'a str>,
    sub: Option<&'a str>,
    dlvrd: Option<&'a str>,
    submit_date: Option<&'a str>,
    done_date: Option<&'a str>,
    stat: Option<&'a str>,
    err: Option<&'a str>,
    text: Option<&'a str>,
}

impl<'a> RawFields<'a> {
    fn set(&mut self, key: Key, value: Option<&'a str>) {
        let slot = match key {
            Key::Id => &mut self.id,
            Key::Sub => &mut self.sub,
            Key::Dlvrd => &mut self.dlvrd,
            Key::SubmitDate => &mut self.submit_date,
            Key::DoneDate => &mut self.done_date,
            Key::Stat => &mut self.stat,
            Key::Err => &mut self.err,
            Key::Text => &mut self.text,
            Key::Unknown => return,
        };
        if slot.is_none() {
            *slot = value;
        }
    }

    /// Splits `input` into fields in one pass.
    ///
    /// The input is read as whitespace-separated words. A word of the form
    /// `key:value` starts a new field; every following word without such a
    /// key belongs to the current value (tolerating `stat: DELIVRD`). The
    /// two-word keys `submit date:` / `done date:` are recognised by
    /// remembering the previous bare word. `text:` swallows the rest of the
    /// input, so a `stat:` inside the original message text can never
    /// override the real one.
    fn scan(input: &'a str) -> Self {
        let mut fields = Self::default();
        // The key of the field being read, and where its value starts.
        let mut open: Option<(Key, usize)> = None;
        // The previous word, if it was not a `key:value` word.
        let mut previous_bare: Option<(usize, &'a str)> = None;

        for (start, word) in words(input) {
            let Some((name, value_offset)) = split_key(word) else {
                previous_bare = Some((start, word));
                continue;
            };
            let mut key = Key::classify(name);
            let mut key_start = start;
            if name.eq_ignore_ascii_case("date") {
                if let Some((bare_start, bare)) = previous_bare {
                    if bare.eq_ignore_ascii_case("submit") {
                        key = Key::SubmitDate;
                        key_start = bare_start;
                    } else if bare.eq_ignore_ascii_case("done") {
                        key = Key::DoneDate;
                        key_start = bare_start;
                    }
                }
            }
            if let Some((open_key, value_start)) = open.take() {
                fields.set(open_key, input.get(value_start..key_start));
            }
            let value_start = start + value_offset;
            if key == Key::Text {
                fields.set(Key::Text, input.get(value_start..));
                return fields;
            }
            open = Some((key, value_start));
            previous_bare = None;
        }
        if let Some((open_key, value_start)) = open {
            fields.set(open_key, input.get(value_start..));
        }
        fields
    }
}

/// Iterates over the words of `input` with their byte offsets. Separators
/// are ASCII, so every offset is a `char` boundary.
fn words(input: &str) -> impl Iterator<Item = (usize, &str)> {
    let bytes = input.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        while bytes.get(pos).is_some_and(|&b| is_separator_byte(b)) {
            pos += 1;
        }
        let start = pos;
        while bytes.get(pos).is_some_and(|&b| !is_separator_byte(b)) {
            pos += 1;
        }
        if start == pos {
            return None;
        }
        input.get(start..pos).map(|word| (start, word))
    })
}

/// Parses a `sub:`/`dlvrd:` count: ASCII decimal digits, leading zeros
/// allowed, must fit in a `u32`.
fn parse_count(value: &str) -> Option<u32> {
    if value.is_empty() {
        return None;
    }
    value.bytes().try_fold(0u32, |acc, b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u32::from(digit))
    })
}

/// Whether a malformed optional value is an error or simply absent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Lenient,
    Strict,
}

fn count_field(raw: Option<&str>, field: &'static str, mode: Mode) -> Result<Option<u32>, ReceiptError> {
    let Some(value) = raw.and_then(first_token) else {
        return Ok(None);
    };
    match parse_count(value) {
        Some(count) => Ok(Some(count)),
        None if mode == Mode::Lenient => Ok(None),
        None => Err(ReceiptError::InvalidCount {
            field,
            value: value.to_owned(),
        }),
    }
}

fn date_field(raw: Option<&str>, field: &'static str, mode: Mode) -> Result<Option<ReceiptDate>, ReceiptError> {
    let Some(value) = raw.and_then(first_token) else {
        return Ok(None);
    };
    match ReceiptDate::parse(value) {
        Ok(date) => Ok(Some(date)),
        Err(_) if mode == Mode::Lenient => Ok(None),
        Err(source) => Err(ReceiptError::InvalidDate {
            field,
            value: value.to_owned(),
            source,
        }),
    }
}

fn non_empty(raw: Option<&str>) -> Option<&str> {
    raw.map(trim_separators).filter(|value| !value.is_empty())
}

// ---------------------------------------------------------------------------
// ReceiptRef
// ---------------------------------------------------------------------------

/// A delivery receipt borrowing its strings from the parsed text.
///
/// Use this on the hot path when the gateway only needs to look the id up
/// and read the state; convert with [`Receipt::from`] to keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReceiptRef<'a> {
    /// `id:` exactly as sent.
    pub id: &'a str,
    /// `sub:` (number of messages originally submitted).
    pub sub: Option<u32>,
    /// `dlvrd:` (number of messages delivered).
    pub dlvrd: Option<u32>,
    /// `submit date:`.
    pub submit_date: Option<ReceiptDate>,
    /// `done date:`.
    pub done_date: Option<ReceiptDate>,
    /// `stat:` as sent; see [`ReceiptRef::state`].
    pub stat: &'a str,
    /// `err:` as sent (trimmed), `None` when absent or empty.
    pub err: Option<&'a str>,
    /// `text:` up to the end of the input (trimmed), `None` when absent or
    /// empty. Not truncated: some carriers send more than 20 characters.
    pub text: Option<&'a str>,
}

impl<'a> ReceiptRef<'a> {
    /// Parses a receipt, turning malformed optional values into `None`.
    /// Fails only when `id:` or `stat:` is missing or empty.
    pub fn parse(input: &'a str) -> Result<Self, ReceiptError> {
        Self::parse_with(input, Mode::Lenient)
    }

    /// Parses a receipt, also failing on malformed `sub:`, `dlvrd:`,
    /// `submit date:` or `done date:` values.
    pub fn parse_strict(input: &'a str) -> Result<Self, ReceiptError> {
        Self::parse_with(input, Mode::Strict)
    }

    fn parse_with(input: &'a str, mode: Mode) -> Result<Self, ReceiptError> {
        let raw = RawFields::scan(input);
        let id = raw.id.and_then(first_token).ok_or(ReceiptError::MissingId)?;
        let stat = raw.stat.and_then(first_token).ok_or(ReceiptError::MissingStat)?;
        Ok(Self {
            id,
            sub: count_field(raw.sub, "sub", mode)?,
            dlvrd: count_field(raw.dlvrd, "dlvrd", mode)?,
            submit_date: date_field(raw.submit_date, "submit date", mode)?,
            done_date: date_field(raw.done_date, "done date", mode)?,
            stat,
            err: non_empty(raw.err),
            text: non_empty(raw.text),
        })
    }

    /// The interpreted `stat:` value (allocates only for an unrecognised one).
    pub fn state(&self) -> ReceiptState {
        ReceiptState::parse(self.stat)
    }
}

// ---------------------------------------------------------------------------
// Receipt
// ---------------------------------------------------------------------------

/// An owned SMPP 3.4 Appendix B delivery receipt.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// `id:`, the message id exactly as sent (see [`normalise_message_id`]).
    pub id: String,
    /// `sub:`, the number of messages originally submitted.
    pub sub: Option<u32>,
    /// `dlvrd:`, the number of messages delivered.
    pub dlvrd: Option<u32>,
    /// `submit date:`.
    pub submit_date: Option<ReceiptDate>,
    /// `done date:`.
    pub done_date: Option<ReceiptDate>,
    /// `stat:`.
    pub stat: ReceiptState,
    /// `err:`, kept as text because carriers send `000`, `0x0a`, `ERROR`...
    pub err: Option<String>,
    /// `text:`, the start of the original message (Appendix B: the first 20
    /// characters; parsing keeps whatever the carrier sent).
    pub text: Option<String>,
}

impl Receipt {
    /// A receipt with only the two mandatory fields; add the others with the
    /// `with_*` methods.
    pub fn new(id: impl Into<String>, stat: ReceiptState) -> Self {
        Self {
            id: id.into(),
            sub: None,
            dlvrd: None,
            submit_date: None,
            done_date: None,
            stat,
            err: None,
            text: None,
        }
    }

    /// Sets `sub:`.
    #[must_use]
    pub fn with_sub(mut self, sub: u32) -> Self {
        self.sub = Some(sub);
        self
    }

    /// Sets `dlvrd:`.
    #[must_use]
    pub fn with_dlvrd(mut self, dlvrd: u32) -> Self {
        self.dlvrd = Some(dlvrd);
        self
    }

    /// Sets `submit date:`.
    #[must_use]
    pub fn with_submit_date(mut self, date: ReceiptDate) -> Self {
        self.submit_date = Some(date);
        self
    }

    /// Sets `done date:`.
    #[must_use]
    pub fn with_done_date(mut self, date: ReceiptDate) -> Self {
        self.done_date = Some(date);
        self
    }

    /// Sets `err:` to a textual value, written as given (numeric values
    /// shorter than three digits are zero-padded on output).
    #[must_use]
    pub fn with_err(mut self, err: impl Into<String>) -> Self {
        self.err = Some(err.into());
        self
    }

    /// Sets `err:` to a numeric network error code, as the three digits
    /// Appendix B shows (`err:000`).
    #[must_use]
    pub fn with_err_code(mut self, code: u32) -> Self {
        let mut err = String::with_capacity(3);
        // Writing into a String cannot fail.
        let _ = write_padded(&mut err, code);
        self.err = Some(err);
        self
    }

    /// Sets `text:` (only the first 20 characters are written).
    #[must_use]
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Parses receipt text tolerantly; see [`ReceiptRef::parse`].
    pub fn parse(input: &str) -> Result<Self, ReceiptError> {
        ReceiptRef::parse(input).map(Self::from)
    }

    /// Parses receipt text, rejecting malformed optional values; see
    /// [`ReceiptRef::parse_strict`].
    pub fn parse_strict(input: &str) -> Result<Self, ReceiptError> {
        ReceiptRef::parse_strict(input).map(Self::from)
    }

    /// Parses a raw `short_message`.
    ///
    /// Receipts are nearly always ASCII. Valid UTF-8 is parsed in place;
    /// anything else is decoded as Latin-1, which maps every byte to one
    /// `char`, so a stray GSM or Latin-1 byte in `text:` can neither fail the
    /// parse nor shift the ASCII fields.
    pub fn parse_bytes(input: &[u8]) -> Result<Self, ReceiptError> {
        match std::str::from_utf8(input) {
            Ok(text) => Self::parse(text),
            Err(_) => Self::parse(&latin1(input)),
        }
    }

    /// The interpreted state; same as the `stat` field.
    pub fn state(&self) -> &ReceiptState {
        &self.stat
    }

    /// Writes the canonical Appendix B form:
    ///
    /// `id:{id} sub:{sub:03} dlvrd:{dlvrd:03} submit date:{YYMMDDhhmm} done date:{YYMMDDhhmm} stat:{STAT} err:{err} text:{text}`
    ///
    /// Absent optional fields are omitted (writing a made-up `000` would be
    /// indistinguishable from a real value), except `text:`, which is always
    /// written last because many receivers expect the text to end the
    /// receipt. Dates with seconds are written with 12 digits; a numeric
    /// `err` shorter than three digits is zero-padded; `text` is cut to 20
    /// characters.
    ///
    /// Written piece by piece with `write_str`, not through `write!`: the
    /// gateway builds one receipt per message it relays (the client's) and
    /// the simulator one per message it accepts, and `write!` with padded
    /// numbers was most of that cost (`cargo bench --bench receipts`, in
    /// the gateway crate).
    pub fn write_to<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        out.write_str("id:")?;
        out.write_str(&self.id)?;
        if let Some(sub) = self.sub {
            out.write_str(" sub:")?;
            write_padded(out, sub)?;
        }
        if let Some(dlvrd) = self.dlvrd {
            out.write_str(" dlvrd:")?;
            write_padded(out, dlvrd)?;
        }
        if let Some(date) = &self.submit_date {
            out.write_str(" submit date:")?;
            date.write_digits(out)?;
        }
        if let Some(date) = &self.done_date {
            out.write_str(" done date:")?;
            date.write_digits(out)?;
        }
        out.write_str(" stat:")?;
        out.write_str(self.stat.as_str())?;
        if let Some(err) = &self.err {
            out.write_str(" err:")?;
            let numeric = !err.is_empty() && err.bytes().all(|b| b.is_ascii_digit());
            if numeric {
                for _ in err.len()..3 {
                    out.write_char('0')?;
                }
            }
            out.write_str(err)?;
        }
        out.write_str(" text:")?;
        if let Some(text) = &self.text {
            out.write_str(truncate_chars(text, RECEIPT_TEXT_MAX_CHARS))?;
        }
        Ok(())
    }

    /// The canonical Appendix B text; see [`write_to`](Self::write_to).
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(160);
        // Writing into a String cannot fail.
        let _ = self.write_to(&mut out);
        out
    }
}

/// `n` in decimal, zero-padded to at least three digits (`{n:03}`):
/// digit by digit below 1000, which every `sub`, `dlvrd` and GSM error
/// code is; through `fmt` above.
fn write_padded<W: fmt::Write + ?Sized>(out: &mut W, n: u32) -> fmt::Result {
    if n >= 1000 {
        return write!(out, "{n}");
    }
    for digit in [n / 100, n / 10 % 10, n % 10] {
        out.write_char(char::from(b'0' + digit as u8))?;
    }
    Ok(())
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl FromStr for Receipt {
    type Err = ReceiptError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<ReceiptRef<'_>> for Receipt {
    fn from(r: ReceiptRef<'_>) -> Self {
        Self {
            id: r.id.to_owned(),
            sub: r.sub,
            dlvrd: r.dlvrd,
            submit_date: r.submit_date,
            done_date: r.done_date,
            stat: r.state(),
            err: r.err.map(str::to_owned),
            text: r.text.map(str::to_owned),
        }
    }
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn truncate_chars(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((end, _)) => s.get(..end).unwrap_or(s),
        None => s,
    }
}

// ---------------------------------------------------------------------------
// Message id normalisation
// ---------------------------------------------------------------------------

/// How a carrier's message ids should be compared.
///
/// SMSCs disagree with themselves: the `message_id` in `submit_sm_resp` may
/// be hex while the receipt's `id:` is the same number in decimal, or the
/// case or leading zeros may differ. The gateway normalises both sides with
/// the carrier's configured style before matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IdStyle {
    /// Compare as sent, ignoring surrounding whitespace.
    #[default]
    AsIs,
    /// Compare ignoring ASCII case (output is lowercase).
    CaseInsensitive,
    /// The id is hexadecimal (optional `0x`); output is lowercase hex
    /// without leading zeros.
    Hex,
    /// The id is decimal; output is decimal without leading zeros.
    Decimal,
    /// The id is hexadecimal; output is its decimal value.
    HexToDecimal,
    /// The id is decimal; output is its lowercase hexadecimal value.
    DecimalToHex,
}

/// Normalises a message id according to `style`.
///
/// Returns `None` for an empty id, an id that is not a number in the
/// expected base, or a number that does not fit in a `u128` (39 decimal /
/// 32 hex digits, beyond any SMSC's ids).
pub fn normalise_message_id(id: &str, style: IdStyle) -> Option<String> {
    let id = id.trim();
    if id.is_empty() {
        return None;
    }
    match style {
        IdStyle::AsIs => Some(id.to_owned()),
        IdStyle::CaseInsensitive => Some(id.to_ascii_lowercase()),
        IdStyle::Hex => parse_hex_id(id).map(|n| format!("{n:x}")),
        IdStyle::Decimal => parse_radix(id, 10).map(|n| n.to_string()),
        IdStyle::HexToDecimal => parse_hex_id(id).map(|n| n.to_string()),
        IdStyle::DecimalToHex => parse_radix(id, 10).map(|n| format!("{n:x}")),
    }
}

fn parse_hex_id(id: &str) -> Option<u128> {
    let digits = id.strip_prefix("0x").or_else(|| id.strip_prefix("0X")).unwrap_or(id);
    parse_radix(digits, 16)
}

/// Digits only (no sign, unlike `from_str_radix`), checked `u128` arithmetic.
fn parse_radix(digits: &str, radix: u32) -> Option<u128> {
    if digits.is_empty() {
        return None;
    }
    digits.chars().try_fold(0u128, |acc, c| {
        let digit = c.to_digit(radix)?;
        acc.checked_mul(u128::from(radix))?.checked_add(u128::from(digit))
    })
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(s: &str) -> ReceiptDate {
        ReceiptDate::parse(s).expect("valid test date")
    }

    fn parse(s: &str) -> Receipt {
        Receipt::parse(s).expect("test receipt parses")
    }

    // -- The specification example ---------------------------------------

    #[test]
    fn spec_example() {
        let r = parse(
            "id:0123456789 sub:001 dlvrd:001 submit date:0610191018 done date:0610191018 \
             stat:DELIVRD err:000 text:Hello world",
        );
        assert_eq!(r.id, "0123456789");
        assert_eq!(r.sub, Some(1));
        assert_eq!(r.dlvrd, Some(1));
        assert_eq!(r.submit_date, Some(date("0610191018")));
        assert_eq!(r.done_date, Some(date("0610191018")));
        assert_eq!(r.stat, ReceiptState::Delivered);
        assert_eq!(r.err.as_deref(), Some("000"));
        assert_eq!(r.text.as_deref(), Some("Hello world"));
        let d = r.done_date.expect("done date");
        assert_eq!(
            (d.full_year(), d.month(), d.day(), d.hour(), d.minute(), d.second()),
            (2006, 10, 19, 10, 18, None)
        );
    }

    #[test]
    fn spec_example_with_placeholder_text() {
        let r = parse(
            "id:IIIIIIIIII sub:001 dlvrd:001 submit date:0901011200 done date:0901011201 \
             stat:DELIVRD err:000 text: . . . . . . . . .",
        );
        assert_eq!(r.id, "IIIIIIIIII");
        assert_eq!(r.text.as_deref(), Some(". . . . . . . . ."));
    }

    // -- Carrier variants ------------------------------------------------

    #[test]
    fn uppercase_and_mixed_case_keys() {
        let r = parse(
            "ID:42 SUB:001 DLVRD:001 SUBMIT DATE:2301011200 DONE DATE:2301011205 \
             STAT:delivrd ERR:000 TEXT:hi",
        );
        assert_eq!(r.id, "42");
        assert_eq!(r.submit_date, Some(date("2301011200")));
        assert_eq!(r.done_date, Some(date("2301011205")));
        assert_eq!(r.stat, ReceiptState::Delivered);
        assert_eq!(r.text.as_deref(), Some("hi"));

        let r = parse("Id:42 Sub:1 Dlvrd:0 Submit Date:2301011200 Stat:Undeliv Err:1 Text:x");
        assert_eq!((r.sub, r.dlvrd), (Some(1), Some(0)));
        assert_eq!(r.submit_date, Some(date("2301011200")));
        assert_eq!(r.stat, ReceiptState::Undeliverable);
    }

    #[test]
    fn missing_sub_dlvrd_and_dates() {
        let r = parse("id:abc stat:EXPIRED err:000 text:");
        assert_eq!(r, Receipt::new("abc", ReceiptState::Expired).with_err("000"));
    }

    #[test]
    fn twelve_digit_dates_with_seconds() {
        let r = parse("id:1 submit date:230101120030 done date:230101120559 stat:DELIVRD");
        assert_eq!(r.submit_date.and_then(|d| d.second()), Some(30));
        assert_eq!(r.done_date.and_then(|d| d.second()), Some(59));
        assert!(r.to_text().contains("done date:230101120559"));
    }

    #[test]
    fn hex_and_text_error_codes() {
        assert_eq!(parse("id:1 stat:UNDELIV err:0x1a").err.as_deref(), Some("0x1a"));
        assert_eq!(parse("id:1 stat:UNDELIV err:ERROR").err.as_deref(), Some("ERROR"));
        assert_eq!(parse("id:1 stat:UNDELIV err:").err, None);
        assert_eq!(parse("id:1 stat:UNDELIV err:1 text:x").err.as_deref(), Some("1"));
    }

    #[test]
    fn stat_inside_text_does_not_override() {
        let r = parse("id:7 stat:UNDELIV err:001 text:stat:DELIVRD id:8 err:000");
        assert_eq!(r.id, "7");
        assert_eq!(r.stat, ReceiptState::Undeliverable);
        assert_eq!(r.err.as_deref(), Some("001"));
        assert_eq!(r.text.as_deref(), Some("stat:DELIVRD id:8 err:000"));
        // Only text that comes after the stat is protected; a receipt whose
        // only stat is inside the text has no stat.
        assert_eq!(Receipt::parse("id:7 text:stat:DELIVRD"), Err(ReceiptError::MissingStat));
    }

    #[test]
    fn text_with_colons_and_spaces() {
        let r = parse("id:1 stat:DELIVRD text:Meet at 12:30:  bring ID: yes  ");
        assert_eq!(r.text.as_deref(), Some("Meet at 12:30:  bring ID: yes"));
    }

    #[test]
    fn kannel_style() {
        // Kannel/opensmppbox style: capitalised `Text:` and err as a number.
        let r = parse(
            "id:1784793650 sub:001 dlvrd:001 submit date:1305151200 done date:1305151201 \
             stat:DELIVRD err:000 Text:Test message",
        );
        assert_eq!(r.id, "1784793650");
        assert_eq!(r.text.as_deref(), Some("Test message"));
        assert!(r.stat.is_final());
    }

    #[test]
    fn jasmin_style() {
        // Jasmin uses UUID message ids and 10-digit dates.
        let r = parse(
            "id:a2a0a6b4-2d4e-4d3c-9d8f-0b4c8fbb3f0e sub:001 dlvrd:001 \
             submit date:2104151230 done date:2104151231 stat:DELIVRD err:000 text:-",
        );
        assert_eq!(r.id, "a2a0a6b4-2d4e-4d3c-9d8f-0b4c8fbb3f0e");
        assert_eq!(r.text.as_deref(), Some("-"));
    }

    #[test]
    fn extra_fields_are_ignored() {
        let r = parse(
            "id:99 sub:001 dlvrd:001 submit date:2301011200 done date:2301011201 \
             stat:DELIVRD err:000 mcc:234 mnc:15 network:Vodafone text:ok",
        );
        assert_eq!(r.err.as_deref(), Some("000"));
        assert_eq!(r.text.as_deref(), Some("ok"));
    }

    #[test]
    fn fields_in_a_different_order() {
        let r = parse("stat:REJECTD err:011 id:555 done date:2301011201 sub:1 dlvrd:0");
        assert_eq!(r.id, "555");
        assert_eq!(r.stat, ReceiptState::Rejected);
        assert_eq!(r.err.as_deref(), Some("011"));
        assert_eq!(r.done_date, Some(date("2301011201")));
        assert_eq!((r.sub, r.dlvrd), (Some(1), Some(0)));
    }

    #[test]
    fn underscore_and_joined_date_keys() {
        let r = parse("id:1 submit_date:2301011200 done_date:2301011201 stat:DELIVRD");
        assert_eq!(r.submit_date, Some(date("2301011200")));
        assert_eq!(r.done_date, Some(date("2301011201")));
        let r = parse("id:1 submitdate:2301011200 DoneDate:2301011201 stat:DELIVRD");
        assert_eq!(r.submit_date, Some(date("2301011200")));
        assert_eq!(r.done_date, Some(date("2301011201")));
    }

    #[test]
    fn extra_whitespace_and_padding() {
        let r =
            parse("  \r\n id:  0042   sub:  001\tdlvrd:001  submit   date: 2301011200 stat:  DELIVRD   text:  hi  \n");
        assert_eq!(r.id, "0042");
        assert_eq!(r.sub, Some(1));
        assert_eq!(r.submit_date, Some(date("2301011200")));
        assert_eq!(r.stat, ReceiptState::Delivered);
        assert_eq!(r.text.as_deref(), Some("hi"));
        // NUL padding at the end of short_message.
        let r = Receipt::parse_bytes(b"id:1 stat:DELIVRD text:x\0\0\0").expect("parses");
        assert_eq!(r.text.as_deref(), Some("x"));
    }

    #[test]
    fn id_with_leading_zeros_is_kept_exactly() {
        let r = parse("id:000000123 stat:DELIVRD");
        assert_eq!(r.id, "000000123");
        assert_eq!(normalise_message_id(&r.id, IdStyle::Decimal).as_deref(), Some("123"));
    }

    #[test]
    fn full_word_and_lowercase_states() {
        for (stat, want) in [
            ("DELIVERED", ReceiptState::Delivered),
            ("delivered", ReceiptState::Delivered),
            ("UNDELIVERABLE", ReceiptState::Undeliverable),
            ("Undelivered", ReceiptState::Undeliverable),
            ("REJECTED", ReceiptState::Rejected),
            ("accepted", ReceiptState::Accepted),
            ("Expired", ReceiptState::Expired),
            ("deleted", ReceiptState::Deleted),
            ("enroute", ReceiptState::Enroute),
            ("unknown", ReceiptState::Unknown),
            ("FAILED", ReceiptState::Other("FAILED".into())),
        ] {
            assert_eq!(parse(&format!("id:1 stat:{stat}")).stat, want, "{stat}");
        }
    }

    #[test]
    fn non_utf8_bytes_do_not_fail_the_parse() {
        let r = Receipt::parse_bytes(b"id:77 stat:DELIVRD err:000 text:caf\xe9 \xff\xfe").expect("parses");
        assert_eq!(r.id, "77");
        assert_eq!(r.stat, ReceiptState::Delivered);
        assert_eq!(r.text.as_deref(), Some("caf\u{e9} \u{ff}\u{fe}"));
    }

    #[test]
    fn hex_message_id() {
        let r = parse("id:7F3A9B01 sub:001 dlvrd:001 stat:DELIVRD err:000 text:");
        assert_eq!(r.id, "7F3A9B01");
        assert_eq!(
            normalise_message_id(&r.id, IdStyle::HexToDecimal).as_deref(),
            Some("2134547201")
        );
    }

    #[test]
    fn first_occurrence_of_a_key_wins() {
        let r = parse("id:1 id:2 stat:DELIVRD stat:UNDELIV");
        assert_eq!((r.id.as_str(), &r.stat), ("1", &ReceiptState::Delivered));
    }

    #[test]
    fn missing_required_fields() {
        assert_eq!(Receipt::parse("stat:DELIVRD"), Err(ReceiptError::MissingId));
        assert_eq!(Receipt::parse("id: stat:DELIVRD"), Err(ReceiptError::MissingId));
        assert_eq!(Receipt::parse("id:1 sub:001"), Err(ReceiptError::MissingStat));
        assert_eq!(Receipt::parse("id:1 stat:"), Err(ReceiptError::MissingStat));
        assert_eq!(Receipt::parse(""), Err(ReceiptError::MissingId));
        assert_eq!(
            Receipt::parse("hello world: not a receipt"),
            Err(ReceiptError::MissingId)
        );
    }

    #[test]
    fn malformed_optional_values_lenient_and_strict() {
        let input = "id:1 sub:abc dlvrd:1 submit date:0000000000 done date:2302301200 stat:DELIVRD";
        let r = parse(input);
        assert_eq!((r.sub, r.dlvrd), (None, Some(1)));
        assert_eq!((r.submit_date, r.done_date), (None, None));
        assert_eq!(
            Receipt::parse_strict(input),
            Err(ReceiptError::InvalidCount {
                field: "sub",
                value: "abc".into()
            })
        );
        assert_eq!(
            Receipt::parse_strict("id:1 done date:2302301200 stat:DELIVRD"),
            Err(ReceiptError::InvalidDate {
                field: "done date",
                value: "2302301200".into(),
                source: DateError::Day { day: 30, month: 2 },
            })
        );
        assert_eq!(
            Receipt::parse_strict("id:1 sub:4294967296 stat:DELIVRD"),
            Err(ReceiptError::InvalidCount {
                field: "sub",
                value: "4294967296".into()
            })
        );
    }

    #[test]
    fn borrowed_parse_does_not_copy() {
        let input = String::from("id:abc stat:weird err:E1 text:t");
        let r = ReceiptRef::parse(&input).expect("parses");
        assert_eq!(r.id, "abc");
        assert_eq!(r.stat, "weird");
        assert_eq!(r.state(), ReceiptState::Other("weird".into()));
        let range = input.as_bytes().as_ptr_range();
        assert!(range.contains(&r.id.as_ptr()));
        assert!(range.contains(&r.stat.as_ptr()));
    }

    // -- Dates -------------------------------------------------------------

    #[test]
    fn date_validation() {
        assert_eq!(ReceiptDate::parse("2402291200").map(|d| d.day()), Ok(29));
        assert_eq!(
            ReceiptDate::parse("2302291200"),
            Err(DateError::Day { day: 29, month: 2 })
        );
        assert_eq!(ReceiptDate::parse("0002291200").map(|d| d.full_year()), Ok(2000));
        assert_eq!(ReceiptDate::parse("2313011200"), Err(DateError::Month(13)));
        assert_eq!(ReceiptDate::parse("2300011200"), Err(DateError::Month(0)));
        assert_eq!(
            ReceiptDate::parse("2304311200"),
            Err(DateError::Day { day: 31, month: 4 })
        );
        assert_eq!(ReceiptDate::parse("2301012400"), Err(DateError::Hour(24)));
        assert_eq!(ReceiptDate::parse("2301012360"), Err(DateError::Minute(60)));
        assert_eq!(ReceiptDate::parse("230101235960"), Err(DateError::Second(60)));
        assert_eq!(ReceiptDate::parse("23010112"), Err(DateError::Length(8)));
        assert_eq!(ReceiptDate::parse("23010112000"), Err(DateError::Length(11)));
        assert_eq!(ReceiptDate::parse("23-1011200"), Err(DateError::NotDigit));
        assert_eq!(ReceiptDate::parse("２３01011200"), Err(DateError::Length(14)));
        assert_eq!(ReceiptDate::new(100, 1, 1, 0, 0, None), Err(DateError::Year(100)));
        assert_eq!(date("2312312359").to_string(), "2312312359");
        assert_eq!(date("231231235905").to_string(), "231231235905");
    }

    // -- States ------------------------------------------------------------

    #[test]
    fn message_state_mapping() {
        let all = [
            (ReceiptState::Enroute, 1, "ENROUTE", false),
            (ReceiptState::Delivered, 2, "DELIVRD", true),
            (ReceiptState::Expired, 3, "EXPIRED", true),
            (ReceiptState::Deleted, 4, "DELETED", true),
            (ReceiptState::Undeliverable, 5, "UNDELIV", true),
            (ReceiptState::Accepted, 6, "ACCEPTD", true),
            (ReceiptState::Unknown, 7, "UNKNOWN", false),
            (ReceiptState::Rejected, 8, "REJECTD", true),
        ];
        for (state, value, name, is_final) in all {
            assert_eq!(state.message_state(), Some(value));
            assert_eq!(ReceiptState::from_message_state(value), Some(state.clone()));
            assert_eq!(state.as_str(), name);
            assert_eq!(ReceiptState::parse(name), state);
            assert_eq!(state.is_final(), is_final, "{name}");
        }
        assert_eq!(ReceiptState::from_message_state(0), None);
        assert_eq!(ReceiptState::from_message_state(9), None);
        assert_eq!(ReceiptState::Other("X".into()).message_state(), None);
        assert!(!ReceiptState::Other("X".into()).is_final());
    }

    // -- Output --------------------------------------------------------------

    #[test]
    fn canonical_output() {
        let r = Receipt::new("0123456789", ReceiptState::Delivered)
            .with_sub(1)
            .with_dlvrd(1)
            .with_submit_date(date("0610191018"))
            .with_done_date(date("0610191018"))
            .with_err_code(0)
            .with_text("Delivery receipt text is long");
        assert_eq!(
            r.to_text(),
            "id:0123456789 sub:001 dlvrd:001 submit date:0610191018 done date:0610191018 \
             stat:DELIVRD err:000 text:Delivery receipt tex"
        );
        assert_eq!(r.to_string(), r.to_text());
        assert_eq!(
            Receipt::new("x", ReceiptState::Other("FAILED".into()))
                .with_err("7")
                .to_text(),
            "id:x stat:FAILED err:007 text:"
        );
        assert_eq!(
            Receipt::new("x", ReceiptState::Rejected).with_err("0x0a").to_text(),
            "id:x stat:REJECTD err:0x0a text:"
        );
        // Truncation counts characters, not bytes.
        let r = Receipt::new("x", ReceiptState::Delivered).with_text("é".repeat(25));
        assert!(r.to_text().ends_with(&format!("text:{}", "é".repeat(20))));
        let mut out = String::new();
        r.write_to(&mut out).expect("write to String");
        assert_eq!(out, r.to_text());
        // Counts are padded to three digits, never cut; dates keep their seconds.
        let r = Receipt::new("y", ReceiptState::Delivered)
            .with_sub(1234)
            .with_dlvrd(0)
            .with_submit_date(date("991231235959"))
            .with_done_date(date("0001010000"));
        assert_eq!(
            r.to_text(),
            "id:y sub:1234 dlvrd:000 submit date:991231235959 done date:0001010000 stat:DELIVRD text:"
        );
        assert_eq!(
            Receipt::new("z", ReceiptState::Delivered)
                .with_sub(u32::MAX)
                .with_dlvrd(42)
                .to_text(),
            "id:z sub:4294967295 dlvrd:042 stat:DELIVRD text:"
        );
    }

    #[test]
    fn round_trip_build_then_parse() {
        let r = Receipt::new("ABC123", ReceiptState::Undeliverable)
            .with_sub(1)
            .with_dlvrd(0)
            .with_submit_date(date("230101120000"))
            .with_done_date(date("2301011201"))
            .with_err("0x1a")
            .with_text("stat:DELIVRD: fake");
        assert_eq!(Receipt::parse(&r.to_text()), Ok(r.clone()));
        assert_eq!(Receipt::parse_bytes(r.to_text().as_bytes()), Ok(r));
    }

    // -- Id normalisation ------------------------------------------------------

    #[test]
    fn normalise_ids() {
        use IdStyle::*;
        let n = |id: &str, style| normalise_message_id(id, style);
        assert_eq!(n("  AbC-1 ", AsIs).as_deref(), Some("AbC-1"));
        assert_eq!(n("  AbC-1 ", CaseInsensitive).as_deref(), Some("abc-1"));
        assert_eq!(n("00FF", Hex).as_deref(), Some("ff"));
        assert_eq!(n("0x00Ff", Hex).as_deref(), Some("ff"));
        assert_eq!(n("0000", Hex).as_deref(), Some("0"));
        assert_eq!(n("000123", Decimal).as_deref(), Some("123"));
        assert_eq!(n("ff", HexToDecimal).as_deref(), Some("255"));
        assert_eq!(n("255", DecimalToHex).as_deref(), Some("ff"));
        assert_eq!(n("7F3A9B01", HexToDecimal).as_deref(), Some("2134547201"));
        assert_eq!(n("2134547201", DecimalToHex).as_deref(), Some("7f3a9b01"));
        // The same message seen in hex (submit_sm_resp) and decimal (receipt).
        assert_eq!(n("0A1B2C", Hex), n("662316", DecimalToHex));
        // Invalid input.
        assert_eq!(n("", AsIs), None);
        assert_eq!(n("   ", CaseInsensitive), None);
        assert_eq!(n("12a", Decimal), None);
        assert_eq!(n("+12", Decimal), None);
        assert_eq!(n("-1", DecimalToHex), None);
        assert_eq!(n("xyz", Hex), None);
        assert_eq!(n("0x", Hex), None);
        assert_eq!(n("１２", Decimal), None);
        // u128 limits: leading zeros never overflow, one more digit does.
        let max_hex = "f".repeat(32);
        assert_eq!(n(&max_hex, Hex).as_deref(), Some(max_hex.as_str()));
        assert_eq!(n(&format!("1{max_hex}"), Hex), None);
        assert_eq!(n(&format!("000{max_hex}"), Hex).as_deref(), Some(max_hex.as_str()));
        let max_dec = u128::MAX.to_string();
        assert_eq!(n(&max_dec, DecimalToHex).as_deref(), Some(max_hex.as_str()));
        assert_eq!(n("340282366920938463463374607431768211456", Decimal), None);
        assert_eq!(n(&max_hex, HexToDecimal), Some(max_dec));
    }

    // -- Properties ------------------------------------------------------------

    fn arb_date() -> impl Strategy<Value = ReceiptDate> {
        (
            0u8..=99,
            1u8..=12,
            1u8..=28,
            0u8..=23,
            0u8..=59,
            proptest::option::of(0u8..=59),
        )
            .prop_map(|(y, mo, d, h, mi, s)| ReceiptDate::new(y, mo, d, h, mi, s).expect("generated in range"))
    }

    fn arb_state() -> impl Strategy<Value = ReceiptState> {
        prop_oneof![
            (1u8..=8).prop_map(|v| ReceiptState::from_message_state(v).expect("1..=8")),
            "[A-Za-z][A-Za-z0-9_]{0,11}"
                .prop_filter("not a known state", |s| ReceiptState::known(s).is_none())
                .prop_map(ReceiptState::Other),
        ]
    }

    fn arb_receipt() -> impl Strategy<Value = Receipt> {
        (
            "[0-9A-Za-z_.-]{1,40}",
            any::<Option<u32>>(),
            any::<Option<u32>>(),
            proptest::option::of(arb_date()),
            proptest::option::of(arb_date()),
            arb_state(),
            proptest::option::of(prop_oneof![
                "[0-9]{3,8}",
                "0x[0-9a-fA-F]{1,4}",
                "[A-Za-z][A-Za-z0-9_]{0,10}",
            ]),
            // Up to 20 characters, no separator at either end, anything
            // (colons, key-like words, non-ASCII) inside.
            proptest::option::of("[^\\s\\x00][^\\x00]{0,18}[^\\s\\x00]|[^\\s\\x00]"),
        )
            .prop_map(|(id, sub, dlvrd, submit_date, done_date, stat, err, text)| Receipt {
                id,
                sub,
                dlvrd,
                submit_date,
                done_date,
                stat,
                err,
                text,
            })
    }

    /// Fragments that steer random input into the parser's interesting paths.
    fn receipt_like() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("id:".to_owned()),
                Just("stat:".to_owned()),
                Just("submit".to_owned()),
                Just("done".to_owned()),
                Just("date:".to_owned()),
                Just("text:".to_owned()),
                Just("sub:".to_owned()),
                Just("err:".to_owned()),
                Just(" ".to_owned()),
                Just("\0".to_owned()),
                "[0-9]{0,14}",
                "\\PC{0,4}",
                any::<String>(),
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_strings(s in any::<String>()) {
            let _ = Receipt::parse(&s);
            let _ = Receipt::parse_strict(&s);
        }

        #[test]
        fn parse_never_panics_on_receipt_like_strings(s in receipt_like()) {
            if let Ok(r) = Receipt::parse(&s) {
                // Whatever was parsed can be written and parsed again.
                let again = Receipt::parse(&r.to_text());
                prop_assert!(again.is_ok());
            }
            let _ = Receipt::parse_strict(&s);
        }

        #[test]
        fn parse_never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Receipt::parse_bytes(&b);
        }

        #[test]
        fn build_then_parse_is_identity(r in arb_receipt()) {
            let text = r.to_text();
            prop_assert_eq!(Receipt::parse(&text), Ok(r.clone()), "text: {}", text);
            prop_assert_eq!(Receipt::parse_strict(&text), Ok(r));
        }

        #[test]
        fn date_round_trip(d in arb_date()) {
            prop_assert_eq!(ReceiptDate::parse(&d.to_string()), Ok(d));
        }

        #[test]
        fn date_parse_never_panics(s in "\\PC{0,14}|[0-9]{10}|[0-9]{12}") {
            let _ = ReceiptDate::parse(&s);
        }

        #[test]
        fn hex_decimal_round_trip(n in any::<u128>()) {
            let dec = n.to_string();
            let hex = normalise_message_id(&dec, IdStyle::DecimalToHex);
            prop_assert_eq!(hex.clone(), Some(format!("{n:x}")));
            let back = normalise_message_id(&hex.unwrap_or_default(), IdStyle::HexToDecimal);
            prop_assert_eq!(back, Some(dec));
        }

        #[test]
        fn normalise_never_panics(s in any::<String>()) {
            for style in [
                IdStyle::AsIs,
                IdStyle::CaseInsensitive,
                IdStyle::Hex,
                IdStyle::Decimal,
                IdStyle::HexToDecimal,
                IdStyle::DecimalToHex,
            ] {
                let _ = normalise_message_id(&s, style);
            }
        }
    }
}
