//! Time as the facts carry it: the request's instant, the tenant's local hour
//! and weekday, and Graph's RFC 3339 instants read as Unix seconds.

use std::time::Duration;

use latchkey_policy::{Clock, Weekday};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::InvestigateError;

/// The facts' clock for `now` (Unix seconds) in a tenant `offset_minutes`
/// from UTC.
pub(super) fn local(now: i64, offset_minutes: i16) -> Result<Clock, InvestigateError> {
    let offset = UtcOffset::from_whole_seconds(i32::from(offset_minutes) * 60)
        .map_err(|e| InvestigateError::InvalidSettings(format!("utc_offset_minutes: {e}")))?;
    let local = instant(now)?.to_offset(offset);
    Ok(Clock {
        unix_seconds: now,
        local_hour: local.hour(),
        local_weekday: match local.weekday() {
            time::Weekday::Monday => Weekday::Monday,
            time::Weekday::Tuesday => Weekday::Tuesday,
            time::Weekday::Wednesday => Weekday::Wednesday,
            time::Weekday::Thursday => Weekday::Thursday,
            time::Weekday::Friday => Weekday::Friday,
            time::Weekday::Saturday => Weekday::Saturday,
            time::Weekday::Sunday => Weekday::Sunday,
        },
    })
}

/// `now - look_back` as an OData `Edm.DateTimeOffset` literal
/// (`2026-11-22T10:00:00Z`).
pub(super) fn window_start(now: i64, look_back: Duration) -> Result<String, InvestigateError> {
    let back = i64::try_from(look_back.as_secs()).unwrap_or(i64::MAX);
    let start = instant(now.saturating_sub(back))?;
    start.format(&Rfc3339).map_err(|e| {
        InvestigateError::InvalidInquiry(format!("now - look_back cannot be written: {e}"))
    })
}

/// Graph's instant (`2026-11-23T09:53:12.1234567Z`) in Unix seconds.
pub(super) fn parse_instant(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

fn instant(unix_seconds: i64) -> Result<OffsetDateTime, InvestigateError> {
    OffsetDateTime::from_unix_timestamp(unix_seconds).map_err(|_| {
        InvestigateError::InvalidInquiry(format!(
            "now is {unix_seconds}, which is no instant Graph can query; give Unix seconds"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monday 2026-11-23 10:00 UTC, the corpora's base time.
    const MONDAY_10_UTC: i64 = 1_795_428_000;

    #[test]
    fn the_local_hour_and_weekday_follow_the_offset() {
        let utc = local(MONDAY_10_UTC, 0).unwrap();
        assert_eq!((utc.local_hour, utc.local_weekday), (10, Weekday::Monday));
        assert_eq!(utc.unix_seconds, MONDAY_10_UTC);
        // New York in November: 05:00 the same Monday.
        let east = local(MONDAY_10_UTC, -300).unwrap();
        assert_eq!((east.local_hour, east.local_weekday), (5, Weekday::Monday));
        // Kiritimati (UTC+14): already Tuesday, midnight.
        let kiribati = local(MONDAY_10_UTC, 840).unwrap();
        assert_eq!(
            (kiribati.local_hour, kiribati.local_weekday),
            (0, Weekday::Tuesday)
        );
        // Baker Island (UTC-12): still Sunday, 22:00.
        let baker = local(MONDAY_10_UTC, -720).unwrap();
        assert_eq!(
            (baker.local_hour, baker.local_weekday),
            (22, Weekday::Sunday)
        );
        // India, a half-hour offset: 15:30, hour 15.
        assert_eq!(local(MONDAY_10_UTC, 330).unwrap().local_hour, 15);
    }

    #[test]
    fn the_window_starts_look_back_before_now_as_an_odata_literal() {
        assert_eq!(
            window_start(MONDAY_10_UTC, Duration::from_secs(24 * 3600)).unwrap(),
            "2026-11-22T10:00:00Z"
        );
    }

    #[test]
    fn instants_out_of_range_are_errors_not_panics() {
        assert!(local(i64::MAX, 0).is_err());
        assert!(window_start(i64::MIN, Duration::from_secs(60)).is_err());
        assert!(window_start(0, Duration::MAX).is_err());
    }

    #[test]
    fn graph_instants_parse_with_seven_fractional_digits() {
        assert_eq!(
            parse_instant("2026-11-23T10:00:00.1234567Z"),
            Some(MONDAY_10_UTC)
        );
        assert_eq!(parse_instant("2026-11-23T10:00:00Z"), Some(MONDAY_10_UTC));
        assert_eq!(parse_instant("yesterday"), None);
    }
}
