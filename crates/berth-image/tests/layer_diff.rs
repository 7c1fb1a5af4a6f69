//! Layer diffs against real directories and a real overlayfs mount. Needs root (mknod, `trusted.*`
//! xattrs, mount), as CI runs it.

use berth_image::content::ContentStore;
use berth_image::layer::{
    apply_layer, compress_layer_diff, store_layer_diff, write_layer_diff, DiffError, DiffOptions,
};
use berth_image::Digest;
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

const OPAQUE: &str = "trusted.overlay.opaque";
const T0: i64 = 1_600_000_000;

/// A valid VFS_CAP_REVISION_2 `security.capability` value: cap_net_bind_service, effective.
const CAP_NET_BIND: [u8; 20] = [
    0x01, 0, 0, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// An overlay mount that is detached when dropped, even if the test fails.
struct Mount(PathBuf);

impl Mount {
    fn overlay(target: &Path, lowers: &[&Path], upper_work: Option<(&Path, &Path)>) -> Mount {
        let lower = lowers
            .iter()
            .map(|p| p.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let mut opts = format!("lowerdir={lower},redirect_dir=off,index=off,metacopy=off");
        if let Some((upper, work)) = upper_work {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                upper.display(),
                work.display()
            ));
        }
        let opts = std::ffi::CString::new(opts).unwrap();
        rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            rustix::mount::MountFlags::empty(),
            Some(opts.as_c_str()),
        )
        .unwrap_or_else(|e| panic!("mounting overlay on {}: {e}", target.display()));
        Mount(target.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH) {
            eprintln!("unmounting {}: {e}", self.0.display());
        }
    }
}

fn mkdirs(base: &Path, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| {
            let p = base.join(n);
            fs::create_dir_all(&p).unwrap();
            p
        })
        .collect()
}

