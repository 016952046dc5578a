//! Per-tenant module pinning and publisher signatures: a refused module leaves
//! the tenant on its previous one.

use std::path::Path;
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use latchkey::config::Config;
use latchkey::keys;
use latchkey::policy::registry::Applied;
use latchkey::policy::trust::{self, Publishers, SignatureError};
use latchkey::policy::{LoadError, ModuleHash, PolicyRegistry, Refusal, TenantPolicy};
use latchkey::tenant::TenantId;
use latchkey_tests::{allow_facts, guest, module_bytes, sandbox};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    registry: PolicyRegistry,
    tenant: TenantId,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    std::fs::write(path.join("default.wasm"), module_bytes("policies/default")).unwrap();
    std::fs::write(
        path.join("northwind.wasm"),
        module_bytes("policies/northwind"),
    )
    .unwrap();
    std::fs::write(path.join("fs.wasm"), guest("fs-import")).unwrap();
    std::fs::write(path.join("garbage.wasm"), b"not a module").unwrap();
    let handle = Dir::open_ambient_dir(&path, ambient_authority()).unwrap();
    Fixture {
        _dir: dir,
        path,
        registry: PolicyRegistry::new(Arc::new(sandbox()), handle),
        tenant: TENANT.parse().unwrap(),
    }
}

impl Fixture {
    fn pin(&self, file: &str, sha256: ModuleHash, publishers: Publishers) -> TenantPolicy {
        TenantPolicy {
            tenant: self.tenant.clone(),
            module: file.into(),
            sha256,
            publishers,
            signature: format!("{file}.sig").into(),
        }
    }

    fn hash(&self, file: &str) -> ModuleHash {
        ModuleHash::of(&std::fs::read(self.path.join(file)).unwrap())
    }

    fn active(&self) -> Option<ModuleHash> {
        self.registry.active(&self.tenant).map(|m| m.hash())
    }
}

#[test]
fn a_pinned_module_becomes_active_and_decides() {
    let f = fixture();
    assert!(
        f.registry.decide(&f.tenant, &allow_facts()).is_none(),
        "no module, no decision"
    );
    let hash = f.hash("default.wasm");
    let applied = f
        .registry
        .apply(&f.pin("default.wasm", hash, Publishers::default()))
        .unwrap();
    assert_eq!(
        applied,
        Applied {
            module: hash,
            signed_by: None
        }
    );
    let evaluation = f.registry.decide(&f.tenant, &allow_facts()).unwrap();
    assert_eq!(evaluation.module, hash);
    assert!(evaluation.decision.is_allow());
}

#[test]
fn a_hash_mismatch_is_refused_and_the_previous_module_stays() {
    let f = fixture();
    let good = f.hash("default.wasm");
    f.registry
        .apply(&f.pin("default.wasm", good, Publishers::default()))
        .unwrap();
    // The configuration pins the default module, but the file is Northwind's.
    let refusal = f
        .registry
        .apply(&f.pin("northwind.wasm", good, Publishers::default()))
        .unwrap_err();
    assert_eq!(
        refusal,
        Refusal::HashMismatch {
            expected: good,
            actual: f.hash("northwind.wasm")
        }
    );
    assert_eq!(f.active(), Some(good));
}

#[test]
fn forbidden_imports_and_invalid_components_are_refused_and_the_previous_module_stays() {
    let f = fixture();
    let good = f.hash("default.wasm");
    f.registry
        .apply(&f.pin("default.wasm", good, Publishers::default()))
        .unwrap();
    let fs = f
        .registry
        .apply(&f.pin("fs.wasm", f.hash("fs.wasm"), Publishers::default()))
        .unwrap_err();
    assert!(
        matches!(fs, Refusal::Load(LoadError::ForbiddenImports(_))),
        "{fs}"
    );
    assert!(fs.to_string().contains("wasi:filesystem/"), "{fs}");
    let garbage = f
        .registry
        .apply(&f.pin(
            "garbage.wasm",
            f.hash("garbage.wasm"),
            Publishers::default(),
        ))
        .unwrap_err();
    assert!(
        matches!(garbage, Refusal::Load(LoadError::InvalidComponent(_))),
        "{garbage}"
    );
    assert_eq!(f.active(), Some(good));
}

