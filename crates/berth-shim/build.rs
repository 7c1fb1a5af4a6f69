//! Links the shim as a non-PIE executable: its code is position-independent, but with a fixed load
//! address the dynamic loader has no relocations to apply, so the ~240 KiB of `.data.rel.ro` stay
//! clean, shared file pages instead of becoming private dirty pages in every shim (one per
//! container).
fn main() {
    println!("cargo:rustc-link-arg-bin=berth-shim=-no-pie");
}