/// A lower layer made from a tar, as the image store makes them.
fn lower_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, ty: EntryType, data: &[u8], mode: u32| {
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_mtime(T0 as u64);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("etc/", EntryType::Directory, b"", 0o755);
    add("etc/keep", EntryType::Regular, b"keep", 0o644);
    add("etc/modify", EntryType::Regular, b"old", 0o644);
    add("etc/remove", EntryType::Regular, b"bye", 0o644);
    add("etc/remove2", EntryType::Regular, b"bye too", 0o644);
    add("opq/", EntryType::Directory, b"", 0o755);
    add("opq/old1", EntryType::Regular, b"1", 0o644);
    add("opq/sub/", EntryType::Directory, b"", 0o755);
    add("opq/sub/old2", EntryType::Regular, b"2", 0o644);
    add("usr/", EntryType::Directory, b"", 0o755);
    add("usr/bin/", EntryType::Directory, b"", 0o755);
    add("usr/bin/tool", EntryType::Regular, b"tool", 0o755);
    b.into_inner().unwrap()
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setting {name} on {}: {e}", path.display()));
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn whiteout(path: &Path) {
    rustix::fs::mknodat(
        CWD,
        path,
        FileType::CharacterDevice,
        Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .unwrap();
}

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

const NON_UTF8: &[u8] = b"etc/caf\xe9";

fn long_name() -> String {
    format!("{}/{}", "d".repeat(90), "f".repeat(120))
}

/// The overlay-form upper directory of a container that changed the lower layer.
fn build_upper(upper: &Path) {
    let etc = upper.join("etc");
    fs::create_dir(&etc).unwrap();
    set_xattr(&etc, "trusted.overlay.origin", b"\x00\xfb\x21\x01");
    set_xattr(&etc, "trusted.overlay.impure", b"y");
    fs::write(etc.join("modify"), b"new contents").unwrap();
    fs::write(etc.join("new"), b"brand new").unwrap();
    set_xattr(&etc.join("new"), "user.note", b"hello");
    whiteout(&etc.join("remove"));
    // The kernel shares one whiteout inode between deletions: a hard link, not a file.
    fs::hard_link(etc.join("remove"), etc.join("remove2")).unwrap();
    fs::write(etc.join("hl1"), b"linked").unwrap();
    fs::hard_link(etc.join("hl1"), etc.join("hl2")).unwrap();
    fs::write(upper.join(OsStr::from_bytes(NON_UTF8)), b"latin-1 name").unwrap();

    let opq = upper.join("opq");
    fs::create_dir(&opq).unwrap();
    set_xattr(&opq, OPAQUE, b"y");
    fs::write(opq.join("fresh"), b"fresh").unwrap();

    std::os::unix::fs::symlink("etc/new", upper.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", upper.join("dangling")).unwrap();

    let bin = upper.join("usr/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::write(bin.join("su"), b"\x7fELF").unwrap();
    std::os::unix::fs::chown(bin.join("su"), Some(0), Some(0)).unwrap();
    chmod(&bin.join("su"), 0o4755);
    fs::write(bin.join("ping"), b"\x7fELF ping").unwrap();
    set_xattr(&bin.join("ping"), "security.capability", &CAP_NET_BIND);

    fs::create_dir(upper.join("run")).unwrap();
    rustix::fs::mknodat(
        CWD,
        upper.join("run/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o620),
        0,
    )
    .unwrap();
    chmod(&upper.join("run/fifo"), 0o620);
    fs::create_dir(upper.join("dev")).unwrap();
    rustix::fs::mknodat(
        CWD,
        upper.join("dev/null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    chmod(&upper.join("dev/null"), 0o666);

    let tmp = upper.join("tmp");
    fs::create_dir(&tmp).unwrap();
    chmod(&tmp, 0o1777);
    let owned = upper.join("home/user");
    fs::create_dir_all(&owned).unwrap();
    fs::write(owned.join("file"), b"mine").unwrap();
    std::os::unix::fs::chown(owned.join("file"), Some(1000), Some(1001)).unwrap();
    std::os::unix::fs::chown(&owned, Some(1000), Some(1001)).unwrap();
    chmod(&owned, 0o2750);

    let long = upper.join(long_name());
    fs::create_dir_all(long.parent().unwrap()).unwrap();
    fs::write(&long, b"long").unwrap();
    // Long link targets need GNU long-link records too.
    fs::hard_link(&long, upper.join("zz-hard")).unwrap();
    std::os::unix::fs::symlink(long_name(), upper.join("zz-sym")).unwrap();
}

/// What a tree looks like, path -> description, without following symlinks. `with_nlink` adds
/// link counts (meaningless through an overlay mount).
fn snapshot(root: &Path, with_nlink: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for ent in fs::read_dir(&dir).unwrap() {
            let p = ent.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let rel =
                String::from_utf8_lossy(p.strip_prefix(root).unwrap().as_os_str().as_bytes()).into_owned();
            let mut d = format!("{:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid());
            let is_whiteout = ft.is_char_device() && m.rdev() == 0;
            if ft.is_dir() {
                d = format!("dir {d} mtime={}", m.mtime());
                stack.push(p.clone());
            } else if ft.is_file() {
                let data = fs::read(&p).unwrap();
                d = format!(
                    "file {d} mtime={} {:?}",
                    m.mtime(),
                    String::from_utf8_lossy(&data)
                );
                if with_nlink {
                    d.push_str(&format!(" nlink={}", m.nlink()));
                }
            } else if ft.is_symlink() {
                d = format!(
                    "symlink {d} mtime={} -> {:?}",
                    m.mtime(),
                    fs::read_link(&p).unwrap()
                );
            } else if is_whiteout {
                d = "whiteout".to_string();
            } else if ft.is_char_device() || ft.is_block_device() {
                d = format!(
                    "dev {d} {}:{}",
                    rustix::fs::major(m.rdev()),
                    rustix::fs::minor(m.rdev())
                );
            } else if ft.is_fifo() {
                d = format!("fifo {d} mtime={}", m.mtime());
            }
            for x in ["user.note", "security.capability", OPAQUE] {
                if let Some(v) = get_xattr(&p, x) {
                    d.push_str(&format!(" {x}={v:?}"));
                }
            }
            out.insert(rel, d);
        }
    }
    out
}

struct TarEntry {
    path: Vec<u8>,
    ty: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<Vec<u8>>,
    data: Vec<u8>,
    xattrs: Vec<(String, Vec<u8>)>,
    pax_keys: Vec<String>,
}

fn entries(tar: &[u8]) -> Vec<TarEntry> {
    let mut a = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut pax_keys = Vec::new();
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for r in pax {
                let r = r.unwrap();
                let k = r.key().unwrap().to_string();
                if let Some(x) = k.strip_prefix("SCHILY.xattr.") {
                    xattrs.push((x.to_string(), r.value_bytes().to_vec()));
                }
                pax_keys.push(k);
            }
        }
        let h = e.header().clone();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let path = e.path_bytes().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        assert!(h.username_bytes().is_none_or(|u| u.is_empty()));
        assert!(h.groupname_bytes().is_none_or(|g| g.is_empty()));
        out.push(TarEntry {
            path,
            ty: h.entry_type(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link,
            data,
            xattrs,
            pax_keys,
        });
    }
    out
}

fn find<'a>(es: &'a [TarEntry], path: &[u8]) -> &'a TarEntry {
    es.iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no entry {:?}", String::from_utf8_lossy(path)))
}

fn pos(es: &[TarEntry], path: &str) -> usize {
    es.iter().position(|e| e.path == path.as_bytes()).unwrap()
}

fn diff(upper: &Path, opts: &DiffOptions) -> Vec<u8> {
    let mut out = Vec::new();
    let stats = write_layer_diff(upper, &mut out, opts).unwrap();
    assert_eq!(stats.diff_id, Digest::of(&out));
    assert_eq!(stats.size, out.len() as u64);
    out
}

#[test]
fn hand_made_upper_round_trips_through_apply_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let [lower, upper, applied, m1, m2] = &mkdirs(tmp.path(), &["lower", "upper", "applied", "m1", "m2"])[..]
    else {
        unreachable!()
    };
    apply_layer(&lower_tar()[..], lower).unwrap();
    build_upper(upper);

    let tar = diff(upper, &DiffOptions::default());
    let es = entries(&tar);
    let stats = write_layer_diff(upper, std::io::sink(), &DiffOptions::default()).unwrap();
    assert_eq!(stats.files, es.len() as u64);
    let names: Vec<String> = es
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();

    // Sorted by path bytes (whiteouts where the deleted name sorts), so parents come first.
    let keys: Vec<Vec<u8>> = es
        .iter()
        .filter(|e| !e.path.ends_with(b"/.wh..wh..opq"))
        .map(|e| {
            let p = e.path.strip_suffix(b"/").unwrap_or(&e.path);
            let cut = p.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
            let (dir, base) = p.split_at(cut);
            [dir, base.strip_prefix(b".wh.").unwrap_or(base)].concat()
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    // The opaque marker comes right after its directory.
    assert_eq!(names[pos(&es, "opq/") + 1], "opq/.wh..wh..opq");
    assert!(pos(&es, "etc/") < pos(&es, "etc/hl1"));
    assert!(!names
        .iter()
        .any(|n| n.is_empty() || n == "./" || n.starts_with('/')));

    // Whiteouts: empty regular files, both of the kernel's shared-inode whiteouts.
    for wh in ["etc/.wh.remove", "etc/.wh.remove2"] {
        let e = find(&es, wh.as_bytes());
        assert_eq!((e.ty, e.data.len(), e.mtime), (EntryType::Regular, 0, 0), "{wh}");
    }
    assert!(!names.contains(&"etc/remove".to_string()));
    let opq = find(&es, b"opq/.wh..wh..opq");
    assert_eq!((opq.ty, opq.data.len(), opq.mode), (EntryType::Regular, 0, 0o755));
    // The opaque directory itself carries no overlay xattr, and no trusted.overlay.* anywhere.
    assert!(es
        .iter()
        .all(|e| e.pax_keys.iter().all(|k| !k.contains("overlay"))));

    // Contents, modes, owners.
    assert_eq!(find(&es, b"etc/modify").data, b"new contents");
    assert_eq!(find(&es, b"etc/").ty, EntryType::Directory);
    let su = find(&es, b"usr/bin/su");
    assert_eq!((su.mode, su.uid, su.gid), (0o4755, 0, 0));
    assert_eq!(find(&es, b"tmp/").mode, 0o1777);
    let home = find(&es, b"home/user/");
    assert_eq!((home.mode, home.uid, home.gid), (0o2750, 1000, 1001));
    let f = find(&es, b"home/user/file");
    assert_eq!((f.uid, f.gid), (1000, 1001));
    assert_eq!(find(&es, NON_UTF8).data, b"latin-1 name");
    assert_eq!(find(&es, long_name().as_bytes()).data, b"long");
    for (name, ty) in [("zz-hard", EntryType::Link), ("zz-sym", EntryType::Symlink)] {
        let e = find(&es, name.as_bytes());
        assert_eq!(
            (e.ty, e.link.as_deref()),
            (ty, Some(long_name().as_bytes())),
            "{name}"
        );
    }

    // Links, special files.
    let link = find(&es, b"link");
    assert_eq!(
        (link.ty, link.link.as_deref()),
        (EntryType::Symlink, Some(&b"etc/new"[..]))
    );
    let (hl1, hl2) = (find(&es, b"etc/hl1"), find(&es, b"etc/hl2"));
    assert_eq!(
        (hl1.ty, hl1.data.as_slice()),
        (EntryType::Regular, &b"linked"[..])
    );
    assert_eq!(
        (hl2.ty, hl2.link.as_deref()),
        (EntryType::Link, Some(&b"etc/hl1"[..]))
    );
    let fifo = find(&es, b"run/fifo");
    assert_eq!((fifo.ty, fifo.mode), (EntryType::Fifo, 0o620));
    assert_eq!(find(&es, b"dev/null").ty, EntryType::Char);

    // Kept xattrs.
    assert_eq!(
        find(&es, b"etc/new").xattrs,
        [("user.note".to_string(), b"hello".to_vec())]
    );
    assert_eq!(
        find(&es, b"usr/bin/ping").xattrs,
        [("security.capability".to_string(), CAP_NET_BIND.to_vec())]
    );
    assert!(find(&es, b"etc/").xattrs.is_empty());

    // Applied, the diff is the upper directory again (minus the overlay bookkeeping xattrs).
    let applied_stats = apply_layer(&tar[..], applied).unwrap();
    assert_eq!(applied_stats.diff_id, stats.diff_id);
    let (want, got) = (snapshot(upper, true), snapshot(applied, true));
    assert_eq!(got, want);
    assert!(want["etc/hl1"].ends_with("nlink=2"), "{}", want["etc/hl1"]);

    // And stacked on the lower layer it looks like the container did.
    let merged_upper = Mount::overlay(m1, &[upper, lower], None);
    let merged_applied = Mount::overlay(m2, &[applied, lower], None);
    let (want, got) = (snapshot(m1, false), snapshot(m2, false));
    assert_eq!(got, want);
    assert!(!want.contains_key("etc/remove"));
    assert!(want.contains_key("etc/keep"));
    assert!(!want.contains_key("opq/old1") && !want.contains_key("opq/sub"));
    assert!(want.contains_key("opq/fresh"));
    drop((merged_upper, merged_applied));
}

#[test]
fn real_overlay_changes_become_whiteouts_and_opaque_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let [lower, upper, work, merged, applied, check] = &mkdirs(
        tmp.path(),
        &["lower", "upper", "work", "merged", "applied", "check"],
    )[..] else {
        unreachable!()
    };
    apply_layer(&lower_tar()[..], lower).unwrap();

    let mount = Mount::overlay(merged, &[lower], Some((upper, work)));
    fs::write(merged.join("etc/modify"), b"changed").unwrap();
    fs::write(merged.join("etc/added"), b"added").unwrap();
    fs::remove_file(merged.join("etc/remove")).unwrap();
    fs::remove_file(merged.join("etc/remove2")).unwrap();
    fs::remove_dir_all(merged.join("opq")).unwrap();
    fs::create_dir(merged.join("opq")).unwrap();
    fs::write(merged.join("opq/again"), b"again").unwrap();
    chmod(&merged.join("usr/bin/tool"), 0o4711);
    fs::hard_link(merged.join("etc/added"), merged.join("etc/added-link")).unwrap();
    std::os::unix::fs::symlink("../etc/added", merged.join("usr/added")).unwrap();
    let seen = snapshot(merged, false);
    drop(mount);

    let tar = diff(upper, &DiffOptions::default());
    let es = entries(&tar);
    let names: Vec<String> = es
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    for n in ["etc/.wh.remove", "etc/.wh.remove2"] {
        let e = find(&es, n.as_bytes());
        assert_eq!((e.ty, e.data.len()), (EntryType::Regular, 0), "{n}");
    }
    assert_eq!(names[pos(&es, "opq/") + 1], "opq/.wh..wh..opq");
    assert_eq!(find(&es, b"opq/again").data, b"again");
    assert!(!names
        .iter()
        .any(|n| n.starts_with("opq/old") || n.starts_with("opq/sub")));
    assert_eq!(find(&es, b"usr/bin/tool").mode, 0o4711);
    assert_eq!(find(&es, b"usr/bin/tool").data, b"tool");
    let link = find(&es, b"etc/added-link");
    assert_eq!(
        (link.ty, link.link.as_deref()),
        (EntryType::Link, Some(&b"etc/added"[..]))
    );
    assert_eq!(
        find(&es, b"usr/added").link.as_deref(),
        Some(&b"../etc/added"[..])
    );
    assert!(!names.contains(&"etc/keep".to_string()));
    assert!(es
        .iter()
        .all(|e| e.pax_keys.iter().all(|k| !k.contains("overlay"))));

    apply_layer(&tar[..], applied).unwrap();
    let _check = Mount::overlay(check, &[applied, lower], None);
    assert_eq!(snapshot(check, false), seen);
}

/// The same tree, made in a different order (other inode numbers, ctimes and atimes).
fn build_tree(root: &Path, reverse: bool) {
    let mut files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("d{}/f{i:02}", i % 3), vec![i as u8; i * 100]))
        .collect();
    if reverse {
        files.reverse();
    }
    for (p, data) in &files {
        let p = root.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        set_mtime(&p, T0 + 10);
    }
    let (a, b) = if reverse { ("y", "x") } else { ("x", "y") };
    fs::write(root.join(a), a).unwrap();
    fs::write(root.join(b), b).unwrap();
    set_mtime(&root.join("x"), T0 + 1000);
    set_mtime(&root.join("y"), T0 - 1000);
    // Set in a different order: the tar lists them sorted.
    let xattrs = [("user.b", b"2"), ("user.a", b"1")];
    for i in 0..2 {
        let (name, value) = xattrs[if reverse { 1 - i } else { i }];
        set_xattr(&root.join("x"), name, value);
    }
    std::os::unix::fs::symlink("x", root.join("s")).unwrap();
    set_mtime(&root.join("s"), T0);
    whiteout(&root.join("gone"));
    for d in ["d0", "d1", "d2"] {
        set_mtime(&root.join(d), T0 + 20);
    }
}

#[test]
fn identical_trees_give_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b] = &mkdirs(tmp.path(), &["a", "b"])[..] else {
        unreachable!()
    };
    build_tree(a, false);
    std::thread::sleep(std::time::Duration::from_millis(20));
    build_tree(b, true);

    let opts = DiffOptions::default();
    let (ta, tb) = (diff(a, &opts), diff(b, &opts));
    assert!(ta == tb, "tars differ");
    let es = entries(&ta);
    assert_eq!(find(&es, b"x").mtime, (T0 + 1000) as u64);
    assert_eq!(find(&es, b"d1/").mtime, (T0 + 20) as u64);
    // PAX records in a fixed order.
    assert_eq!(
        find(&es, b"x").pax_keys,
        ["SCHILY.xattr.user.a", "SCHILY.xattr.user.b"]
    );

    // With SOURCE_DATE_EPOCH, later mtimes are clamped and earlier ones kept.
    let opts = DiffOptions {
        source_date_epoch: Some(T0),
        ..Default::default()
    };
    let (ca, cb) = (diff(a, &opts), diff(b, &opts));
    assert!(ca == cb, "clamped tars differ");
    assert!(ca != ta);
    let es = entries(&ca);
    assert_eq!(find(&es, b"x").mtime, T0 as u64);
    assert_eq!(find(&es, b"d0/f00").mtime, T0 as u64);
    assert_eq!(find(&es, b"d1/").mtime, T0 as u64);
    assert_eq!(find(&es, b"y").mtime, (T0 - 1000) as u64);
    assert_eq!(find(&es, b".wh.gone").mtime, 0);

    // gzip: the same bytes every time, decompressing to the same tar.
    let mut ga = Vec::new();
    let za = compress_layer_diff(a, &mut ga, &opts).unwrap();
    let mut gb = Vec::new();
    let zb = compress_layer_diff(b, &mut gb, &opts).unwrap();
    assert!(ga == gb, "gzip blobs differ");
    assert_eq!(za, zb);
    assert_eq!((za.digest.clone(), za.size), (Digest::of(&ga), ga.len() as u64));
    assert_eq!(za.diff.diff_id, Digest::of(&ca));
    assert_eq!(&ga[4..8], &[0, 0, 0, 0], "no mtime in the gzip header");
    assert_eq!(ga[3] & 0x08, 0, "no file name in the gzip header");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&ga[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert!(plain == ca);
}

#[test]
fn store_layer_diff_commits_the_compressed_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let [upper, store_dir] = &mkdirs(tmp.path(), &["upper", "store"])[..] else {
        unreachable!()
    };
    build_tree(upper, false);
    // Big enough to take several chunks through the in-process pipe.
    let noise: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(upper.join("big"), &noise).unwrap();
    let store = ContentStore::open(store_dir).unwrap();

    let gzip = DiffOptions {
        gzip: true,
        ..Default::default()
    };
    let got = store_layer_diff(&store, upper, &gzip).unwrap();
    let mut gz = Vec::new();
    let want = compress_layer_diff(upper, &mut gz, &DiffOptions::default()).unwrap();
    assert_eq!(got, want);
    assert_eq!(store.read_blob(&got.digest).unwrap(), gz);
    assert_eq!(store.list().unwrap(), std::slice::from_ref(&got.digest));

    // By default the plain tar is stored, under its diff ID.
    let plain = store_layer_diff(&store, upper, &DiffOptions::default()).unwrap();
    assert!(!plain.gzip);
    assert_eq!(plain.digest, plain.diff.diff_id);
    assert_eq!(plain.diff, got.diff);
    let mut tar = Vec::new();
    write_layer_diff(upper, &mut tar, &DiffOptions::default()).unwrap();
    assert_eq!(store.read_blob(&plain.digest).unwrap(), tar);
    store.delete(&plain.digest).unwrap();

    // A failed diff stores nothing.
    set_xattr(&upper.join("d0"), "trusted.overlay.redirect", b"/elsewhere");
    let err = store_layer_diff(&store, upper, &DiffOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            DiffError::Unsupported {
                feature: "redirect_dir",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.list().unwrap(), [got.digest]);
    assert_eq!(fs::read_dir(store_dir.join("ingest")).unwrap().count(), 0);
}

#[test]
fn symlinked_directories_are_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let [upper, outside] = &mkdirs(tmp.path(), &["upper", "outside"])[..] else {
        unreachable!()
    };
    fs::write(outside.join("secret"), b"host secret").unwrap();
    set_xattr(&outside.join("secret"), "user.leak", b"host");
    std::os::unix::fs::symlink(outside, upper.join("evil")).unwrap();
    let es = entries(&diff(upper, &DiffOptions::default()));
    assert_eq!(es.len(), 1);
    assert_eq!(es[0].ty, EntryType::Symlink);
    assert!(es[0].xattrs.is_empty());
}

