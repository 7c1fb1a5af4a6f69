//! Digests, repository names and tags, validated as the distribution spec says.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::error::{ApiError, ErrorCode};

static NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
        .expect("name regex")
});
static TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("tag regex"));

/// A sha256 content digest (`sha256:<64 hex>`), the only algorithm this registry stores.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>`; anything else is DIGEST_INVALID.
    pub fn parse(text: &str) -> Result<Digest, ApiError> {
        let invalid = || ApiError::new(ErrorCode::DigestInvalid, format!("invalid digest {text:?}"));
        let (algorithm, hex) = text.split_once(':').ok_or_else(invalid)?;
        if algorithm != "sha256" {
            return Err(ApiError::new(
                ErrorCode::DigestInvalid,
                format!("unsupported digest algorithm {algorithm:?}"),
            ));
        }
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid());
        }
        Ok(Digest { hex: hex.to_string() })
    }

    /// The digest of a finished sha256 hash.
    pub fn from_sha256(hash: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(hash),
        }
    }

    /// The digest of some bytes.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest::from_sha256(&sha2::Sha256::digest(bytes))
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// Checks a repository name against the spec's grammar (and distribution's 255-byte limit).
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    if name.len() <= 255 && NAME_RE.is_match(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::NameInvalid,
            format!("invalid repository name {name:?}"),
        )
        .with_detail(serde_json::json!({ "name": name })))
    }
}

/// Checks a tag against the spec's grammar.
pub fn validate_tag(tag: &str) -> Result<(), ApiError> {
    if TAG_RE.is_match(tag) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::TagInvalid,
            format!("invalid tag {tag:?}"),
        ))
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, ApiError> {
        if text.contains(':') {
            Digest::parse(text).map(Reference::Digest)
        } else {
            validate_tag(text)?;
            Ok(Reference::Tag(text.to_string()))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(tag) => f.write_str(tag),
            Reference::Digest(digest) => digest.fmt(f),
        }
    }
}

/// What a `/v2/<tail>` path asks for, with the repository name split off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Catalog,
    Blob { name: String, digest: String },
    UploadStart { name: String },
    Upload { name: String, uuid: String },
    Manifest { name: String, reference: String },
    TagsList { name: String },
    Referrers { name: String, digest: String },
}

impl Route {
    /// Parses the part of the path after `/v2/`. The name is everything before the last
    /// `/blobs/`, `/manifests/`, `/tags/list` or `/referrers/` marker, so names may hold slashes.
    pub fn parse(tail: &str) -> Option<Route> {
        if tail == "_catalog" {
            return Some(Route::Catalog);
        }
        if let Some(name) = tail.strip_suffix("/tags/list") {
            return Some(Route::TagsList {
                name: name.to_string(),
            });
        }
        if let Some(name) = tail
            .strip_suffix("/blobs/uploads/")
            .or_else(|| tail.strip_suffix("/blobs/uploads"))
        {
            return Some(Route::UploadStart {
                name: name.to_string(),
            });
        }
        if let Some((name, uuid)) = tail.rsplit_once("/blobs/uploads/") {
            if !uuid.is_empty() && !uuid.contains('/') {
                return Some(Route::Upload {
                    name: name.to_string(),
                    uuid: uuid.to_string(),
                });
            }
        }
        let (head, last) = tail.rsplit_once('/')?;
        if last.is_empty() {
            return None;
        }
        let (name, kind) = head.rsplit_once('/')?;
        let (name, last) = (name.to_string(), last.to_string());
        match kind {
            "blobs" => Some(Route::Blob { name, digest: last }),
            "manifests" => Some(Route::Manifest {
                name,
                reference: last,
            }),
            "referrers" => Some(Route::Referrers { name, digest: last }),
            _ => None,
        }
    }

    /// The repository the route addresses (none for the catalog).
    pub fn name(&self) -> Option<&str> {
        match self {
            Route::Catalog => None,
            Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Manifest { name, .. }
            | Route::TagsList { name }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_grammar() {
        for good in ["a", "library/busybox", "a.b/c_d/e__f/g--h", "x0/y1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "A",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "_a",
            "a/_b",
            "a___b",
            &"a".repeat(256),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_split_names_with_slashes() {
        assert_eq!(
            Route::parse("a/b/blobs/uploads/"),
            Some(Route::UploadStart { name: "a/b".into() })
        );
        assert_eq!(
            Route::parse("a/b/blobs/uploads/1234"),
            Some(Route::Upload {
                name: "a/b".into(),
                uuid: "1234".into()
            })
        );
        assert_eq!(
            Route::parse("x/blobs/y/manifests/latest"),
            Some(Route::Manifest {
                name: "x/blobs/y".into(),
                reference: "latest".into()
            })
        );
        assert_eq!(
            Route::parse("tags/list/tags/list"),
            Some(Route::TagsList {
                name: "tags/list".into()
            })
        );
        assert_eq!(Route::parse("_catalog"), Some(Route::Catalog));
        assert_eq!(Route::parse("a/other/x"), None);
    }

    #[test]
    fn digests_are_strict() {
        let hex = "a".repeat(64);
        assert_eq!(Digest::parse(&format!("sha256:{hex}")).unwrap().hex(), hex);
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(&format!("md5:{hex}")).is_err());
        assert_eq!(Reference::parse("v1.0").unwrap(), Reference::Tag("v1.0".into()));
        assert!(Reference::parse(".bad").is_err());
    }
}
