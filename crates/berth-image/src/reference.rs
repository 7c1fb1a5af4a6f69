//! Image references — `[domain[:port]/]path-component(/path-component)*[:tag][@digest]` — parsed
//! and normalised the way Docker does it (github.com/distribution/reference: `ParseNormalizedNamed`,
//! `FamiliarName`, `FamiliarString`, `TagNameOnly` and `ParseAnyReference`).
//!
//! The grammar, as distribution/reference writes it:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] remote-name
//! domain           := host [':' port-number]
//! host             := domain-name | '[' IPv6address ']'
//! domain-name      := domain-component ['.' domain-component]*
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! port-number      := /[0-9]+/
//! remote-name      := path-component ['/' path-component]*
//! path-component   := alpha-numeric [separator alpha-numeric]*
//! alpha-numeric    := /[a-z0-9]+/
//! separator        := /[_.]|__|[-]+/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := /[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}/
//! ```
//!
//! Normalisation: the first path element is a domain only if it contains `.` or `:`, is
//! `localhost`, or has uppercase letters; otherwise the domain is `docker.io`. `index.docker.io` is
//! canonicalised to `docker.io`, and a single-component name on Docker Hub gains `library/`.
//!
//! Differences from distribution/reference, all deliberate:
//! - only sha256 digests exist here (other algorithms give "unsupported digest algorithm");
//! - a first element that looks like a domain but is not a valid one (e.g. `a_b.com/x`) is
//!   rejected; Go would quietly accept it as a path with an *empty* domain.

use crate::digest::Digest;
use std::fmt;
use std::str::FromStr;

/// The registry that names without a domain refer to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The historical name of Docker Hub, canonicalised to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Namespace of the official images on Docker Hub.
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag [`Reference::with_default_tag`] adds.
pub const DEFAULT_TAG: &str = "latest";
/// Longest allowed full name (`domain/path`), in bytes.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Longest allowed tag, in bytes.
const TAG_LENGTH_MAX: usize = 128;

/// A normalised, named image reference: always has a domain and a path, optionally a tag and/or
/// a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a reference (or tag) was rejected. The messages are Docker's.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    InvalidFormat,
    /// Carries the repository part as Docker reports it (e.g. `library/Busybox`).
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    /// A bare 64-hex string is an image ID, never a repository name.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexName(String),
    #[error("invalid tag format")]
    InvalidTag,
    #[error("invalid checksum digest format")]
    DigestFormat,
    #[error("invalid checksum digest length")]
    DigestLength,
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
}

impl Reference {
    /// Parses and normalises a user-supplied reference (Docker's `ParseNormalizedNamed`):
    /// `busybox` → `docker.io/library/busybox`, `index.docker.io/x` → `docker.io/library/x`.
    pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
        if is_hex_id(s) {
            return Err(ReferenceError::HexName(s.to_string()));
        }
        let (domain, remainder) = split_docker_domain(s);

        // Docker checks case on everything before the first ':' of the remainder, and names it
        // in the message as such (so `Busybox` reports `library/Busybox`).
        let remote = remainder.split(':').next().unwrap_or_default();
        if has_upper(remote) {
            return Err(ReferenceError::Uppercase(remote.to_string()));
        }

