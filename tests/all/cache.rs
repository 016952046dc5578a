//! Compiled modules are cached by sha256, in memory and on disk, so a restart
//! does not recompile.

use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use latchkey::policy::{DiskCache, Limits, LoadSource, ModuleHash, Sandbox};
use latchkey_tests::{allow_facts, module_bytes, sandbox};

fn disk_sandbox(path: &std::path::Path) -> Sandbox {
    let dir = Dir::open_ambient_dir(path, ambient_authority()).unwrap();
    Sandbox::new(Limits::default(), DiskCache::in_dir(dir)).unwrap()
}

#[test]
fn a_restart_loads_the_precompiled_module_from_disk() {
    let cache = tempfile::tempdir().unwrap();
    let bytes = module_bytes("policies/default");
    let hash = ModuleHash::of(&bytes);

    let first = disk_sandbox(cache.path());
    let compiled = first.load(&bytes).unwrap();
    assert_eq!(compiled.source(), LoadSource::Compiled);
    assert!(cache.path().join(format!("{hash}.cwasm")).is_file());
    let expected = first.decide(&compiled, &allow_facts()).decision;
    drop(first);

    // A new process, in effect: a new engine and sandbox on the same directory.
    let second = disk_sandbox(cache.path());
    let cached = second.load(&bytes).unwrap();
    assert_eq!(cached.source(), LoadSource::Disk);
    assert_eq!(cached.hash(), hash);
    assert_eq!(second.decide(&cached, &allow_facts()).decision, expected);
}

#[test]
fn a_damaged_cache_entry_is_compiled_again() {
    let cache = tempfile::tempdir().unwrap();
    let bytes = module_bytes("policies/default");
    let entry = cache
        .path()
        .join(format!("{}.cwasm", ModuleHash::of(&bytes)));
    disk_sandbox(cache.path()).load(&bytes).unwrap();
    std::fs::write(&entry, b"damaged").unwrap();

    let sandbox = disk_sandbox(cache.path());
    let loaded = sandbox.load(&bytes).unwrap();
    assert_eq!(loaded.source(), LoadSource::Compiled);
    assert!(sandbox.decide(&loaded, &allow_facts()).decision.is_allow());
    assert_ne!(
        std::fs::read(&entry).unwrap(),
        b"damaged",
        "the entry was rewritten"
    );
}

#[test]
fn the_memory_cache_returns_the_same_module() {
    let sandbox = sandbox();
    let bytes = module_bytes("policies/default");
    let a = sandbox.load(&bytes).unwrap();
    let b = sandbox.load(&bytes).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
}
