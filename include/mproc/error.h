/* mproc: error codes and the definitions every area shares. */
#ifndef MPROC_ERROR_H
#define MPROC_ERROR_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MPROC_BUILDING)
#define MP_API __attribute__((visibility("default")))
#else
#define MP_API
#endif

/* Timeouts are double seconds: MP_FOREVER (any negative value) waits
 * forever, as Python's None; 0 never blocks. */
#define MP_FOREVER (-1.0)

/* The library's own error codes, written once. Every function that returns
 * int returns 0 on success or a negative code: one of these, or -errno for
 * anything else the system reports. X(name, value, message). */
#define MP_ERROR_MAP(X)                                                        \
  X(ESTATE, -1001, "operation not valid in the object's current state")        \
  X(ETIMEDOUT, -1002, "timed out")                                             \
  X(EEMPTY, -1003, "queue is empty")                                           \
  X(EFULL, -1004, "queue is full")                                             \
  X(EOVERFLOW, -1005, "released too many times, or buffer too small")          \
  X(ENOTOWNER, -1006, "not owned by the calling thread")                       \
  X(EBROKEN, -1007, "broken: the barrier or pool can no longer be used")       \
  X(ECLOSED, -1008, "closed: the peer or the object is closed")                \
  X(EAUTH, -1009, "authentication failed")                                     \
  X(EOWNERDEAD, -1010, "acquired, but the previous holder died holding it")    \
  X(EWORKER, -1011, "the worker process died while running the task")          \
  X(ETASK, -1012, "the task returned an error")                                \
  X(EKEY, -1013, "no such key")                                                \
  X(EINDEX, -1014, "index out of range")                                       \
  X(ELOST, -1015, "the host (MPI rank) running it was lost, retries spent")    \
  X(EINTR, -1016, "interrupted by mp_interrupt()")                             \
  X(ENOMAIN, -1017,                                                            \
    "main() does not call mp_main(): spawn and forkserver cannot start "       \
    "children of this program")                                                \
  X(ENOHMAC, -1018,                                                            \
    "HMAC unavailable: no libcrypto and no built-in for this digest")

/* The codes as constants (MP_ESTATE, MP_ETIMEDOUT, ...), from
 * MP_ERROR_MAP. */
enum mp_error {
#define MP_ERROR_ENUM_(name, value, message) MP_##name = (value),
  MP_ERROR_MAP(MP_ERROR_ENUM_)
#undef MP_ERROR_ENUM_
  /* Bad arguments are reported with the system's own code. */
  MP_EINVAL = -EINVAL,
};

/* A message for an error code: one of the MP_E* codes or -errno. Never
 * NULL; the string is static. */
MP_API const char *mp_strerror(int err);

/* The symbolic name of an error code ("MP_ETIMEDOUT", "ENOENT"). Never
 * NULL; the string is static. */
MP_API const char *mp_errname(int err);

/* ---- Interrupting waits (Python's KeyboardInterrupt) ----------------------
 *
 * mp_interrupt() makes every wait of the library in this process return
 * MP_EINTR promptly: the waits under way in any thread and those that
 * start later, until mp_interrupt_clear(). The waits: queue get and put,
 * lock, rlock, semaphore, condition, event and barrier waits, process
 * join, connection receive and poll, mp_wait, listener accept, the pool's
 * calls and the waits of its async results and iterators. A wait that
 * need not sleep (the lock is free, a message is there) still succeeds.
 * Nothing is lost: an interrupted get leaves its message in the queue, an
 * interrupted receive leaves the message for the next receive, whole.
 *
 * Async-signal-safe: call it from your own SIGINT handler (installed with
 * or without SA_RESTART: the waits do not depend on it). It leaves errno
 * as it was. The library installs no handler itself. A fork child starts
 * uninterrupted. */
MP_API void mp_interrupt(void);

/* Ends the interrupted state: waits block again. Async-signal-safe. */
MP_API void mp_interrupt_clear(void);
/* ---- The checking mode (beyond Python) ------------------------------------
 * C has no pickling to stop a child from receiving a pointer it cannot use,
 * nor multiprocessing's logger. With the environment variable MPROC_DEBUG
 * set to a level (read once, before main), or with mp_set_debug(level):
 *   MP_DEBUG_INFO (1): a warning when the arg bytes or the data block of a
 *     process started with spawn or forkserver hold an 8-byte aligned value
 *     that points into the parent's stack, heap or code (the child would
 *     crash on it: pass data, or arena pointers); a line on stderr for each
 *     process start and exit, each pool worker replaced, and each lock whose
 *     dead owner was taken over (Python's log_to_stderr(INFO));
 *   MP_DEBUG_TRACE (2): more detail (Python's DEBUG).
 * Lines look like "[mproc INFO/1234] ..." (the pid). Off (0, the default),
 * it costs one load at each place that could log. */
enum mp_debug_level {
  MP_DEBUG_OFF = 0,
  MP_DEBUG_INFO = 1,
  MP_DEBUG_TRACE = 2,
};

/* Sets the level (negative means off) for this process and the children
 * it starts afterwards; returns the previous level. Thread-safe. */
MP_API int mp_set_debug(int level);

/* Frees a buffer the library returned with malloc (recv_bytes, get, ...). */
MP_API void mp_free(void *buf);

#ifdef __cplusplus
}
#endif
#endif
