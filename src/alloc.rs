//! The process allocator: mimalloc, called the way its own `malloc` is fast,
//! with transparent huge pages off for the process ([`without_huge_pages`]).
//!
//! Events are built on the reader thread and encoded on a writer thread,
//! which sometimes frees them too; glibc malloc spent a fifth of the CPU on
//! that pattern, mimalloc does not.
//! The `mimalloc` crate's `GlobalAlloc` passes every request, even one with
//! a word's alignment, to `mi_malloc_aligned`. In mimalloc 3, once the
//! thread's free list for a size is empty that call takes the generic path
//! and, for a block size that is not a power of two, over-allocates and
//! marks the page as holding interior pointers, which also slows every free
//! on that page (3.5% of `tail`'s instructions, callgrind). Rust's own
//! `System` allocator has the same rule as here: plain `malloc` when the
//! alignment is one every block already has.
//!
//! Invariant: every pointer returned is aligned to `layout.align()`. mimalloc
//! block sizes are multiples of the word size and its pages start aligned, so
//! any block is word-aligned; larger alignments go to the aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block has (its smallest bin is one word).
const WORD: usize = size_of::<usize>();

/// mimalloc as the global allocator; see the module doc.
pub struct MiMalloc;

// SAFETY: each method forwards to the mimalloc call with the same contract,
// and only drops the alignment argument where every block meets it (above).
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            unsafe { mi::mi_malloc(layout.size()) as *mut u8 }
        } else {
            unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            unsafe { mi::mi_zalloc(layout.size()) as *mut u8 }
        } else {
            unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            unsafe { mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8 }
        } else {
            unsafe {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

/// Turns transparent huge pages off for this process, before its heap grows.
///
/// mimalloc returns memory it no longer uses to the kernel after a short
/// delay and takes fresh memory when the stream needs it again. With huge
/// pages each such fault zeroes 2 MiB at once: in `run` the kernel's
/// `clear_page` was 14% of the CPU (`perf`), and turning huge pages off cut
/// `run`'s CPU by 7% and its peak RSS from 88 to 61 MB (this call against
/// none, 7 alternating runs each). The prctl flag applies to every later page fault of the process,
/// in mappings made before it too, so calling it first in `main` covers the
/// heap.
pub fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and changes
    // only this process's page-fault policy; a failure (old kernel) leaves the
    // default, which is only slower.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_meets_its_alignment_and_realloc_keeps_bytes() {
        let a = MiMalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in (1..600).chain([1000, 4096, 70_000, 1 << 20]) {
                let layout = Layout::from_size_align(size, align).unwrap();
                // Many of one size, so the thread's free list runs dry and
                // mimalloc's slow paths are taken too.
                let ptrs: Vec<*mut u8> = (0..40)
                    .map(|i| {
                        let p = unsafe {
                            if i % 2 == 0 {
                                a.alloc(layout)
                            } else {
                                a.alloc_zeroed(layout)
                            }
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        if i % 2 == 1 {
                            let s = unsafe { std::slice::from_raw_parts(p, size) };
                            assert!(s.iter().all(|&b| b == 0), "zeroed size {size}");
                        }
                        unsafe { p.write_bytes(0xa5, size) };
                        p
                    })
                    .collect();
                for p in ptrs {
                    let grown = size * 3 + 5;
                    let q = unsafe { a.realloc(p, layout, grown) };
                    assert_eq!(q as usize % align, 0, "realloc size {size} align {align}");
                    let s = unsafe { std::slice::from_raw_parts(q, size) };
                    assert!(s.iter().all(|&b| b == 0xa5), "realloc lost bytes");
                    unsafe { a.dealloc(q, Layout::from_size_align(grown, align).unwrap()) };
                }
            }
        }
    }
}
