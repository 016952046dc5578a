//! `latchkey policy build` is reproducible: the same source gives the same
//! sha256 from another checkout path.

use std::path::Path;

use latchkey::policy::build::{self, BuildOptions};
use latchkey_tests::{built, root, target_dir};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let dest = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A checkout of just what the default policy needs, at another path.
fn checkout(at: &Path) {
    let root = root();
    for dir in ["wit", "guest-sdk", "policies/default"] {
        copy_dir(&root.join(dir), &at.join(dir));
    }
    for file in ["Cargo.lock", "rust-toolchain.toml"] {
        std::fs::copy(root.join(file), at.join(file)).unwrap();
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let manifest = manifest
        .lines()
        .map(|l| {
            if l.starts_with("members") {
                "members = [\"guest-sdk\", \"policies/default\"]"
            } else if l.starts_with("exclude") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(at.join("Cargo.toml"), manifest).unwrap();
}

#[test]
fn the_same_source_gives_the_same_hash_from_another_path() {
    let here = built("policies/default");
    let elsewhere = tempfile::tempdir().unwrap();
    let checkout_path = elsewhere.path().join("some/other/checkout");
    checkout(&checkout_path);
    let there = build::build(
        &checkout_path.join("policies/default"),
        &BuildOptions {
            target_dir: Some(target_dir().join("elsewhere")),
            quiet: true,
        },
    )
    .unwrap();
    assert_eq!(
        there.hash,
        here.hash,
        "{} vs {}",
        there.path.display(),
        here.path.display()
    );
    // And no path of either checkout is inside the module.
    let bytes = std::fs::read(&there.path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(checkout_path.to_str().unwrap()));
    assert!(!text.contains(root().to_str().unwrap()));
}
