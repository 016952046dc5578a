//! Hostile policy: `evaluate` allocates memory and writes to it until it dies.
//!
//! Every chunk is filled (so the pages are really touched, not just reserved)
//! and kept, and both go through `black_box`, so nothing can be optimised away.
//! The host must cap linear memory; growing past the cap makes the allocator
//! fail, which traps.
#![no_std]

use core::hint::black_box;

use latchkey_policy::prelude::*;

/// Size of each allocation: 1 MiB.
const CHUNK: usize = 1 << 20;

/// Hoards memory forever.
pub struct MemoryBomb;

impl Policy for MemoryBomb {
    fn evaluate(_facts: &Facts) -> Decision {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        let mut fill: u8 = 0xA5;
        loop {
            let mut chunk: Vec<u8> = Vec::with_capacity(black_box(CHUNK));
            chunk.resize(black_box(CHUNK), black_box(fill));
            hoard.push(black_box(chunk));
            black_box(&mut hoard);
            fill = fill.wrapping_add(1);
        }
    }
}

latchkey_policy::export_policy!(MemoryBomb);
