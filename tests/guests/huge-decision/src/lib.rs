//! Hostile policy: `evaluate` returns a deny whose reason is 3 MiB.
//!
//! The host must refuse (or truncate) an oversized decision rather than copy
//! it into logs, audit records or chat messages.
//!
//! The reason is built with `str::repeat`, which doubles its buffer with bulk
//! `memory.copy`s. Wasmtime charges bulk copies about one unit of fuel per byte,
//! so building it costs about 3.2 million units, well within the host's default
//! 10 million: the module reliably gets as far as returning the reason (a
//! byte-by-byte loop would cost several units per byte and could run out of
//! fuel first, testing the wrong limit). It also fits in the default 8 MiB of
//! memory with room to spare.
#![no_std]

use core::hint::black_box;

use latchkey_policy::prelude::*;

/// Length of the reason in bytes: 3 MiB.
const REASON_LEN: usize = 3 * 1024 * 1024;

/// Denies with an enormous reason.
pub struct HugeDecision;

impl Policy for HugeDecision {
    fn evaluate(_facts: &Facts) -> Decision {
        let pattern: &str = black_box("no. ");
        Decision::deny(pattern.repeat(REASON_LEN / pattern.len()))
    }
}

latchkey_policy::export_policy!(HugeDecision);
