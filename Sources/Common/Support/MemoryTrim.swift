#if canImport(Glibc)
    import CLibrary
#endif

/// Gives memory the allocator holds but no longer uses back to the system.
public enum MemoryTrim {
    /// After many small blocks were freed (sessions forgotten, their replay
    /// windows emptied), glibc's allocator keeps the pages for reuse and the
    /// process's resident size never shrinks; `malloc_trim` returns the whole
    /// free pages (with madvise, also from the middle of the heap). Costs a
    /// walk of the free lists: call it now and then, not per operation.
    public static func releaseFreeMemory() {
        #if canImport(Glibc)
            _ = malloc_trim(0)
        #endif
    }
}
