//! The event bus behind `GET /events`: every service publishes what happens (container start,
//! die, destroy; image tag, delete, load...), streaming watchers receive it live, and a bounded
//! history answers `since`.

use berth_api::Filters;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::broadcast;

const HISTORY: usize = 1024;

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static str,
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    pub time_nano: i128,
}

impl Event {
    /// Docker's JSON form (with the legacy `status`/`id`/`from` fields old clients read).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local",
            "time": (self.time_nano / 1_000_000_000) as i64,
            "timeNano": self.time_nano as i64,
        });
        if self.kind == "container" || self.kind == "image" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            if let Some(image) = self.attributes.get("image") {
                v["from"] = json!(image);
            }
        }
        v
    }

    /// Docker's event filters: type, event (action), container, image, label.
    pub fn matches(&self, f: &Filters) -> bool {
        let attr = |k: &str| self.attributes.get(k).map(String::as_str);
        let action_base = self.action.split(':').next().unwrap_or(&self.action);
        (f.get("type").is_empty() || f.get("type").iter().any(|t| t == self.kind))
            && (f.get("event").is_empty()
                || f.get("event")
                    .iter()
                    .any(|e| e == action_base || *e == self.action))
            && (f.get("container").is_empty()
                || self.kind == "container"
                    && f.get("container")
                        .iter()
                        .any(|c| self.id.starts_with(c.as_str()) || attr("name") == Some(c)))
            && (f.get("image").is_empty()
                || f.get("image")
                    .iter()
                    .any(|i| attr("image") == Some(i) || (self.kind == "image" && self.id == *i)))
            && f.match_labels("label", &self.attributes)
    }
}

pub struct EventBus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(256).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }
}

impl EventBus {
    pub fn publish(
        &self,
        kind: &'static str,
        action: impl Into<String>,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let time_nano = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as i128;
        let event = Event {
            kind,
            action: action.into(),
            id: id.to_string(),
            attributes,
            time_nano,
        };
        {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(event.clone());
        }
        let _ = self.tx.send(event);
    }

    /// Past events from `since`, and a receiver for what comes next (subscribed first, so
    /// nothing falls between the two).
    pub fn watch(&self, since: Option<i128>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let rx = self.tx.subscribe();
        let past = match since {
            Some(s) => {
                let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
                h.iter().filter(|e| e.time_nano >= s).cloned().collect()
            }
            None => Vec::new(),
        };
        (past, rx)
    }
}
