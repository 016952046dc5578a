//! What a `no_std` component needs from its language runtime: an allocator,
//! the canonical ABI's `cabi_realloc`, and a panic handler.
//!
//! A policy module runs in a fresh instance for every decision and has no
//! imports at all, so a panic simply traps; the host turns the trap into a
//! deny and records the cause.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's allocation entry point, through which the host copies
/// facts into the module. wit-bindgen provides one for other targets but
/// expects std to on `wasm32-wasip2`, and a policy has no std.
///
/// # Safety
///
/// Called only by the component model's lowering code with the arguments the
/// canonical ABI defines: `old_ptr`/`old_len` describe a previous allocation
/// of this function (or are 0), `align` is a power of two.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    if new_len == 0 {
        // A zero-sized allocation needs a well-aligned, non-null dangling pointer.
        return align as *mut u8;
    }
    let Ok(new_layout) = Layout::from_size_align(new_len, align) else {
        core::arch::wasm32::unreachable()
    };
    // SAFETY: the layouts are non-zero sized and valid (checked above), and
    // `old_ptr` was allocated by this allocator with `old_len`/`align`.
    let ptr = unsafe {
        if old_len == 0 {
            ALLOCATOR.alloc(new_layout)
        } else {
            let old_layout = Layout::from_size_align_unchecked(old_len, align);
            ALLOCATOR.realloc(old_ptr, old_layout, new_len)
        }
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable()
    }
    ptr
}
