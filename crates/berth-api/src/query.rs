//! Query strings as Docker reads them: repeated keys (`changes=..&changes=..`) and Docker's
//! booleans (`1`, `true`, `True` are true; absent, `0`, `false`, empty are false).

#[derive(Debug, Clone, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            raw.and_then(|q| serde_urlencoded::from_str(q).ok())
                .unwrap_or_default(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A value that must be present and non-empty.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn bool(&self, key: &str) -> bool {
        matches!(self.get(key), Some(v) if !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"))
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    /// Adds a pair (used by clients building a query).
    pub fn push(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.0.push((key.to_string(), value.into()));
        self
    }

    pub fn encode(&self) -> String {
        serde_urlencoded::to_string(&self.0).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_booleans_and_repeats() {
        let q = Query::parse(Some("a=1&b=True&c=0&d=&changes=CMD%20x&changes=ENV%20A%3D1"));
        assert!(q.bool("a") && q.bool("b"));
        assert!(!q.bool("c") && !q.bool("d") && !q.bool("missing"));
        assert_eq!(q.all("changes"), ["CMD x", "ENV A=1"]);
    }
}
