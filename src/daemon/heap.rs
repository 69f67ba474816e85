//! Gives the kernel back the memory the allocator holds free.
//!
//! glibc's malloc keeps freed chunks in its per-thread arenas and returns
//! only the top of each heap. Signaling frees in bursts (a round of peers
//! leaves, a room empties), and the freed chunks sit between live ones, so
//! RSS kept creeping up under a steady load: a 30-minute soak ended at 54 MB
//! with 7 MB of it live (heaptrack), and one `malloc_trim` at the end gave
//! 16 MB back (docs/benchmarks.md, "Soak"). `malloc_trim` also releases the
//! free pages inside each arena, not only at its top.

/// Returns the allocator's free pages to the kernel (its own time is not
/// measured yet: the relay ladder with it is still to be run). Elsewhere
/// than glibc, nothing.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it walks glibc's own free lists
    // under each arena's lock, so it is safe beside allocating threads.
    unsafe {
        libc::malloc_trim(0);
    }
}
