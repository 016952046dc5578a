//! Configuration: parsed from TOML into a raw form, then validated into
//! [`Config`], so that the rest of the host only sees values that make sense.
//!
//! ```toml
//! [policy]
//! # Module, signature and publisher key files are named relative to this
//! # directory and reached only through it.
//! modules_dir = "/etc/latchkey/policies"
//! # Precompiled modules; optional. Must be writable by Latchkey alone.
//! cache_dir = "/var/cache/latchkey/modules"
//!
//! [tenants.72f988bf-86f1-41af-91ab-2d7cd011db47]
//! name = "Contoso"
//! module = "contoso.wasm"
//! sha256 = "<64 lowercase hex digits>"
//! # Optional: when present, a signature by one of these keys is required.
//! publisher_keys = ["msp-2026.pub.pem"]
//! # Optional; defaults to the module's name with ".sig" appended.
//! signature = "contoso.wasm.sig"
//! ```

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::policy::ModuleHash;
use crate::tenant::TenantId;

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where modules live.
    pub modules_dir: PathBuf,
    /// Where precompiled modules are cached, if anywhere.
    pub cache_dir: Option<PathBuf>,
    /// Each tenant's pinned policy.
    pub tenants: BTreeMap<TenantId, TenantConfig>,
}

/// One tenant's policy settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// A name for people; defaults to the tenant id.
    pub name: String,
    /// The module file, relative to the modules directory.
    pub module: PathBuf,
    /// The module's pinned sha256.
    pub sha256: ModuleHash,
    /// Publisher key files (relative to the modules directory); when not
    /// empty, a signature by one of them is required.
    pub publisher_keys: Vec<PathBuf>,
    /// The signature file, relative to the modules directory.
    pub signature: PathBuf,
}

/// Why configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not valid TOML of the expected shape.
    #[error("invalid configuration at line {line}: {message}")]
    Toml {
        /// The 1-based line the error is on.
        line: usize,
        /// What is wrong, on one line.
        message: String,
    },
    /// A file name that would leave its directory.
    #[error("tenant {tenant}: {field} {path:?} must be a relative path inside modules_dir")]
    PathEscapes {
        /// The tenant.
        tenant: TenantId,
        /// Which setting.
        field: &'static str,
        /// The offending path.
        path: PathBuf,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    policy: RawPolicy,
    #[serde(default)]
    tenants: BTreeMap<TenantId, RawTenant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    modules_dir: PathBuf,
    #[serde(default)]
    cache_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    #[serde(default)]
    name: Option<String>,
    module: PathBuf,
    sha256: ModuleHash,
    #[serde(default)]
    publisher_keys: Vec<PathBuf>,
    #[serde(default)]
    signature: Option<PathBuf>,
}

impl Config {
    /// Parses and validates configuration text. Relative directories are taken
    /// relative to `base` (the configuration file's directory).
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
            line: e
                .span()
                .and_then(|span| text.get(..span.start))
                .map_or(1, |before| before.matches('\n').count() + 1),
            message: e.message().replace('\n', " "),
        })?;
        let mut tenants = BTreeMap::new();
        for (id, t) in raw.tenants {
            let signature = t.signature.unwrap_or_else(|| {
                let mut name = t.module.clone().into_os_string();
                name.push(".sig");
                PathBuf::from(name)
            });
            inside(&id, "module", &t.module)?;
            inside(&id, "signature", &signature)?;
            for key in &t.publisher_keys {
                inside(&id, "publisher key", key)?;
            }
            tenants.insert(
                id.clone(),
                TenantConfig {
                    name: t.name.unwrap_or_else(|| id.to_string()),
                    module: t.module,
                    sha256: t.sha256,
                    publisher_keys: t.publisher_keys,
                    signature,
                },
            );
        }
        Ok(Config {
            modules_dir: base.join(raw.policy.modules_dir),
            cache_dir: raw.policy.cache_dir.map(|d| base.join(d)),
            tenants,
        })
    }
}

/// Refuses absolute paths and `..`: the directory handle would refuse them
/// too, but a clear error at load time beats a refusal at the first request.
fn inside(tenant: &TenantId, field: &'static str, path: &Path) -> Result<(), ConfigError> {
    let ok = !path.as_os_str().is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::PathEscapes {
            tenant: tenant.clone(),
            field,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn config(tenant_body: &str) -> Result<Config, ConfigError> {
        let text =
            format!("[policy]\nmodules_dir = \"mods\"\n\n[tenants.{TENANT}]\n{tenant_body}\n");
        Config::from_toml(&text, Path::new("/etc/latchkey"))
    }

    #[test]
    fn a_tenant_pins_a_module_and_defaults_its_signature_file() {
        let hash = ModuleHash::of(b"m");
        let c = config(&format!("module = \"contoso.wasm\"\nsha256 = \"{hash}\"")).unwrap();
        assert_eq!(c.modules_dir, Path::new("/etc/latchkey/mods"));
        let t = &c.tenants[&TENANT.parse::<TenantId>().unwrap()];
        assert_eq!(t.sha256, hash);
        assert_eq!(t.signature, Path::new("contoso.wasm.sig"));
        assert!(t.publisher_keys.is_empty());
    }

    #[test]
    fn bad_hashes_unknown_fields_and_escaping_paths_are_refused() {
        let hash = ModuleHash::of(b"m");
        let bad_hash = config("module = \"m.wasm\"\nsha256 = \"ABC\"").unwrap_err();
        assert!(
            bad_hash.to_string().contains("64 lowercase hex"),
            "{bad_hash}"
        );
        let unknown = config(&format!(
            "module = \"m.wasm\"\nsha256 = \"{hash}\"\nallow_all = true"
        ))
        .unwrap_err();
        assert!(unknown.to_string().contains("allow_all"), "{unknown}");
        let escape = config(&format!(
            "module = \"../../etc/passwd\"\nsha256 = \"{hash}\""
        ))
        .unwrap_err();
        assert!(
            matches!(escape, ConfigError::PathEscapes { .. }),
            "{escape}"
        );
        let absolute =
            config(&format!("module = \"/tmp/m.wasm\"\nsha256 = \"{hash}\"")).unwrap_err();
        assert!(matches!(absolute, ConfigError::PathEscapes { .. }));
    }
}
