//! Time as the exporter carries it: Unix seconds now, API timestamps parsed to Unix
//! seconds, the range of times it accepts, and RFC 3339 text that cannot fail. A leaf.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as metrics carry time.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Timestamps outside these years are taken as unparseable (the member stays, without
/// the timestamp): IMS did not exist before 2000, and nothing is shared in 2200.
const MIN_YEAR: i64 = 2000;
const MAX_YEAR: i64 = 2199;
/// 2000-01-01T00:00:00Z and 2200-01-01T00:00:00Z: the same years as Unix seconds.
const FIRST_UNIX: f64 = 946_684_800.0;
const END_UNIX: f64 = 7_258_118_400.0;
/// 10000-01-01T00:00:00Z: RFC 3339 has four-digit years.
const RFC3339_END_UNIX: f64 = 253_402_300_800.0;

/// Whether `unix` is a time in the years 2000–2199, as [`parse_timestamp`] accepts
/// them (never NaN or an infinity). Times read back from the state file are held to it.
pub fn in_range(unix: f64) -> bool {
    (FIRST_UNIX..END_UNIX).contains(&unix)
}

/// `unix` as RFC 3339 in UTC, to the second; `None` (never a panic) for NaN, the
/// infinities and times before 1970 or after 9999.
pub fn format_rfc3339(unix: f64) -> Option<String> {
    use std::fmt::Write;
    if !(0.0..RFC3339_END_UNIX).contains(&unix) {
        return None;
    }
    let t = UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(unix).ok()?)?;
    let mut text = String::with_capacity(20);
    // `write!`, not `to_string`: a formatting error is a `None`, not a panic.
    write!(text, "{}", humantime::format_rfc3339_seconds(t)).ok()?;
    Some(text)
}

/// Parses an API timestamp to Unix seconds. Accepts RFC 3339 and the variants IMS
/// emits: `T` or space, optional fraction, `Z`, an offset, or no zone (taken as UTC).
pub fn parse_timestamp(s: &str) -> Option<f64> {
    // Called twice for every member of every poll: digits are read without
    // allocating (unless there is a fraction), and the date converted by arithmetic.
    // A timestamp that starts with a digit and ends in an ASCII letter or digit has
    // nothing to trim (Unicode-aware trimming was a sixth of this function).
    let bare = |c: Option<&u8>| c.is_some_and(u8::is_ascii_alphanumeric);
    let s = match bare(s.as_bytes().first()) && bare(s.as_bytes().last()) {
        true => s,
        false => s.trim(),
    };
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let (fraction, offset_secs) = fraction_and_offset(&s[19..])?;
    let unix = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    Some(unix as f64 + fraction)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`), without a calendar library's checks on the hot path: the
/// caller has checked the date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What follows the seconds: an optional fraction, then `Z`, an offset or nothing
/// (UTC). Returns (fraction of a second, offset east of UTC in seconds).
fn fraction_and_offset(rest: &str) -> Option<(f64, i64)> {
    let mut rest = rest;
    let mut fraction = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        fraction = format!("0.{}", &r[..digits]).parse().ok()?;
        rest = &r[digits..];
    }
    let offset_secs: i64 = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hm = rest[1..].replace(':', "");
            if hm.len() != 4 || !hm.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let h: i64 = hm[..2].parse().ok()?;
            let m: i64 = hm[2..].parse().ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    Some((fraction, offset_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let base = 1_692_763_672.0; // 2023-08-23T04:07:52Z
        assert_eq!(parse_timestamp("2023-08-23T04:07:52Z"), Some(base));
        assert_eq!(parse_timestamp("2023-08-23T04:07:52"), Some(base));
        assert_eq!(parse_timestamp("2023-08-23 04:07:52"), Some(base));
        assert_eq!(parse_timestamp("2023-08-23T04:07:52.5Z"), Some(base + 0.5));
        assert_eq!(parse_timestamp("2023-08-23T04:07:52.000000Z"), Some(base));
        assert_eq!(parse_timestamp("2023-08-23T12:07:52+08:00"), Some(base));
        assert_eq!(parse_timestamp("2023-08-23T12:07:52+0800"), Some(base));
        assert_eq!(
            parse_timestamp("2024-02-29T00:00:00Z"),
            Some(1_709_164_800.0)
        );
        assert_eq!(parse_timestamp("2000-02-29T00:00:00Z"), Some(951_782_400.0));
        assert_eq!(
            parse_timestamp("2199-12-31T23:59:59Z"),
            Some(7_258_118_399.0)
        );
        // The same as the `time` crate for every day of the two centuries accepted.
        let mut date = time::Date::from_calendar_date(2000, time::Month::January, 1).unwrap();
        while date.year() < 2200 {
            let text = format!("{date}T01:02:03Z");
            let want = date
                .with_hms(1, 2, 3)
                .unwrap()
                .assume_utc()
                .unix_timestamp() as f64;
            assert_eq!(parse_timestamp(&text), Some(want), "{text}");
            date = date.next_day().unwrap();
        }
        for bad in [
            "",
            "yesterday",
            "2023-13-23T04:07:52Z",
            "2023-08-23T04:07:52Q",
            "2023-08-23T04:07:5x",
            "2023-08-23T04:07:52.Z",
            "２０２３-08-23T04:07:52Z",
            "2023-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2023-04-31T00:00:00Z",
            "2023-08-23T24:00:00Z",
            "2023-08-23T04:60:00Z",
            "2023-08-23T04:07:60Z",
            "2023-00-10T04:07:52Z",
            // Outside the years accepted: the member is kept without the timestamp.
            "0000-01-01T00:00:00Z",
            "1970-01-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "2200-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        let base = parse_timestamp("2023-08-23T04:07:52Z");
        for padded in [
            " 2023-08-23T04:07:52Z",
            "2023-08-23T04:07:52Z\n",
            "\u{3000}2023-08-23T04:07:52Z ",
        ] {
            assert_eq!(parse_timestamp(padded), base, "{padded:?}");
        }
    }

    #[test]
    fn the_range_is_the_parsers() {
        let first = parse_timestamp("2000-01-01T00:00:00Z").unwrap();
        let last = parse_timestamp("2199-12-31T23:59:59Z").unwrap();
        assert!(in_range(first) && in_range(last) && in_range(last + 0.999));
        assert!(!in_range(first - 0.001) && !in_range(last + 1.0));
        for bad in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            0.0,
            1e13,
            1e300,
        ] {
            assert!(!in_range(bad), "{bad}");
        }
    }

    #[test]
    fn formatting_cannot_fail() {
        assert_eq!(
            format_rfc3339(1_692_763_672.9).as_deref(),
            Some("2023-08-23T04:07:52Z")
        );
        assert_eq!(format_rfc3339(0.0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            format_rfc3339(RFC3339_END_UNIX - 1.0).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        for bad in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            -1e300,
            RFC3339_END_UNIX,
            1e13,
            1e15,
            1e19,
            1e300,
            f64::MAX,
        ] {
            assert_eq!(format_rfc3339(bad), None, "{bad}");
        }
    }
}
