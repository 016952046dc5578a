//! Which module decides for which tenant.
//!
//! A tenant's configuration pins the module's sha256 and may require a
//! publisher signature. Applying a configuration checks, in order: the file
//! can be read (through the modules directory handle only), its hash is the
//! pinned one, the signature verifies with a trusted key (when keys are
//! listed), and the sandbox accepts it (valid component, no forbidden import,
//! the right export). Any refusal is reported and logged, and the tenant stays
//! on the module it had; a module that passes replaces the old one atomically,
//! so decisions already running finish on the module they started with.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use latchkey_policy::Facts;

use crate::config::{Config, TenantConfig};
use crate::keys::{self, KeyId};
use crate::policy::trust::{Publishers, SignatureError};
use crate::policy::{DiskCache, Evaluation, Limits, LoadError, LoadedModule, ModuleHash, Sandbox};
use crate::tenant::TenantId;

/// A tenant's policy, ready to apply: the pinned hash and the trusted keys.
#[derive(Clone, Debug)]
pub struct TenantPolicy {
    /// The tenant.
    pub tenant: TenantId,
    /// The module file, relative to the modules directory.
    pub module: PathBuf,
    /// The pinned sha256.
    pub sha256: ModuleHash,
    /// Trusted publishers; empty means no signature is required.
    pub publishers: Publishers,
    /// The signature file, relative to the modules directory.
    pub signature: PathBuf,
}

impl TenantPolicy {
    /// Builds a tenant's policy from its configuration, reading its publisher
    /// keys through `modules`.
    pub fn from_config(
        tenant: TenantId,
        config: &TenantConfig,
        modules: &Dir,
    ) -> Result<TenantPolicy, Refusal> {
        let mut publishers = Vec::new();
        for path in &config.publisher_keys {
            let text = modules.read_to_string(path).map_err(|e| Refusal::Read {
                file: path.clone(),
                error: e.to_string(),
            })?;
            let key = keys::public_from_pem(&text).map_err(|e| Refusal::Read {
                file: path.clone(),
                error: e.to_string(),
            })?;
            publishers.push(key);
        }
        Ok(TenantPolicy {
            tenant,
            module: config.module.clone(),
            sha256: config.sha256,
            publishers: Publishers::new(publishers),
            signature: config.signature.clone(),
        })
    }
}

/// Why a tenant's module was refused. The tenant keeps its previous module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A file could not be read from the modules directory.
    #[error("could not read {file:?} in the modules directory: {error}")]
    Read {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        error: String,
    },
    /// The module's sha256 is not the pinned one.
    #[error("module hash mismatch: configuration pins {expected}, the file is {actual}")]
    HashMismatch {
        /// The pinned hash.
        expected: ModuleHash,
        /// The file's hash.
        actual: ModuleHash,
    },
    /// Publisher keys are configured but there is no signature file.
    #[error("a publisher signature is required but {file:?} is missing")]
    MissingSignature {
        /// The signature file looked for.
        file: PathBuf,
    },
    /// The signature does not verify.
    #[error("bad signature: {0}")]
    Signature(#[from] SignatureError),
    /// The sandbox refused the module.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// The module each tenant runs, and the sandbox that runs them.
pub struct PolicyRegistry {
    sandbox: Arc<Sandbox>,
    modules: Dir,
    active: RwLock<HashMap<TenantId, Arc<LoadedModule>>>,
}

/// What applying a tenant's policy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The module now active.
    pub module: ModuleHash,
    /// The publisher key that signed it, when a signature was required.
    pub signed_by: Option<KeyId>,
}

