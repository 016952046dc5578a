//! `latchkey policy check --config`: every tenant's pinned module, checked as
//! the service loads it.

use sha2::{Digest, Sha256};

use crate::{assert_usage_error, default_module, latchkey_in};

const CONTOSO: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const FABRIKAM: &str = "0d4e1b8a-5c3f-4e2d-9a7b-6c5d4e3f2a1b";

#[test]
fn check_reports_each_tenant_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("modules")).unwrap();
    std::fs::copy(default_module(), d.join("modules/default.wasm")).unwrap();
    let hash = hex::encode(Sha256::digest(std::fs::read(default_module()).unwrap()));
    assert_eq!(
        latchkey_in(&d.join("modules"), &["keygen", "--out", "msp"]).code,
        0
    );
    let sign = latchkey_in(
        &d.join("modules"),
        &["policy", "sign", "--key", "msp.pem", "default.wasm"],
    );
    assert_eq!(sign.code, 0, "{}", sign.stderr);

    let good = format!(
        "[policy]\nmodules_dir = \"modules\"\ncache_dir = \"cache\"\n\n\
         [tenants.{CONTOSO}]\nname = \"Contoso\"\nmodule = \"default.wasm\"\nsha256 = \"{hash}\"\n\
         publisher_keys = [\"msp.pub.pem\"]\n"
    );
    std::fs::write(d.join("good.toml"), &good).unwrap();
    let run = latchkey_in(d, &["policy", "check", "--config", "good.toml"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(&format!(
        "ok       {CONTOSO} (Contoso): {hash}, signed by ed25519:"
    )));
    assert!(
        d.join(format!("cache/{hash}.cwasm")).is_file(),
        "precompiled into the cache"
    );

    let wrong_hash = "0".repeat(64);
    let bad = format!(
        "{good}\n[tenants.{FABRIKAM}]\nname = \"Fabrikam\"\nmodule = \"default.wasm\"\nsha256 = \"{wrong_hash}\"\n"
    );
    std::fs::write(d.join("bad.toml"), bad).unwrap();
    let run = latchkey_in(d, &["policy", "check", "--config", "bad.toml"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(&format!(
        "REFUSED  {FABRIKAM} (Fabrikam): module hash mismatch"
    )));
    assert!(run.stdout.trim_end().ends_with("1 accepted, 1 refused"));
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("typo.toml"), "[policy]\nmodules_dri = \"m\"\n").unwrap();
    assert_usage_error(
        &latchkey_in(d, &["policy", "check", "--config", "typo.toml"]),
        "line 2: unknown field `modules_dri`",
    );
    std::fs::write(d.join("none.toml"), "[policy]\nmodules_dir = \"m\"\n").unwrap();
    assert_usage_error(
        &latchkey_in(d, &["policy", "check", "--config", "none.toml"]),
        "no tenants",
    );
    std::fs::write(
        d.join("nodir.toml"),
        format!(
            "[policy]\nmodules_dir = \"missing\"\n[tenants.{CONTOSO}]\nmodule = \"m.wasm\"\nsha256 = \"{}\"\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    assert_usage_error(
        &latchkey_in(d, &["policy", "check", "--config", "nodir.toml"]),
        "modules directory",
    );
    assert_usage_error(
        &latchkey_in(d, &["policy", "check", "--config", "absent.toml"]),
        "absent.toml",
    );
}
