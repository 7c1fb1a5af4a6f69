//! Writing a tree of a container's files as a tar, through directory descriptors only: every
//! entry is looked at with `statat(AT_SYMLINK_NOFOLLOW)` and opened with `O_NOFOLLOW` relative to
//! its parent, so a symlink (or one swapped in by a running container) is archived as a link and
//! never followed. Directories on another filesystem (mounts inside a running container) are
//! archived but not entered.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::{HashMap, VecDeque};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub struct TarWriter<W: Write> {
    b: tar::Builder<W>,
    /// The filesystem of the root: directories elsewhere are not entered.
    dev: u64,
    /// Regular files with several links already written: (dev, inode) -> name in the archive.
    links: HashMap<(u64, u64), Vec<u8>>,
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        return name.to_vec();
    }
    let mut p = prefix.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// The names in a directory, sorted (as Docker's archives are).
fn names(dir: BorrowedFd<'_>) -> io::Result<VecDeque<CString>> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent?;
        let n = ent.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            out.push(n.to_owned());
        }
    }
    out.sort();
    Ok(out.into())
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, root: BorrowedFd<'_>) -> TarWriter<W> {
        let dev = rustix::fs::fstat(root).map(|s| s.st_dev).unwrap_or(0);
        TarWriter {
            b: tar::Builder::new(out),
            dev,
            links: HashMap::new(),
        }
    }

    pub fn finish(self) -> io::Result<W> {
        self.b.into_inner()
    }

    /// Archives the entry `name` of `parent` as `tar_name`, and everything below it.
    pub fn append_tree(&mut self, parent: BorrowedFd<'_>, name: &OsStr, tar_name: &str) -> io::Result<()> {
        if let Some(dir) = self.entry(parent, name, tar_name.as_bytes())? {
            self.walk(dir, tar_name.as_bytes())?;
        }
        Ok(())
    }

    /// Archives what is in directory `dir`, each entry named `prefix/name` (`name` for an empty
    /// prefix), and everything below.
    pub fn append_children(&mut self, dir: BorrowedFd<'_>, prefix: &str) -> io::Result<()> {
        let fd = rustix::fs::openat(
            dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        self.walk(fd, prefix.as_bytes())
    }

    /// Depth-first, without recursion (a hostile tree may be very deep).
    fn walk(&mut self, dir: OwnedFd, prefix: &[u8]) -> io::Result<()> {
        let first = names(dir.as_fd())?;
        let mut stack: Vec<(OwnedFd, Vec<u8>, VecDeque<CString>)> = vec![(dir, prefix.to_vec(), first)];
        while let Some((fd, prefix, todo)) = stack.last_mut() {
            let Some(name) = todo.pop_front() else {
                stack.pop();
                continue;
            };
            let tar_name = join(prefix, name.to_bytes());
            let sub = self.entry(fd.as_fd(), OsStr::from_bytes(name.to_bytes()), &tar_name)?;
            if let Some(sub) = sub {
                let children = names(sub.as_fd())?;
                stack.push((sub, tar_name, children));
            }
        }
        Ok(())
    }

    /// Writes one entry; returns the directory to enter, if it is one.
    fn entry(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        tar_name: &[u8],
    ) -> io::Result<Option<OwnedFd>> {
        let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Gone meanwhile (a running container).
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(st.st_uid));
        h.set_gid(u64::from(st.st_gid));
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        let p = path(tar_name);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                h.set_entry_type(tar::EntryType::Directory);
                self.b.append_data(&mut h, p, io::empty())?;
                if st.st_dev != self.dev {
                    return Ok(None);
                }
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                match rustix::fs::openat(parent, name, flags, Mode::empty()) {
                    Ok(fd) => Ok(Some(fd)),
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            FileType::RegularFile => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        let first = first.clone();
                        self.b.append_link(&mut h, p, path(&first))?;
                        return Ok(None);
                    }
                }
                let flags =
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
                let fd = match rustix::fs::openat(parent, name, flags, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT | Errno::LOOP) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                let st = rustix::fs::fstat(&fd)?;
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    return Ok(None);
                }
                let size = st.st_size.max(0) as u64;
                h.set_size(size);
                h.set_entry_type(tar::EntryType::Regular);
                // A running container may change the file meanwhile: exactly `size` bytes go out.
                let data = File::from(fd).take(size).chain(io::repeat(0)).take(size);
                self.b.append_data(&mut h, p, data)?;
                if st.st_nlink > 1 {
                    self.links.insert(key, tar_name.to_vec());
                }
                Ok(None)
            }
            FileType::Symlink => {
                let target = match rustix::fs::readlinkat(parent, name, Vec::new()) {
                    Ok(t) => t,
                    Err(Errno::NOENT | Errno::INVAL) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                h.set_entry_type(tar::EntryType::Symlink);
                self.b.append_link(&mut h, p, path(target.as_bytes()))?;
                Ok(None)
            }
            ft @ (FileType::CharacterDevice | FileType::BlockDevice) => {
                h.set_entry_type(if ft == FileType::CharacterDevice {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_device_major(rustix::fs::major(st.st_rdev))?;
                h.set_device_minor(rustix::fs::minor(st.st_rdev))?;
                self.b.append_data(&mut h, p, io::empty())?;
                Ok(None)
            }
            FileType::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                self.b.append_data(&mut h, p, io::empty())?;
                Ok(None)
            }
            // Sockets are not archived (nor by Docker).
            _ => Ok(None),
        }
    }
}
