//! How long to wait before retrying: Graph's `Retry-After` when it sends one,
//! else exponential backoff with full jitter.
//!
//! Graph sends `Retry-After` in seconds and sometimes fractional ("2.128",
//! see graph-api.md §2.2); HTTP also allows an HTTP-date. Some throttling
//! answers omit it, and then clients must back off on their own: with full
//! jitter (a uniform wait between zero and an exponentially growing ceiling)
//! so that many clients throttled at once do not all come back at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::{OsRng, RngCore};

/// The wait before retry number `retry` (0 for the first retry): the
/// `Retry-After` value if there is one that parses, else [`backoff`] with a
/// fresh random draw; never more than `cap`.
pub(crate) fn wait(
    retry_after: Option<&str>,
    retry: u32,
    base: Duration,
    cap: Duration,
) -> Duration {
    match retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())) {
        Some(wait) => wait.min(cap),
        None => backoff(retry, base, cap, jitter()),
    }
}

/// Parses a `Retry-After` value received at `now`: delay-seconds, which may
/// be fractional (`"2.128"`), or an IMF-fixdate (`"Sun, 06 Nov 1994 08:49:37
/// GMT"`, the only date form RFC 9110 lets senders generate). A date in the
/// past is a wait of zero. Anything else is `None`, and the caller falls back
/// to backoff rather than trusting a value it cannot read.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(seconds) = parse_seconds(value) {
        return Some(seconds);
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `DIGITS` or `DIGITS.DIGITS`; nothing `f64::from_str` would also accept
/// (signs, exponents, `inf`, `NaN`).
fn parse_seconds(value: &str) -> Option<Duration> {
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return None;
    }
    let seconds: f64 = value.parse().ok()?;
    // Too large to represent is still a valid "wait a very long time": the
    // caller's cap applies.
    Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), strictly.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = value.split(' ').collect();
    let [weekday, day, month, year, clock, "GMT"] = parts.as_slice() else {
        return None;
    };
    let weekday = weekday.strip_suffix(',')?;
    if !WEEKDAYS.contains(&weekday) {
        return None;
    }
    let number = |s: &str, len: usize| -> Option<u64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let day = number(day, 2)?;
    let month = MONTHS.iter().position(|m| m == month)?;
    let year = number(year, 4)?;
    let mut hms = clock.split(':');
    let (hour, minute, second) = (
        number(hms.next()?, 2)?,
        number(hms.next()?, 2)?,
        number(hms.next()?, 2)?,
    );
    if hms.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let month = u64::try_from(month).ok()? + 1;
    if day == 0 || day > days_in_month(year, month) || year < 1970 {
        return None;
    }
    let days = days_since_epoch(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date on or after it (proleptic Gregorian).
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let before_year: u64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let before_month: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    before_year + before_month + day - 1
}

/// Full-jitter exponential backoff: `unit` (in `[0, 1]`) of
/// `min(cap, base * 2^retry)`.
pub fn backoff(retry: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let ceiling = base
        .checked_mul(2u32.saturating_pow(retry))
        .unwrap_or(Duration::MAX)
        .min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// A uniform draw from `[0, 1]` from the operating system's generator. If
/// that fails there is no jitter (the full ceiling): a wait that is too long
/// is harmless, one that synchronises clients is not.
fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    match OsRng.try_fill_bytes(&mut bytes) {
        // 53 bits: exactly representable, so the result is in [0, 1].
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / ((1u64 << 53) - 1) as f64,
        Err(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn retry_after_takes_integer_and_fractional_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("2.128", now),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(
            parse_retry_after(" 0.2 ", now),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::MAX)
        );
    }

    #[test]
    fn retry_after_takes_an_http_date() {
        // 1994-11-06T08:49:37Z is 784111777.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            parse_retry_after(date, at(784_111_777 - 5)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after(date, at(784_111_777 + 60)),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT"),
            Some(at(1_709_251_199))
        );
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(at(0))
        );
    }

    #[test]
    fn garbage_retry_after_falls_back_to_backoff() {
        let now = SystemTime::now();
        for garbage in [
            "",
            "soon",
            "-1",
            "+1",
            "1e3",
            "inf",
            "NaN",
            "1.",
            ".5",
            "1.2.3",
            "0x10",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 2023 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(30);
        for retry in 0..6 {
            let waited = wait(Some("soon"), retry, base, cap);
            assert!(waited <= base * 2u32.pow(retry), "{retry}: {waited:?}");
        }
    }

    #[test]
    fn retry_after_is_capped() {
        let cap = Duration::from_secs(30);
        let base = Duration::from_secs(1);
        assert_eq!(wait(Some("120"), 0, base, cap), cap);
        assert_eq!(wait(Some("0.2"), 3, base, cap), Duration::from_millis(200));
    }

    #[test]
    fn backoff_grows_exponentially_within_the_cap() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(30);
        assert_eq!(backoff(0, base, cap, 1.0), base);
        assert_eq!(backoff(1, base, cap, 1.0), base * 2);
        assert_eq!(backoff(3, base, cap, 1.0), base * 8);
        assert_eq!(
            backoff(6, base, cap, 1.0),
            cap,
            "500 ms * 64 is over the cap"
        );
        assert_eq!(backoff(u32::MAX, base, cap, 1.0), cap, "no overflow");
        assert_eq!(backoff(3, base, cap, 0.0), Duration::ZERO);
        assert_eq!(backoff(3, base, cap, 0.5), base * 4);
        assert_eq!(backoff(3, base, cap, 7.0), base * 8, "unit is clamped");
    }

    #[test]
    fn jitter_is_a_unit_draw_that_varies() {
        let draws: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(draws.iter().all(|d| (0.0..=1.0).contains(d)));
        let first = draws[0];
        assert!(draws.iter().any(|d| *d != first), "64 equal draws");
        for retry in 0..10 {
            let w = wait(
                None,
                retry,
                Duration::from_millis(100),
                Duration::from_secs(2),
            );
            assert!(w <= Duration::from_millis(100) * 2u32.pow(retry).min(20));
        }
    }
}
