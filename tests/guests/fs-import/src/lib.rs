//! Hostile policy: reads `/etc/passwd`.
//!
//! Uses std and raw wit-bindgen instead of the SDK, so the component imports
//! `wasi:filesystem/...` (and the rest of what std on wasm32-wasip2 needs).
//! The host must refuse to load it and name the import.

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "policy",
    });
}

use bindings::latchkey::policy::types::{Decision, Facts};

struct FsImport;

impl bindings::Guest for FsImport {
    fn evaluate(_facts: Facts) -> Decision {
        match std::fs::read_to_string("/etc/passwd") {
            Ok(passwd) => Decision::Deny(format!("/etc/passwd is {} bytes long", passwd.len())),
            Err(e) => Decision::Deny(format!("could not read /etc/passwd: {e}")),
        }
    }
}

bindings::export!(FsImport with_types_in bindings);