        // The remainder holds no domain, so its first '@' starts the digest and, before that,
        // its first ':' starts the tag (neither can appear in a path).
        let (name_and_tag, digest) = match remainder.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (remainder.as_str(), None),
        };
        let (path, tag) = match name_and_tag.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (name_and_tag, None),
        };
        if !valid_domain(domain)
            || !valid_path(path)
            || tag.is_some_and(|t| !valid_tag(t))
            || digest.is_some_and(|d| !matches_digest_pattern(d))
        {
            return Err(ReferenceError::InvalidFormat);
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        let digest = digest.map(parse_digest).transpose()?;
        Ok(Reference {
            domain: domain.to_string(),
            path: path.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry: `docker.io`, `localhost:5000`, `[::1]:5000`, ...
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry: `library/busybox`, `user/app`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full repository name: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The name as users write it: `busybox`, `user/app`, `localhost:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => self.path.clone(),
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// True when there is neither a tag nor a digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// Adds the `latest` tag iff there is neither a tag nor a digest (Docker's `TagNameOnly`).
    pub fn with_default_tag(self) -> Reference {
        if self.is_name_only() {
            Reference {
                tag: Some(DEFAULT_TAG.to_string()),
                ..self
            }
        } else {
            self
        }
    }

    /// The same name with `tag` (validated) and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        validate_tag(tag)?;
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same name pinned to `digest`, with no tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The reference as users write it: `busybox:latest`, `busybox@sha256:…`, `x:1@sha256:…`.
    pub fn familiar_string(&self) -> String {
        let mut s = self.familiar_name();
        self.push_tag_and_digest(&mut s);
        s
    }

    fn push_tag_and_digest(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
    }
}

/// The full form: `docker.io/library/busybox:latest`, plus `@sha256:…` when there is a digest.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_tag_and_digest(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse_normalized(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse_normalized(&s).map_err(serde::de::Error::custom)
    }
}

/// Checks a tag against `[\w][\w.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    if valid_tag(tag) {
        Ok(())
    } else {
        Err(ReferenceError::InvalidTag)
    }
}

/// What a user-supplied image argument denotes: an image ID, or a named reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AnyRef {
    Id(Digest),
    Named(Reference),
}

/// Docker's `ParseAnyReference`: a full 64-hex ID or `sha256:<hex>` is an image ID; anything
/// else is parsed with [`Reference::parse_normalized`].
pub fn parse_any(s: &str) -> Result<AnyRef, ReferenceError> {
    if let Ok(id) = Digest::from_hex(s) {
        return Ok(AnyRef::Id(id));
    }
    if let Ok(id) = s.parse::<Digest>() {
        return Ok(AnyRef::Id(id));
    }
    Reference::parse_normalized(s).map(AnyRef::Named)
}

/// `^[a-f0-9]{64}$`
fn is_hex_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Go's `strings.ToLower(s) != s`.
fn has_upper(s: &str) -> bool {
    s.to_lowercase() != s
}

/// Docker's `splitDockerDomain`: the domain (normalised) and the rest of the reference.
fn split_docker_domain(name: &str) -> (&str, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        return (DEFAULT_DOMAIN, format!("{OFFICIAL_REPO_PREFIX}{name}"));
    };
    let (domain, remote) =
        if maybe_domain == "localhost" || maybe_domain.contains(['.', ':']) || has_upper(maybe_domain) {
            (maybe_domain, maybe_remote)
        } else {
            (DEFAULT_DOMAIN, name)
        };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        (domain, format!("{OFFICIAL_REPO_PREFIX}{remote}"))
    } else {
        (domain, remote.to_string())
    }
}

/// `host [':' port]`, host being a domain name or a bracketed IPv6 address.
fn valid_domain(domain: &str) -> bool {
    let port_part = if let Some(rest) = domain.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, after)) if !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') => {
                after
            }
            _ => return false,
        }
    } else {
        let (host, after) = match domain.find(':') {
            Some(i) => domain.split_at(i),
            None => (domain, ""),
        };
        if !host.split('.').all(valid_domain_component) {
            return false;
        }
        after
    };
    match port_part.strip_prefix(':') {
        Some(port) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
        None => port_part.is_empty(),
    }
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        }
        _ => false,
    }
}

/// `path-component ('/' path-component)*`
fn valid_path(path: &str) -> bool {
    path.split('/').all(valid_path_component)
}

/// `[a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let b = c.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) if alnum(first) && alnum(last) => {}
        _ => return false,
    }
    // Every maximal run of non-alphanumerics (never at either end) must be one separator.
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &b[start..i];
        if !(matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|x| *x == b'-')) {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = tag.as_bytes();
    b.first().is_some_and(|x| word(*x))
        && b.len() <= TAG_LENGTH_MAX
        && b.iter().all(|x| word(*x) || *x == b'.' || *x == b'-')
}

