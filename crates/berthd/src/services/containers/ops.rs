//! Operations on a container's running processes and settings: `pause`/`unpause` (the freezer),
//! `top` (the host's `ps`, filtered to the container's cgroup), `update` (HostConfig, applied live
//! to the cgroup), `stats` (Docker's stats JSON from the cgroup files) and `rename`.

use super::{blocking, names, spec, ContainerError, ContainerRecord, ContainerService, Entry, Result};
use berth_runtime::{CgroupPath, Cgroups};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// The host's cgroup layout, detected once.
fn cgroups() -> &'static Cgroups {
    static CGROUPS: OnceLock<Cgroups> = OnceLock::new();
    CGROUPS.get_or_init(Cgroups::detect)
}

/// Gives the next cgroup move (an exec's process) a head start: see
/// [`Cgroups::prime_migration`]. Not awaited: it only has to begin before the move.
pub(super) fn prime_cgroup_migration() {
    tokio::task::spawn_blocking(prime);
}

fn prime() {
    if let Err(e) = cgroups().prime_migration() {
        tracing::debug!("priming the cgroup migration lock: {e}");
    }
}

fn internal(e: impl std::fmt::Display) -> ContainerError {
    ContainerError::Internal(e.to_string())
}

fn not_running(id: &str) -> ContainerError {
    ContainerError::Conflict(format!("Container {id} is not running"))
}

/// Docker's `UpdateConfig`: the resources `docker update` may change, and the restart policy.
/// Zero (or absent) means "leave as it is", as in Docker.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateConfig {
    memory: Option<i64>,
    memory_swap: Option<i64>,
    memory_reservation: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_shares: Option<i64>,
    cpu_period: Option<i64>,
    cpu_quota: Option<i64>,
    cpuset_cpus: Option<String>,
    cpuset_mems: Option<String>,
    pids_limit: Option<i64>,
    blkio_weight: Option<u16>,
    restart_policy: Option<berth_api::container::RestartPolicy>,
}

impl ContainerService {
    /// The container's cgroup, relative to each hierarchy's root (its spec's `cgroupsPath`).
    pub(super) fn cgroup_name(&self, id: &str) -> String {
        if self.inner.cgroup_parent.is_empty() {
            id.to_string()
        } else {
            format!("{}/{}", self.inner.cgroup_parent, id)
        }
    }

    fn cgroup_of(&self, entry: &Entry) -> Result<CgroupPath> {
        cgroups().open(&self.cgroup_name(&entry.id)).map_err(internal)
    }

