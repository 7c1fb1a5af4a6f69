//! A small classic-BPF code generator for seccomp filters.
//!
//! Per architecture, the syscall number space is split into intervals with one outcome each (return an
//! action, or check arguments); a balanced binary tree of `jge` instructions finds the interval in
//! O(log n). Conditional jumps only ever skip short distances; a long one goes through `ja`.

use libc::sock_filter;

const BPF_LD: u16 = 0x00;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_K: u16 = 0x00;
const BPF_AND: u16 = 0x50;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;

/// Offsets into `struct seccomp_data`.
pub(super) const OFFSET_NR: u32 = 0;
pub(super) const OFFSET_ARCH: u32 = 4;
const OFFSET_ARGS: u32 = 16;

pub(super) fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: BPF_JMP | code | BPF_K,
        jt,
        jf,
        k,
    }
}

pub(super) fn load(offset: u32) -> sock_filter {
    stmt(BPF_LD | BPF_W | BPF_ABS, offset)
}

pub(super) fn ret(action: u32) -> sock_filter {
    stmt(BPF_RET | BPF_K, action)
}

pub(super) fn jeq(k: u32, jt: u8, jf: u8) -> sock_filter {
    jump(BPF_JEQ, k, jt, jf)
}

pub(super) fn jge(k: u32, jt: u8, jf: u8) -> sock_filter {
    jump(BPF_JGE, k, jt, jf)
}

pub(super) fn ja(offset: u32) -> sock_filter {
    stmt(BPF_JMP | BPF_JA, offset)
}

/// Comparison operators on a syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Ge,
    Gt,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// One argument comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cond {
    pub index: u32,
    pub op: Op,
    pub value: u64,
}

/// A rule for one syscall: all conditions must hold for `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rule {
    pub conds: Vec<Cond>,
    pub action: u32,
}

/// What happens to a syscall number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Return(u32),
    /// Rules checked in order; the first that matches decides, else the default action.
    Check {
        rules: Vec<Rule>,
        wide: bool,
    },
}

/// A jump target inside one condition's code, resolved once the rule is laid out.
#[derive(Clone, Copy)]
enum To {
    /// The next instruction.
    Next,
    /// The condition holds: continue after this condition's code.
    Pass,
    /// The condition fails: go to the next rule.
    Fail,
}

struct Pending {
    insn: sock_filter,
    jt: To,
    jf: To,
}

fn p(insn: sock_filter) -> Pending {
    Pending {
        insn,
        jt: To::Next,
        jf: To::Next,
    }
}

fn pj(code: u16, k: u32, jt: To, jf: To) -> Pending {
    Pending {
        insn: jump(code, k, 0, 0),
        jt,
        jf,
    }
}

/// The code of one condition. `wide`: 64-bit arguments (compare both halves); else only the low 32 bits.
fn cond_code(c: &Cond, wide: bool) -> Vec<Pending> {
    let lo_off = OFFSET_ARGS + 8 * c.index;
    let hi_off = lo_off + 4;
    let (vlo, vhi) = (c.value as u32, (c.value >> 32) as u32);
    use To::{Fail, Next, Pass};
    let mut v = Vec::new();
    match (c.op, wide) {
        (Op::Eq, true) => v.extend([
            p(load(hi_off)),
            pj(BPF_JEQ, vhi, Next, Fail),
            p(load(lo_off)),
            pj(BPF_JEQ, vlo, Next, Fail),
        ]),
        (Op::Eq, false) => v.extend([p(load(lo_off)), pj(BPF_JEQ, vlo, Next, Fail)]),
        (Op::Ne, true) => v.extend([
            p(load(hi_off)),
            pj(BPF_JEQ, vhi, Next, Pass),
            p(load(lo_off)),
            pj(BPF_JEQ, vlo, Fail, Next),
        ]),
        (Op::Ne, false) => v.extend([p(load(lo_off)), pj(BPF_JEQ, vlo, Fail, Next)]),
        (Op::MaskedEq(mask), wide) => {
            let (mlo, mhi) = (mask as u32, (mask >> 32) as u32);
            if wide {
                v.extend([
                    p(load(hi_off)),
                    p(stmt(BPF_ALU | BPF_AND | BPF_K, mhi)),
                    pj(BPF_JEQ, vhi, Next, Fail),
                ]);
            }
            v.extend([
                p(load(lo_off)),
                p(stmt(BPF_ALU | BPF_AND | BPF_K, mlo)),
                pj(BPF_JEQ, vlo, Next, Fail),
            ]);
        }
        (Op::Gt | Op::Ge, true) => {
            let last = if c.op == Op::Gt { BPF_JGT } else { BPF_JGE };
            v.extend([
                p(load(hi_off)),
                pj(BPF_JGT, vhi, Pass, Next),
                pj(BPF_JEQ, vhi, Next, Fail),
                p(load(lo_off)),
                pj(last, vlo, Next, Fail),
            ]);
        }
        (Op::Gt | Op::Ge, false) => {
            let last = if c.op == Op::Gt { BPF_JGT } else { BPF_JGE };
            v.extend([p(load(lo_off)), pj(last, vlo, Next, Fail)]);
        }
        (Op::Lt | Op::Le, true) => {
            // a < v  is  !(a >= v);  a <= v  is  !(a > v).
            let last = if c.op == Op::Lt { BPF_JGE } else { BPF_JGT };
            v.extend([
                p(load(hi_off)),
                pj(BPF_JGE, vhi, Next, Pass),
                pj(BPF_JGT, vhi, Fail, Next),
                p(load(lo_off)),
                pj(last, vlo, Fail, Next),
            ]);
        }
        (Op::Lt | Op::Le, false) => {
            let last = if c.op == Op::Lt { BPF_JGE } else { BPF_JGT };
            v.extend([p(load(lo_off)), pj(last, vlo, Fail, Next)]);
        }
    }
    v
}

