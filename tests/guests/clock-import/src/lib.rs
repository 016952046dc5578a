//! Hostile policy: reads the system clock.
//!
//! Uses std and raw wit-bindgen instead of the SDK, so the component imports
//! `wasi:clocks/...` (and the rest of what std on wasm32-wasip2 needs). A
//! policy must take the time from `facts`, so that decisions can be replayed;
//! the host must refuse to load it and name the import.

use std::time::{SystemTime, UNIX_EPOCH};

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "policy",
    });
}

use bindings::latchkey::policy::types::{Decision, Facts};

struct ClockImport;

impl bindings::Guest for ClockImport {
    fn evaluate(_facts: Facts) -> Decision {
        let reason = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => format!("it is {} seconds past the epoch", since.as_secs()),
            Err(e) => format!("the clock is before the epoch: {e}"),
        };
        Decision::Deny(reason)
    }
}

bindings::export!(ClockImport with_types_in bindings);