#[test]
fn a_required_signature_must_be_present_and_by_a_trusted_key() {
    let f = fixture();
    let publisher = keys::generate();
    let stranger = keys::generate();
    let trusted = Publishers::new(vec![publisher.verifying_key()]);
    let hash = f.hash("default.wasm");

    let missing = f
        .registry
        .apply(&f.pin("default.wasm", hash, trusted.clone()))
        .unwrap_err();
    assert!(
        matches!(missing, Refusal::MissingSignature { .. }),
        "{missing}"
    );

    std::fs::write(
        f.path.join("default.wasm.sig"),
        trust::sign(&stranger, &hash),
    )
    .unwrap();
    let untrusted = f
        .registry
        .apply(&f.pin("default.wasm", hash, trusted.clone()))
        .unwrap_err();
    assert!(
        matches!(
            untrusted,
            Refusal::Signature(SignatureError::NotTrusted { .. })
        ),
        "{untrusted}"
    );
    std::fs::write(f.path.join("default.wasm.sig"), "garbage").unwrap();
    let malformed = f
        .registry
        .apply(&f.pin("default.wasm", hash, trusted.clone()))
        .unwrap_err();
    assert_eq!(malformed, Refusal::Signature(SignatureError::Malformed));
    assert_eq!(f.active(), None, "nothing was ever accepted");

    std::fs::write(
        f.path.join("default.wasm.sig"),
        trust::sign(&publisher, &hash),
    )
    .unwrap();
    let applied = f
        .registry
        .apply(&f.pin("default.wasm", hash, trusted))
        .unwrap();
    assert_eq!(
        applied.signed_by,
        Some(keys::KeyId::of(&publisher.verifying_key()))
    );
    assert_eq!(f.active(), Some(hash));
}

#[test]
fn a_signature_for_another_module_does_not_carry_over() {
    let f = fixture();
    let publisher = keys::generate();
    let trusted = Publishers::new(vec![publisher.verifying_key()]);
    let default = f.hash("default.wasm");
    std::fs::write(
        f.path.join("default.wasm.sig"),
        trust::sign(&publisher, &default),
    )
    .unwrap();
    f.registry
        .apply(&f.pin("default.wasm", default, trusted.clone()))
        .unwrap();
    // Swap in another module under the same signature file, and re-pin it.
    let northwind = f.hash("northwind.wasm");
    std::fs::copy(
        f.path.join("default.wasm.sig"),
        f.path.join("northwind.wasm.sig"),
    )
    .unwrap();
    let refusal = f
        .registry
        .apply(&f.pin("northwind.wasm", northwind, trusted))
        .unwrap_err();
    assert!(matches!(refusal, Refusal::Signature(_)), "{refusal}");
    assert_eq!(f.active(), Some(default));
}

#[test]
fn modules_outside_the_modules_directory_cannot_be_reached() {
    let f = fixture();
    let outside = f.path.parent().unwrap().join("outside.wasm");
    std::fs::write(&outside, module_bytes("policies/default")).unwrap();
    let hash = ModuleHash::of(&std::fs::read(&outside).unwrap());
    for path in ["../outside.wasm", outside.to_str().unwrap()] {
        let refusal = f
            .registry
            .apply(&f.pin(path, hash, Publishers::default()))
            .unwrap_err();
        assert!(matches!(refusal, Refusal::Read { .. }), "{path}: {refusal}");
    }
    std::fs::remove_file(outside).unwrap();
}

#[test]
fn configuration_with_publisher_keys_builds_a_tenant_policy() {
    let f = fixture();
    let publisher = keys::generate();
    std::fs::write(
        f.path.join("msp.pub.pem"),
        keys::public_to_pem(&publisher.verifying_key()).unwrap(),
    )
    .unwrap();
    let hash = f.hash("northwind.wasm");
    std::fs::write(
        f.path.join("northwind.wasm.sig"),
        trust::sign(&publisher, &hash),
    )
    .unwrap();
    let text = format!(
        "[policy]\nmodules_dir = \"{}\"\n\n[tenants.{TENANT}]\nname = \"Northwind\"\n\
         module = \"northwind.wasm\"\nsha256 = \"{hash}\"\npublisher_keys = [\"msp.pub.pem\"]\n",
        f.path.display()
    );
    let config = Config::from_toml(&text, Path::new("/")).unwrap();
    let tenant_config = &config.tenants[&f.tenant];
    let policy =
        TenantPolicy::from_config(f.tenant.clone(), tenant_config, f.registry.modules_dir())
            .unwrap();
    let applied = f.registry.apply(&policy).unwrap();
    assert_eq!(
        applied.signed_by,
        Some(keys::KeyId::of(&publisher.verifying_key()))
    );
}
