//! What a `no_std` component needs from its language runtime: an allocator,
//! the canonical ABI's `cabi_realloc`, and a panic handler.
//!
//! A policy module runs in a fresh instance for every decision and has no
//! imports at all, so a panic simply traps; the host turns the trap into a
//! deny and records the cause.
//!
//! The allocator is a bump allocator: an instance lives for exactly one
//! decision, so memory is never worth reusing, and not having a general
//! allocator to initialise is most of what makes a fresh instance cheap
//! (measured: see the README's performance section).
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;

const PAGE: usize = 64 * 1024;

struct Bump {
    /// The next free byte; 0 until the first allocation.
    next: Cell<usize>,
    /// The end of the memory the module owns.
    end: Cell<usize>,
}

// SAFETY: a policy module is single-threaded (no wasm threads are enabled in
// the host), so the cells are never touched concurrently.
unsafe impl Sync for Bump {}

unsafe extern "C" {
    /// Where the linker placed the start of the heap.
    static __heap_base: u8;
}

impl Bump {
    fn grow_to(&self, needed_end: usize) -> bool {
        let have = self.end.get();
        if needed_end <= have {
            return true;
        }
        let pages = (needed_end - have).div_ceil(PAGE);
        if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
            return false;
        }
        self.end.set(have + pages * PAGE);
        true
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.next.get() == 0 {
            // SAFETY: only the address of the linker-provided symbol is taken.
            let base = unsafe { core::ptr::addr_of!(__heap_base) } as usize;
            self.next.set(base);
            self.end.set(core::arch::wasm32::memory_size(0) * PAGE);
        }
        let start = (self.next.get() + layout.align() - 1) & !(layout.align() - 1);
        let Some(end) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if !self.grow_to(end) {
            return core::ptr::null_mut();
        }
        self.next.set(end);
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Give back only the most recent allocation; the rest goes with the instance.
        if ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Grow the most recent allocation in place, the common case for a
        // string or vector being built.
        if ptr as usize + layout.size() == self.next.get() {
            let Some(end) = (ptr as usize).checked_add(new_size) else {
                return core::ptr::null_mut();
            };
            if !self.grow_to(end) {
                return core::ptr::null_mut();
            }
            self.next.set(end);
            return ptr;
        }
        // SAFETY: the caller guarantees `layout` describes `ptr`; the new
        // layout keeps its alignment, as GlobalAlloc::realloc requires.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
            new
        }
    }
}

#[global_allocator]
static ALLOCATOR: Bump = Bump {
    next: Cell::new(0),
    end: Cell::new(0),
};

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
