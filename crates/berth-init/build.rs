//! Links berth-init statically, so that it runs in any image (busybox has no libc at all).
//!
//! Release builds (panic = "abort") are freestanding: `no_std`, their own `_start`, raw system calls,
//! no libc, a few KiB. A `no_std` executable cannot be built with panic = "unwind" on stable Rust (it
//! needs std's `eh_personality`), and the dev profile unwinds, so debug builds link std and a static
//! glibc instead: the same code, entered through glibc's `main`.
//!
//! Cargo cannot turn on `crt-static` for one package, and without it rustc asks for `-lgcc_s` and
//! `-lc` as shared libraries, which a plain `-static` cannot override. The debug build therefore
//! shadows those with linker scripts in OUT_DIR (searched first) naming the static archives.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(berth_init_freestanding)");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo::rustc-cfg=berth_init_freestanding");
        for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
            println!("cargo::rustc-link-arg-bins={arg}");
        }
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let shadows: [(&str, &[&str]); 3] = [
        ("libc.so", &["libc.a", "libgcc.a", "libgcc_eh.a"]),
        ("libm.so", &["libm.a"]),
        ("libgcc_s.so", &["libgcc_eh.a", "libgcc.a"]),
    ];
    for (shared, archives) in shadows {
        let paths: Vec<String> = archives
            .iter()
            .map(|a| archive(a).display().to_string())
            .collect();
        std::fs::write(out.join(shared), format!("GROUP ( {} )\n", paths.join(" ")))
            .expect("writing linker script");
    }
    println!("cargo::rustc-link-search=native={}", out.display());
    println!("cargo::rustc-link-arg-bins=-static");
}

/// The C compiler's path of a static archive (`cc -print-file-name=libc.a`).
fn archive(name: &str) -> PathBuf {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = std::process::Command::new(&cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| p.is_absolute() && p.exists());
    found.unwrap_or_else(|| panic!("{cc} does not know {name}: static glibc (libc6-dev) is needed"))
}
