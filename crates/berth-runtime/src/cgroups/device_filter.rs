//! Device access on cgroup v2: v2 has no `devices.allow`/`devices.deny` files; the kernel asks a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the cgroup instead. This module compiles the
//! spec's `linux.resources.devices` rules into such a program and attaches it.
//!
//! The rules mean what they mean to cgroup v1 and runc: the last rule that matches a request
//! decides. An allow rule matches when it grants every access asked for, a deny rule when it
//! refuses any of them; a request no rule matches is refused (runc's choice for v2).
//! The program is a few straight-line tests per rule, generated here like our seccomp filter:
//! no crate builds device programs, and the instruction set needed is eight opcodes.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Result, RuntimeError};

/// `struct bpf_insn`: opcode, dst/src registers in one byte, a jump offset and an immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes (linux/bpf.h): class | op | source.
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const MOV64_K: u8 = 0xb7; // dst = imm
const MOV64_X: u8 = 0xbf; // dst = src
const AND64_K: u8 = 0x57; // dst &= imm
const RSH64_K: u8 = 0x77; // dst >>= imm
const JNE_K: u8 = 0x55; // if dst != imm: pc += off
const JEQ_K: u8 = 0x15; // if dst == imm: pc += off
const EXIT: u8 = 0x95;

// Registers: r1 holds the context on entry; r0 is the verdict.
const R0: u8 = 0;
const R1: u8 = 1;
const ACCESS: u8 = 2;
const TYPE: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;
const SCRATCH: u8 = 6;

// `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`; access_type is the
// device type in the low 16 bits and the access bits above.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// One rule, reduced to what the program compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    allow: bool,
    dev_type: Option<i32>,
    access: i32,
    major: Option<i32>,
    minor: Option<i32>,
}

fn reduce(rule: &LinuxDeviceCgroup) -> Result<Rule> {
    let bad = |what: String| RuntimeError::InvalidSpec(format!("device rule {rule}: {what}"));
    let dev_type = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => None,
        LinuxDeviceType::B => Some(DEV_BLOCK),
        LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
        other => return Err(bad(format!("type {} is not a device", other.as_str()))),
    };
    let mut access = 0;
    for c in rule.access().as_deref().unwrap_or("").chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            other => return Err(bad(format!("unknown access {other:?}"))),
        };
    }
    let number = |n: Option<i64>| -> Result<Option<i32>> {
        match n {
            None | Some(-1) => Ok(None),
            // Kept below 2^31: the immediate is sign-extended before the 64-bit compare.
            Some(n) => i32::try_from(n)
                .ok()
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or_else(|| bad(format!("device number {n} out of range"))),
        }
    };
    Ok(Rule {
        allow: rule.allow(),
        dev_type,
        // An empty access list means all of them, as for cgroup v1.
        access: if access == 0 { ACC_ALL } else { access },
        major: number(rule.major())?,
        minor: number(rule.minor())?,
    })
}

/// The tests of one rule; each failing test jumps to the next rule (patched in by `compile`).
fn rule_block(rule: &Rule) -> Vec<Insn> {
    const NEXT: i16 = i16::MAX;
    let mut block = Vec::new();
    if let Some(t) = rule.dev_type {
        block.push(insn(JNE_K, TYPE, 0, NEXT, t));
    }
    if rule.access != ACC_ALL {
        block.push(insn(MOV64_X, SCRATCH, ACCESS, 0, 0));
        if rule.allow {
            // Matches when nothing asked for lies outside the rule's access.
            block.push(insn(AND64_K, SCRATCH, 0, 0, ACC_ALL & !rule.access));
            block.push(insn(JNE_K, SCRATCH, 0, NEXT, 0));
        } else {
            // Matches when anything asked for is refused by the rule.
            block.push(insn(AND64_K, SCRATCH, 0, 0, rule.access));
            block.push(insn(JEQ_K, SCRATCH, 0, NEXT, 0));
        }
    }
    if let Some(major) = rule.major {
        block.push(insn(JNE_K, MAJOR, 0, NEXT, major));
    }
    if let Some(minor) = rule.minor {
        block.push(insn(JNE_K, MINOR, 0, NEXT, minor));
    }
    block.push(insn(MOV64_K, R0, 0, 0, i32::from(rule.allow)));
    block.push(insn(EXIT, 0, 0, 0, 0));
    let len = block.len();
    for (i, ins) in block.iter_mut().enumerate() {
        if ins.off == NEXT {
            // Relative to the next instruction: land on the first one after this block.
            ins.off = (len - i - 1) as i16;
        }
    }
    block
}

/// Compiles `rules` into a device program.
pub(crate) fn compile(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    let mut prog = vec![
        insn(LDX_MEM_W, ACCESS, R1, 0, 0),
        insn(MOV64_X, TYPE, ACCESS, 0, 0),
        insn(AND64_K, TYPE, 0, 0, 0xffff),
        insn(RSH64_K, ACCESS, 0, 0, 16),
        insn(LDX_MEM_W, MAJOR, R1, 4, 0),
        insn(LDX_MEM_W, MINOR, R1, 8, 0),
    ];
    let reduced = rules.iter().map(reduce).collect::<Result<Vec<_>>>()?;
    // Last match wins: test the rules from the end, and stop at the first rule that matches
    // every request (later rules could never be reached).
    for rule in reduced.iter().rev() {
        prog.extend(rule_block(rule));
        if rule.dev_type.is_none() && rule.major.is_none() && rule.minor.is_none() && rule.access == ACC_ALL {
            return Ok(prog);
        }
    }
    prog.push(insn(MOV64_K, R0, 0, 0, 0));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    Ok(prog)
}

