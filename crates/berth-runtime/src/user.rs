//! `process.user`: supplementary groups, gid and uid, umask, and `$HOME` from the container's passwd.

use oci_spec::runtime::User;
use rustix::fs::{Gid, Mode, Uid};

use crate::error::{Result, RuntimeError};

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserPlan {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: u32,
}

impl UserPlan {
    pub fn from_spec(user: &User) -> Self {
        UserPlan {
            uid: user.uid(),
            gid: user.gid(),
            groups: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask().unwrap_or(0o022) & 0o777,
        }
    }

    /// Switches the (single-threaded) process to this user: groups, then gid, then uid.
    pub fn switch(&self) -> Result<()> {
        let groups: Vec<Gid> = self.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        rustix::thread::set_thread_groups(&groups).map_err(|e| RuntimeError::io("setgroups", e))?;
        let gid = Gid::from_raw(self.gid);
        rustix::thread::set_thread_res_gid(gid, gid, gid)
            .map_err(|e| RuntimeError::io(format!("setgid {}", self.gid), e))?;
        let uid = Uid::from_raw(self.uid);
        rustix::thread::set_thread_res_uid(uid, uid, uid)
            .map_err(|e| RuntimeError::io(format!("setuid {}", self.uid), e))?;
        Ok(())
    }

    pub fn apply_umask(&self) {
        rustix::process::umask(Mode::from_raw_mode(self.umask));
    }
}

/// The home directory of `uid` in `/etc/passwd` of the current root; "/" when there is none.
pub(crate) fn home_dir(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 6 && fields[2].parse() == Ok(uid)).then(|| fields[5].to_string())
        })
        .next()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}
