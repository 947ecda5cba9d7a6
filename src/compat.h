/* What older C libraries and kernel headers lack, defined here once
 * (Debian 11: glibc 2.31 and kernel headers 5.10; RHEL 8: glibc 2.28;
 * musl 1.2). The system call numbers above 423 are the same on every
 * architecture (one table since Linux 5.1). A leaf: it includes nothing of
 * src/, and any layer, and the tests through testing.h, may include it. */
#ifndef MPROC_COMPAT_H
#define MPROC_COMPAT_H

#include <sys/mman.h>
#include <sys/syscall.h>

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424 /* Linux 5.1 */
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* Linux 5.3 */
#endif
#ifndef SYS_close_range
#define SYS_close_range 436 /* Linux 5.9 */
#endif
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449 /* Linux 5.16 */
#endif

/* mmap's "at this address or not at all" (Linux 4.17; glibc 2.28 names
 * it). An older kernel takes it as a hint, which arena.c checks. */
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* waitid's idtype for a pidfd (Linux 5.4); glibc < 2.36 has no name for
 * it, and where it has one it may be an enum constant, so ours differs. */
#define MP__P_PIDFD 3

/* Whether a refused system call means "this kernel or sandbox does not
 * offer it" (take the fallback): ENOSYS from an older kernel, EPERM from a
 * container's seccomp profile, EINVAL for a flag or idtype the kernel does
 * not know yet. */
#define MP__UNSUPPORTED(err)                                                   \
  ((err) == ENOSYS || (err) == EPERM || (err) == EINVAL)

#endif
