//! Timestamps as Go's `time.RFC3339Nano` writes them.
//!
//! Image configs are hashed into image IDs, and tools written in Go (skopeo, dockerd) re-marshal
//! configs they convert. Go trims trailing zeros from the fraction, so a timestamp written with a
//! fixed nine digits would come back with other bytes, and under another image ID.

use chrono::{DateTime, Timelike, Utc};

/// `t` in Go's RFC3339Nano form: UTC `Z`, fraction without trailing zeros, no dot when whole.
pub fn rfc3339_nano(t: DateTime<Utc>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// The current time in Go's RFC3339Nano form.
pub fn now_rfc3339_nano() -> String {
    rfc3339_nano(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(nanos: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 5, 30, 7).unwrap() + chrono::Duration::nanoseconds(nanos.into())
    }

    #[test]
    fn trailing_zeros_are_trimmed_as_go_does() {
        assert_eq!(rfc3339_nano(at(0)), "2026-11-28T05:30:07Z");
        assert_eq!(rfc3339_nano(at(120_000_000)), "2026-11-28T05:30:07.12Z");
        assert_eq!(rfc3339_nano(at(123_456_780)), "2026-11-28T05:30:07.12345678Z");
        assert_eq!(rfc3339_nano(at(123_456_789)), "2026-11-28T05:30:07.123456789Z");
        assert_eq!(rfc3339_nano(at(5)), "2026-11-28T05:30:07.000000005Z");
    }

    #[test]
    fn parses_back_to_the_same_instant() {
        let t = at(987_650_000);
        let parsed = DateTime::parse_from_rfc3339(&rfc3339_nano(t)).unwrap();
        assert_eq!(parsed.with_timezone(&Utc), t);
    }
}
