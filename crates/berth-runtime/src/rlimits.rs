//! `process.rlimits`, clamped to what the caller may set.
//!
//! Raising a hard limit needs CAP_SYS_RESOURCE, which root may lack (e.g. in a container, or on hosts
//! that drop it): a requested hard limit above the current one is lowered to it, and the soft limit to the
//! hard one, instead of failing the container with EPERM.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};
use rustix::process::{Resource, Rlimit};

use crate::error::{Result, RuntimeError};

fn resource(typ: PosixRlimitType) -> Resource {
    match typ {
        PosixRlimitType::RlimitCpu => Resource::Cpu,
        PosixRlimitType::RlimitFsize => Resource::Fsize,
        PosixRlimitType::RlimitData => Resource::Data,
        PosixRlimitType::RlimitStack => Resource::Stack,
        PosixRlimitType::RlimitCore => Resource::Core,
        PosixRlimitType::RlimitRss => Resource::Rss,
        PosixRlimitType::RlimitNproc => Resource::Nproc,
        PosixRlimitType::RlimitNofile => Resource::Nofile,
        PosixRlimitType::RlimitMemlock => Resource::Memlock,
        PosixRlimitType::RlimitAs => Resource::As,
        PosixRlimitType::RlimitLocks => Resource::Locks,
        PosixRlimitType::RlimitSigpending => Resource::Sigpending,
        PosixRlimitType::RlimitMsgqueue => Resource::Msgqueue,
        PosixRlimitType::RlimitNice => Resource::Nice,
        PosixRlimitType::RlimitRtprio => Resource::Rtprio,
        PosixRlimitType::RlimitRttime => Resource::Rttime,
    }
}

/// `None` in an rlimit means unlimited.
fn value(v: Option<u64>) -> u64 {
    v.unwrap_or(u64::MAX)
}

/// The (soft, hard) to set for a requested limit, given the current hard limit.
pub(crate) fn clamp(soft: u64, hard: u64, current_hard: u64) -> (u64, u64) {
    let hard = hard.min(current_hard);
    (soft.min(hard), hard)
}

/// Applies the rlimits to the calling process.
pub(crate) fn apply(limits: &[PosixRlimit]) -> Result<()> {
    for l in limits {
        let res = resource(l.typ());
        let current = rustix::process::getrlimit(res);
        let (soft, hard) = clamp(l.soft(), l.hard(), value(current.maximum));
        let as_opt = |v: u64| if v == u64::MAX { None } else { Some(v) };
        rustix::process::setrlimit(
            res,
            Rlimit {
                current: as_opt(soft),
                maximum: as_opt(hard),
            },
        )
        .map_err(|e| RuntimeError::io(format!("setrlimit {:?} {soft}/{hard}", l.typ()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_to_the_current_hard_limit() {
        assert_eq!(clamp(1_048_576, 1_048_576, 20_000), (20_000, 20_000));
        assert_eq!(clamp(1024, 4096, 20_000), (1024, 4096));
        assert_eq!(clamp(u64::MAX, u64::MAX, u64::MAX), (u64::MAX, u64::MAX));
    }
}
