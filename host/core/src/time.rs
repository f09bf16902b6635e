//! Business time: the open-banking API writes times in the platform's zone
//! (KST by default) as fixed-width digit strings. The calendar is jiff's.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::tz::Offset;
use jiff::{Timestamp, civil};

/// Korea Standard Time, UTC+9, the reference platform's business zone.
pub const KST_OFFSET_MINUTES: i32 = 9 * 60;

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// The instant `unix_millis`; one past jiff's range (after 9999) is its end.
fn instant(unix_millis: u64) -> Timestamp {
    i64::try_from(unix_millis)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The wall-clock time at `unix_millis`, `offset_minutes` east of UTC. The
/// configuration keeps offsets within -12:00..=+14:00; one beyond what any
/// zone uses (±25:59) is read as UTC.
fn local(unix_millis: u64, offset_minutes: i32) -> civil::DateTime {
    let offset = offset_minutes
        .checked_mul(60)
        .and_then(|secs| Offset::from_seconds(secs).ok())
        .unwrap_or(Offset::UTC);
    offset.to_datetime(instant(unix_millis))
}

/// `YYYYMMDDhhmmssSSS` (17 digits), the format of `api_tran_dtm`.
pub fn format_dtm(unix_millis: u64, offset_minutes: i32) -> String {
    let t = local(unix_millis, offset_minutes);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}{:03}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// RFC 3339 in UTC to the second: `2026-11-22T13:05:09Z`.
pub fn rfc3339(unix_millis: u64) -> String {
    let t = local(unix_millis, 0);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Date and minute at `offset_minutes` east of UTC: `2026-11-22 22:05`.
pub fn date_and_minute(unix_millis: u64, offset_minutes: i32) -> String {
    let t = local(unix_millis, offset_minutes);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// A calendar date `YYYY-MM-DD` (sunset dates), checked for existence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(civil::Date);

impl Date {
    /// Parses `YYYY-MM-DD` (exactly: no other ISO 8601 spelling); `None`
    /// unless it names a real day.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let shape = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !shape {
            return None;
        }
        let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i16>().ok();
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let m = i8::try_from(m).ok()?;
        let d = i8::try_from(d).ok()?;
        civil::Date::new(y, m, d).ok().map(Self)
    }

    /// The day that contains `unix_millis` at `offset_minutes` east of UTC.
    pub fn of(unix_millis: u64, offset_minutes: i32) -> Self {
        Self(local(unix_millis, offset_minutes).date())
    }

    /// The IMF-fixdate of the day's first second UTC, as the `Sunset`
    /// header (RFC 8594) wants: `Thu, 31 Dec 2026 00:00:00 GMT`.
    pub fn http_date(self) -> String {
        let mut out = String::new();
        // A valid date always formats; `write!` to a String cannot fail.
        let _ = write!(out, "{}", self.0.strftime("%a, %d %b %Y 00:00:00 GMT"));
        out
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            self.0.month(),
            self.0.day()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_dtm(0, 0), "19700101000000000");
        // 2026-11-22T13:28:10.123Z is 22:28:10.123 in KST.
        assert_eq!(
            format_dtm(1_795_354_090_123, KST_OFFSET_MINUTES),
            "20261122222810123"
        );
        // Crossing midnight and a leap day: 2024-02-28T20:00Z is 2024-02-29 05:00 KST.
        assert_eq!(
            format_dtm(1_709_150_400_000, KST_OFFSET_MINUTES),
            "20240229050000000"
        );
    }

    /// Month, year and century ends, leap days (2000 is one, 2100 is not),
    /// as the hand-written calendar this module had before printed them.
    #[test]
    fn formats_across_month_and_year_ends() {
        let cases: &[(u64, i32, &str)] = &[
            // 2026-12-31T14:59:59.999Z is the last millisecond of 2026 in KST…
            (1_798_729_199_999, KST_OFFSET_MINUTES, "20261231235959999"),
            // …and one later is New Year.
            (1_798_729_200_000, KST_OFFSET_MINUTES, "20270101000000000"),
            (1_798_729_200_000, 0, "20261231150000000"),
            // 2000-02-29 (divisible by 400), 2100-03-01 (no Feb 29 in 2100).
            (951_782_400_000, 0, "20000229000000000"),
            (4_107_542_400_000, 0, "21000301000000000"),
            (4_107_542_399_000, 0, "21000228235959000"),
            // 2024-02-29 ends, 2024-03-01 begins, in KST.
            (1_709_218_799_000, KST_OFFSET_MINUTES, "20240229235959000"),
            (1_709_218_800_000, KST_OFFSET_MINUTES, "20240301000000000"),
            // 2026-04-30 → 05-01 and 2026-01-31 → 02-01 in KST.
            (1_777_561_200_000, KST_OFFSET_MINUTES, "20260501000000000"),
            (1_769_871_600_000, KST_OFFSET_MINUTES, "20260201000000000"),
            // West of UTC: the epoch is still 1969 in New York (-05:00).
            (0, -300, "19691231190000000"),
        ];
        for (ms, offset, want) in cases {
            assert_eq!(&format_dtm(*ms, *offset), want, "{ms} at {offset}");
        }
        assert_eq!(rfc3339(1_798_729_199_999), "2026-12-31T14:59:59Z");
        assert_eq!(
            date_and_minute(1_798_729_200_000, KST_OFFSET_MINUTES),
            "2027-01-01 00:00"
        );
        assert_eq!(
            Date::of(1_798_729_200_000, KST_OFFSET_MINUTES).to_string(),
            "2027-01-01"
        );
        assert_eq!(Date::of(1_798_729_200_000, 0).to_string(), "2026-12-31");
        assert_eq!(
            Date::parse("2100-03-01").map(Date::http_date).as_deref(),
            Some("Mon, 01 Mar 2100 00:00:00 GMT")
        );
        assert_eq!(Date::parse("2100-02-29"), None);
        assert_eq!(
            Date::parse("2000-02-29").map(|d| d.to_string()).as_deref(),
            Some("2000-02-29")
        );
        // Past jiff's range (year 9999) the end of it, not a panic.
        assert_eq!(&format_dtm(u64::MAX, 0)[..6], "999912");
    }

    #[test]
    fn dates_parse_only_real_days() {
        let date = Date::parse("2026-12-31").map(|d| (d.to_string(), d.http_date()));
        assert_eq!(
            date,
            Some(("2026-12-31".into(), "Thu, 31 Dec 2026 00:00:00 GMT".into()))
        );
        assert_eq!(
            Date::parse("2024-02-29").map(Date::http_date).as_deref(),
            Some("Thu, 29 Feb 2024 00:00:00 GMT")
        );
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "20261231",
            "2026-12-3x",
            "2026-+1-01",
            "+02026-12-31",
            "2026-12-31T00:00:00",
            "",
        ] {
            assert_eq!(Date::parse(bad), None, "{bad}");
        }
        assert_eq!(Date::of(0, 0).to_string(), "1970-01-01");
        assert!(Date::parse("2026-01-01") < Date::parse("2026-01-02"));
    }
}