    /// Makes a container's cgroup directories at the beginning of its start, then gives its
    /// init's move into them a head start ([`Cgroups::prime_migration`], not awaited): the shim,
    /// a few milliseconds later, finds them made (its own `create` only applies the limits) and
    /// its move waits less for the kernel's grace period, or not at all. The directories come
    /// first because the priming holds the kernel's cgroup mutex, which mkdir needs, while it
    /// waits.
    pub(super) async fn prepare_cgroup(&self, id: &str) {
        let name = self.cgroup_name(id);
        let (made_tx, made_rx) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = cgroups().create(&name, &Default::default()) {
                // The shim makes them (and reports what went wrong).
                tracing::debug!("making cgroup {name}: {e}");
            }
            let _ = made_tx.send(());
            prime();
        });
        let _ = made_rx.await;
    }

    /// Removes the (empty) cgroup directories of a container whose start failed before its
    /// shim took them over.
    pub(super) fn discard_cgroup(&self, id: &str) {
        if let Ok(path) = cgroups().open(&self.cgroup_name(id)) {
            for dir in path.dirs() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    /// `POST /containers/{id}/pause`: freezes every process of the container.
    pub async fn pause(&self, name: &str) -> Result<()> {
        let entry = self.resolve(name)?;
        let _op = entry.op.lock().await;
        let rec = entry.record();
        if !rec.state.running {
            return Err(not_running(&rec.id));
        }
        if rec.state.paused {
            return Err(ContainerError::Conflict(format!(
                "Container {} is already paused",
                rec.id
            )));
        }
        let cg = self.cgroup_of(&entry)?;
        blocking(move || cgroups().freeze(&cg).map_err(internal)).await?;
        let rec = entry.update(|r| {
            r.state.paused = true;
            r.state.status = "paused".into();
        });
        self.persist(&entry, &rec);
        self.emit(&rec, "pause", &[]);
        Ok(())
    }

    /// `POST /containers/{id}/unpause`.
    pub async fn unpause(&self, name: &str) -> Result<()> {
        let entry = self.resolve(name)?;
        let _op = entry.op.lock().await;
        let rec = entry.record();
        if !rec.state.paused {
            return Err(ContainerError::Conflict(format!(
                "Container {} is not paused",
                rec.id
            )));
        }
        let cg = self.cgroup_of(&entry)?;
        blocking(move || cgroups().thaw(&cg).map_err(internal)).await?;
        let rec = self.mark_thawed(&entry);
        self.emit(&rec, "unpause", &[]);
        Ok(())
    }

    fn mark_thawed(&self, entry: &Entry) -> ContainerRecord {
        let rec = entry.update(|r| {
            r.state.paused = false;
            if r.state.running {
                r.state.status = "running".into();
            }
        });
        self.persist(entry, &rec);
        rec
    }

    /// Called before signalling a container (stop, kill, rm -f): a frozen process would not act on
    /// the signal, so a paused container is thawed first (Docker resumes it too).
    pub(super) async fn thaw_for_signal(&self, entry: &Entry) {
        if !entry.record().state.paused {
            return;
        }
        if let Ok(cg) = self.cgroup_of(entry) {
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || cgroups().thaw(&cg)).await {
                tracing::warn!(id = %entry.id, error = %e, "could not thaw a paused container");
            }
        }
        self.mark_thawed(entry);
    }

    /// `GET /containers/{id}/top?ps_args=`: the host's `ps` output, only the container's rows.
    pub async fn top(&self, name: &str, ps_args: Option<&str>) -> Result<Value> {
        let entry = self.resolve(name)?;
        let rec = entry.record();
        if !rec.state.running {
            return Err(not_running(&rec.id));
        }
        let cg = self.cgroup_of(&entry)?;
        let pids = blocking(move || Ok(cgroups().pids(&cg))).await?;
        let args = ps_args.filter(|a| !a.trim().is_empty()).unwrap_or("-ef");
        let out = tokio::process::Command::new("ps")
            .args(args.split_whitespace())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| internal(format!("Error running ps: {e}")))?;
        if !out.status.success() {
            return Err(internal(format!(
                "Error running ps: ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids).map_err(internal)
    }

    /// `POST /containers/{id}/update`: changes the container's resources (live, when it runs) and
    /// restart policy.
    pub async fn update(&self, name: &str, body: &Value) -> Result<Value> {
        let u: UpdateConfig = serde_json::from_value(body.clone())
            .map_err(|e| ContainerError::Invalid(format!("invalid JSON: {e}")))?;
        let entry = self.resolve(name)?;
        let _op = entry.op.lock().await;
        let rec = entry.record();
        let mut host = rec.host_config.clone();
        let conflict = |m: &str| Err(ContainerError::Invalid(format!("Conflicting options: {m}")));
        let set = |v: Option<i64>| v.filter(|v| *v != 0);
        let (memory, swap) = (set(u.memory), set(u.memory_swap));
        if let Some(m) = memory {
            if m < 6 * 1024 * 1024 {
                return Err(ContainerError::Invalid(
                    "Minimum memory limit allowed is 6MB".into(),
                ));
            }
            let current_swap = match (host.memory_swap, host.memory) {
                (0, mem) if mem > 0 => mem * 2,
                (s, _) => s,
            };
            if current_swap > 0 && m > current_swap && swap.is_none() {
                return Err(ContainerError::Invalid(
                    "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into(),
                ));
            }
            host.memory = m;
        }
        if let Some(s) = swap {
            if s > 0 && s < host.memory {
                return Err(ContainerError::Invalid(
                    "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
                ));
            }
            host.memory_swap = s;
        }
        if let Some(r) = set(u.memory_reservation) {
            host.memory_reservation = r;
        }
        if let Some(n) = set(u.nano_cpus) {
            if host.cpu_period > 0 {
                return conflict("Nano CPUs cannot be updated as CPU Period has already been set");
            }
            if host.cpu_quota > 0 {
                return conflict("Nano CPUs cannot be updated as CPU Quota has already been set");
            }
            let ncpu = online_cpus() as i64;
            if n < 10_000_000 || n > ncpu * 1_000_000_000 {
                return Err(ContainerError::Invalid(format!(
                    "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
                )));
            }
            host.nano_cpus = n;
        }
        if let Some(p) = set(u.cpu_period) {
            if host.nano_cpus > 0 {
                return conflict("CPU Period cannot be updated as NanoCPUs has already been set");
            }
            host.cpu_period = p;
        }
        if let Some(q) = set(u.cpu_quota) {
            if host.nano_cpus > 0 {
                return conflict("CPU Quota cannot be updated as NanoCPUs has already been set");
            }
            host.cpu_quota = q;
        }
        if let Some(s) = set(u.cpu_shares) {
            host.cpu_shares = s;
        }
        if let Some(c) = u.cpuset_cpus.filter(|c| !c.is_empty()) {
            host.cpuset_cpus = c;
        }
        if let Some(m) = u.cpuset_mems.filter(|m| !m.is_empty()) {
            host.cpuset_mems = m;
        }
        if let Some(p) = u.pids_limit {
            host.pids_limit = Some(p);
        }
        if let Some(w) = u.blkio_weight.filter(|w| *w != 0) {
            if !(10..=1000).contains(&w) {
                return Err(ContainerError::Invalid(
                    "Range of blkio weight is from 10 to 1000".into(),
                ));
            }
            host.blkio_weight = w;
        }
        if let Some(p) = u.restart_policy.filter(|p| !p.name.is_empty()) {
            if !matches!(p.name.as_str(), "no" | "always" | "on-failure" | "unless-stopped") {
                return Err(ContainerError::Invalid(format!(
                    "invalid restart policy '{}'",
                    p.name
                )));
            }
            if host.auto_remove && p.name != "no" {
                return Err(ContainerError::Invalid(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container".into(),
                ));
            }
            host.restart_policy = p;
        }
        if rec.state.running {
            let mut res = spec::resources(&host);
            if let Value::Object(m) = &mut res {
                // Device rules were set at start and `update` does not change them.
                m.remove("devices");
            }
            if u.pids_limit.is_some_and(|p| p <= 0) {
                res["pids"] = json!({ "limit": -1 });
            }
            let cg = self.cgroup_of(&entry)?;
            let id = rec.id.clone();
            blocking(move || {
                let res = serde_json::from_value(res).map_err(internal)?;
                cgroups()
                    .update(&cg, &res)
                    .map_err(|e| internal(format!("Cannot update container {id}: {e}")))
            })
            .await?;
        }
        let rec = entry.update(|r| r.host_config = host);
        self.persist(&entry, &rec);
        self.emit(&rec, "update", &[]);
        Ok(json!({ "Warnings": [] }))
    }

    /// `GET /containers/{id}/stats`: one object (`stream=false`: two samples a second apart, so
    /// CPU use can be computed; `one_shot`: one sample), or one object per second until the client
    /// leaves or the container stops. A stopped container gives one object of zeros.
    pub fn stats(&self, name: &str, stream: bool, one_shot: bool) -> Result<mpsc::Receiver<Value>> {
        let entry = self.resolve(name)?;
        let cg = self.cgroup_of(&entry)?;
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let rec = entry.record();
            if !rec.state.running {
                let _ = tx
                    .send(stats_object(&rec, &Sample::zero(), &Sample::zero()))
                    .await;
                return;
            }
            let cg = Arc::new(cg);
            // The host's interfaces are not the container's: no `networks` then, as dockerd.
            let mode = &rec.host_config.network_mode;
            let pid = if mode == "host" || mode.starts_with("container:") {
                0
            } else {
                rec.state.pid as i32
            };
            let take = |cg: Arc<CgroupPath>| async move {
                tokio::task::spawn_blocking(move || Sample::read(&cg, pid))
                    .await
                    .unwrap_or_else(|_| Sample::zero())
            };
            let mut prev = Sample::zero();
            if !stream && !one_shot {
                prev = take(cg.clone()).await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = tx.closed() => return,
                }
            }
            loop {
                let cur = take(cg.clone()).await;
                let rec = entry.record();
                if tx.send(stats_object(&rec, &cur, &prev)).await.is_err() || !stream {
                    return;
                }
                prev = cur;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = tx.closed() => return,
                }
                if !entry.record().state.running {
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// `POST /containers/{id}/rename?name=`.
    pub async fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        if name.is_empty() || new_name.is_empty() {
            return Err(ContainerError::Invalid(
                "Neither old nor new names may be empty".into(),
            ));
        }
        let entry = self.resolve(name)?;
        let new = names::validate(new_name).map_err(ContainerError::Invalid)?;
        let _op = entry.op.lock().await;
        let old = entry.record().name;
        if old == new {
            return Err(ContainerError::Invalid(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        {
            let mut t = self.table();
            if let Some(other) = t.names.get(&new) {
                return Err(ContainerError::Conflict(format!(
                    "Error when allocating new name: Conflict. The container name \"/{new}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            if t.names.get(&old) == Some(&entry.id) {
                t.names.remove(&old);
            }
            t.names.insert(new.clone(), entry.id.clone());
        }
        let rec = entry.update(|r| r.name = new);
        self.persist(&entry, &rec);
        self.emit(&rec, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }
}

/// Docker's `parsePSOutput`: the header's fields are the titles; a row is kept when its PID is
/// in `pids` (thread rows, PID `-`, follow their process). The last column keeps its spaces.
fn parse_ps(output: &str, pids: &[i32]) -> std::result::Result<Value, String> {
    let mut lines = output.lines();
    let titles: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let pid_index = titles
        .iter()
        .position(|t| *t == "PID")
        .ok_or("Couldn't find PID field in ps output")?;
    let mut processes = Vec::new();
    let mut keep_threads = false;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_index) else {
            continue;
        };
        let keep = if *pid == "-" {
            keep_threads
        } else {
            let p: i32 = pid.parse().map_err(|e| format!("Unexpected pid '{pid}': {e}"))?;
            keep_threads = pids.contains(&p);
            keep_threads
        };
        if keep {
            let n = titles.len().saturating_sub(1).min(fields.len());
            let mut row: Vec<String> = fields[..n].iter().map(|s| s.to_string()).collect();
            row.push(fields[n..].join(" "));
            processes.push(row);
        }
    }
    Ok(json!({ "Titles": titles, "Processes": processes }))
}

/// One reading of a container's cgroup, in the shapes of Docker's stats JSON.
struct Sample {
    read: String,
    cpu_stats: Value,
    memory_stats: Value,
    pids_stats: Value,
    blkio_stats: Value,
    /// Per interface of the container's network namespace (none: no namespace of its own).
    networks: Option<Value>,
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl Sample {
    fn zero() -> Sample {
        Sample {
            read: ZERO_TIME.into(),
            cpu_stats: json!({
                "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
            }),
            memory_stats: json!({}),
            pids_stats: json!({}),
            blkio_stats: json!({
                "io_service_bytes_recursive": null, "io_serviced_recursive": null,
                "io_queue_recursive": null, "io_service_time_recursive": null,
                "io_wait_time_recursive": null, "io_merged_recursive": null,
                "io_time_recursive": null, "sectors_recursive": null
            }),
            networks: None,
        }
    }

    /// `pid`: the container's process, whose network namespace is read (0: none of its own).
    fn read(cg: &CgroupPath, pid: i32) -> Sample {
        let read = super::now();
        let st = cgroups().stats(cg);
        let ticks = clock_ticks();
        let ns_per_tick = 1_000_000_000 / ticks.max(1);

        // CPU: v1 cpuacct.* and cpu.stat; v2 cpu.stat (microseconds).
        let mut usage = Map::new();
        usage.insert("total_usage".into(), json!(st.cpu_usage_ns));
        let mut throttling = json!({"periods": 0, "throttled_periods": 0, "throttled_time": 0});
        let (mut user, mut system) = (0u64, 0u64);
        if let Some(dir) = v1_dir(cg, "cpuacct") {
            let stat = keyed(&dir.join("cpuacct.stat"));
            user = stat.get("user").copied().unwrap_or(0) * ns_per_tick;
            system = stat.get("system").copied().unwrap_or(0) * ns_per_tick;
            let percpu: Vec<u64> = std::fs::read_to_string(dir.join("cpuacct.usage_percpu"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if !percpu.is_empty() {
                usage.insert("percpu_usage".into(), json!(percpu));
            }
        }
        if let Some(dir) = v1_dir(cg, "cpu") {
            let s = keyed(&dir.join("cpu.stat"));
            throttling = json!({
                "periods": s.get("nr_periods").copied().unwrap_or(0),
                "throttled_periods": s.get("nr_throttled").copied().unwrap_or(0),
                "throttled_time": s.get("throttled_time").copied().unwrap_or(0),
            });
        } else if let Some(dir) = v2_dir(cg, "cpu.stat") {
            let s = keyed(&dir.join("cpu.stat"));
            user = s.get("user_usec").copied().unwrap_or(0) * 1000;
            system = s.get("system_usec").copied().unwrap_or(0) * 1000;
            throttling = json!({
                "periods": s.get("nr_periods").copied().unwrap_or(0),
                "throttled_periods": s.get("nr_throttled").copied().unwrap_or(0),
                "throttled_time": s.get("throttled_usec").copied().unwrap_or(0) * 1000,
            });
        }
        usage.insert("usage_in_kernelmode".into(), json!(system));
        usage.insert("usage_in_usermode".into(), json!(user));
        let cpu_stats = json!({
            "cpu_usage": usage,
            "system_cpu_usage": system_cpu_usage(ticks),
            "online_cpus": online_cpus(),
            "throttling_data": throttling,
        });

        // Memory: an unlimited cgroup reports the host's memory as its limit, as Docker does.
        let host_memory = host_memory();
        let limit = match st.memory_limit {
            Some(l) if host_memory == 0 || l < host_memory => l,
            _ => host_memory,
        };
        let mut memory_stats = json!({
            "usage": st.memory_usage,
            "stats": st.memory_stat,
            "limit": limit,
        });
        if let Some(dir) = v1_dir(cg, "memory") {
            memory_stats["max_usage"] = json!(read_u64(&dir.join("memory.max_usage_in_bytes")));
            memory_stats["failcnt"] = json!(read_u64(&dir.join("memory.failcnt")));
        }

        let mut pids_stats = Map::new();
        if st.pids_current > 0 {
            pids_stats.insert("current".into(), json!(st.pids_current));
        }
        if let Some(l) = st.pids_limit {
            pids_stats.insert("limit".into(), json!(l));
        }

        let mut blkio_stats = Sample::zero().blkio_stats;
        blkio_stats["io_service_bytes_recursive"] = io_service_bytes(cg);
        Sample {
            read,
            cpu_stats,
            memory_stats,
            pids_stats: Value::Object(pids_stats),
            blkio_stats,
            networks: (pid > 0).then(|| net_dev(pid)).flatten(),
        }
    }
}

/// Docker's `networks` stats: `/proc/<pid>/net/dev` of the container's namespace, `lo` left out.
fn net_dev(pid: i32) -> Option<Value> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    Some(parse_net_dev(&text))
}

fn parse_net_dev(text: &str) -> Value {
    let mut out = serde_json::Map::new();
    for line in text.lines().skip(2) {
        let Some((name, fields)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let f: Vec<u64> = fields.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if name == "lo" || f.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            json!({
                "rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2], "rx_dropped": f[3],
                "tx_bytes": f[8], "tx_packets": f[9], "tx_errors": f[10], "tx_dropped": f[11],
            }),
        );
    }
    Value::Object(out)
}

/// Docker's `StatsJSON`: this reading, the previous one as `pre*`, the container's name and ID.
fn stats_object(rec: &ContainerRecord, cur: &Sample, prev: &Sample) -> Value {
    let mut v = json!({
        "read": cur.read,
        "preread": prev.read,
        "pids_stats": cur.pids_stats,
        "blkio_stats": cur.blkio_stats,
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cur.cpu_stats,
        "precpu_stats": prev.cpu_stats,
        "memory_stats": cur.memory_stats,
        "name": format!("/{}", rec.name),
        "id": rec.id,
    });
    if let Some(networks) = &cur.networks {
        v["networks"] = networks.clone();
    }
    v
}

/// The cgroup's directory in the v1 hierarchy holding `controller`.
fn v1_dir<'a>(cg: &'a CgroupPath, controller: &str) -> Option<&'a Path> {
    cg.v1_dirs()
        .find(|(h, _)| h.controllers.iter().any(|c| c == controller))
        .map(|(_, d)| d)
}

/// The cgroup's cgroup2 directory, when it has `file` (on a hybrid host it mostly does not).
fn v2_dir<'a>(cg: &'a CgroupPath, file: &str) -> Option<&'a Path> {
    cg.v2_dir().filter(|d| d.join(file).exists())
}

/// Bytes read and written per device: v1 `blkio.throttle.io_service_bytes_recursive`, v2
/// `io.stat`. `null` when there is nothing to report.
fn io_service_bytes(cg: &CgroupPath) -> Value {
    let mut out = Vec::new();
    let dev = |d: &str| {
        let (ma, mi) = d.split_once(':')?;
        Some((ma.parse::<u64>().ok()?, mi.parse::<u64>().ok()?))
    };
    if let Some(dir) = v1_dir(cg, "blkio") {
        let text = [
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes",
        ]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [d, op, value] = f[..] {
                if let (Some((major, minor)), Ok(value)) = (dev(d), value.parse::<u64>()) {
                    out.push(json!({"major": major, "minor": minor, "op": op, "value": value}));
                }
            }
        }
    } else if let Some(dir) = v2_dir(cg, "io.stat") {
        for line in std::fs::read_to_string(dir.join("io.stat"))
            .unwrap_or_default()
            .lines()
        {
            let mut f = line.split_whitespace();
            let Some((major, minor)) = f.next().and_then(dev) else {
                continue;
            };
            for kv in f {
                let op = match kv.split_once('=') {
                    Some(("rbytes", v)) => ("read", v),
                    Some(("wbytes", v)) => ("write", v),
                    _ => continue,
                };
                if let Ok(value) = op.1.parse::<u64>() {
                    out.push(json!({"major": major, "minor": minor, "op": op.0, "value": value}));
                }
            }
        }
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Array(out)
    }
}

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// `key value` lines.
fn keyed(p: &Path) -> std::collections::HashMap<String, u64> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn online_cpus() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as u64
}

/// The host's CPU time in nanoseconds, from the `cpu` line of /proc/stat (user, nice, system,
/// idle, iowait, irq, softirq), as Docker computes `system_cpu_usage`.
fn system_cpu_usage(ticks: u64) -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let total: u64 = line
        .split_whitespace()
        .skip(1)
        .take(7)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    total.saturating_mul(1_000_000_000) / ticks.max(1)
}

/// MemTotal, bytes.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_are_filtered_by_pid_and_keep_the_command_whole() {
        let out = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                   root           1       0  0 10:00 ?        00:00:01 /sbin/init splash\n\
                   root        4242    4200  0 10:01 ?        00:00:00 sh -c while true; do sleep 1; done\n";
        let v = parse_ps(out, &[4242]).unwrap();
        assert_eq!(v["Titles"].as_array().unwrap().len(), 8);
        let rows = v["Processes"].as_array().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][1], "4242");
        assert_eq!(rows[0][7], "sh -c while true; do sleep 1; done");
        assert!(parse_ps("USER CMD\nroot x\n", &[]).is_err());
    }
}

#[cfg(test)]
mod net_dev_tests {
    #[test]
    fn interfaces_other_than_lo_become_dockers_networks() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0:    1296      16    1    2    0     0          0         0      726        9    3    4    0     0       0          0
";
        let v = super::parse_net_dev(text);
        assert!(v.get("lo").is_none());
        assert_eq!(
            v["eth0"],
            serde_json::json!({"rx_bytes": 1296, "rx_packets": 16, "rx_errors": 1, "rx_dropped": 2,
                               "tx_bytes": 726, "tx_packets": 9, "tx_errors": 3, "tx_dropped": 4})
        );
    }
}
