//! The guest's global allocator: bump allocation from a fixed arena in the
//! module's own (initial) memory first, the standard allocator after.
//!
//! Why: the gateway runs every request in a fresh instance. Rust's standard
//! allocator on `wasm32-unknown-unknown` (dlmalloc) takes its first chunk by
//! growing linear memory, so every call grew memory once, and the host then
//! had to shrink the reused slot back with `mprotect` before the next
//! instance: a TLB shootdown (an inter-processor interrupt to every core
//! running the gateway) per request. Measured on the reference machine it
//! was about 7 % of the gateway's CPU time for a trivial plugin. An
//! allocation that fits in the arena never grows memory.
//!
//! The arena is a zeroed static, so it is part of the module's initial
//! memory (`.bss`) and costs nothing to instantiate. Memory freed in the
//! arena is reclaimed only when it was the last allocation (stack-like
//! use, typical of building a response); an instance lives for one request,
//! so the rest is returned when the instance goes. Once the arena is full,
//! allocations go to the standard allocator, so a plugin's memory cap is
//! reached as before.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bump allocation from an arena of `N` bytes, then the system allocator.
pub struct BumpFirst<const N: usize> {
    arena: fn() -> *mut u8,
    /// Offset of the first free byte in the arena.
    next: AtomicUsize,
}

impl<const N: usize> BumpFirst<N> {
    /// `arena` returns the start of `N` writable bytes that live as long as
    /// the allocator.
    pub const fn new(arena: fn() -> *mut u8) -> Self {
        Self {
            arena,
            next: AtomicUsize::new(0),
        }
    }

    /// The offset of `ptr` in the arena, if it is in it.
    fn offset(&self, ptr: *mut u8) -> Option<usize> {
        let base = (self.arena)() as usize;
        let p = ptr as usize;
        (p >= base && p < base + N).then(|| p - base)
    }

    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let base = (self.arena)() as usize;
        let next = self.next.load(Ordering::Relaxed);
        let start = (base + next).checked_next_multiple_of(layout.align())? - base;
        let end = start.checked_add(layout.size())?;
        if end > N {
            return None;
        }
        self.next.store(end, Ordering::Relaxed);
        Some((base + start) as *mut u8)
    }
}

// SAFETY: each pointer handed out is either a disjoint, suitably aligned
// range of the arena (bumped past before it is returned; given back only
// when it is the last one handed out) or comes from `System`, and is
// returned to whichever it came from. Guests are single-threaded; the
// atomics keep the type `Sync` without a lock.
#[allow(unsafe_code)]
unsafe impl<const N: usize> GlobalAlloc for BumpFirst<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: same layout contract as ours.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.offset(ptr) {
            Some(offset) => {
                // Reclaim only the most recent allocation.
                let _ = self.next.compare_exchange(
                    offset + layout.size(),
                    offset,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            // SAFETY: `ptr` came from `System` with this layout.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(offset) = self.offset(ptr) else {
            // SAFETY: `ptr` came from `System` with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        // The most recent allocation grows or shrinks in place.
        if self.next.load(Ordering::Relaxed) == offset + layout.size()
            && let Some(end) = offset.checked_add(new_size)
            && end <= N
        {
            self.next.store(end, Ordering::Relaxed);
            return ptr;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: a valid, non-zero-size layout (`new_size` > 0 per the
        // `GlobalAlloc::realloc` contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both ranges are valid for the copied length and
            // distinct allocations.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(target_arch = "wasm32")]
mod global {
    use super::BumpFirst;

    /// 512 KiB: enough for the reference APIs' requests and answers.
    const ARENA_BYTES: usize = 512 * 1024;

    #[repr(C, align(16))]
    struct Arena([u8; ARENA_BYTES]);

    // Zeroed, so in `.bss`: part of initial memory, no data to copy.
    #[allow(unsafe_code)]
    static mut ARENA: Arena = Arena([0; ARENA_BYTES]);

    fn arena() -> *mut u8 {
        // A raw pointer, never a reference: the allocator owns the bytes.
        (&raw mut ARENA).cast()
    }

    #[global_allocator]
    static ALLOCATOR: BumpFirst<ARENA_BYTES> = BumpFirst::new(arena);
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    const N: usize = 256;
    #[repr(C, align(16))]
    struct Buf([u8; N]);
    thread_local! {
        static BUF: std::cell::UnsafeCell<Buf> = const { std::cell::UnsafeCell::new(Buf([0; N])) };
    }
    fn buf() -> *mut u8 {
        BUF.with(|b| b.get().cast())
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap_or(Layout::new::<u8>())
    }

    #[test]
    fn bumps_aligns_reclaims_the_last_and_falls_back() {
        let a = BumpFirst::<N>::new(buf);
        let base = buf() as usize;
        unsafe {
            let p1 = a.alloc(layout(3, 1));
            assert_eq!(p1 as usize, base);
            let p2 = a.alloc(layout(8, 8));
            assert_eq!(p2 as usize, base + 8, "aligned up");
            // Freeing the last one gives its bytes back; an earlier one does not.
            a.dealloc(p2, layout(8, 8));
            let p3 = a.alloc(layout(8, 8));
            assert_eq!(p3, p2);
            a.dealloc(p1, layout(3, 1));
            let p4 = a.alloc(layout(1, 1));
            assert_eq!(p4 as usize, base + 16);

            // Growing the last allocation happens in place, with its bytes.
            *p4 = 42;
            let p5 = a.realloc(p4, layout(1, 1), 100);
            assert_eq!(p5, p4);
            assert_eq!(*p5, 42);

            // Too big for what is left: the system allocator, bytes copied.
            let p6 = a.realloc(p3, layout(8, 8), 200);
            assert!(a.offset(p6).is_none());
            let p7 = a.alloc(layout(N, 1));
            assert!(a.offset(p7).is_none());
            a.dealloc(p6, layout(200, 8));
            a.dealloc(p7, layout(N, 1));
        }
    }
}
