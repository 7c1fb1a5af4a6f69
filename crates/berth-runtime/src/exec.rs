//! Finding and executing the container's command, with the errors runc (and so Docker) reports.
//!
//! The lookup follows Go's `exec.LookPath`, which runc uses: a name with a `/` is used as is, any other is
//! searched in the container's `$PATH`.

use std::ffi::{CStr, CString};

use oci_spec::runtime::Process;
use rustix::fs::{Access, AtFlags, FileType, CWD};
use rustix::io::Errno;

use crate::error::{ExecErrorKind, Result, RuntimeError};

/// The PATH used when the container's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The command line and environment, converted for execve before the fork.
#[derive(Debug, Clone)]
pub(crate) struct ExecPlan {
    args: Vec<CString>,
    env: Vec<CString>,
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| RuntimeError::InvalidSpec(format!("{what} contains a NUL byte: {s:?}")))
}

/// An errno as Go prints it: "no such file or directory".
pub(crate) fn go_error(errno: Errno) -> String {
    let text = std::io::Error::from_raw_os_error(errno.raw_os_error()).to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn kind_of(errno: Errno) -> ExecErrorKind {
    match errno {
        Errno::NOENT | Errno::NOTDIR => ExecErrorKind::NotFound,
        Errno::ACCESS | Errno::PERM | Errno::ISDIR => ExecErrorKind::PermissionDenied,
        _ => ExecErrorKind::Other,
    }
}

/// Go's `findExecutable`: exists, is not a directory, and is executable for us.
fn find_executable(path: &str) -> Result<(), Errno> {
    let st = rustix::fs::stat(path)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        return Err(Errno::ISDIR);
    }
    match rustix::fs::accessat(CWD, path, Access::EXEC_OK, AtFlags::EACCESS) {
        Ok(()) => Ok(()),
        Err(Errno::NOSYS | Errno::PERM) if st.st_mode & 0o111 != 0 => Ok(()),
        Err(Errno::NOSYS | Errno::PERM) => Err(Errno::ACCESS),
        Err(e) => Err(e),
    }
}

impl ExecPlan {
    pub fn from_process(process: &Process) -> Result<Self> {
        let args = process.args().as_deref().unwrap_or(&[]);
        if args.is_empty() {
            return Err(RuntimeError::InvalidSpec("process.args is empty".into()));
        }
        let args = args
            .iter()
            .map(|a| cstring(a, "process.args"))
            .collect::<Result<Vec<_>>>()?;
        let env = process
            .env()
            .iter()
            .flatten()
            .map(|e| cstring(e, "process.env"))
            .collect::<Result<Vec<_>>>()?;
        Ok(ExecPlan { args, env })
    }

    fn env_value(&self, key: &str) -> Option<&str> {
        self.env.iter().rev().find_map(|e| {
            let e = e.to_str().ok()?;
            e.strip_prefix(key)?.strip_prefix('=')
        })
    }

    /// Adds `key=value` to the environment unless `key` is already set.
    pub fn set_default_env(&mut self, key: &str, value: &str) {
        if self.env_value(key).is_none() {
            if let Ok(entry) = CString::new(format!("{key}={value}")) {
                self.env.push(entry);
            }
        }
    }

    fn argv0(&self) -> String {
        self.args[0].to_string_lossy().into_owned()
    }

    /// Resolves the command against the container's `$PATH` (in the container's root and cwd).
    pub fn lookup(&self) -> Result<CString> {
        let file = self.argv0();
        if file.contains('/') {
            return match find_executable(&file) {
                Ok(()) => Ok(self.args[0].clone()),
                Err(e @ (Errno::NOENT | Errno::NOTDIR)) => Err(RuntimeError::Exec {
                    kind: kind_of(e),
                    message: format!("exec: {file:?}: stat {file}: {}", go_error(e)),
                }),
                Err(e) => Err(RuntimeError::Exec {
                    kind: kind_of(e),
                    message: format!("exec: {file:?}: {}", go_error(e)),
                }),
            };
        }
        let path = self.env_value("PATH").unwrap_or(DEFAULT_PATH);
        if !file.is_empty() {
            for dir in path.split(':') {
                let dir = if dir.is_empty() { "." } else { dir };
                let candidate = format!("{dir}/{file}");
                if find_executable(&candidate).is_ok() {
                    return cstring(&candidate, "executable path");
                }
            }
        }
        Err(RuntimeError::Exec {
            kind: ExecErrorKind::NotFound,
            message: format!("exec: {file:?}: executable file not found in $PATH"),
        })
    }

    /// execve; returns only on failure.
    pub fn exec(&self, path: &CStr) -> RuntimeError {
        let mut argv: Vec<*const libc::c_char> = self.args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: `path`, `argv` and `envp` are NUL-terminated strings and NULL-terminated arrays of them,
        // all alive for the duration of the call.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let errno = Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        RuntimeError::Exec {
            kind: kind_of(errno),
            message: format!("exec {}: {}", path.to_string_lossy(), go_error(errno)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_errors() {
        assert_eq!(go_error(Errno::NOENT), "no such file or directory");
        assert_eq!(go_error(Errno::ACCESS), "permission denied");
        assert_eq!(go_error(Errno::NOEXEC), "exec format error");
    }

    fn plan(args: &[&str], path: &str) -> ExecPlan {
        let mut p = Process::default();
        p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        p.set_env(Some(vec![format!("PATH={path}")]));
        ExecPlan::from_process(&p).unwrap()
    }

    #[test]
    fn lookup_like_docker() {
        let p = plan(&["sh"], "/nonexistent:/bin");
        assert_eq!(p.lookup().unwrap().to_str().unwrap(), "/bin/sh");
        let err = plan(&["nosuch"], "/bin").lookup().unwrap_err();
        assert_eq!(
            err.to_string(),
            "exec: \"nosuch\": executable file not found in $PATH"
        );
        assert_eq!(err.exit_code(), 127);
        let err = plan(&["/nosuch"], "/bin").lookup().unwrap_err();
        assert_eq!(
            err.to_string(),
            "exec: \"/nosuch\": stat /nosuch: no such file or directory"
        );
        assert_eq!(err.exit_code(), 127);
        let err = plan(&["/etc/passwd"], "/bin").lookup().unwrap_err();
        assert_eq!(err.exit_code(), 126);
    }
}
