/* The futex core: every wait of the library on shared memory goes through
 * here. Words live in shared memory (the arena), so the process-shared
 * (non-private) futex operations are used.
 *
 * Two layers:
 *   - plain waits and wakes on 32-bit words (one word, or several at once
 *     with futex_waitv), a short spin, ThreadSanitizer annotations;
 *   - owner identity (owner.c): a token naming a thread of the process
 *     family, whose death the kernel reports through the robust futex
 *     list, and a wait that also ends when a given owner dies. */
#ifndef MPROC_FUTEX_H
#define MPROC_FUTEX_H

#include <limits.h>

#include "internal.h"

/* ---- Waiting on words ---------------------------------------------------- */

/* Sleeps while *word == expected, until woken or the deadline passes.
 * Returns 0 when woken, when the value differed, or on a signal (the caller
 * re-checks its condition either way), MP_ETIMEDOUT at the deadline. */
int mp__futex_wait(_Atomic uint32_t *word, uint32_t expected,
                   const mp__deadline_t *deadline);

/* As mp__futex_wait, but tells a wake-up by mp__futex_wake (returns 1)
 * from the other ways back (0: the value differed or a signal came). Only
 * for words that nobody wakes without a reason (the Condition). */
int mp__futex_wait_woken(_Atomic uint32_t *word, uint32_t expected,
                         const mp__deadline_t *deadline);

/* Wakes up to n waiters of word (INT_MAX: all). Returns how many. */
int mp__futex_wake(_Atomic uint32_t *word, int n);

/* One word of a multiple wait, and the value it must still hold. */
typedef struct mp__futex_watch {
  _Atomic uint32_t *word;
  uint32_t expected;
} mp__futex_watch_t;

#define MP__FUTEX_WATCH_MAX 4

/* Sleeps while every word still holds its expected value (futex_waitv, on
 * up to MP__FUTEX_WATCH_MAX words): returns as mp__futex_wait. On kernels
 * older than 5.16 it waits on the first word only, re-checking the others
 * every few milliseconds. */
int mp__futex_waitv(const mp__futex_watch_t *watch, unsigned n,
                    const mp__deadline_t *deadline);

/* Sets `bit` (a waiters bit) in *word, whose value the caller saw as *v,
 * before sleeping on it: true with *v updated to include it; false if the
 * word changed meanwhile (*v then holds the new value, to be re-checked). */
static inline bool mp__futex_flag(_Atomic uint32_t *word, uint32_t *v,
                                  uint32_t bit) {
  if (*v & bit)
    return true;
  if (!atomic_compare_exchange_weak(word, v, *v | bit))
    return false;
  *v |= bit;
  return true;
}

/* Spins a short, bounded while (at most about 3 us, no yield) while
 * *word == value; true once it changed. The bound adapts per thread: after
 * spins that saw nothing (on a loaded machine the other side is not
 * running, and spinning would only burn the time slice it needs) it drops
 * to a few hundred ns. */
bool mp__futex_spin(_Atomic uint32_t *word, uint32_t value);

/* ---- ThreadSanitizer ------------------------------------------------------
 * TSan does not know that a futex wait orders memory; the primitives say
 * where they acquire and release. */
#if defined(__SANITIZE_THREAD__)
#define MP__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MP__TSAN 1
#endif
#endif
#ifdef MP__TSAN
#include <sanitizer/tsan_interface.h>
#define mp__tsan_acquire(addr) __tsan_acquire((void *)(addr))
#define mp__tsan_release(addr) __tsan_release((void *)(addr))
#else
#define mp__tsan_acquire(addr) ((void)(addr))
#define mp__tsan_release(addr) ((void)(addr))
#endif

/* ---- Owner identity (owner.c) ----------------------------------------------
 * A token names one thread of the process family: an index into the owner
 * table in shared memory plus the generation of that slot, so a slot reused
 * by another thread never passes for its dead previous owner. Tokens fit in
 * bits 0..30; 0 is no owner. */
typedef uint32_t mp__owner_t;

#define MP__OWNER_NONE 0u
#define MP__OWNER_MASK 0x7fffffffu

/* The calling thread's token once it took one (MP__OWNER_NONE before, and
 * again in a forked child). Initial-exec TLS: one load on the fast paths. */
#define MP__TLS_MODEL __attribute__((tls_model("initial-exec")))
extern _Thread_local MP__TLS_MODEL mp__owner_t mp__self_token;

/* Takes a slot for the calling thread: see mp__owner_self. */
int mp__owner_take(mp__owner_t *token);

/* The calling thread's token, taken on first use (and again after fork).
 * 0, or -EAGAIN when the table has no free slot, -ENOMEM without shared
 * memory for it. */
static inline int mp__owner_self(mp__owner_t *token) {
  mp__owner_t mine = mp__self_token;
  if (__builtin_expect(mine == MP__OWNER_NONE, 0))
    return mp__owner_take(token);
  *token = mine;
  return 0;
}

/* Whether token names the calling thread (never takes a slot). */
static inline bool mp__owner_is_self(mp__owner_t token) {
  return token != MP__OWNER_NONE && token == mp__self_token;
}

/* Whether the thread named by token has ended (died, exited or exec'd).
 * Waiters that find it dead also wake the others waiting for it. */
bool mp__owner_dead(mp__owner_t token);

/* The process and thread ids of a live token's owner; false if it ended. */
bool mp__owner_ids(mp__owner_t token, pid_t *pid, pid_t *tid);

/* Sleeps until one of the watched words changes, the owner named by token
 * dies, or the deadline passes. Returns 0 (re-check), MP_ETIMEDOUT, or
 * MP_EOWNERDEAD when the owner is dead (also when it already was). With
 * MP__OWNER_NONE it is a plain mp__futex_waitv. At most
 * MP__FUTEX_WATCH_MAX - 1 words. */
int mp__owner_wait(mp__owner_t token, const mp__futex_watch_t *watch,
                   unsigned n, const mp__deadline_t *deadline);

/* Shared memory for a sync object (mp__shm_alloc), once the owner table
 * exists: constructors make it, so that it is created by the process that
 * makes the objects, before its children start. NULL with errno. */
void *mp__sync_alloc(size_t size);

#endif
