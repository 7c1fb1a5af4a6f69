//! Human-readable sizes and durations, ported from Go's `github.com/docker/go-units`
//! (the package the docker CLI uses for `SIZE`, `CREATED`, ... columns), so that
//! berth prints exactly the same strings as docker.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DECIMAL_ABBRS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY_ABBRS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// Divides `size` by `base` until it is below `base` (or the units run out).
fn size_and_unit(mut size: f64, base: f64, units: &'static [&'static str]) -> (f64, &'static str) {
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, units[i])
}

/// go-units `HumanSizeWithPrecision(size, 3)`: decimal units (base 1000), 3 significant
/// digits, e.g. `4_261_000.0` → `"4.26MB"`. This is what `docker images` / `docker ps -s` show.
pub fn human_size(bytes: f64) -> String {
    human_size_with_precision(bytes, 3)
}

/// go-units `HumanSizeWithPrecision`: `fmt.Sprintf("%.*g%s", precision, size, unit)`.
/// (go-units' own `HumanSize` is this with precision 4.)
pub fn human_size_with_precision(bytes: f64, precision: usize) -> String {
    let (size, unit) = size_and_unit(bytes, 1000.0, &DECIMAL_ABBRS);
    format!("{}{}", go_fmt_g(size, precision), unit)
}

/// go-units `BytesSize`: binary units (base 1024) formatted with `%.4g`,
/// e.g. `1536.0` → `"1.5KiB"`.
pub fn bytes_size(bytes: f64) -> String {
    let (size, unit) = size_and_unit(bytes, 1024.0, &BINARY_ABBRS);
    format!("{}{}", go_fmt_g(size, 4), unit)
}

/// Go's `fmt.Sprintf("%.*g", precision, v)` (i.e. `strconv.FormatFloat(v, 'g', precision, 64)`):
/// `precision` significant digits, trailing zeros removed, exponent form (`1e+03`) when the
/// decimal exponent is < -4 or >= precision. Rounding is exact, ties to even, like Go.
pub fn go_fmt_g(v: f64, precision: usize) -> String {
    go_format_g(v, Some(precision.max(1)))
}

/// Go's `%v` for a `float64` (`strconv.FormatFloat(v, 'g', -1, 64)`): the shortest
/// round-tripping digits, exponent form when the exponent is < -4 or >= 6
/// (`1e+06`, `123456`, `0.5`, `1.5e-05`).
pub fn go_fmt_float(v: f64) -> String {
    go_format_g(v, None)
}

