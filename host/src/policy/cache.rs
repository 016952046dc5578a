//! Compiled modules, cached by sha256: in memory for this process, and on disk
//! (precompiled) so that a restart does not compile again.
//!
//! The disk cache is a directory reached only through a cap-std handle: entries
//! are `<sha256>.cwasm` files inside it and nothing outside it can be named.
//! Wasmtime runs precompiled code as given, so **the cache directory must be
//! writable by the Latchkey host alone**; an entry that wasmtime rejects
//! (another wasmtime version or configuration, or a damaged file) is simply
//! compiled again and replaced.
//!
//! Beside each compiled entry the cache keeps the module itself,
//! `<sha256>.wasm`, content-addressed: the bytes an auditor needs to replay a
//! recorded decision (`latchkey audit replay`) after the tenant's pin has
//! moved on and the module file is gone from the modules directory. They are
//! checked against their name before use.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, RwLock};

use cap_std::fs::Dir;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::policy::ModuleHash;
use crate::policy::sandbox::LoadedModule;

/// Where a loaded module's compiled code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled from the module bytes just now.
    Compiled,
    /// Deserialized from the disk cache.
    Disk,
}

/// The compiled-module cache.
pub struct DiskCache {
    dir: Option<Dir>,
    loaded: RwLock<HashMap<ModuleHash, Arc<LoadedModule>>>,
}

impl DiskCache {
    /// A cache kept in memory only.
    pub fn in_memory() -> DiskCache {
        DiskCache {
            dir: None,
            loaded: RwLock::new(HashMap::new()),
        }
    }

    /// A cache keeping precompiled modules in the directory at `path`,
    /// created if missing: the one place a cache directory is named by path.
    pub fn at(path: &std::path::Path) -> std::io::Result<DiskCache> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Ok(DiskCache::in_dir(dir))
    }

    /// A cache that also keeps precompiled modules in `dir`.
    pub fn in_dir(dir: Dir) -> DiskCache {
        DiskCache {
            dir: Some(dir),
            loaded: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn memory(&self, hash: &ModuleHash) -> Option<Arc<LoadedModule>> {
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        loaded.get(hash).cloned()
    }

    pub(crate) fn remember(&self, module: Arc<LoadedModule>) {
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        loaded.insert(module.hash(), module);
    }

    /// The precompiled module with this hash, if the disk cache has a usable one.
    pub(crate) fn compiled(&self, engine: &Engine, hash: &ModuleHash) -> Option<Component> {
        let dir = self.dir.as_ref()?;
        let bytes = dir.read(entry_name(hash)).ok()?;
        // SAFETY: wasmtime trusts precompiled bytes. Entries are written only
        // by `store` below from code this engine compiled, in a directory that
        // must be writable by this host alone (see the module docs); wasmtime
        // still checks the header, its version and the engine configuration,
        // and we recompile on any error.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &bytes) };
        match component {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::info!(module = %hash, "recompiling: cached code is not usable ({e})");
                None
            }
        }
    }

    /// Keeps the module's own bytes as `<sha256>.wasm`, once. Failure is
    /// logged and otherwise ignored, like [`DiskCache::store`].
    pub(crate) fn archive(&self, hash: &ModuleHash, bytes: &[u8]) {
        let Some(dir) = &self.dir else { return };
        let name = archive_name(hash);
        if dir.exists(&name) {
            return;
        }
        if let Err(e) = write_atomically(dir, &name, bytes) {
            tracing::warn!(module = %hash, "could not archive the module: {e}");
        }
    }

    /// Writes a compiled module to the disk cache. Failure to cache is logged
    /// and otherwise ignored: the module is loaded either way.
    pub(crate) fn store(&self, hash: &ModuleHash, component: &Component) {
        let Some(dir) = &self.dir else { return };
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|bytes| write_atomically(dir, &entry_name(hash), &bytes));
        if let Err(e) = result {
            tracing::warn!(module = %hash, "could not cache the compiled module: {e}");
        }
    }
}

fn entry_name(hash: &ModuleHash) -> String {
    format!("{hash}.cwasm")
}

fn archive_name(hash: &ModuleHash) -> String {
    format!("{hash}.wasm")
}

/// Write then rename, so a reader never sees half a file.
fn write_atomically(dir: &Dir, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let partial = format!("{name}.partial-{}", std::process::id());
    let mut file = dir.create(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    dir.rename(&partial, dir, name)
}

/// The archived bytes of the module with this hash in the cache directory
/// `dir`, if they are there and still hash to their name.
pub fn archived_module(dir: &Dir, hash: &ModuleHash) -> Option<Vec<u8>> {
    let bytes = dir.read(archive_name(hash)).ok()?;
    if ModuleHash::of(&bytes) == *hash {
        Some(bytes)
    } else {
        tracing::warn!(module = %hash, "the archived module does not match its name; ignored");
        None
    }
}
