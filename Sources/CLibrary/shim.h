// C library calls the Glibc module does not export.
#if defined(__linux__)
#include <malloc.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

// Lowers the calling thread's CPU priority to `niceness` (on Linux, the
// nice value of PRIO_PROCESS with a thread id is that thread's own).
// 0 on success, -1 with errno otherwise.
static inline int clibrary_set_thread_niceness(int niceness) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), niceness);
}
#endif