fn offset(from: usize, to: usize) -> u8 {
    u8::try_from(to - from - 1).expect("rule code is short")
}

/// Argument checks for one syscall, falling through to `default`.
fn check_code(rules: &[Rule], wide: bool, default: u32) -> Vec<sock_filter> {
    let mut out = Vec::new();
    for rule in rules {
        let blocks: Vec<Vec<Pending>> = rule.conds.iter().map(|c| cond_code(c, wide)).collect();
        let rule_len: usize = blocks.iter().map(Vec::len).sum::<usize>() + 1;
        let mut at = 0;
        for block in blocks {
            let block_end = at + block.len();
            for pending in block {
                let resolve = |t: To| match t {
                    To::Next => 0,
                    To::Pass => offset(at, block_end),
                    To::Fail => offset(at, rule_len),
                };
                let mut insn = pending.insn;
                insn.jt = resolve(pending.jt);
                insn.jf = resolve(pending.jf);
                out.push(insn);
                at += 1;
            }
        }
        out.push(ret(rule.action));
    }
    out.push(ret(default));
    out
}

/// An interval of syscall numbers, `[start, next interval's start)`, with one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Interval {
    pub start: u32,
    pub outcome: Outcome,
}

/// Splits the number space into intervals: `numbers` (sorted, unique) with their outcomes, and a
/// return of `gap` for everything else. Neighbours with the same plain return merge.
pub(super) fn intervals(numbers: &[(u32, Outcome)], gap: u32) -> Vec<Interval> {
    let mut out: Vec<Interval> = Vec::new();
    let push = |start: u32, outcome: Outcome, out: &mut Vec<Interval>| {
        if let (Some(last), Outcome::Return(_)) = (out.last(), &outcome) {
            if last.outcome == outcome {
                return;
            }
        }
        out.push(Interval { start, outcome });
    };
    let mut next: u64 = 0;
    for (nr, outcome) in numbers {
        if u64::from(*nr) > next {
            push(next as u32, Outcome::Return(gap), &mut out);
        }
        push(*nr, outcome.clone(), &mut out);
        next = u64::from(*nr) + 1;
    }
    if next <= u64::from(u32::MAX) {
        push(next as u32, Outcome::Return(gap), &mut out);
    }
    out
}

/// The decision tree over `intervals` (the syscall number is in A).
pub(super) fn tree(intervals: &[Interval], default: u32) -> Vec<sock_filter> {
    if intervals.len() == 1 {
        return match &intervals[0].outcome {
            Outcome::Return(action) => vec![ret(*action)],
            Outcome::Check { rules, wide } => check_code(rules, *wide, default),
        };
    }
    let mid = intervals.len() / 2;
    let left = tree(&intervals[..mid], default);
    let right = tree(&intervals[mid..], default);
    let boundary = intervals[mid].start;
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        Ok(skip) => out.push(jump(BPF_JGE, boundary, skip, 0)),
        Err(_) => {
            out.push(jump(BPF_JGE, boundary, 0, 1));
            out.push(ja(left.len() as u32));
        }
    }
    out.extend(left);
    out.extend(right);
    out
}

