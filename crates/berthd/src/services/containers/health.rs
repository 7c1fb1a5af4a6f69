//! Healthchecks (HEALTHCHECK in the image, `--health-*` on run): a probe run inside the container
//! every interval; `State.Health` keeps the status, the failing streak and the last five results,
//! and each change of status is a `health_status` event.

use super::{ContainerService, Entry, ExecConfig};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

const LOG_ENTRIES: usize = 5;
const OUTPUT_LIMIT: usize = 4096;

struct Probe {
    cmd: Vec<String>,
    interval: Duration,
    timeout: Duration,
    start_period: Duration,
    retries: i64,
}

fn probe(healthcheck: Option<&Value>) -> Option<Probe> {
    let h = healthcheck?;
    let test: Vec<String> = h["Test"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let cmd = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        _ => return None, // NONE, or nothing
    };
    if cmd.is_empty() {
        return None;
    }
    let dur = |k: &str, default: u64| match h[k].as_i64() {
        Some(ns) if ns > 0 => Duration::from_nanos(ns as u64),
        _ => Duration::from_secs(default),
    };
    Some(Probe {
        cmd,
        interval: dur("Interval", 30),
        timeout: dur("Timeout", 30),
        start_period: dur("StartPeriod", 0),
        retries: h["Retries"].as_i64().filter(|r| *r > 0).unwrap_or(3),
    })
}

impl ContainerService {
    /// Starts probing a container that just started, if it has a healthcheck.
    pub(super) fn watch_health(&self, entry: Arc<Entry>) {
        let rec = entry.record();
        let Some(p) = probe(rec.config.healthcheck.as_ref()) else {
            return;
        };
        let started_at = rec.state.started_at.clone();
        let rec = entry.update(|r| {
            r.state.health = Some(json!({"Status": "starting", "FailingStreak": 0, "Log": []}));
        });
        self.persist(&entry, &rec);
        let svc = self.clone();
        tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(p.interval).await;
                let rec = entry.record();
                // This run of the container is over: stop probing.
                if !rec.state.running || rec.state.started_at != started_at || entry.life.borrow().removed {
                    return;
                }
                if rec.state.paused {
                    continue;
                }
                let start = chrono::Utc::now();
                let (code, output) = svc.run_probe(&rec.id, &p).await;
                let end = chrono::Utc::now();
                let in_grace = began.elapsed() < p.start_period;
                let mut changed = None;
                let rec = entry.update(|r| {
                    let mut h = r
                        .state
                        .health
                        .take()
                        .unwrap_or_else(|| json!({"Status": "starting", "FailingStreak": 0, "Log": []}));
                    let old = h["Status"].as_str().unwrap_or("starting").to_string();
                    let mut streak = h["FailingStreak"].as_i64().unwrap_or(0);
                    let status = if code == 0 {
                        streak = 0;
                        "healthy".to_string()
                    } else if in_grace && old == "starting" {
                        old.clone()
                    } else {
                        streak += 1;
                        if streak >= p.retries {
                            "unhealthy".into()
                        } else {
                            old.clone()
                        }
                    };
                    let mut log: Vec<Value> = h["Log"].as_array().cloned().unwrap_or_default();
                    log.push(json!({
                        "Start": start.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                        "End": end.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                        "ExitCode": code,
                        "Output": output,
                    }));
                    let skip = log.len().saturating_sub(LOG_ENTRIES);
                    log.drain(..skip);
                    h = json!({"Status": status, "FailingStreak": streak, "Log": log});
                    if status != old {
                        changed = Some(status.clone());
                    }
                    r.state.health = Some(h);
                });
                svc.persist(&entry, &rec);
                if let Some(status) = changed {
                    svc.emit(&rec, &format!("health_status: {status}"), &[]);
                }
            }
        });
    }

    /// Runs the probe command inside the container; its exit code and (cut) output. A probe that
    /// outlives its timeout counts as failed.
    async fn run_probe(&self, container: &str, p: &Probe) -> (i64, String) {
        let config = ExecConfig {
            cmd: p.cmd.clone(),
            attach_stdout: true,
            attach_stderr: true,
            ..Default::default()
        };
        let run = async {
            let id = self.exec_create(container, config).ok()?;
            let (exec, mut conn) = self.exec_start(&id).await.ok()?;
            let mut output = Vec::new();
            let mut header = [0u8; 8];
            let mut code = None;
            while conn.read_exact(&mut header).await.is_ok() {
                let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
                let mut payload = vec![0u8; len];
                if conn.read_exact(&mut payload).await.is_err() {
                    break;
                }
                if header[0] == berth_shim::STREAM_SYSTEM {
                    exec.finished(&payload);
                    code = exec.inspect()["ExitCode"].as_i64();
                } else if output.len() < OUTPUT_LIMIT {
                    output.extend_from_slice(&payload[..payload.len().min(OUTPUT_LIMIT - output.len())]);
                }
            }
            self.forget_exec(&id);
            Some((code.unwrap_or(-1), String::from_utf8_lossy(&output).into_owned()))
        };
        match tokio::time::timeout(p.timeout, run).await {
            Ok(Some(r)) => r,
            Ok(None) => (-1, "health check could not run".into()),
            Err(_) => (
                -1,
                format!("Health check exceeded timeout ({}s)", p.timeout.as_secs()),
            ),
        }
    }
}
