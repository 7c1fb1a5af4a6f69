//! `docker exec`: processes started inside a running container through its shim.

use super::{ContainerError, ContainerService, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

/// The body of `POST /containers/{id}/exec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    pub user: String,
    pub privileged: bool,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub detach_keys: String,
    pub env: Option<Vec<String>>,
    pub working_dir: String,
    pub cmd: Vec<String>,
}

#[derive(Debug, Default)]
struct ExecState {
    running: bool,
    exit_code: Option<i64>,
    pid: i64,
}

pub struct ExecEntry {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    state: Mutex<ExecState>,
    /// Publishes `exec_die` with the exit code.
    on_exit: Box<dyn Fn(i64) + Send + Sync>,
}

impl ExecEntry {
    fn state(&self) -> std::sync::MutexGuard<'_, ExecState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the exit code the shim reported (`EXIT <code>` on stream 3).
    pub fn finished(&self, message: &[u8]) {
        let text = String::from_utf8_lossy(message);
        let code = text
            .trim()
            .strip_prefix("EXIT ")
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(-1);
        {
            let mut s = self.state();
            s.running = false;
            s.exit_code = Some(code);
        }
        (self.on_exit)(code);
    }

    /// `GET /exec/{id}/json`.
    pub fn inspect(&self) -> Value {
        let s = self.state();
        json!({
            "ID": self.id,
            "Running": s.running,
            "ExitCode": s.exit_code,
            "ProcessConfig": {
                "tty": self.config.tty,
                "entrypoint": self.config.cmd.first(),
                "arguments": self.config.cmd.get(1..).unwrap_or(&[]),
                "privileged": self.config.privileged,
                "user": self.config.user,
            },
            "OpenStdin": self.config.attach_stdin,
            "OpenStderr": self.config.attach_stderr,
            "OpenStdout": self.config.attach_stdout,
            "CanRemove": false,
            "ContainerID": self.container_id,
            "DetachKeys": self.config.detach_keys,
            "Pid": s.pid,
        })
    }
}

impl ContainerService {
    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, name: &str, config: ExecConfig) -> Result<String> {
        let entry = self.resolve(name)?;
        let rec = entry.record();
        if !rec.state.running {
            return Err(ContainerError::Conflict(format!(
                "container {} is not running",
                rec.id
            )));
        }
        if rec.state.paused {
            return Err(ContainerError::Conflict(format!(
                "container {} is paused, unpause the container before exec",
                rec.id
            )));
        }
        if config.cmd.is_empty() {
            return Err(ContainerError::Invalid("No exec command specified".into()));
        }
        // The exec's start follows at once.
        super::ops::prime_cgroup_migration();
        let id = super::random_id();
        let command = config.cmd.join(" ");
        self.emit(
            &rec,
            &format!("exec_create: {command}"),
            &[("execID", id.clone())],
        );
        let (svc, exec_rec, exec_id) = (self.clone(), rec.clone(), id.clone());
        let exec = Arc::new(ExecEntry {
            id: id.clone(),
            container_id: rec.id,
            config,
            state: Mutex::new(ExecState::default()),
            on_exit: Box::new(move |code| {
                svc.emit(
                    &exec_rec,
                    "exec_die",
                    &[("execID", exec_id.clone()), ("exitCode", code.to_string())],
                )
            }),
        });
        self.inner
            .execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), exec);
        Ok(id)
    }

    pub fn exec(&self, id: &str) -> Result<Arc<ExecEntry>> {
        let execs = self.inner.execs.lock().unwrap_or_else(|p| p.into_inner());
        execs
            .get(id)
            .cloned()
            .ok_or_else(|| ContainerError::NoSuchExec(id.to_string()))
    }

    /// `POST /exec/{id}/start`: runs the process; returns the shim connection that carries its
    /// output (and stdin) and ends with the exit frame.
    pub async fn exec_start(&self, id: &str) -> Result<(Arc<ExecEntry>, tokio::net::UnixStream)> {
        let exec = self.exec(id)?;
        {
            let mut s = exec.state();
            if s.running || s.exit_code.is_some() {
                return Err(ContainerError::Conflict(format!(
                    "Error: Exec command {id} has already run"
                )));
            }
            s.running = true;
        }
        let entry = self.resolve(&exec.container_id)?;
        let rec = entry.record();
        self.emit(
            &rec,
            &format!("exec_start: {}", exec.config.cmd.join(" ")),
            &[("execID", exec.id.clone())],
        );
        let spec: Value = std::fs::read(entry.paths.dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ContainerError::Internal("the container's runtime spec is missing".into()))?;
        let c = &exec.config;
        let mut env: Vec<String> = spec["process"]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        for e in c.env.iter().flatten() {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        let user = if c.user.is_empty() {
            rec.config.user.clone()
        } else {
            c.user.clone()
        };
        let (uid, gid, groups) =
            super::spec::resolve_user(&entry.paths.rootfs(), &user, &[]).map_err(ContainerError::Invalid)?;
        let caps = if c.privileged {
            json!(super::spec::host_capabilities())
        } else {
            spec["process"]["capabilities"]["bounding"].clone()
        };
        let cwd = if c.working_dir.is_empty() {
            spec["process"]["cwd"].clone()
        } else {
            json!(c.working_dir)
        };
        let request = json!({
            "process": {
                "terminal": c.tty,
                "user": {"uid": uid, "gid": gid, "additionalGids": groups},
                "args": c.cmd,
                "env": env,
                "cwd": cwd,
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []},
                "noNewPrivileges": !c.privileged && !rec.host_config.privileged,
            },
            "stdin": c.attach_stdin,
        });
        let mut conn = super::shim::connect(&entry.paths.shim).await?;
        conn.write_all(format!("EXEC {request}\n").as_bytes()).await?;
        let answer = super::shim::read_line(&mut conn).await?;
        if let Some(pid) = answer.strip_prefix("OK ") {
            exec.state().pid = pid.trim().parse().unwrap_or(0);
            Ok((exec, conn))
        } else {
            let rest = answer.strip_prefix("ERR ").unwrap_or(&answer);
            let (code, message) = rest.split_once(' ').unwrap_or(("126", rest));
            {
                let mut s = exec.state();
                s.running = false;
                s.exit_code = Some(code.parse().unwrap_or(126));
            }
            Err(ContainerError::StartFailed {
                code: code.parse().unwrap_or(126),
                message: format!("OCI runtime exec failed: {message}"),
            })
        }
    }

    /// Drops an exec record nobody will ask about again (the healthcheck's probes).
    pub(super) fn forget_exec(&self, id: &str) {
        self.inner
            .execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// `POST /exec/{id}/resize`.
    pub async fn exec_resize(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        let exec = self.exec(id)?;
        self.resize(&exec.container_id, rows, cols).await
    }
}
