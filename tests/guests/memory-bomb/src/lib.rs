//! Hostile policy: `evaluate` allocates memory and writes to it until it dies.
//!
//! Every chunk is filled (so the pages are really touched, not just reserved)
//! and kept, and both go through `black_box`, so nothing can be optimised away.
//! The host must cap linear memory; growing past the cap makes the allocator
//! fail, which traps. Wasmtime charges `memory.fill` about one unit of fuel per
//! byte, so with the host's defaults (8 MiB, 10 million units) the memory cap is
//! hit first, at about 6.3 million units; a much larger memory cap would make
//! this a fuel test instead.
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
