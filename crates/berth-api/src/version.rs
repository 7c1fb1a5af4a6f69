//! API versions (`1.41`, `1.50`) and Docker's negotiation rules.

use std::fmt;
use std::str::FromStr;

/// The newest API version berthd speaks (Docker 28.2's).
pub const CURRENT: ApiVersion = ApiVersion(1, 50);
/// The oldest API version berthd accepts (Docker's floor too).
pub const MINIMUM: ApiVersion = ApiVersion(1, 24);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion(pub u32, pub u32);

impl FromStr for ApiVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('.')
            .ok_or_else(|| format!("invalid API version {s:?}"))?;
        match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) => Ok(ApiVersion(a, b)),
            _ => Err(format!("invalid API version {s:?}")),
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl ApiVersion {
    /// Checks a version a client asked for in its path, with Docker's messages.
    pub fn check(self) -> Result<(), String> {
        if self > CURRENT {
            Err(format!(
                "client version {self} is too new. Maximum supported API version is {CURRENT}"
            ))
        } else if self < MINIMUM {
            Err(format!(
                "client version {self} is too old. Minimum supported API version is {MINIMUM}, please upgrade your client to a newer version"
            ))
        } else {
            Ok(())
        }
    }

    /// Splits `/v1.41/images/json` into the version and `/images/json`.
    pub fn strip_prefix(path: &str) -> Option<(Result<ApiVersion, String>, &str)> {
        let rest = path.strip_prefix("/v")?;
        let end = rest.find('/').unwrap_or(rest.len());
        let (v, tail) = rest.split_at(end);
        if !v.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        Some((v.parse(), if tail.is_empty() { "/" } else { tail }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!("1.9".parse::<ApiVersion>().unwrap() < "1.41".parse().unwrap());
        assert!(ApiVersion(1, 51).check().unwrap_err().contains("too new"));
        assert!(ApiVersion(1, 12).check().unwrap_err().contains("too old"));
        assert!(ApiVersion(1, 41).check().is_ok());
    }

    #[test]
    fn prefix_is_split_off() {
        let (v, rest) = ApiVersion::strip_prefix("/v1.41/images/json").unwrap();
        assert_eq!((v.unwrap(), rest), (ApiVersion(1, 41), "/images/json"));
        assert!(ApiVersion::strip_prefix("/volumes/x").is_none());
        assert!(ApiVersion::strip_prefix("/images/json").is_none());
    }
}
