//! The image service: listing, inspecting, tagging, deleting, pruning, and moving images in and
//! out as archives.

use super::{blocking, drain_upload};
use berth_api::types::{DeleteResponseItem, HistoryItem, ImagePruneResponse, ImageSummary};
use berth_api::{ApiVersion, Filters};
use berth_image::{DeleteItem, ImageError, ImageInfo, ImageStore, ImportOptions, Reference, Result};
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::sync::Arc;

#[derive(Clone)]
pub struct ImageService {
    pub(crate) store: Arc<ImageStore>,
    events: Arc<super::events::EventBus>,
}

impl ImageService {
    pub fn new(store: Arc<ImageStore>, events: Arc<super::events::EventBus>) -> ImageService {
        ImageService { store, events }
    }

    fn emit(&self, action: &str, id: &str, name: &str) {
        let attrs = std::collections::BTreeMap::from([("name".to_string(), name.to_string())]);
        self.events.publish("image", action, id, attrs);
    }

    /// `GET /images/json`. Without `all`, untagged images whose layers another image builds on
    /// (the builder's step images) are hidden, as Docker hides intermediate images.
    pub async fn list(&self, filters: Filters, version: ApiVersion, all: bool) -> Result<Vec<ImageSummary>> {
        filters
            .only(&["reference", "dangling", "label", "before", "since", "until"])
            .map_err(ImageError::Invalid)?;
        let dangling = filters.bool("dangling").map_err(ImageError::Invalid)?;
        let store = self.store.clone();
        let bound = |key: &'static str| -> Result<Option<i64>> {
            match filters.get(key).first() {
                Some(name) => {
                    let store = store.clone();
                    let name = name.clone();
                    Ok(Some(store.resolve(&name)?.config.created_unix()))
                }
                None => Ok(None),
            }
        };
        let until = match filters.get("until").first() {
            Some(u) => Some(parse_until(u)?),
            None => None,
        };
        let before = bound("before")?;
        let since = bound("since")?;
        let mut images = blocking(move || store.list()).await?;
        if !all {
            let chains: Vec<Vec<String>> = images
                .iter()
                .map(|i| i.record.layers.iter().map(|l| l.chain_id.to_string()).collect())
                .collect();
            let tagged: Vec<bool> = images.iter().map(|i| !i.refs.is_empty()).collect();
            let intermediate: Vec<bool> = (0..images.len())
                .map(|i| {
                    !tagged[i]
                        && (0..images.len()).any(|j| {
                            j != i
                                && chains[j].starts_with(&chains[i])
                                && (chains[j].len() > chains[i].len() || tagged[j])
                        })
                })
                .collect();
            let mut k = 0;
            images.retain(|_| {
                k += 1;
                !intermediate[k - 1]
            });
        }
        let patterns = filters.get("reference");
        images.retain_mut(|i| {
            let created = i.config.created_unix();
            // As Docker: a reference filter also narrows the names shown to the matching ones.
            if !patterns.is_empty() {
                i.refs
                    .retain(|r| patterns.iter().any(|p| matches_reference(p, r)));
                if i.refs.is_empty() {
                    return false;
                }
            }
            dangling.is_none_or(|d| d == i.is_dangling())
                && filters.match_labels("label", &i.config.labels())
                && before.is_none_or(|b| created < b)
                && since.is_none_or(|s| created > s)
                && until.is_none_or(|u| created < u)
        });
        images.sort_by(|a, b| {
            b.config
                .created_unix()
                .cmp(&a.config.created_unix())
                .then(a.record.id.cmp(&b.record.id))
        });
        Ok(images.iter().map(|i| summary(i, version, -1, -1)).collect())
    }

    pub async fn resolve(&self, name: &str) -> Result<ImageInfo> {
        let store = self.store.clone();
        let name = name.to_string();
        blocking(move || store.resolve(&name)).await
    }

    pub async fn inspect(&self, name: &str) -> Result<Value> {
        let store = self.store.clone();
        let name = name.to_string();
        blocking(move || {
            let info = store.resolve(&name)?;
            let lowers: Vec<String> = info
                .record
                .layers
                .iter()
                .rev()
                .map(|l| store.layers.fs_dir(&l.chain_id).display().to_string())
                .collect();
            Ok(inspect_json(&info, &lowers))
        })
        .await
    }

    pub async fn history(&self, name: &str) -> Result<Vec<HistoryItem>> {
        let store = self.store.clone();
        let name = name.to_string();
        blocking(move || {
            let info = store.resolve(&name)?;
            let mut sizes = Vec::new();
            for l in &info.record.layers {
                sizes.push(store.layer(&l.chain_id)?.size as i64);
            }
            Ok(history(&info, &sizes))
        })
        .await
    }

    pub async fn tag(&self, name: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        let mut reference: Reference = repo.parse()?;
        if reference.digest().is_some() {
            return Err(ImageError::invalid(
                "refusing to create a tag with a digest reference",
            ));
        }
        if let Some(tag) = tag.filter(|t| !t.is_empty()) {
            reference = reference.with_tag(tag)?;
        }
        let store = self.store.clone();
        let name = name.to_string();
        let shown = reference.clone().with_default_tag().familiar_string();
        let id = blocking(move || {
            let info = store.resolve(&name)?;
            store.tag(&info.record.id, &reference)?;
            Ok(info.record.id)
        })
        .await?;
        self.emit("tag", &id.to_string(), &shown);
        Ok(())
    }

    pub async fn delete(&self, name: &str, force: bool) -> Result<Vec<DeleteResponseItem>> {
        let store = self.store.clone();
        let name = name.to_string();
        let items = blocking(move || store.delete(&name, force)).await?;
        for i in &items {
            match i {
                DeleteItem::Untagged(t) => self.emit("untag", t, t),
                DeleteItem::Deleted(d) => self.emit("delete", &d.to_string(), &d.to_string()),
            }
        }
        Ok(items.into_iter().map(delete_item).collect())
    }

    /// Removes dangling (or, with `dangling=false`, all) images except those in `in_use`.
    pub async fn prune(
        &self,
        filters: Filters,
        in_use: std::collections::HashSet<String>,
    ) -> Result<ImagePruneResponse> {
        filters
            .only(&["dangling", "label", "label!", "until"])
            .map_err(ImageError::Invalid)?;
        let all = filters.bool("dangling").map_err(ImageError::Invalid)? == Some(false);
        let until = match filters.get("until").first() {
            Some(u) => Some(parse_until(u)?),
            None => None,
        };
        let store = self.store.clone();
        let (items, reclaimed) = blocking(move || {
            store.prune(all, &|i: &ImageInfo| {
                if in_use.contains(&i.record.id.to_string()) {
                    return true;
                }
                let labels = i.config.labels();
                !filters.match_labels("label", &labels)
                    || filters
                        .get("label!")
                        .iter()
                        .any(|l| Filters::default_with("label", l).match_labels("label", &labels))
                    || until.is_some_and(|u| i.config.created_unix() >= u)
            })
        })
        .await?;
        Ok(ImagePruneResponse {
            images_deleted: (!items.is_empty()).then(|| items.into_iter().map(delete_item).collect()),
            space_reclaimed: reclaimed,
        })
    }

    pub async fn load(&self, mut reader: impl Read + Send + 'static) -> Result<Vec<String>> {
        let store = self.store.clone();
        let messages = blocking(move || drain_upload(store.load(&mut reader), &mut reader)).await?;
        for m in &messages {
            if let Some(name) = m
                .strip_prefix("Loaded image: ")
                .or_else(|| m.strip_prefix("Loaded image ID: "))
            {
                self.emit("load", name, name);
            }
        }
        Ok(messages)
    }

    /// Checks that every name resolves, so a bad name is an HTTP error before any byte is sent.
    pub async fn check_names(&self, names: &[String]) -> Result<()> {
        let store = self.store.clone();
        let names = names.to_vec();
        blocking(move || {
            for n in &names {
                if store.resolve(n).is_err() {
                    // A bare repository name may still match tags (`save busybox` saves all its tags).
                    let repo_has_tags = n.parse::<Reference>().is_ok_and(|r| {
                        r.is_name_only()
                            && store
                                .list()
                                .is_ok_and(|l| l.iter().any(|i| i.refs.iter().any(|t| t.name() == r.name())))
                    });
                    if !repo_has_tags {
                        store.resolve(n)?;
                    }
                }
            }
            Ok(())
        })
        .await
    }

    pub async fn save(&self, names: Vec<String>, out: impl Write + Send + 'static) -> Result<()> {
        let store = self.store.clone();
        blocking(move || store.save(&names, out)).await
    }

    pub async fn import(
        &self,
        mut reader: impl Read + Send + 'static,
        opts: ImportOptions,
    ) -> Result<String> {
        let store = self.store.clone();
        let id = blocking(move || drain_upload(store.import(&mut reader, &opts), &mut reader))
            .await?
            .to_string();
        self.emit("import", &id, &id);
        Ok(id)
    }

    /// Image part of `system df`: summaries with shared sizes, and the total size of layers.
    pub async fn disk_usage(&self, version: ApiVersion) -> Result<(Vec<ImageSummary>, i64)> {
        let store = self.store.clone();
        blocking(move || {
            let images = store.list()?;
            let mut out = Vec::new();
            for i in &images {
                let mut shared = 0;
                for l in &i.record.layers {
                    let rec = store.layer(&l.chain_id)?;
                    if rec.refs > 1 {
                        shared += rec.size as i64;
                    }
                }
                out.push(summary(i, version, shared, 0));
            }
            Ok((out, store.layers_size()? as i64))
        })
        .await
    }

    pub async fn count(&self) -> usize {
        let store = self.store.clone();
        blocking(move || store.list()).await.map(|l| l.len()).unwrap_or(0)
    }
}

