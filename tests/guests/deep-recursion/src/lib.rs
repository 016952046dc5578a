//! Hostile policy: `evaluate` recurses without bound.
//!
//! The host must trap on stack overflow and turn the trap into a deny.
//!
//! Each frame uses only the wasm call stack, not the shadow stack in linear
//! memory, so that what runs out is the engine's stack limit (a stack-overflow
//! trap) rather than the 1 MiB shadow stack (an out-of-bounds access). That is
//! why `black_box` is used once, on the limit, and not in every frame: on wasm
//! it spills its argument to the shadow stack. The optimiser still cannot
//! remove the recursion: the limit is opaque (it is `u64::MAX`, 2^64 frames
//! away), the function is never inlined, and the result of the inner call is
//! mixed non-associatively with the frame's own value after it returns, so it
//! is neither a tail call nor an accumulator the optimiser can turn into a loop.
#![no_std]

use core::hint::black_box;

use latchkey_policy::prelude::*;

/// Recurses forever.
pub struct DeepRecursion;

impl Policy for DeepRecursion {
    fn evaluate(_facts: &Facts) -> Decision {
        let depth = dive(0, black_box(u64::MAX));
        Decision::deny(format!("returned from recursion: {depth}"))
    }
}

/// One more frame, until `depth` reaches `limit`.
#[inline(never)]
fn dive(depth: u64, limit: u64) -> u64 {
    if depth == limit {
        return depth;
    }
    let below = dive(depth.wrapping_add(1), limit);
    below.rotate_left(7) ^ depth.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

latchkey_policy::export_policy!(DeepRecursion);
