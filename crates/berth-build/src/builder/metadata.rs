//! Instructions that change only the image config, applied as Docker's classic builder applies
//! them (the image config's field names and JSON shapes are Docker's).

use crate::dockerfile::{CommandLine, Healthcheck, InstructionKind};
use berth_image::ContainerConfig;
use serde_json::{json, Map, Value};

/// Per-stage facts the config alone does not hold.
#[derive(Debug, Default, Clone)]
pub struct StageFlags {
    /// CMD was set in this stage (an ENTRYPOINT then keeps it; otherwise ENTRYPOINT clears an
    /// inherited CMD).
    pub cmd_set: bool,
}

/// The shell a shell-form command runs with.
pub fn shell_of(c: &ContainerConfig) -> Vec<String> {
    c.shell
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

/// The argv of a command line in this config.
pub fn argv(c: &ContainerConfig, line: &CommandLine) -> Vec<String> {
    match line {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => {
            let mut v = shell_of(c);
            v.push(s.clone());
            v
        }
    }
}

/// Sets `KEY=value` in an env list, replacing an earlier value of the key in place.
pub fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

fn go_nanos(d: &std::time::Duration) -> Value {
    json!(d.as_nanos() as u64)
}

/// Applies a metadata instruction (already expanded); returns false for instructions that are
/// not metadata-only (RUN, COPY, ADD, WORKDIR, ARG are handled by the step runner).
pub fn apply(c: &mut ContainerConfig, flags: &mut StageFlags, kind: &InstructionKind) -> bool {
    match kind {
        InstructionKind::Env(kvs) => {
            let env = c.env.get_or_insert_with(Vec::new);
            for kv in kvs {
                set_env(env, &kv.key, &kv.value);
            }
        }
        InstructionKind::Label(kvs) => {
            let labels = c.labels.get_or_insert_with(Default::default);
            for kv in kvs {
                labels.insert(kv.key.clone(), kv.value.clone());
            }
        }
        InstructionKind::Expose(ports) => {
            let map = c.exposed_ports.get_or_insert_with(Default::default);
            for p in ports {
                let p = if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                };
                map.insert(p, Value::Object(Map::new()));
            }
        }
        InstructionKind::User(u) => c.user = u.clone(),
        InstructionKind::Volume(vols) => {
            let map = c.volumes.get_or_insert_with(Default::default);
            for v in vols {
                map.insert(v.clone(), Value::Object(Map::new()));
            }
        }
        InstructionKind::Shell(s) => c.shell = Some(s.clone()),
        InstructionKind::StopSignal(s) => c.stop_signal = s.clone(),
        InstructionKind::Onbuild(o) => c.on_build.get_or_insert_with(Vec::new).push(o.expression.clone()),
        InstructionKind::Cmd(line) => {
            c.cmd = Some(argv(c, line));
            flags.cmd_set = true;
        }
        InstructionKind::Entrypoint(line) => {
            c.entrypoint = Some(argv(c, line));
            if !flags.cmd_set {
                c.cmd = None;
            }
        }
        InstructionKind::Healthcheck(h) => {
            let value = match h {
                Healthcheck::None => json!({"Test": ["NONE"]}),
                Healthcheck::Check(hc) => {
                    let mut m = Map::new();
                    m.insert("Test".into(), json!(hc.test_array()));
                    for (name, d) in [
                        ("Interval", &hc.interval),
                        ("Timeout", &hc.timeout),
                        ("StartPeriod", &hc.start_period),
                        ("StartInterval", &hc.start_interval),
                    ] {
                        if let Some(d) = d {
                            m.insert(name.into(), go_nanos(d));
                        }
                    }
                    if let Some(r) = hc.retries {
                        m.insert("Retries".into(), json!(r));
                    }
                    Value::Object(m)
                }
            };
            c.extra.insert("Healthcheck".into(), value);
        }
        InstructionKind::Maintainer(_) => {} // the image's `author`, set by the caller
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::KeyValue;

    #[test]
    fn entrypoint_clears_an_inherited_cmd_only() {
        let mut c = ContainerConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        let mut f = StageFlags::default();
        apply(
            &mut c,
            &mut f,
            &InstructionKind::Entrypoint(CommandLine::Exec(vec!["/e".into()])),
        );
        assert_eq!(c.cmd, None);
        apply(
            &mut c,
            &mut f,
            &InstructionKind::Cmd(CommandLine::Shell("run it".into())),
        );
        apply(
            &mut c,
            &mut f,
            &InstructionKind::Entrypoint(CommandLine::Exec(vec!["/e".into()])),
        );
        assert_eq!(c.cmd.clone().unwrap(), ["/bin/sh", "-c", "run it"]);
        let env = InstructionKind::Env(vec![KeyValue {
            key: "A".into(),
            value: "1".into(),
        }]);
        apply(&mut c, &mut f, &env);
        assert_eq!(c.env.unwrap(), ["A=1"]);
    }
}