// bpf(2) commands and constants.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, fully initialised #[repr(C)] prefix of `union bpf_attr` for `cmd`,
    // and its size is passed so that the kernel reads no further.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn load(prog: &[Insn], log: Option<&mut [u8]>) -> std::io::Result<OwnedFd> {
    let license = b"Apache\0";
    let mut name = [0u8; 16];
    name[..13].copy_from_slice(b"berth_devices");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    if let Some(log) = log {
        attr.log_level = 1;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Compiles `rules` and attaches the program to the cgroup2 directory `dir`, replacing the
/// program attached there before (a second attach without flags replaces the first).
pub(crate) fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let prog = compile(rules)?;
    let fail = |what: &str, e: std::io::Error| RuntimeError::cgroup(dir, format!("{what}: {e}"));
    let prog_fd = match load(&prog, None) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::EACCES) => {
            // The verifier said no: load again with its log, for a message worth reading.
            let mut log = vec![0u8; 64 * 1024];
            let _ = load(&prog, Some(&mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            return Err(fail(&format!("loading the device program ({})", text.trim()), e));
        }
        Err(e) => return Err(fail("loading the device program", e)),
    };
    let cgroup = std::fs::File::open(dir).map_err(|e| fail("opening", e))?;
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| fail("attaching the device program", e))?;
    // The cgroup holds the program now; it goes when the cgroup is removed.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::{default_docker_device_rules, device_rule as rule};

    /// Runs a compiled program the way the kernel would, for one request.
    fn run(prog: &[Insn], dev_type: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [(dev_type | (access << 16)) as u32, major, minor];
        let mut regs = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let imm = i.imm as i64 as u64;
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, R1 as usize);
                    regs[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                MOV64_K => regs[dst] = imm,
                MOV64_X => regs[dst] = regs[src],
                AND64_K => regs[dst] &= imm,
                RSH64_K => regs[dst] >>= imm,
                JNE_K if regs[dst] != imm => pc += i.off as usize,
                JEQ_K if regs[dst] == imm => pc += i.off as usize,
                JNE_K | JEQ_K => {}
                EXIT => return regs[0],
                other => panic!("unknown opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn dockers_default_rules() {
        let prog = compile(&default_docker_device_rules()).unwrap();
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(run(&prog, DEV_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(run(&prog, DEV_CHAR, rw, 136, 7), 1, "a pty slave");
        assert_eq!(
            run(&prog, DEV_CHAR, ACC_MKNOD, 10, 200),
            1,
            "mknod of any char device"
        );
        assert_eq!(
            run(&prog, DEV_BLOCK, ACC_MKNOD, 8, 0),
            1,
            "mknod of any block device"
        );
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ, 8, 0), 0, "reading a disk");
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 1), 0, "/dev/mem");
        assert_eq!(run(&prog, DEV_CHAR, ACC_WRITE, 10, 200), 0, "/dev/net/tun");
        assert_eq!(
            run(&prog, DEV_BLOCK, ACC_READ, 1, 3),
            0,
            "a block device numbered as null"
        );
    }

    #[test]
    fn last_match_wins_and_partial_access() {
        use LinuxDeviceType::{A, C};
        let rules = [
            rule(false, A, None, None, "rwm"),
            rule(true, C, Some(1), Some(3), "rwm"),
            rule(false, C, Some(1), Some(3), "w"),
            rule(true, C, Some(1), None, "r"),
        ];
        let prog = compile(&rules).unwrap();
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(
            run(&prog, DEV_CHAR, ACC_WRITE, 1, 3),
            0,
            "the later deny of w wins"
        );
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&prog, DEV_CHAR, ACC_MKNOD, 1, 3), 1);
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 9), 1, "allow c 1:* r");
        assert_eq!(
            run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 9),
            0,
            "r does not cover rw"
        );
        // Privileged: one rule allowing everything; nothing after it is compiled.
        let prog = compile(&[rule(false, A, None, None, ""), rule(true, A, None, None, "rwm")]).unwrap();
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ | ACC_WRITE, 8, 0), 1);
        assert_eq!(prog.len(), 6 + 2);
        // No rule matches: refused.
        let prog = compile(&[rule(true, C, Some(1), Some(3), "rwm")]).unwrap();
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 5), 0);
    }

    #[test]
    fn bad_rules_are_refused() {
        use LinuxDeviceType::{C, P};
        assert!(compile(&[rule(true, P, None, None, "rwm")]).is_err());
        assert!(compile(&[rule(true, C, Some(1), None, "rx")]).is_err());
        assert!(compile(&[rule(true, C, Some(1 << 40), None, "r")]).is_err());
    }
}
