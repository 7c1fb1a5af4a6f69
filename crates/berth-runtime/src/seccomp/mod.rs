//! `linux.seccomp` compiled to a classic-BPF program (before the fork, in microseconds) and loaded in the
//! child as the last step before exec.
//!
//! Semantics follow libseccomp, as runc uses it: syscall names unknown for an architecture are skipped,
//! rules whose action is the default action are dropped, an argument compared twice in one rule splits
//! the rule into one rule per comparison, and a syscall of an architecture the profile does not list is
//! killed.

mod bpf;
mod tables;

use std::collections::{BTreeMap, HashMap};

use libc::sock_filter;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use self::bpf::{Cond, Op, Outcome, Rule};
use crate::error::{Result, RuntimeError};

const EPERM: u32 = 1;

// SECCOMP_RET_* verdicts.
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
/// What a syscall of an architecture the profile does not list gets (libseccomp's default).
const RET_BAD_ARCH: u32 = RET_KILL_THREAD;

// AUDIT_ARCH_* values (linux/audit.h).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
/// x32 system calls are x86_64 ones with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_LOG: libc::c_ulong = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 4;
/// BPF_MAXINSNS.
const MAX_INSTRUCTIONS: usize = 4096;

/// A compiled filter, ready to load.
#[derive(Debug, Clone)]
pub(crate) struct SeccompFilter {
    program: Vec<SockFilter>,
    flags: libc::c_ulong,
}

/// `sock_filter` with Debug and Clone.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct SockFilter(sock_filter);

impl std::fmt::Debug for SockFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.0;
        write!(f, "{{{:#06x}, {}, {}, {:#x}}}", i.code, i.jt, i.jf, i.k)
    }
}

/// A syscall-number table of one architecture, and how its numbers and arguments look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Abi {
    X86_64,
    X32,
    X86,
    Aarch64,
    Arm,
}

impl Abi {
    fn of(arch: Arch) -> Option<Abi> {
        Some(match arch {
            Arch::ScmpArchX86_64 => Abi::X86_64,
            Arch::ScmpArchX32 => Abi::X32,
            Arch::ScmpArchX86 => Abi::X86,
            Arch::ScmpArchAarch64 => Abi::Aarch64,
            Arch::ScmpArchArm => Abi::Arm,
            Arch::ScmpArchNative if cfg!(target_arch = "x86_64") => Abi::X86_64,
            Arch::ScmpArchNative if cfg!(target_arch = "aarch64") => Abi::Aarch64,
            // Architectures this machine cannot run: their sections would never be entered.
            _ => return None,
        })
    }

    fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => AUDIT_ARCH_X86_64,
            Abi::X86 => AUDIT_ARCH_I386,
            Abi::Aarch64 => AUDIT_ARCH_AARCH64,
            Abi::Arm => AUDIT_ARCH_ARM,
        }
    }

    /// Arguments are 64 bits wide (else only the low 32 bits are compared).
    fn wide(self) -> bool {
        matches!(self, Abi::X86_64 | Abi::Aarch64)
    }

    fn table(self) -> HashMap<&'static str, u32> {
        let text = match self {
            Abi::X86_64 => tables::X86_64,
            Abi::X32 => tables::X32,
            Abi::X86 => tables::X86,
            Abi::Aarch64 => tables::AARCH64,
            Abi::Arm => tables::ARM,
        };
        let mut words = text.split_ascii_whitespace();
        let mut map = HashMap::new();
        while let (Some(name), Some(nr)) = (words.next(), words.next()) {
            if let Ok(nr) = nr.parse::<u32>() {
                map.insert(
                    name,
                    if self == Abi::X32 {
                        nr | X32_SYSCALL_BIT
                    } else {
                        nr
                    },
                );
            }
        }
        map
    }
}

fn ret_value(action: LinuxSeccompAction, errno: Option<u32>) -> Result<u32> {
    let data = errno.unwrap_or(EPERM) & 0xffff;
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | data,
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | data,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(RuntimeError::Unsupported("seccomp SCMP_ACT_NOTIFY".into()));
        }
    })
}

