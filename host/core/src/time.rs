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
}
