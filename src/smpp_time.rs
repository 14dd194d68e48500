//! SMPP time values (`YYMMDDhhmmsstnnp`, section 7.1.1) as Unix milliseconds.

use std::fmt::Write;

use smsmax_protocol::receipt::ReceiptDate;

/// Why a time field was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not of the form YYMMDDhhmmsstnnp")]
    Format,
    #[error("a date or time component is out of range")]
    Range,
}

/// The wall clock in Unix milliseconds, the unit every stored time uses
/// (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Resolves an SMPP time to Unix milliseconds. An empty value is `None`
/// (immediate delivery / the default validity). Relative times (`…R`) count
/// from `now_ms`, with a year as 365 days and a month as 30 days, as SMSCs do.
pub fn parse(value: &[u8], now_ms: u64) -> Result<Option<u64>, TimeError> {
    if value.is_empty() {
        return Ok(None);
    }
    let [y1, y2, mo1, mo2, d1, d2, h1, h2, mi1, mi2, s1, s2, t, n1, n2, p] = value else {
        return Err(TimeError::Format);
    };
    let digit = |c: &u8| -> Result<u64, TimeError> {
        if c.is_ascii_digit() {
            Ok(u64::from(c - b'0'))
        } else {
            Err(TimeError::Format)
        }
    };
    let two = |a: &u8, b: &u8| -> Result<u64, TimeError> { Ok(digit(a)? * 10 + digit(b)?) };
    let (yy, mo, dd) = (two(y1, y2)?, two(mo1, mo2)?, two(d1, d2)?);
    let (hh, mi, ss) = (two(h1, h2)?, two(mi1, mi2)?, two(s1, s2)?);
    let tenths = digit(t)?;
    let quarters = two(n1, n2)?;
    match p {
        b'R' => {
            if hh > 23 || mi > 59 || ss > 59 {
                return Err(TimeError::Range);
            }
            let days = yy * 365 + mo * 30 + dd;
            let secs = ((days * 24 + hh) * 60 + mi) * 60 + ss;
            Ok(Some(now_ms.saturating_add(secs * 1000)))
        }
        b'+' | b'-' => {
            if !(1..=12).contains(&mo) || dd == 0 || dd > days_in_month(2000 + yy, mo) || hh > 23 || mi > 59 || ss > 59
            {
                return Err(TimeError::Range);
            }
            if quarters > 48 {
                return Err(TimeError::Range);
            }
            let days = days_from_civil(2000 + yy as i64, mo as i64, dd as i64);
            let local_ms = ((days * 24 + hh as i64) * 3600 + mi as i64 * 60 + ss as i64) * 1000 + tenths as i64 * 100;
            // The value is local time `quarters` quarter-hours ahead of (+) or
            // behind (-) UTC.
            let offset_ms = quarters as i64 * 15 * 60 * 1000;
            let utc_ms = if *p == b'+' {
                local_ms - offset_ms
            } else {
                local_ms + offset_ms
            };
            u64::try_from(utc_ms).map(Some).map_err(|_| TimeError::Range)
        }
        _ => Err(TimeError::Format),
    }
}

/// Formats Unix milliseconds as an absolute SMPP time in UTC (`…000+`).
pub fn format_absolute(ms: u64) -> String {
    let [y, m, d, hour, minute, second] = utc(ms);
    let mut out = String::with_capacity(16);
    let _ = write!(
        out,
        "{:02}{:02}{:02}{:02}{:02}{:02}{}00+",
        y.rem_euclid(100),
        m,
        d,
        hour,
        minute,
        second,
        (ms % 1000) / 100
    );
    out
}

/// Unix milliseconds as a receipt's `submit date:` / `done date:`
/// (`YYMMDDhhmm` in UTC, Appendix B): the first ten digits of
/// [`format_absolute`]. An `Option` because [`ReceiptDate::new`] checks
/// its fields; a day count always gives a valid date.
///
/// Built from the fields, not by formatting and parsing text: both the
/// correlator (two per client receipt) and the simulator (two per receipt
/// it sends) call it for every message.
pub fn receipt_date(ms: u64) -> Option<ReceiptDate> {
    let [y, m, d, hour, minute, _] = utc(ms);
    let two = |n: i64| u8::try_from(n).ok();
    ReceiptDate::new(
        two(y.rem_euclid(100))?,
        two(m)?,
        two(d)?,
        two(hour)?,
        two(minute)?,
        None,
    )
    .ok()
}

