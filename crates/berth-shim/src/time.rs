//! RFC 3339 timestamps with nanoseconds, UTC (`2026-01-01T00:00:00.123456789Z`), without chrono.

use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `t` formatted as RFC 3339 with 9 fractional digits and a `Z`.
pub fn write_rfc3339(t: SystemTime, out: &mut Vec<u8>) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, sod) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    push_num(out, y.max(0) as u64, 4);
    out.push(b'-');
    push_num(out, u64::from(m), 2);
    out.push(b'-');
    push_num(out, u64::from(day), 2);
    out.push(b'T');
    push_num(out, sod / 3600, 2);
    out.push(b':');
    push_num(out, sod / 60 % 60, 2);
    out.push(b':');
    push_num(out, sod % 60, 2);
    out.push(b'.');
    push_num(out, u64::from(d.subsec_nanos()), 9);
    out.push(b'Z');
}

/// `t` as an RFC 3339 string.
pub fn rfc3339(t: SystemTime) -> String {
    let mut v = Vec::with_capacity(30);
    write_rfc3339(t, &mut v);
    String::from_utf8(v).unwrap_or_default()
}

/// Appends the last `width` decimal digits of `v`, zero-padded.
fn push_num(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut digits = [b'0'; 20];
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // 2026-01-01T00:00:00Z = 1767225600
        let t = UNIX_EPOCH + Duration::new(1_767_225_600, 123_456_789);
        assert_eq!(rfc3339(t), "2026-01-01T00:00:00.123456789Z");
        // 2024-02-29T23:59:59Z = 1709251199 (leap day)
        let t = UNIX_EPOCH + Duration::new(1_709_251_199, 5);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.000000005Z");
    }
}
