//! NAT and forwarding rules through the `iptables` binary: outbound masquerade for a network's subnet,
//! forwarding to and from its bridge, DNAT rules for published ports in a chain of ours, and the
//! isolation of networks from each other.
//!
//! Every rule carries a comment (`<tag>:net:<subnet>`, `<tag>:ip:<address>`, `<tag>:jump`,
//! `<tag>:isolate:<bridge>`), so removal deletes exactly our rules, found by listing the tables
//! (`iptables -S`), even after a crash.

use std::fmt;
use std::net::Ipv4Addr;
use std::process::Command;

use crate::error::{Error, Result};
use crate::subnet::Ipv4Net;

/// The tables our rules are in: a network's and a published port's in nat and filter, the
/// isolation between networks in mangle.
const TABLES: [&str; 3] = ["nat", "filter", "mangle"];
const NAT_AND_FILTER: &[&str] = &["nat", "filter"];

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A published port: `host_ip:host_port` on the host goes to `container_ip:container_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub protocol: Protocol,
    /// `None` (or `0.0.0.0`): every address of the host.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    /// The bridge the container is attached to.
    pub bridge: String,
}

/// Our iptables rules. `Nat::default()` uses the chain `BERTH` and the tag `berth`; tests use their own
/// names so they never touch a running daemon's rules.
#[derive(Debug, Clone)]
pub struct Nat {
    chain: String,
    tag: String,
}

impl Default for Nat {
    fn default() -> Self {
        Nat::with_names("BERTH", "berth")
    }
}

impl Nat {
    /// `chain`: our chain in the nat table (at most 28 characters); `tag`: the prefix of our comments.
    pub fn with_names(chain: &str, tag: &str) -> Self {
        Nat {
            chain: chain.to_string(),
            tag: tag.to_string(),
        }
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// The comment on the rules of a network.
    pub fn network_comment(&self, subnet: Ipv4Net) -> String {
        format!("{}:net:{subnet}", self.tag)
    }

    /// The comment on the rules of a container address (published ports).
    pub fn ip_comment(&self, ip: Ipv4Addr) -> String {
        format!("{}:ip:{ip}", self.tag)
    }

    /// The comment on the rules that keep the bridge `other`'s traffic out of this network.
    pub fn isolation_comment(&self, other: &str) -> String {
        format!("{}:isolate:{other}", self.tag)
    }

    fn jump_comment(&self) -> String {
        format!("{}:jump", self.tag)
    }

    /// Creates our nat chain and the jumps to it from PREROUTING and OUTPUT (for local destinations;
    /// OUTPUT skips 127.0.0.0/8, which the userland proxy serves), and enables IPv4 forwarding.
    /// Idempotent.
    pub fn init(&self) -> Result<()> {
        enable_ip_forward()?;
        if !self.chain_exists()? {
            match iptables(&["-t", "nat", "-N", &self.chain]) {
                Err(_) if self.chain_exists()? => {}
                r => r?,
            }
        }
        let jump = self.jump_comment();
        let pre = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", &self.chain];
        self.ensure("nat", "PREROUTING", &pre, &jump, false)?;
        let out = [
            "!",
            "-d",
            "127.0.0.0/8",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            &self.chain,
        ];
        self.ensure("nat", "OUTPUT", &out, &jump, false)
    }

    /// Masquerades traffic from `subnet` that leaves through another interface than `bridge`, and
    /// accepts forwarding from the bridge and replies to it. Idempotent.
    pub fn add_network(&self, subnet: Ipv4Net, bridge: &str) -> Result<()> {
        let comment = self.network_comment(subnet);
        let s = subnet.to_string();
        self.ensure(
            "nat",
            "POSTROUTING",
            &["-s", &s, "!", "-o", bridge, "-j", "MASQUERADE"],
            &comment,
            false,
        )?;
        self.ensure(
            "filter",
            "FORWARD",
            &["-i", bridge, "-j", "ACCEPT"],
            &comment,
            true,
        )?;
        let related = [
            "-o",
            bridge,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ];
        self.ensure("filter", "FORWARD", &related, &comment, true)
    }

    /// Removes every rule of the network `subnet`.
    pub fn remove_network(&self, subnet: Ipv4Net) -> Result<()> {
        self.remove_where(NAT_AND_FILTER, &self.network_comment(subnet))
    }

    /// Adds the DNAT rule of a published port (in our chain) and the rule accepting its forwarded
    /// traffic. Traffic arriving from the container's own bridge is left to the userland proxy.
    pub fn add_port(&self, m: &PortMapping) -> Result<()> {
        let comment = self.ip_comment(m.container_ip);
        let proto = m.protocol.to_string();
        let (hport, cport) = (m.host_port.to_string(), m.container_port.to_string());
        let dest = format!("{}:{}", m.container_ip, m.container_port);
        let mut dnat: Vec<&str> = vec!["!", "-i", &m.bridge];
        let host_ip = m
            .host_ip
            .filter(|ip| !ip.is_unspecified())
            .map(|ip| ip.to_string());
        if let Some(ip) = &host_ip {
            dnat.extend(["-d", ip]);
        }
        dnat.extend([
            "-p",
            &proto,
            "--dport",
            &hport,
            "-j",
            "DNAT",
            "--to-destination",
            &dest,
        ]);
        self.ensure("nat", &self.chain, &dnat, &comment, false)?;
        let cip = format!("{}/32", m.container_ip);
        let accept = [
            "-d", &cip, "!", "-i", &m.bridge, "-o", &m.bridge, "-p", &proto, "--dport", &cport,
        ];
        let accept: Vec<&str> = accept.into_iter().chain(["-j", "ACCEPT"]).collect();
        self.ensure("filter", "FORWARD", &accept, &comment, true)
    }

    /// An internal network: no masquerade, and nothing forwarded between the bridge and any
    /// other interface, either way. Idempotent.
    pub fn add_internal_network(&self, subnet: Ipv4Net, bridge: &str) -> Result<()> {
        let comment = self.network_comment(subnet);
        self.ensure(
            "filter",
            "FORWARD",
            &["-i", bridge, "!", "-o", bridge, "-j", "DROP"],
            &comment,
            true,
        )?;
        self.ensure(
            "filter",
            "FORWARD",
            &["-o", bridge, "!", "-i", bridge, "-j", "DROP"],
            &comment,
            true,
        )
    }

    /// Drops what the bridge `other` (another network's) forwards into `bridge`, as Docker isolates
    /// its networks from each other, except connections to a published port (DNAT): those are
    /// meant to be reachable from anywhere. Idempotent.
    ///
    /// The rule is in the mangle table's FORWARD chain, which the kernel walks before the filter
    /// table's: so no accept rule inserted later into filter FORWARD (a published port's, a newer
    /// network's) can come before it.
    pub fn isolate(&self, bridge: &str, other: &str) -> Result<()> {
        let spec = [
            "-i",
            other,
            "-o",
            bridge,
            "-m",
            "conntrack",
            "!",
            "--ctstate",
            "DNAT",
            "-j",
            "DROP",
        ];
        self.ensure("mangle", "FORWARD", &spec, &self.isolation_comment(other), false)
    }

    /// Removes the isolation from the bridge `other` (when that network goes).
    pub fn remove_isolation(&self, other: &str) -> Result<()> {
        self.remove_where(&["mangle"], &self.isolation_comment(other))
    }

    /// Removes every rule of the container address `ip` (its published ports).
    pub fn remove_all_for(&self, ip: Ipv4Addr) -> Result<()> {
        self.remove_where(NAT_AND_FILTER, &self.ip_comment(ip))
    }

    /// Removes every rule carrying our tag, then our chain.
    pub fn remove_all(&self) -> Result<()> {
        let prefix = format!("{}:", self.tag);
        for table in TABLES {
            for rule in self.list(table)? {
                if comment_of(&rule).is_some_and(|c| c.starts_with(&prefix)) {
                    delete_rule(table, &rule)?;
                }
            }
        }
        if self.chain_exists()? {
            iptables(&["-t", "nat", "-F", &self.chain])?;
            iptables(&["-t", "nat", "-X", &self.chain])?;
        }
        Ok(())
    }

    /// Our rules (`iptables -S` lines of both tables carrying our tag), for diagnostics and tests.
    pub fn rules(&self) -> Result<Vec<String>> {
        let prefix = format!("{}:", self.tag);
        let mut out = Vec::new();
        for table in TABLES {
            out.extend(
                self.list(table)?
                    .into_iter()
                    .filter(|r| comment_of(r).is_some_and(|c| c.starts_with(&prefix))),
            );
        }
        Ok(out)
    }

    fn chain_exists(&self) -> Result<bool> {
        let out = run(&["-t", "nat", "-S"])?;
        Ok(out.lines().any(|l| l == format!("-N {}", self.chain)))
    }

    fn list(&self, table: &str) -> Result<Vec<String>> {
        Ok(run(&["-t", table, "-S"])?
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(String::from)
            .collect())
    }

    /// Appends (or inserts at the top) `spec` with our comment to `chain`, unless it is there already.
    fn ensure(&self, table: &str, chain: &str, spec: &[&str], comment: &str, insert: bool) -> Result<()> {
        let mut rule: Vec<&str> = spec.to_vec();
        rule.extend(["-m", "comment", "--comment", comment]);
        let mut check = vec!["-t", table, "-C", chain];
        check.extend(&rule);
        if run(&check).is_ok() {
            return Ok(());
        }
        let mut add = vec!["-t", table, if insert { "-I" } else { "-A" }, chain];
        add.extend(&rule);
        iptables(&add)?;
        tracing::debug!(table, chain, rule = rule.join(" "), "added iptables rule");
        Ok(())
    }

    /// Deletes the rules with exactly this comment from `tables` (each listed costs an
    /// `iptables -S`, and this runs at every container's exit).
    fn remove_where(&self, tables: &[&str], comment: &str) -> Result<()> {
        for &table in tables {
            for rule in self.list(table)? {
                if comment_of(&rule) == Some(comment) {
                    delete_rule(table, &rule)?;
                }
            }
        }
        Ok(())
    }
}

/// Sets `net.ipv4.ip_forward=1` (needed to route between bridges and the outside).
pub fn enable_ip_forward() -> Result<()> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(path, "1").map_err(|e| Error::io(format!("write {path}"), e))
}

/// The comment of an `iptables -S` line, without its quotes.
fn comment_of(rule: &str) -> Option<&str> {
    let rest = rule.split_once("--comment ")?.1;
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"').map(|(c, _)| c),
        None => rest.split_whitespace().next(),
    }
}

/// Deletes the rule printed by `iptables -S` as `-A CHAIN ...`.
fn delete_rule(table: &str, rule: &str) -> Result<()> {
    let words = split_words(rule.strip_prefix("-A ").unwrap_or(rule));
    let mut args = vec!["-t", table, "-D"];
    args.extend(words.iter().map(String::as_str));
    iptables(&args)?;
    tracing::debug!(table, rule, "deleted iptables rule");
    Ok(())
}

/// Splits an `iptables -S` line into words, honouring double quotes (`"a b"`, `\"`).
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut in_quotes, mut has_word) = (false, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quotes => cur.extend(chars.next()),
            '"' => {
                in_quotes = !in_quotes;
                has_word = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if has_word {
                    words.push(std::mem::take(&mut cur));
                    has_word = false;
                }
            }
            c => {
                cur.push(c);
                has_word = true;
            }
        }
    }
    if has_word {
        words.push(cur);
    }
    words
}

fn iptables(args: &[&str]) -> Result<()> {
    run(args).map(drop)
}

/// Runs `iptables -w ARGS` and returns its standard output.
fn run(args: &[&str]) -> Result<String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| Error::io("run iptables (is the iptables package installed?)", e))?;
    if !out.status.success() {
        return Err(Error::Iptables {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules() {
        let rule = r#"-A BERTH ! -i br0 -p tcp -m tcp --dport 8080 -m comment --comment "berth:ip:172.17.0.2" -j DNAT --to-destination 172.17.0.2:80"#;
        assert_eq!(comment_of(rule), Some("berth:ip:172.17.0.2"));
        let words = split_words(rule.strip_prefix("-A ").unwrap());
        assert_eq!(words[0], "BERTH");
        assert_eq!(words[1], "!");
        assert!(words.contains(&"berth:ip:172.17.0.2".to_string()));
        assert_eq!(split_words(r#"a "b c" "d\"e" """#), ["a", "b c", "d\"e", ""]);
        assert_eq!(
            comment_of("-A X -m comment --comment plain -j ACCEPT"),
            Some("plain")
        );
        assert_eq!(comment_of("-A X -j ACCEPT"), None);
    }
}
