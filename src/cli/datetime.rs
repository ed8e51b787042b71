//! `--to-datetime` values: RFC 3339 (`2026-01-02T03:04:05Z`, `2026-01-02T03:04:05.250+02:00`)
//! or milliseconds since the Unix epoch. Parsed by hand: a date library for one format would
//! outweigh the rest of the command line.

/// Milliseconds since the Unix epoch (UTC) of `text`.
pub fn parse_millis(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map_err(|_| format!("{text} is too large for epoch milliseconds"));
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!(
            "{text:?} is neither epoch milliseconds nor an RFC 3339 time such as \
             2026-01-02T03:04:05Z"
        )
    })
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators
        .iter()
        .any(|&(at, separator)| bytes[at] != separator)
    {
        return None;
    }
    let year = number(&text[0..4])?;
    let month = number(&text[5..7])?;
    let day = number(&text[8..10])?;
    let hour = number(&text[11..13])?;
    let minute = number(&text[14..16])?;
    let second = number(&text[17..19])?;
    // Leap seconds (60) are accepted by RFC 3339 and folded into the next second, as most
    // clocks do.
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Finer than milliseconds is truncated: offsets are looked up by millisecond.
        let kept = &fraction[..digits.min(3)];
        millis = number(kept)? * 10_i64.pow(3 - kept.len() as u32);
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        zone if zone.len() == 6 && zone.as_bytes()[3] == b':' => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hours = number(&zone[1..3])?;
            let minutes = number(&zone[4..6])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(seconds * 1000 + millis)
}

fn number(digits: &str) -> Option<i64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_read_as_utc_epoch_milliseconds() {
        assert_eq!(parse_millis("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_millis("2026-01-02T03:04:05Z"), Ok(1_767_323_045_000));
        assert_eq!(
            parse_millis("2026-01-02T03:04:05.25Z"),
            Ok(1_767_323_045_250)
        );
        assert_eq!(
            parse_millis("2026-01-02T05:04:05+02:00"),
            Ok(1_767_323_045_000)
        );
        assert_eq!(
            parse_millis("2026-01-01T22:04:05.123456-05:00"),
            Ok(1_767_323_045_123)
        );
        assert_eq!(parse_millis("2024-02-29T12:00:00Z"), Ok(1_709_208_000_000));
        assert_eq!(parse_millis("1969-12-31T23:59:59Z"), Ok(-1000));
    }

    #[test]
    fn digits_alone_are_epoch_milliseconds() {
        assert_eq!(parse_millis("1767323045000"), Ok(1_767_323_045_000));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "yesterday",
            "2026-01-02",
            "2026-01-02T03:04:05",
            "2026-13-02T03:04:05Z",
            "2025-02-29T03:04:05Z",
            "2026-01-02T24:00:00Z",
            "2026-01-02T03:04:05.Z",
            "2026-01-02T03:04:05+2:00",
            "-5",
        ] {
            assert!(parse_millis(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
