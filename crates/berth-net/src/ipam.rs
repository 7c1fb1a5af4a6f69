//! IPv4 address management for one network, persisted as a JSON file.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::subnet::Ipv4Net;

/// Allocates addresses of one subnet. The gateway (`.1`) is reserved, so are the network and broadcast
/// addresses. Every change is written to the state file atomically (temp file, fsync, rename) before it
/// is returned, so allocations survive a restart.
#[derive(Debug)]
pub struct Ipam {
    path: PathBuf,
    state: State,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    allocated: BTreeSet<Ipv4Addr>,
    /// Containers' addresses come from this part of the subnet (`--ip-range`); `--ip` may still
    /// name any address of the subnet.
    #[serde(default)]
    range: Option<Ipv4Net>,
}

impl Ipam {
    /// Opens the state at `path`, or creates it for `subnet` (gateway `.1`) if the file does not exist.
    /// An existing file for another subnet is an error.
    pub fn open(path: impl Into<PathBuf>, subnet: Ipv4Net) -> Result<Self> {
        Self::open_with(path, subnet, subnet.gateway(), None)
    }

    /// `open` with a chosen gateway and an optional range that allocations come from.
    pub fn open_with(
        path: impl Into<PathBuf>,
        subnet: Ipv4Net,
        gateway: Ipv4Addr,
        range: Option<Ipv4Net>,
    ) -> Result<Self> {
        let path = path.into();
        if path.exists() {
            let ipam = Self::load(path)?;
            if ipam.state.subnet != subnet {
                return Err(Error::SubnetMismatch {
                    path: ipam.path.display().to_string(),
                    found: ipam.state.subnet,
                    wanted: subnet,
                });
            }
            return Ok(ipam);
        }
        if subnet.size() < 4 {
            return Err(Error::Exhausted(subnet));
        }
        let ipam = Ipam {
            path,
            state: State {
                subnet,
                gateway,
                allocated: BTreeSet::new(),
                range,
            },
        };
        ipam.save()?;
        Ok(ipam)
    }

    /// Loads an existing state file.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let bytes = fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let state = serde_json::from_slice(&bytes).map_err(|source| Error::State {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Ipam { path, state })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn subnet(&self) -> Ipv4Net {
        self.state.subnet
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.state.gateway
    }

    /// The allocated addresses, in order (the gateway is not listed).
    pub fn allocated(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.state.allocated.iter().copied()
    }

    /// Allocates the lowest free address (so a released address is the first to be reused).
    pub fn allocate(&mut self) -> Result<Ipv4Addr> {
        let subnet = self.state.subnet;
        let pool = self.state.range.unwrap_or(subnet);
        let ip = (0..pool.size())
            .filter_map(|n| pool.nth(n))
            .filter(|ip| subnet.contains(*ip) && *ip != subnet.network() && *ip != subnet.broadcast())
            .find(|ip| *ip != self.state.gateway && !self.state.allocated.contains(ip))
            .ok_or(Error::Exhausted(pool))?;
        self.insert(ip)?;
        Ok(ip)
    }

    /// Allocates a given address (`docker run --ip`).
    pub fn allocate_specific(&mut self, ip: Ipv4Addr) -> Result<()> {
        let subnet = self.state.subnet;
        if !subnet.contains(ip) || ip == subnet.network() || ip == subnet.broadcast() {
            return Err(Error::OutOfRange { ip, subnet });
        }
        if ip == self.state.gateway || self.state.allocated.contains(&ip) {
            return Err(Error::AddressInUse(ip));
        }
        self.insert(ip)
    }

    /// Releases an address; returns whether it was allocated.
    pub fn release(&mut self, ip: Ipv4Addr) -> Result<bool> {
        if !self.state.allocated.remove(&ip) {
            return Ok(false);
        }
        if let Err(e) = self.save() {
            self.state.allocated.insert(ip);
            return Err(e);
        }
        Ok(true)
    }

    /// Removes the state file (when the network is removed).
    pub fn destroy(self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("remove {}", self.path.display()), e))
            }
            _ => Ok(()),
        }
    }

    fn insert(&mut self, ip: Ipv4Addr) -> Result<()> {
        self.state.allocated.insert(ip);
        if let Err(e) = self.save() {
            self.state.allocated.remove(&ip);
            return Err(e);
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(|source| Error::State {
            path: self.path.display().to_string(),
            source,
        })?;
        write_atomic(&self.path, &bytes)
    }
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs the
/// directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(format!("write {}", path.display()), e));
    }
    Ok(())
}
