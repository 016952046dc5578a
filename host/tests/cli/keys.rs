//! `latchkey keygen`, `policy sign` and `policy verify`.

use crate::{assert_usage_error, default_module, latchkey_in};

#[test]
fn keygen_sign_and_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("default.wasm");
    std::fs::copy(default_module(), &module).unwrap();
    let d = dir.path();

    let keygen = latchkey_in(d, &["keygen", "--out", "msp"]);
    assert_eq!(keygen.code, 0, "{}", keygen.stderr);
    assert!(keygen.stdout.starts_with("ed25519:"), "{}", keygen.stdout);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("msp.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is readable by others");
    }

    let sign = latchkey_in(d, &["policy", "sign", "--key", "msp.pem", "default.wasm"]);
    assert_eq!(sign.code, 0, "{}", sign.stderr);
    assert!(d.join("default.wasm.sig").is_file());

    let verify = latchkey_in(
        d,
        &["policy", "verify", "--pub", "msp.pub.pem", "default.wasm"],
    );
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    assert!(
        verify.stdout.starts_with("valid signature by ed25519:"),
        "{}",
        verify.stdout
    );

    // Another publisher's key does not verify it.
    assert_eq!(latchkey_in(d, &["keygen", "--out", "other"]).code, 0);
    let wrong = latchkey_in(
        d,
        &["policy", "verify", "--pub", "other.pub.pem", "default.wasm"],
    );
    assert_eq!(wrong.code, 1);
    assert!(wrong.stdout.starts_with("INVALID"), "{}", wrong.stdout);

    // A changed module does not verify either.
    let mut bytes = std::fs::read(&module).unwrap();
    bytes.push(0);
    std::fs::write(&module, bytes).unwrap();
    let tampered = latchkey_in(
        d,
        &["policy", "verify", "--pub", "msp.pub.pem", "default.wasm"],
    );
    assert_eq!(tampered.code, 1, "{}", tampered.stdout);
}

#[test]
fn keygen_never_overwrites_a_key() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(latchkey_in(dir.path(), &["keygen", "--out", "k"]).code, 0);
    let before = std::fs::read(dir.path().join("k.pem")).unwrap();
    let again = latchkey_in(dir.path(), &["keygen", "--out", "k"]);
    assert_usage_error(&again, "already exists");
    assert_eq!(std::fs::read(dir.path().join("k.pem")).unwrap(), before);
}

#[test]
fn bad_keys_and_signatures_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(default_module(), d.join("m.wasm")).unwrap();
    std::fs::write(d.join("junk.pem"), "-----BEGIN NONSENSE-----").unwrap();
    assert_usage_error(
        &latchkey_in(d, &["policy", "sign", "--key", "junk.pem", "m.wasm"]),
        "private key",
    );
    assert_usage_error(
        &latchkey_in(d, &["policy", "verify", "--pub", "junk.pem", "m.wasm"]),
        "public key",
    );
    assert_eq!(latchkey_in(d, &["keygen", "--out", "k"]).code, 0);
    // A public key where a private one belongs.
    assert_usage_error(
        &latchkey_in(d, &["policy", "sign", "--key", "k.pub.pem", "m.wasm"]),
        "private key",
    );
    // No signature file.
    assert_usage_error(
        &latchkey_in(d, &["policy", "verify", "--pub", "k.pub.pem", "m.wasm"]),
        "m.wasm.sig",
    );
    // A garbage signature is a "no", not a crash.
    std::fs::write(d.join("m.wasm.sig"), "@@@").unwrap();
    let garbage = latchkey_in(d, &["policy", "verify", "--pub", "k.pub.pem", "m.wasm"]);
    assert_eq!(garbage.code, 1);
}