fn go_format_g(v: f64, precision: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let neg = v.is_sign_negative() && v != 0.0;
    // Rust's `{:e}` with a precision rounds the exact binary value, ties to even, and
    // without one prints the shortest round-tripping digits — both as Go does.
    let sci = match precision {
        Some(p) => format!("{:.*e}", p - 1, v.abs()),
        None => format!("{:e}", v.abs()),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    // `dp` is the position of the decimal point relative to the digits (Go's `digs.dp`).
    let (nd, dp) = if digits.is_empty() {
        (0i32, 0i32)
    } else {
        (digits.len() as i32, exp + 1)
    };
    let shortest = precision.is_none();
    let prec = precision.map_or(nd, |p| p as i32);

    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let mut eprec = prec;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let x = dp - 1;
    if x < -4 || x >= eprec {
        // %e form with min(prec, nd) significant digits.
        let p = prec.min(nd).max(1) as usize;
        out.push(digits.first().copied().unwrap_or(b'0') as char);
        if p > 1 {
            out.push('.');
            for i in 1..p {
                out.push(digits.get(i).copied().unwrap_or(b'0') as char);
            }
        }
        out.push('e');
        out.push(if x < 0 { '-' } else { '+' });
        let ax = x.unsigned_abs();
        if ax < 10 {
            out.push('0');
        }
        out.push_str(&ax.to_string());
        return out;
    }
    // %f form.
    let p = if prec > dp { nd } else { prec };
    let decimals = (p - dp).max(0);
    let digit_at = |i: i32| -> char {
        if i >= 0 && i < nd {
            digits[i as usize] as char
        } else {
            '0'
        }
    };
    if dp > 0 {
        for i in 0..dp {
            out.push(digit_at(i));
        }
    } else {
        out.push('0');
    }
    if decimals > 0 {
        out.push('.');
        for i in 0..decimals {
            out.push(digit_at(dp + i));
        }
    }
    out
}

/// go-units `HumanDuration`: a human-readable approximation of a duration
/// ("Less than a second", "About a minute", "3 hours", "2 weeks", ...).
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 1 {
        return "Less than a second".to_string();
    }
    if seconds == 1 {
        return "1 second".to_string();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".to_string();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Go: int(d.Round(time.Hour).Hours()) — halves round up.
    const HOUR_NS: u128 = 3_600_000_000_000;
    let hours = ((d.as_nanos() + HOUR_NS / 2) / HOUR_NS) as u64;
    if hours == 1 {
        return "About an hour".to_string();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    // Go: int(d.Hours())/24/365 — truncated, not rounded.
    format!("{} years", seconds / 3600 / 24 / 365)
}

/// `human_duration(now - ts) + " ago"`, as docker shows in `CREATED` columns
/// ("2 hours ago"). Timestamps in the future count as zero ("Less than a second ago").
pub fn since(ts_unix: i64) -> String {
    since_at(ts_unix, SystemTime::now())
}

/// [`since`] relative to an explicit `now` (for tests and consistent listings).
pub fn since_at(ts_unix: i64, now: SystemTime) -> String {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let elapsed = if ts_unix < 0 {
        now + Duration::from_secs(ts_unix.unsigned_abs())
    } else {
        now.saturating_sub(Duration::from_secs(ts_unix as u64))
    };
    format!("{} ago", human_duration(elapsed))
}

/// go-units `FromHumanSize`: parses "10", "10b", "1.5kB", "32 MB", "1G" with decimal
/// (1000-based) multipliers. Case-insensitive; an optional trailing "b"/"ib" is accepted.
#[allow(dead_code)] // for size flags such as `run --memory` (containers, next)
pub fn from_human_size(s: &str) -> anyhow::Result<i64> {
    parse_size(s, 1000)
}

/// go-units `RAMInBytes`: like [`from_human_size`] but with binary (1024-based)
/// multipliers, as docker uses for `--memory 512m`, `--shm-size 64m`, ...
#[allow(dead_code)] // for size flags such as `run --memory` (containers, next)
pub fn ram_in_bytes(s: &str) -> anyhow::Result<i64> {
    parse_size(s, 1024)
}

#[allow(dead_code)]
fn parse_size(size_str: &str, base: i64) -> anyhow::Result<i64> {
    let Some(sep) = size_str.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ') else {
        anyhow::bail!("invalid size: '{size_str}'");
    };
    let (num, sfx) = if size_str.as_bytes()[sep] != b' ' {
        (&size_str[..=sep], &size_str[sep + 1..])
    } else {
        (&size_str[..sep], &size_str[sep + 1..])
    };
    let size: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("strconv.ParseFloat: parsing \"{num}\": invalid syntax"))?;
    if size < 0.0 {
        anyhow::bail!("invalid size: '{size_str}'");
    }
    if sfx.is_empty() {
        return Ok(size as i64);
    }
    let bad = || anyhow::anyhow!("invalid suffix: '{sfx}'");
    if sfx.len() > 3 {
        return Err(bad());
    }
    let lower = sfx.to_ascii_lowercase();
    let b = lower.as_bytes();
    if b[0] == b'b' {
        return if b.len() > 1 { Err(bad()) } else { Ok(size as i64) };
    }
    let power = match b[0] {
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        _ => return Err(bad()),
    };
    let mul = (0..power).fold(1i64, |acc, _| acc * base);
    match b.len() {
        2 if b[1] != b'b' => return Err(bad()),
        3 if &lower[1..] != "ib" => return Err(bad()),
        _ => {}
    }
    Ok((size * mul as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_size_matches_go_units() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0B"),
            (1.0, "1B"),
            (999.0, "999B"),
            (1000.0, "1kB"),
            (1024.0, "1.02kB"),
            (1500.0, "1.5kB"),
            (12_250.0, "12.2kB"), // exact tie rounds to even, like Go
            (99_999.0, "100kB"),
            (999_499.0, "999kB"),
            (999_500.0, "1e+03kB"), // Go's %.3g quirk
            (4_261_000.0, "4.26MB"),
            (1_234_567_890.0, "1.23GB"),
            (1e12, "1TB"),
            (1e15, "1PB"),
            (1e18, "1EB"),
            (1e21, "1ZB"),
            (1e24, "1YB"),
            (1e27, "1e+03YB"),
        ];
        for (input, want) in cases {
            assert_eq!(human_size(*input), *want, "human_size({input})");
        }
        assert_eq!(human_size_with_precision(1_234_567.0, 4), "1.235MB");
    }

    #[test]
    fn bytes_size_matches_go_units() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0B"),
            (1023.0, "1023B"),
            (1024.0, "1KiB"),
            (1536.0, "1.5KiB"),
            (1024.0 * 1024.0, "1MiB"),
            (1_048_576.0 * 3.25, "3.25MiB"),
            (1_073_741_824.0 * 1.123_45, "1.123GiB"),
            (1024f64.powi(4), "1TiB"),
            (1024f64.powi(5), "1PiB"),
            (1024f64.powi(6), "1EiB"),
        ];
        for (input, want) in cases {
            assert_eq!(bytes_size(*input), *want, "bytes_size({input})");
        }
    }

    #[test]
    fn go_fmt_g_cases() {
        assert_eq!(go_fmt_g(0.0, 3), "0");
        assert_eq!(go_fmt_g(100.0, 3), "100");
        assert_eq!(go_fmt_g(123.456, 3), "123");
        assert_eq!(go_fmt_g(0.0001234, 3), "0.000123");
        assert_eq!(go_fmt_g(0.00001234, 3), "1.23e-05");
        assert_eq!(go_fmt_g(-4.5, 3), "-4.5");
        assert_eq!(go_fmt_g(2.5, 1), "2");
        assert_eq!(go_fmt_g(1234.0, 3), "1.23e+03");
        assert_eq!(go_fmt_float(0.0), "0");
        assert_eq!(go_fmt_float(0.5), "0.5");
        assert_eq!(go_fmt_float(123456.0), "123456");
        assert_eq!(go_fmt_float(1e6), "1e+06");
        assert_eq!(go_fmt_float(1234567.0), "1.234567e+06");
        assert_eq!(go_fmt_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(go_fmt_float(0.000015), "1.5e-05");
        assert_eq!(go_fmt_float(-2.25), "-2.25");
        assert_eq!(go_fmt_float(1e21), "1e+21");
    }

    #[test]
    fn human_duration_matches_go_units() {
        let s = Duration::from_secs;
        let cases: &[(Duration, &str)] = &[
            (Duration::from_millis(0), "Less than a second"),
            (Duration::from_millis(999), "Less than a second"),
            (s(1), "1 second"),
            (Duration::from_millis(1999), "1 second"),
            (s(2), "2 seconds"),
            (s(59), "59 seconds"),
            (s(60), "About a minute"),
            (s(119), "About a minute"),
            (s(120), "2 minutes"),
            (s(59 * 60 + 59), "59 minutes"),
            (s(3600), "About an hour"),
            (s(3600 + 29 * 60), "About an hour"),
            (s(3600 + 30 * 60), "2 hours"),
            (s(2 * 3600), "2 hours"),
            (s(47 * 3600), "47 hours"),
            (s(47 * 3600 + 30 * 60), "2 days"),
            (s(48 * 3600), "2 days"),
            (s(13 * 24 * 3600), "13 days"),
            (s(14 * 24 * 3600), "2 weeks"),
            (s(59 * 24 * 3600), "8 weeks"),
            (s(60 * 24 * 3600), "2 months"),
            (s(364 * 24 * 3600), "12 months"),
            (s(729 * 24 * 3600), "24 months"),
            (s(730 * 24 * 3600), "2 years"),
            (s(10 * 365 * 24 * 3600), "10 years"),
        ];
        for (input, want) in cases {
            assert_eq!(human_duration(*input), *want, "human_duration({input:?})");
        }
    }

    #[test]
    fn since_formats_ago() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(since_at(1_700_000_000 - 2 * 3600, now), "2 hours ago");
        assert_eq!(since_at(1_700_000_000 + 50, now), "Less than a second ago");
        assert_eq!(since_at(1_700_000_000 - 45, now), "45 seconds ago");
        assert!(since(0).ends_with(" years ago"));
    }

    #[test]
    fn parse_sizes() {
        assert_eq!(ram_in_bytes("512m").unwrap(), 512 * 1024 * 1024);
        assert_eq!(ram_in_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(ram_in_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(ram_in_bytes("1.5k").unwrap(), 1536);
        assert_eq!(ram_in_bytes("32").unwrap(), 32);
        assert_eq!(ram_in_bytes("32b").unwrap(), 32);
        assert_eq!(ram_in_bytes("32 kb").unwrap(), 32 * 1024);
        assert_eq!(from_human_size("1kB").unwrap(), 1000);
        assert_eq!(from_human_size("1.5GB").unwrap(), 1_500_000_000);
        assert!(ram_in_bytes("").is_err());
        assert!(ram_in_bytes("m").is_err());
        assert!(ram_in_bytes("-1").is_err());
        assert!(ram_in_bytes("12x").is_err());
        assert!(ram_in_bytes("12mb1").is_err());
        assert!(ram_in_bytes("12kbb").is_err());
    }
}