/// The grammar's digest: `[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[[:xdigit:]]{32,}`.
fn matches_digest_pattern(d: &str) -> bool {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return false;
    };
    hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && algorithm.split(['-', '_', '+', '.']).all(|part| {
            part.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
                && part.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// Validates a digest that matched the grammar, with go-digest's error precedence.
fn parse_digest(d: &str) -> Result<Digest, ReferenceError> {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return Err(ReferenceError::DigestFormat);
    };
    if algorithm != "sha256" {
        return Err(ReferenceError::DigestUnsupported);
    }
    if hex.len() != 64 {
        return Err(ReferenceError::DigestLength);
    }
    Digest::from_hex(hex).map_err(|_| ReferenceError::DigestFormat)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn digest() -> Digest {
        Digest::from_hex(HEX).unwrap()
    }

    fn parse(s: &str) -> Reference {
        Reference::parse_normalized(s).unwrap_or_else(|e| panic!("{s:?} failed to parse: {e}"))
    }

    #[test]
    fn parses_and_normalises() {
        let d = format!("sha256:{HEX}");
        let long_tag = "t".repeat(128);
        // input, domain, path, tag, digest?, familiar name
        type Case<'a> = (String, &'a str, &'a str, Option<&'a str>, bool, &'a str);
        let cases: Vec<Case> = vec![
            (
                "busybox".into(),
                "docker.io",
                "library/busybox",
                None,
                false,
                "busybox",
            ),
            (
                "busybox:1.36".into(),
                "docker.io",
                "library/busybox",
                Some("1.36"),
                false,
                "busybox",
            ),
            (
                "library/busybox".into(),
                "docker.io",
                "library/busybox",
                None,
                false,
                "busybox",
            ),
            (
                "docker.io/busybox".into(),
                "docker.io",
                "library/busybox",
                None,
                false,
                "busybox",
            ),
            (
                "docker.io/library/busybox".into(),
                "docker.io",
                "library/busybox",
                None,
                false,
                "busybox",
            ),
            (
                "index.docker.io/library/busybox".into(),
                "docker.io",
                "library/busybox",
                None,
                false,
                "busybox",
            ),
            (
                "index.docker.io/busybox".into(),
                "docker.io",
                "library/busybox",
                None,
                false,
                "busybox",
            ),
            (
                "user/app:v1".into(),
                "docker.io",
                "user/app",
                Some("v1"),
                false,
                "user/app",
            ),
            (
                "docker.io/library/a/b".into(),
                "docker.io",
                "library/a/b",
                None,
                false,
                "library/a/b",
            ),
            ("localhost/x".into(), "localhost", "x", None, false, "localhost/x"),
            (
                format!("localhost:5000/a/b:tag@{d}"),
                "localhost:5000",
                "a/b",
                Some("tag"),
                true,
                "localhost:5000/a/b",
            ),
            (
                "host:5000/a/b".into(),
                "host:5000",
                "a/b",
                None,
                false,
                "host:5000/a/b",
            ),
            (
                "[::1]:5000/x:y".into(),
                "[::1]:5000",
                "x",
                Some("y"),
                false,
                "[::1]:5000/x",
            ),
            ("[fe80::1]/x".into(), "[fe80::1]", "x", None, false, "[fe80::1]/x"),
            (
                "127.0.0.1:5000/x".into(),
                "127.0.0.1:5000",
                "x",
                None,
                false,
                "127.0.0.1:5000/x",
            ),
            (
                "example.com/a__b/c-d--e/f.g".into(),
                "example.com",
                "a__b/c-d--e/f.g",
                None,
                false,
                "example.com/a__b/c-d--e/f.g",
            ),
            (
                "my-reg.example.com/a_b".into(),
                "my-reg.example.com",
                "a_b",
                None,
                false,
                "my-reg.example.com/a_b",
            ),
            ("Foo/bar".into(), "Foo", "bar", None, false, "Foo/bar"),
            (
                format!("busybox@{d}"),
                "docker.io",
                "library/busybox",
                None,
                true,
                "busybox",
            ),
            (
                format!("busybox:1@{d}"),
                "docker.io",
                "library/busybox",
                Some("1"),
                true,
                "busybox",
            ),
            (
                "localhost:5000".into(),
                "docker.io",
                "library/localhost",
                Some("5000"),
                false,
                "localhost",
            ),
            (
                "a:Tag_.-x".into(),
                "docker.io",
                "library/a",
                Some("Tag_.-x"),
                false,
                "a",
            ),
            (
                format!("b:{long_tag}"),
                "docker.io",
                "library/b",
                Some(&long_tag),
                false,
                "b",
            ),
            // Go's FIXME: a bare "example.com" is a name on Docker Hub, not a domain.
            (
                "example.com".into(),
                "docker.io",
                "library/example.com",
                None,
                false,
                "example.com",
            ),
        ];
        for (input, domain, path, tag, has_digest, familiar) in &cases {
            let r = parse(input);
            assert_eq!(r.domain(), *domain, "{input}");
            assert_eq!(r.path(), *path, "{input}");
            assert_eq!(r.name(), format!("{domain}/{path}"), "{input}");
            assert_eq!(r.tag(), *tag, "{input}");
            assert_eq!(r.digest(), has_digest.then(digest).as_ref(), "{input}");
            assert_eq!(r.familiar_name(), *familiar, "{input}");
            assert_eq!(r.is_name_only(), tag.is_none() && !has_digest, "{input}");
            // Display round trip.
            assert_eq!(parse(&r.to_string()), r, "{input}");
            // Familiar round trip.
            assert_eq!(parse(&r.familiar_string()), r, "{input}");
        }
    }

    #[test]
    fn rejects_bad_references() {
        use ReferenceError::*;
        let cases: Vec<(String, ReferenceError)> = vec![
            ("".into(), InvalidFormat),
            (":tag".into(), InvalidFormat),
            ("busybox:".into(), InvalidFormat),
            ("busybox@".into(), InvalidFormat),
            ("busybox@sha256:abc".into(), InvalidFormat),
            ("a//b".into(), InvalidFormat),
            ("/a".into(), InvalidFormat),
            ("a/".into(), InvalidFormat),
            ("-a".into(), InvalidFormat),
            ("a-".into(), InvalidFormat),
            ("a.".into(), InvalidFormat),
            ("a___b".into(), InvalidFormat),
            ("a._b".into(), InvalidFormat),
            ("a:b:c".into(), InvalidFormat),
            ("a@b@c".into(), InvalidFormat),
            ("a b".into(), InvalidFormat),
            ("busybox:-x".into(), InvalidFormat),
            ("busybox:.x".into(), InvalidFormat),
            (format!("busybox:{}", "a".repeat(129)), InvalidFormat),
            ("host:/x".into(), InvalidFormat),
            ("host:50a/x".into(), InvalidFormat),
            ("-host.com/x".into(), InvalidFormat),
            ("host-.com/x".into(), InvalidFormat),
            ("a..b.com/x".into(), InvalidFormat),
            ("[]:5000/x".into(), InvalidFormat),
            ("[::g]/x".into(), InvalidFormat),
            ("[::1/x".into(), InvalidFormat),
            ("a_b.com/x".into(), InvalidFormat),
            ("example.com/".into(), InvalidFormat),
            ("Busybox".into(), Uppercase("library/Busybox".into())),
            ("Busybox:1".into(), Uppercase("library/Busybox".into())),
            ("a/B".into(), Uppercase("a/B".into())),
            ("example.com/A:tag".into(), Uppercase("A".into())),
            (format!("busybox@sha256:{}", "ab".repeat(20)), DigestLength),
            (format!("busybox@sha256:{}", HEX.to_uppercase()), DigestFormat),
            (format!("busybox@md5:{}", "ab".repeat(16)), DigestUnsupported),
            (HEX.into(), HexName(HEX.into())),
            ("a".repeat(238), NameTooLong),
            (format!("example.com/{}", "a".repeat(244)), NameTooLong),
        ];
        for (input, want) in cases {
            assert_eq!(Reference::parse_normalized(&input), Err(want), "{input:?}");
        }
        // Exactly at the limit: "docker.io/library/" is 18 bytes.
        assert_eq!(parse(&"a".repeat(237)).name().len(), 255);
        assert_eq!(
            parse(&format!("example.com/{}", "a".repeat(243))).name().len(),
            255
        );
    }

    #[test]
    fn error_messages_are_dockers() {
        assert_eq!(
            Reference::parse_normalized("").unwrap_err().to_string(),
            "invalid reference format"
        );
        assert_eq!(
            Reference::parse_normalized("Busybox").unwrap_err().to_string(),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        assert_eq!(
            Reference::parse_normalized(&"a".repeat(300))
                .unwrap_err()
                .to_string(),
            "repository name must not be more than 255 characters"
        );
        assert_eq!(
            Reference::parse_normalized(HEX).unwrap_err().to_string(),
            format!("invalid repository name ({HEX}), cannot specify 64-byte hexadecimal strings")
        );
        assert_eq!(validate_tag("-x").unwrap_err().to_string(), "invalid tag format");
    }

    #[test]
    fn display_and_familiar_string() {
        let d = format!("sha256:{HEX}");
        // input, Display, familiar_string
        let cases: Vec<(String, String, String)> = vec![
            (
                "busybox".into(),
                "docker.io/library/busybox".into(),
                "busybox".into(),
            ),
            (
                "busybox:latest".into(),
                "docker.io/library/busybox:latest".into(),
                "busybox:latest".into(),
            ),
            (
                format!("busybox@{d}"),
                format!("docker.io/library/busybox@{d}"),
                format!("busybox@{d}"),
            ),
            (
                format!("x:1@{d}"),
                format!("docker.io/library/x:1@{d}"),
                format!("x:1@{d}"),
            ),
            (
                "user/app:v1".into(),
                "docker.io/user/app:v1".into(),
                "user/app:v1".into(),
            ),
            (
                "localhost:5000/x:y".into(),
                "localhost:5000/x:y".into(),
                "localhost:5000/x:y".into(),
            ),
        ];
        for (input, display, familiar) in cases {
            let r = parse(&input);
            assert_eq!(r.to_string(), display, "{input}");
            assert_eq!(r.familiar_string(), familiar, "{input}");
            let from_str: Reference = input.parse().unwrap();
            assert_eq!(from_str, r);
        }
    }

    #[test]
    fn default_tag() {
        let r = parse("busybox").with_default_tag();
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(parse("busybox:1").with_default_tag().tag(), Some("1"));
        let pinned = parse(&format!("busybox@sha256:{HEX}")).with_default_tag();
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.digest(), Some(&digest()));
    }

    #[test]
    fn with_tag_and_digest() {
        let r = parse(&format!("user/app:v1@sha256:{HEX}"));
        let t = r.with_tag("v2").unwrap();
        assert_eq!(t.familiar_string(), "user/app:v2");
        assert_eq!(t.digest(), None);
        assert_eq!(r.with_tag("bad:tag"), Err(ReferenceError::InvalidTag));
        assert_eq!(r.with_tag(""), Err(ReferenceError::InvalidTag));
        assert_eq!(r.with_tag(&"a".repeat(129)), Err(ReferenceError::InvalidTag));
        let d = r.with_digest(digest());
        assert_eq!(d.tag(), None);
        assert_eq!(d.to_string(), format!("docker.io/user/app@sha256:{HEX}"));
        assert!(!d.is_name_only());
        assert!(parse("user/app").is_name_only());
    }

    #[test]
    fn validate_tags() {
        for ok in ["latest", "1.36", "_x", "A-b.c_D", &"a".repeat(128)] {
            assert_eq!(validate_tag(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-x", ".x", "a:b", "a/b", "a@b", "é", &"a".repeat(129)] {
            assert_eq!(validate_tag(bad), Err(ReferenceError::InvalidTag), "{bad}");
        }
    }

    #[test]
    fn parse_any_reference() {
        assert_eq!(parse_any(HEX), Ok(AnyRef::Id(digest())));
        assert_eq!(parse_any(&format!("sha256:{HEX}")), Ok(AnyRef::Id(digest())));
        assert_eq!(parse_any("busybox"), Ok(AnyRef::Named(parse("busybox"))));
        // A short ID is not an ID to the parser: it is a (valid) name.
        assert_eq!(
            parse_any("e3b0c44298fc"),
            Ok(AnyRef::Named(parse("e3b0c44298fc")))
        );
        assert_eq!(
            parse_any("Busybox"),
            Err(ReferenceError::Uppercase("library/Busybox".into()))
        );
        assert_eq!(parse_any(""), Err(ReferenceError::InvalidFormat));
    }

    #[test]
    fn serde_uses_the_display_form() {
        let r = parse(&format!("localhost:5000/a/b:tag@sha256:{HEX}"));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, format!("\"localhost:5000/a/b:tag@sha256:{HEX}\""));
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
        let short: Reference = serde_json::from_str("\"busybox\"").unwrap();
        assert_eq!(short, parse("docker.io/library/busybox"));
        assert!(serde_json::from_str::<Reference>("\"Bad\"").is_err());
    }
}