/// Why the registry could not be opened at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A configured directory could not be opened.
    #[error("cannot open {what} {path}: {error}")]
    Dir {
        /// Which directory.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
    /// The sandbox could not be set up.
    #[error(transparent)]
    Sandbox(#[from] crate::policy::SandboxError),
}

/// What applying one tenant's configured policy did.
pub type TenantReport = (TenantId, Result<Applied, Refusal>);

impl PolicyRegistry {
    /// Opens the configured directories (the only place they are named by
    /// path; everything after goes through their handles), builds a sandbox
    /// with `limits`, and applies every tenant's policy. Refusals are in the
    /// report; a refused tenant has no module until a later apply succeeds.
    pub fn open(
        config: &Config,
        limits: Limits,
    ) -> Result<(PolicyRegistry, Vec<TenantReport>), OpenError> {
        let open = |what: &'static str, path: &Path| {
            Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| OpenError::Dir {
                what,
                path: path.to_owned(),
                error: e.to_string(),
            })
        };
        let modules = open("the modules directory", &config.modules_dir)?;
        let cache = match &config.cache_dir {
            Some(path) => DiskCache::at(path).map_err(|e| OpenError::Dir {
                what: "the cache directory",
                path: path.clone(),
                error: e.to_string(),
            })?,
            None => DiskCache::in_memory(),
        };
        let registry = PolicyRegistry::new(Arc::new(Sandbox::new(limits, cache)?), modules);
        let reports = config
            .tenants
            .iter()
            .map(|(tenant, tenant_config)| {
                let result =
                    TenantPolicy::from_config(tenant.clone(), tenant_config, &registry.modules)
                        .and_then(|policy| registry.apply(&policy));
                (tenant.clone(), result)
            })
            .collect();
        Ok((registry, reports))
    }

    /// A registry reading modules from `modules` and running them in `sandbox`.
    pub fn new(sandbox: Arc<Sandbox>, modules: Dir) -> PolicyRegistry {
        PolicyRegistry {
            sandbox,
            modules,
            active: RwLock::new(HashMap::new()),
        }
    }

    /// The modules directory.
    pub fn modules_dir(&self) -> &Dir {
        &self.modules
    }

    /// Checks a tenant's pinned module and makes it the tenant's active module.
    /// On refusal the tenant keeps its previous module; the refusal is logged
    /// and returned.
    pub fn apply(&self, policy: &TenantPolicy) -> Result<Applied, Refusal> {
        match self.check(policy) {
            Ok((loaded, signed_by)) => {
                let module = loaded.hash();
                let mut active = self.active.write().unwrap_or_else(|p| p.into_inner());
                active.insert(policy.tenant.clone(), loaded);
                tracing::info!(tenant = %policy.tenant, %module, "policy module active");
                Ok(Applied { module, signed_by })
            }
            Err(refusal) => {
                let kept = self.active(&policy.tenant).map(|m| m.hash().to_string());
                tracing::warn!(
                    tenant = %policy.tenant,
                    kept = kept.as_deref().unwrap_or("none"),
                    "policy module refused: {refusal}"
                );
                Err(refusal)
            }
        }
    }

    fn check(&self, policy: &TenantPolicy) -> Result<(Arc<LoadedModule>, Option<KeyId>), Refusal> {
        let bytes = read(&self.modules, &policy.module)?;
        let actual = ModuleHash::of(&bytes);
        if actual != policy.sha256 {
            return Err(Refusal::HashMismatch {
                expected: policy.sha256,
                actual,
            });
        }
        let signed_by = if policy.publishers.is_empty() {
            None
        } else {
            let text = match self.modules.read_to_string(&policy.signature) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Refusal::MissingSignature {
                        file: policy.signature.clone(),
                    });
                }
                Err(e) => {
                    return Err(Refusal::Read {
                        file: policy.signature.clone(),
                        error: e.to_string(),
                    });
                }
            };
            Some(policy.publishers.verify(&actual, &text)?)
        };
        let loaded = self.sandbox.load(&bytes)?;
        Ok((loaded, signed_by))
    }

    /// The tenant's active module, if it has one.
    pub fn active(&self, tenant: &TenantId) -> Option<Arc<LoadedModule>> {
        let active = self.active.read().unwrap_or_else(|p| p.into_inner());
        active.get(tenant).cloned()
    }

    /// Decides with the tenant's active module, or `None` when the tenant has
    /// none (the caller must then do nothing: no module, no action).
    pub fn decide(&self, tenant: &TenantId, facts: &Facts) -> Option<Evaluation> {
        let module = self.active(tenant)?;
        Some(self.sandbox.decide(&module, facts))
    }
}

fn read(dir: &Dir, path: &Path) -> Result<Vec<u8>, Refusal> {
    dir.read(path).map_err(|e| Refusal::Read {
        file: path.to_owned(),
        error: e.to_string(),
    })
}