/// Reads what is left of a refused upload (up to 1 GiB), so the client, still sending, gets the
/// error answer rather than a reset connection.
trait FiltersExt {
    fn default_with(key: &str, value: &str) -> Filters;
}

impl FiltersExt for Filters {
    fn default_with(key: &str, value: &str) -> Filters {
        let mut f = Filters::default();
        f.add(key, value);
        f
    }
}

fn delete_item(i: DeleteItem) -> DeleteResponseItem {
    match i {
        DeleteItem::Untagged(t) => DeleteResponseItem {
            untagged: Some(t),
            deleted: None,
        },
        DeleteItem::Deleted(d) => DeleteResponseItem {
            untagged: None,
            deleted: Some(d.to_string()),
        },
    }
}

/// `until` as Docker takes it: Unix seconds, RFC 3339, or a duration before now (`24h`, `30m`).
fn parse_until(s: &str) -> Result<i64> {
    if let Ok(n) = s.split('.').next().unwrap_or(s).parse::<i64>() {
        return Ok(n);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| ImageError::invalid(format!("invalid filter 'until={s}'")))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(ImageError::invalid(format!("invalid filter 'until={s}'"))),
    };
    Ok(chrono::Utc::now().timestamp() - secs as i64)
}

fn summary(i: &ImageInfo, version: ApiVersion, shared: i64, containers: i64) -> ImageSummary {
    let labels = i.config.config.as_ref().and_then(|c| c.labels.clone());
    ImageSummary {
        id: i.record.id.to_string(),
        parent_id: String::new(),
        repo_tags: i.repo_tags(),
        repo_digests: i.repo_digests(),
        created: i.config.created_unix(),
        size: i.record.size as i64,
        shared_size: shared,
        virtual_size: (version < ApiVersion(1, 44)).then_some(i.record.size as i64),
        labels,
        containers,
    }
}