#[test]
fn metacopy_uppers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("f"), b"").unwrap();
    set_xattr(&tmp.path().join("f"), "trusted.overlay.metacopy", b"");
    let err = write_layer_diff(tmp.path(), std::io::sink(), &DiffOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            DiffError::Unsupported {
                feature: "metacopy",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn xattr_whiteouts_and_userxattr_opaque_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let up = tmp.path();
    // Newer kernels' whiteout form, and the opaque mark of a `userxattr` mount.
    fs::write(up.join("gone"), b"").unwrap();
    set_xattr(&up.join("gone"), "trusted.overlay.whiteout", b"");
    fs::create_dir(up.join("d")).unwrap();
    set_xattr(&up.join("d"), "user.overlay.opaque", b"y");
    // "x" marks a directory holding xattr whiteouts; it is not opaque.
    fs::create_dir(up.join("e")).unwrap();
    set_xattr(&up.join("e"), OPAQUE, b"x");
    let es = entries(&diff(up, &DiffOptions::default()));
    let names: Vec<&[u8]> = es.iter().map(|e| e.path.as_slice()).collect();
    // A whiteout sits where the deleted name sorts, as Docker's walk of the upper dir puts it.
    assert_eq!(names, [&b"d/"[..], b"d/.wh..wh..opq", b"e/", b".wh.gone"]);
    assert!(es.iter().all(|e| e.xattrs.is_empty()));
}
