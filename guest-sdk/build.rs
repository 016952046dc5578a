//! On `wasm32-wasip2` without std, `compiler_builtins` leaves `memcmp`,
//! `memcpy` and friends to libc, and nothing links one. Link the target's
//! self-contained wasi-libc statically: its memory routines import nothing, and
//! the linker drops everything the module does not call.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch != "wasm32" || os != "wasi" {
        return;
    }
    let target = std::env::var("TARGET").unwrap_or_else(|_| "wasm32-wasip2".to_owned());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(sysroot) = sysroot {
        let dir = sysroot
            .join("lib/rustlib")
            .join(target)
            .join("lib/self-contained");
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    println!("cargo:rustc-link-lib=static=c");
}
