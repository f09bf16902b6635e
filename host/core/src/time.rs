//! Business time: the open-banking API writes times in the platform's zone
//! (KST by default) as fixed-width digit strings.

use std::time::{SystemTime, UNIX_EPOCH};

/// Korea Standard Time, UTC+9, the reference platform's business zone.
pub const KST_OFFSET_MINUTES: i32 = 9 * 60;

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// `YYYYMMDDhhmmssSSS` (17 digits), the format of `api_tran_dtm`.
pub fn format_dtm(unix_millis: u64, offset_minutes: i32) -> String {
    let local = unix_millis as i64 + i64::from(offset_minutes) * 60_000;
    let millis = local.rem_euclid(1000);
    let secs = local.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}{millis:03}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// A calendar date `YYYY-MM-DD` (sunset dates), checked for existence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    days: i64,
}

impl Date {
    /// Parses `YYYY-MM-DD`; `None` unless it names a real day.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let s = text.get(r)?;
            s.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| s.parse().ok())?
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let days = days_from_civil(y, m, d);
        (civil_from_days(days) == (y, m as u32, d as u32)).then_some(Self { days })
    }

    /// The day that contains `unix_millis` at `offset_minutes` east of UTC.
    pub fn of(unix_millis: u64, offset_minutes: i32) -> Self {
        let local = unix_millis as i64 + i64::from(offset_minutes) * 60_000;
        Self {
            days: local.div_euclid(86_400_000),
        }
    }

    /// The IMF-fixdate of the day's first second UTC, as the `Sunset`
    /// header (RFC 8594) wants: `Thu, 31 Dec 2026 00:00:00 GMT`.
    pub fn http_date(self) -> String {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let (y, m, d) = civil_from_days(self.days);
        let weekday = DAYS[self.days.rem_euclid(7) as usize];
        let month = MONTHS[(m - 1) as usize];
        format!("{weekday}, {d:02} {month} {y:04} 00:00:00 GMT")
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = civil_from_days(self.days);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// (year, month, day) to days since 1970-01-01; the inverse of `civil_from_days`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
            "",
        ] {
            assert_eq!(Date::parse(bad), None, "{bad}");
        }
        assert_eq!(Date::of(0, 0).to_string(), "1970-01-01");
        assert!(Date::parse("2026-01-01") < Date::parse("2026-01-02"));
    }
}
