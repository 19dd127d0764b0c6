import ChatWire
import Foundation

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

/// The process's own memory use.
public enum ProcessMemory {
    /// Resident set size in bytes (`/proc/self/statm`), or nil where there is none.
    public static func residentBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count >= 2, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
