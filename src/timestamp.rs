//! Time as the exporter carries it: Unix seconds now, and API timestamps parsed to
//! Unix seconds. A leaf.

use std::time::{SystemTime, UNIX_EPOCH};

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

/// Parses an API timestamp to Unix seconds. Accepts RFC 3339 and the variants IMS
/// emits: `T` or space, optional fraction, `Z`, an offset, or no zone (taken as UTC).
pub fn parse_timestamp(s: &str) -> Option<f64> {
    // Called twice for every member of every poll: digits are read without
    // allocating (unless there is a fraction); `time` checks and converts the date.
    let s = s.trim();
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
    let date = time::Date::from_calendar_date(
        i32::try_from(year).ok()?,
        time::Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let tod = time::Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    let mut rest = &s[19..];
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
    let unix = time::PrimitiveDateTime::new(date, tod)
        .assume_utc()
        .unix_timestamp()
        - offset_secs;
    Some(unix as f64 + fraction)
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
}
