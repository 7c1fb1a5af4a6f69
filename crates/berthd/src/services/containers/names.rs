//! Container names: Docker's validation, and random `adjective_surname` names for containers
//! created without one.

const ADJECTIVES: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "bold",
    "brave",
    "busy",
    "charming",
    "clever",
    "cool",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elastic",
    "elegant",
    "epic",
    "fervent",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "laughing",
    "lucid",
    "modest",
    "nice",
    "nostalgic",
    "optimistic",
    "peaceful",
    "pensive",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "sweet",
    "tender",
    "trusting",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
];

const SURNAMES: &[&str] = &[
    "albattani",
    "allen",
    "archimedes",
    "babbage",
    "banach",
    "bardeen",
    "bell",
    "booth",
    "brattain",
    "cannon",
    "carson",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euler",
    "fermat",
    "feynman",
    "galileo",
    "gauss",
    "hamilton",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamport",
    "liskov",
    "lovelace",
    "mayer",
    "mccarthy",
    "meitner",
    "morse",
    "newton",
    "noether",
    "pascal",
    "perlman",
    "ritchie",
    "shannon",
    "sinoussi",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wiles",
    "wing",
    "wozniak",
    "wright",
    "yalow",
    "zhukovsky",
];

/// A random `adjective_surname`, with a number appended on `retry`.
pub fn random_name(retry: u32) -> String {
    let a = ADJECTIVES[rand_index(ADJECTIVES.len())];
    let s = SURNAMES[rand_index(SURNAMES.len())];
    if retry == 0 {
        format!("{a}_{s}")
    } else {
        format!("{a}_{s}{}", rand_index(10))
    }
}

fn rand_index(n: usize) -> usize {
    let mut b = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    (u64::from_le_bytes(b) % n as u64) as usize
}

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, with an optional leading `/`.
pub fn validate(name: &str) -> Result<String, String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let mut chars = bare.chars();
    let ok = bare.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(bare.to_string())
    } else {
        Err(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert_eq!(validate("/web").unwrap(), "web");
        assert_eq!(validate("my-app_1.0").unwrap(), "my-app_1.0");
        assert!(validate("-x").is_err());
        assert!(validate("a").is_err());
        assert!(validate("a/b").is_err());
        assert!(validate(&random_name(0)).is_ok());
    }
}
