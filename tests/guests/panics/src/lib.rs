//! Hostile policy: `evaluate` panics.
//!
//! It indexes past the end of a vector the optimiser cannot see into. The SDK's
//! panic handler traps, and the host must turn the trap into a deny.
#![no_std]

use core::hint::black_box;

use latchkey_policy::prelude::*;

/// Panics on every request.
pub struct Panics;

impl Policy for Panics {
    fn evaluate(facts: &Facts) -> Decision {
        let data: Vec<u8> = black_box(vec![1, 2, 3]);
        let index = black_box(facts.requested_actions.len() + 10);
        let value = data[index];
        Decision::deny(format!("read {value} out of bounds"))
    }
}

latchkey_policy::export_policy!(Panics);
