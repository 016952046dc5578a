//! Emulator tests (being written).
