//! Stateful policy: counts how often `evaluate` ran in this instance and says
//! so in its reason. With a fresh instance per decision it always says 1; any
//! other number means state leaked from one decision to the next.
#![no_std]

use core::sync::atomic::{AtomicU32, Ordering};

use latchkey_policy::prelude::*;

static CALLS: AtomicU32 = AtomicU32::new(0);

/// Counts calls.
pub struct Counter;

impl Policy for Counter {
    fn evaluate(_facts: &Facts) -> Decision {
        let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        Decision::deny(format!("call {n}"))
    }
}

latchkey_policy::export_policy!(Counter);
