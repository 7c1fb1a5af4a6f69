//! The `filters` query parameter: JSON mapping a filter name to its values, in either of the two
//! forms clients send: `{"label":{"a=b":true}}` (docker CLI, compose v2) or `{"label":["a=b"]}`
//! (docker-py, compose v1).

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    pub fn parse(raw: Option<&str>) -> Result<Filters, String> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(Filters::default());
        };
        let v: Value = serde_json::from_str(raw).map_err(|e| format!("invalid filter: {e}"))?;
        let Value::Object(map) = v else {
            return Err(format!("invalid filter: {raw}"));
        };
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let values: Vec<String> = match v {
                Value::Object(m) => m
                    .into_iter()
                    .filter(|(_, on)| on.as_bool() != Some(false))
                    .map(|(k, _)| k)
                    .collect(),
                Value::Array(a) => a
                    .into_iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                Value::String(s) => vec![s],
                _ => return Err(format!("invalid filter value for {k:?}")),
            };
            out.insert(k, values);
        }
        Ok(Filters(out))
    }

    /// Refuses filters the endpoint does not know, with Docker's message.
    pub fn only(&self, allowed: &[&str]) -> Result<(), String> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("invalid filter '{k}'")),
            None => Ok(()),
        }
    }

    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn add(&mut self, key: &str, value: &str) {
        self.0.entry(key.to_string()).or_default().push(value.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The map form, as the docker CLI sends it.
    pub fn to_json(&self) -> String {
        let m: BTreeMap<&String, BTreeMap<&String, bool>> = self
            .0
            .iter()
            .map(|(k, vs)| (k, vs.iter().map(|v| (v, true)).collect()))
            .collect();
        serde_json::to_string(&m).unwrap_or_default()
    }

    /// `label` filters (`key` or `key=value`) against a set of labels: all must match.
    pub fn match_labels(&self, key: &str, labels: &BTreeMap<String, String>) -> bool {
        self.get(key).iter().all(|f| match f.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(f.as_str()),
        })
    }

    /// A boolean filter such as `dangling=true`; `None` when absent.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key).first().map(|s| s.to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if v == "true" || v == "1" => Ok(Some(true)),
            Some(v) if v == "false" || v == "0" => Ok(Some(false)),
            Some(v) => Err(format!("invalid filter '{key}={v}'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_the_same() {
        let a = Filters::parse(Some(r#"{"label":{"a=b":true}}"#)).unwrap();
        let b = Filters::parse(Some(r#"{"label":["a=b"]}"#)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.get("label"), ["a=b"]);
        assert!(a
            .only(&["reference"])
            .unwrap_err()
            .contains("invalid filter 'label'"));
        let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
        assert!(a.match_labels("label", &labels));
        assert!(!Filters::parse(Some(r#"{"label":["a=c"]}"#))
            .unwrap()
            .match_labels("label", &labels));
        assert_eq!(Filters::parse(Some(&a.to_json())).unwrap(), a);
    }
}