fn cond(arg: &LinuxSeccompArg) -> Result<Cond> {
    if arg.index() > 5 {
        return Err(RuntimeError::InvalidSpec(format!(
            "seccomp argument index {} (0 to 5)",
            arg.index()
        )));
    }
    let (op, value) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (Op::Ne, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (Op::Lt, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (Op::Le, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (Op::Eq, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (Op::Ge, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (Op::Gt, arg.value()),
        // OCI: `value` is the mask, `valueTwo` what the masked argument must equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (Op::MaskedEq(arg.value()), arg.value_two().unwrap_or(0)),
    };
    Ok(Cond {
        index: arg.index() as u32,
        op,
        value,
    })
}

/// The rules of one audit architecture (x86_64 and x32 share one).
#[derive(Default)]
struct Section {
    abis: Vec<Abi>,
    /// Syscall number -> (rules in profile order, 64-bit arguments).
    syscalls: BTreeMap<u32, (Vec<Rule>, bool)>,
}

impl SeccompFilter {
    /// Compiles a profile.
    pub fn compile(profile: &LinuxSeccomp) -> Result<Self> {
        if profile.listener_path().is_some() {
            return Err(RuntimeError::Unsupported(
                "seccomp listenerPath (user notification)".into(),
            ));
        }
        let default = ret_value(profile.default_action(), profile.default_errno_ret())?;
        let mut abis: Vec<Abi> = Vec::new();
        for abi in profile
            .architectures()
            .iter()
            .flatten()
            .filter_map(|a| Abi::of(*a))
        {
            if !abis.contains(&abi) {
                abis.push(abi);
            }
        }
        if abis.is_empty() {
            abis.extend(Abi::of(Arch::ScmpArchNative));
        }
        let mut sections: BTreeMap<u32, Section> = BTreeMap::new();
        let tables: Vec<(Abi, HashMap<&str, u32>)> = abis.iter().map(|a| (*a, a.table())).collect();
        for (abi, _) in &tables {
            sections.entry(abi.audit_arch()).or_default().abis.push(*abi);
        }
        for rule in profile.syscalls().iter().flatten() {
            let action = ret_value(rule.action(), rule.errno_ret())?;
            if action == default {
                continue;
            }
            let conds = rule
                .args()
                .iter()
                .flatten()
                .map(cond)
                .collect::<Result<Vec<_>>>()?;
            let repeated = conds
                .iter()
                .enumerate()
                .any(|(i, a)| conds[i + 1..].iter().any(|b| b.index == a.index));
            let rules: Vec<Rule> = if repeated {
                conds
                    .iter()
                    .map(|c| Rule {
                        conds: vec![*c],
                        action,
                    })
                    .collect()
            } else {
                vec![Rule { conds, action }]
            };
            for name in rule.names() {
                for (abi, table) in &tables {
                    let Some(nr) = table.get(name.as_str()) else {
                        continue;
                    };
                    let section = sections.entry(abi.audit_arch()).or_default();
                    let entry = section
                        .syscalls
                        .entry(*nr)
                        .or_insert_with(|| (Vec::new(), abi.wide()));
                    entry.0.extend(rules.iter().cloned());
                }
            }
        }
        let program = assemble(&sections, default);
        if program.len() > MAX_INSTRUCTIONS {
            return Err(RuntimeError::Seccomp(format!(
                "the filter needs {} instructions, more than the kernel's {MAX_INSTRUCTIONS}",
                program.len()
            )));
        }
        let mut flags = 0;
        for flag in profile.flags().iter().flatten() {
            flags |= match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            };
        }
        Ok(SeccompFilter {
            program: program.into_iter().map(SockFilter).collect(),
            flags,
        })
    }

    /// Installs the filter on the calling process (needs no_new_privs or CAP_SYS_ADMIN).
    pub fn load(&self) -> Result<()> {
        let prog = libc::sock_fprog {
            len: self.program.len() as u16,
            filter: self.program.as_ptr() as *mut sock_filter,
        };
        // SAFETY: `prog` points at `len` initialised instructions (SockFilter is a transparent
        // sock_filter) that outlive the call; the kernel copies the program.
        let rc = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, self.flags, &prog) };
        if rc != 0 {
            return Err(RuntimeError::io(
                "loading the seccomp filter",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// The verdict of the filter for one syscall (tests only).
    #[cfg(test)]
    fn verdict(&self, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let program: Vec<sock_filter> = self.program.iter().map(|i| i.0).collect();
        bpf::run(&program, arch, nr, args)
    }
}

/// Lays out: arch dispatch, then one section per audit architecture (a decision tree on the number).
fn assemble(sections: &BTreeMap<u32, Section>, default: u32) -> Vec<sock_filter> {
    let mut bodies = Vec::new();
    for section in sections.values() {
        let mut body = vec![bpf::load(bpf::OFFSET_NR)];
        if section.abis.contains(&Abi::X86_64) || section.abis.contains(&Abi::X32) {
            // x86_64 and x32 share an audit arch and differ by a bit of the number.
            let (native, x32) = (
                section.abis.contains(&Abi::X86_64),
                section.abis.contains(&Abi::X32),
            );
            if !x32 {
                body.push(bpf::jge(X32_SYSCALL_BIT, 0, 1));
                body.push(bpf::ret(RET_BAD_ARCH));
            }
            if !native {
                body.push(bpf::jge(X32_SYSCALL_BIT, 1, 0));
                body.push(bpf::ret(RET_BAD_ARCH));
            }
        }
        let numbers: Vec<(u32, Outcome)> = section
            .syscalls
            .iter()
            .map(|(nr, (rules, wide))| {
                let outcome = match rules.first() {
                    Some(r) if r.conds.is_empty() => Outcome::Return(r.action),
                    _ => {
                        // Rules after an unconditional one can never be reached.
                        let end = rules
                            .iter()
                            .position(|r| r.conds.is_empty())
                            .map_or(rules.len(), |i| i + 1);
                        Outcome::Check {
                            rules: rules[..end].to_vec(),
                            wide: *wide,
                        }
                    }
                };
                (*nr, outcome)
            })
            .collect();
        body.extend(bpf::tree(&bpf::intervals(&numbers, default), default));
        bodies.push(body);
    }
    // Dispatch: [ld arch] then per section [jeq arch, 0, 1][ja section], then [ret bad arch].
    let header_len = 1 + 2 * sections.len() + 1;
    let mut program = vec![bpf::load(bpf::OFFSET_ARCH)];
    let mut start = header_len;
    for (i, audit) in sections.keys().enumerate() {
        program.push(bpf::jeq(*audit, 0, 1));
        let ja_at = 1 + 2 * i + 1;
        program.push(bpf::ja((start - ja_at - 1) as u32));
        start += bodies[i].len();
    }
    program.push(bpf::ret(RET_BAD_ARCH));
    for body in bodies {
        program.extend(body);
    }
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> SeccompFilter {
        SeccompFilter::compile(&crate::seccomp_profile::default_docker_seccomp()).unwrap()
    }

    const EPERM_RET: u32 = RET_ERRNO | 1;

    #[test]
    fn docker_default_on_x86_64() {
        let f = filter();
        let x = |nr: u32, args: [u64; 6]| f.verdict(AUDIT_ARCH_X86_64, nr, args);
        assert_eq!(x(0, [0; 6]), RET_ALLOW, "read");
        assert_eq!(x(59, [0; 6]), RET_ALLOW, "execve");
        assert_eq!(x(165, [0; 6]), EPERM_RET, "mount");
        assert_eq!(x(272, [0; 6]), EPERM_RET, "unshare");
        assert_eq!(x(161, [0; 6]), RET_ALLOW, "chroot (CAP_SYS_CHROOT)");
        assert_eq!(x(56, [0x1200011, 0, 0, 0, 0, 0]), RET_ALLOW, "clone for fork");
        assert_eq!(
            x(56, [0x20000 | 0x11, 0, 0, 0, 0, 0]),
            EPERM_RET,
            "clone(CLONE_NEWNS)"
        );
        assert_eq!(x(435, [0; 6]), RET_ERRNO | 38, "clone3 -> ENOSYS");
        assert_eq!(x(135, [8, 0, 0, 0, 0, 0]), RET_ALLOW, "personality(UNAME26)");
        assert_eq!(
            x(135, [0xffff_ffff, 0, 0, 0, 0, 0]),
            RET_ALLOW,
            "personality query"
        );
        assert_eq!(x(135, [5, 0, 0, 0, 0, 0]), EPERM_RET, "personality(5)");
        assert_eq!(x(41, [2, 1, 0, 0, 0, 0]), RET_ALLOW, "socket(AF_INET)");
        assert_eq!(x(41, [40, 1, 0, 0, 0, 0]), EPERM_RET, "socket(AF_VSOCK)");
        assert_eq!(x(158, [0; 6]), RET_ALLOW, "arch_prctl");
        assert_eq!(x(u32::MAX, [0; 6]), EPERM_RET, "nr -1");
        assert_eq!(x(100_000, [0; 6]), EPERM_RET);
    }

    #[test]
    fn docker_default_on_x32_and_i386() {
        let f = filter();
        let x32 = |nr: u32| f.verdict(AUDIT_ARCH_X86_64, nr | X32_SYSCALL_BIT, [0; 6]);
        assert_eq!(x32(0), RET_ALLOW, "x32 read");
        assert_eq!(x32(520), RET_ALLOW, "x32 execve");
        assert_eq!(x32(165), EPERM_RET, "x32 mount");
        let i386 = |nr: u32, a0: u64| f.verdict(AUDIT_ARCH_I386, nr, [a0, 0, 0, 0, 0, 0]);
        assert_eq!(i386(3, 0), RET_ALLOW, "i386 read");
        assert_eq!(i386(102, 0), RET_ALLOW, "i386 socketcall");
        assert_eq!(i386(21, 0), EPERM_RET, "i386 mount");
        assert_eq!(
            i386(136, 0x20008),
            RET_ALLOW,
            "i386 personality(PER_LINUX32|UNAME26)"
        );
        assert_eq!(
            f.verdict(AUDIT_ARCH_AARCH64, 63, [0; 6]),
            RET_BAD_ARCH,
            "unlisted arch"
        );
    }

    #[test]
    fn x32_is_a_bad_arch_unless_listed() {
        let profile: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        let f = SeccompFilter::compile(&profile).unwrap();
        assert_eq!(f.verdict(AUDIT_ARCH_X86_64, 0, [0; 6]), RET_ALLOW);
        assert_eq!(f.verdict(AUDIT_ARCH_X86_64, 1, [0; 6]), EPERM_RET);
        assert_eq!(
            f.verdict(AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, [0; 6]),
            RET_BAD_ARCH
        );
        assert_eq!(f.verdict(AUDIT_ARCH_I386, 3, [0; 6]), RET_BAD_ARCH);
    }

    #[test]
    fn repeated_argument_means_any_of() {
        let profile: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                "errnoRet": 13, "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                                         {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]}]}"#,
        )
        .unwrap();
        let f = SeccompFilter::compile(&profile).unwrap();
        let kill = |sig: u64| f.verdict(AUDIT_ARCH_X86_64, 62, [1, sig, 0, 0, 0, 0]);
        assert_eq!(kill(9), RET_ERRNO | 13);
        assert_eq!(kill(15), RET_ERRNO | 13);
        assert_eq!(kill(2), RET_ALLOW);
    }

    #[test]
    fn rejects_notify() {
        let profile: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        )
        .unwrap();
        assert!(matches!(
            SeccompFilter::compile(&profile),
            Err(RuntimeError::Unsupported(_))
        ));
    }

    #[test]
    fn compiles_fast_and_small() {
        let t = std::time::Instant::now();
        let f = filter();
        let elapsed = t.elapsed();
        assert!(f.program.len() < 1500, "{} instructions", f.program.len());
        assert!(elapsed < std::time::Duration::from_millis(50), "{elapsed:?}");
    }
}