/// Runs a program on `seccomp_data` (tests only): the verdict.
#[cfg(test)]
pub(super) fn run(program: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let insn = program[pc];
        pc += 1;
        match insn.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => {
                let o = insn.k as usize;
                acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
            }
            c if c == BPF_ALU | BPF_AND | BPF_K => acc &= insn.k,
            c if c == BPF_RET | BPF_K => return insn.k,
            c if c == BPF_JMP | BPF_JA => pc += insn.k as usize,
            c => {
                let taken = match c & 0xf0 {
                    BPF_JEQ => acc == insn.k,
                    BPF_JGT => acc > insn.k,
                    BPF_JGE => acc >= insn.k,
                    _ => panic!("unknown instruction {c:#x}"),
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: u32 = 0x7fff_0000;
    const DENY: u32 = 0x0005_0001;

    fn check(op: Op, value: u64, wide: bool) -> Vec<sock_filter> {
        let rule = Rule {
            conds: vec![Cond { index: 1, op, value }],
            action: ALLOW,
        };
        check_code(&[rule], wide, DENY)
    }

    fn reference(op: Op, arg: u64, value: u64) -> bool {
        match op {
            Op::Eq => arg == value,
            Op::Ne => arg != value,
            Op::Lt => arg < value,
            Op::Le => arg <= value,
            Op::Ge => arg >= value,
            Op::Gt => arg > value,
            Op::MaskedEq(mask) => arg & mask == value,
        }
    }

    #[test]
    fn comparisons_match_64_bit_semantics() {
        let samples = [
            0u64,
            1,
            7,
            8,
            9,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_0000_0008,
            0x2_0000_0000,
            u64::MAX,
        ];
        let ops = [
            Op::Eq,
            Op::Ne,
            Op::Lt,
            Op::Le,
            Op::Ge,
            Op::Gt,
            Op::MaskedEq(0xff_0000_000f),
        ];
        for op in ops {
            for &value in &samples {
                let value = if let Op::MaskedEq(m) = op {
                    value & m
                } else {
                    value
                };
                let program = check(op, value, true);
                for &arg in &samples {
                    let verdict = run(&program, 0, 0, [0, arg, 0, 0, 0, 0]);
                    let expected = if reference(op, arg, value) { ALLOW } else { DENY };
                    assert_eq!(verdict, expected, "{op:?} arg {arg:#x} value {value:#x}");
                }
            }
        }
    }

    #[test]
    fn comparisons_on_32_bit_arguments() {
        for op in [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Ge, Op::Gt, Op::MaskedEq(0xf0)] {
            for value in [0u64, 5, 0x80, 0xffff_ffff] {
                let value = if let Op::MaskedEq(m) = op {
                    value & m
                } else {
                    value
                };
                let program = check(op, value, false);
                for arg in [0u64, 4, 5, 6, 0x85, 0xffff_ffff] {
                    let expected = if reference(op, arg, value) { ALLOW } else { DENY };
                    assert_eq!(
                        run(&program, 0, 0, [0, arg, 0, 0, 0, 0]),
                        expected,
                        "{op:?} {arg} {value}"
                    );
                }
            }
        }
    }

    #[test]
    fn tree_finds_every_interval() {
        // Every third number allowed, many intervals: exercises long jumps too.
        let numbers: Vec<(u32, Outcome)> = (0..600).step_by(3).map(|n| (n, Outcome::Return(ALLOW))).collect();
        let iv = intervals(&numbers, DENY);
        let mut program = vec![load(OFFSET_NR)];
        program.extend(tree(&iv, DENY));
        assert!(program.len() > 300);
        for nr in 0..700u32 {
            let expected = if nr < 600 && nr % 3 == 0 { ALLOW } else { DENY };
            assert_eq!(run(&program, 0, nr, [0; 6]), expected, "nr {nr}");
        }
        assert_eq!(run(&program, 0, u32::MAX, [0; 6]), DENY);
    }

    #[test]
    fn intervals_merge_neighbours() {
        let numbers = [
            (0, Outcome::Return(ALLOW)),
            (1, Outcome::Return(ALLOW)),
            (3, Outcome::Return(ALLOW)),
        ];
        let iv = intervals(&numbers, DENY);
        let starts: Vec<u32> = iv.iter().map(|i| i.start).collect();
        assert_eq!(starts, [0, 2, 3, 4]);
    }
}