/// Unix milliseconds as UTC year, month, day, hour, minute and second.
fn utc(ms: u64) -> [i64; 6] {
    // u64::MAX / 1000 fits an i64.
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    [y, m, d, rem / 3600, rem % 3600 / 60, rem % 60]
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_dates_in_utc_minutes() {
        // 2026-01-01 12:00:00 UTC.
        let date = |ms| receipt_date(ms).map(|d| d.to_string());
        assert_eq!(date(1_767_268_800_000).as_deref(), Some("2601011200"));
        // Seconds are dropped, not rounded: 2026-01-01 12:01:59.999.
        assert_eq!(date(1_767_268_919_999).as_deref(), Some("2601011201"));
        // 2024-02-29 23:59 (a leap day), 2000-01-01 00:00, 2099-12-31 23:59.
        assert_eq!(date(1_709_251_140_000).as_deref(), Some("2402292359"));
        assert_eq!(date(946_684_800_000).as_deref(), Some("0001010000"));
        assert_eq!(date(4_102_444_799_000).as_deref(), Some("9912312359"));
        // Two digits of the year, as in absolute times: 1999-12-31 23:59.
        assert_eq!(date(946_684_799_999).as_deref(), Some("9912312359"));
        assert!(date(u64::MAX).is_some());
        // The same minute as the absolute time's first ten digits, every day of a year.
        for day in 0..366u64 {
            let ms = 1_735_689_600_000 + day * 86_400_000 + day * 3_599_321;
            assert_eq!(date(ms).unwrap(), format_absolute(ms)[..10]);
        }
    }

    #[test]
    fn absolute_times_in_utc_and_with_offsets() {
        // 2026-01-01 12:00:00 UTC = 1767268800.
        assert_eq!(parse(b"260101120000000+", 0), Ok(Some(1_767_268_800_000)));
        // Four quarter-hours ahead: local 13:00 is 12:00 UTC.
        assert_eq!(parse(b"260101130000004+", 0), Ok(Some(1_767_268_800_000)));
        assert_eq!(parse(b"260101110000004-", 0), Ok(Some(1_767_268_800_000)));
        assert_eq!(parse(b"260101120000500+", 0), Ok(Some(1_767_268_800_500)));
        assert_eq!(parse(b"", 0), Ok(None));
    }

    #[test]
    fn relative_times_count_from_now() {
        assert_eq!(parse(b"000001000000000R", 1_000), Ok(Some(1_000 + 86_400_000)));
        assert_eq!(parse(b"000000001500000R", 0), Ok(Some(15 * 60_000)));
    }

    #[test]
    fn bad_values_are_refused() {
        assert_eq!(parse(b"261301120000000+", 0), Err(TimeError::Range));
        assert_eq!(parse(b"260230120000000+", 0), Err(TimeError::Range));
        assert_eq!(parse(b"240229120000000+", 0).map(|v| v.is_some()), Ok(true));
        assert_eq!(parse(b"260101250000000+", 0), Err(TimeError::Range));
        assert_eq!(parse(b"260101120000049+", 0), Err(TimeError::Range));
        assert_eq!(parse(b"2601011200000x0+", 0), Err(TimeError::Format));
        assert_eq!(parse(b"26010112000000+", 0), Err(TimeError::Format));
        assert_eq!(parse(b"260101120000000*", 0), Err(TimeError::Format));
    }

    #[test]
    fn format_round_trips() {
        let ms = 1_767_268_800_000 + 61_000 + 300;
        assert_eq!(format_absolute(ms), "260101120101300+");
        assert_eq!(parse(format_absolute(ms).as_bytes(), 0), Ok(Some(ms)));
    }
}