/// Docker's reference filter: a glob (path.Match) against the familiar name or name:tag.
fn matches_reference(pattern: &str, r: &Reference) -> bool {
    glob(pattern, &r.familiar_name()) || glob(pattern, &r.familiar_string())
}

/// Go's path.Match: `*` any run of non-`/`, `?` one non-`/`, `[...]` a class, `\` escapes.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| go(&p[1..], &n[i..])),
            Some('?') => n.first().is_some_and(|c| *c != '/') && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|c| *c == ']') else {
                    return false;
                };
                let Some(c) = n.first() else { return false };
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some('^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= *c && *c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == *c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[end + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

fn inspect_json(info: &ImageInfo, lowers: &[String]) -> Value {
    let c = &info.config;
    let mut config = json!({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false, "AttachStdout": false,
        "AttachStderr": false, "Tty": false, "OpenStdin": false, "StdinOnce": false, "Env": null,
        "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "", "Entrypoint": null,
        "OnBuild": null, "Labels": null,
    });
    if let (Some(cc), Value::Object(target)) = (&c.config, &mut config) {
        if let Ok(Value::Object(set)) = serde_json::to_value(cc) {
            target.extend(set);
        }
    }
    let extra_str = |k: &str| c.extra.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = Map::new();
    out.insert("Id".into(), json!(info.record.id.to_string()));
    out.insert("RepoTags".into(), json!(info.repo_tags()));
    out.insert("RepoDigests".into(), json!(info.repo_digests()));
    out.insert("Parent".into(), json!(""));
    out.insert("Comment".into(), json!(extra_str("comment")));
    out.insert("Created".into(), json!(c.created.clone().unwrap_or_default()));
    out.insert("DockerVersion".into(), json!(extra_str("docker_version")));
    out.insert("Author".into(), json!(c.author.clone().unwrap_or_default()));
    out.insert("Config".into(), config);
    out.insert("Architecture".into(), json!(c.architecture));
    if let Some(v) = &c.variant {
        out.insert("Variant".into(), json!(v));
    }
    out.insert("Os".into(), json!(c.os));
    out.insert("Size".into(), json!(info.record.size));
    out.insert(
        "GraphDriver".into(),
        json!({"Name": "overlay", "Data": {"LowerDir": lowers.join(":")}}),
    );
    out.insert(
        "RootFS".into(),
        json!({"Type": c.rootfs.kind, "Layers": c.rootfs.diff_ids}),
    );
    out.insert(
        "Metadata".into(),
        json!({"LastTagTime": info.record.last_tag_time}),
    );
    out.insert(
        "Descriptor".into(),
        json!({"mediaType": info.record.manifest.media_type, "digest": info.record.manifest.digest, "size": info.record.manifest.size}),
    );
    Value::Object(out)
}

fn history(info: &ImageInfo, layer_sizes: &[i64]) -> Vec<HistoryItem> {
    let mut sizes = layer_sizes.iter();
    let mut items: Vec<HistoryItem> = if info.config.history.is_empty() {
        layer_sizes
            .iter()
            .map(|s| HistoryItem {
                id: "<missing>".into(),
                created: info.config.created_unix(),
                created_by: String::new(),
                tags: None,
                size: *s,
                comment: String::new(),
            })
            .collect()
    } else {
        info.config
            .history
            .iter()
            .map(|h| HistoryItem {
                id: "<missing>".into(),
                created: h
                    .created
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map(|t| t.timestamp())
                    .unwrap_or(0),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: None,
                size: if h.empty_layer {
                    0
                } else {
                    sizes.next().copied().unwrap_or(0)
                },
                comment: h.comment.clone().unwrap_or_default(),
            })
            .collect()
    };
    items.reverse();
    if let Some(top) = items.first_mut() {
        top.id = info.record.id.to_string();
        let tags = info.repo_tags();
        top.tags = (!tags.is_empty()).then_some(tags);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_is_go_path_match() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("busybox:*", "busybox:latest"));
        assert!(!glob("*", "library/busybox"));
        assert!(glob("*/app", "user/app"));
        assert!(glob("b?sybox", "busybox"));
        assert!(glob("[a-c]usybox", "busybox"));
        assert!(!glob("[^a-c]usybox", "busybox"));
        assert!(!glob("busy", "busybox"));
    }
}
