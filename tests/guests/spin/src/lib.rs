//! Hostile policy: `evaluate` never returns.
//!
//! The host must stop it with its fuel or epoch limit and turn the trap into a
//! deny. The counter goes through `black_box` on every iteration, so the
//! optimiser can neither prove the loop empty nor remove it.
#![no_std]

use core::hint::black_box;

use latchkey_policy::prelude::*;

/// Spins forever.
pub struct Spin;

impl Policy for Spin {
    fn evaluate(_facts: &Facts) -> Decision {
        let mut counter: u64 = 0;
        loop {
            counter = black_box(counter.wrapping_add(1));
        }
    }
}

latchkey_policy::export_policy!(Spin);
