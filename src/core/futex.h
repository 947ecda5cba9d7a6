/* The futex core: every wait of the library on shared memory goes through
 * here. Words live in shared memory (the arena), so the process-shared
 * (non-private) futex operations are used.
 *
 * Plain waits and wakes on 32-bit words (one word, or several at once with
 * futex_waitv), the library's one spin-wait, ThreadSanitizer annotations.
 * Owner identity, built on top of this, is in owner.h. */
#ifndef MPROC_FUTEX_H
#define MPROC_FUTEX_H

#include <limits.h>

#include "core/internal.h"

/* ---- Waiting on words ---------------------------------------------------- */

/* Sleeps while *word == expected, until woken or the deadline passes.
 * Returns 0 when woken, when the value differed, or on a signal (the caller
 * re-checks its condition either way), MP_ETIMEDOUT at the deadline, and,
 * when the deadline is interruptible, MP_EINTR once mp_interrupt() was
 * called (also before it slept: the caller returns it). The same for every
 * wait below. */
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
 * up to MP__FUTEX_WATCH_MAX words, and the interrupt word): returns as
 * mp__futex_wait. On kernels older than 5.16 (or where a sandbox refuses
 * futex_waitv with EPERM) it waits on the first word only, re-checking the
 * others every few milliseconds, and keeps the deadline. An interruptible
 * single-word wait is a futex_waitv too. */
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

/* Spins for about ns nanoseconds (not adapted) while *word == value; true
 * as soon as it changed. For waits whose other side is known to be busy
 * on our behalf (a pool worker finishing a short task). */
bool mp__futex_spin_for(_Atomic uint32_t *word, uint32_t value, uint64_t ns);

/* The pause between two reads of a spin: lets the sibling hyperthread run
 * (x86) or hints the core (aarch64). */
static inline void mp__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  atomic_signal_fence(memory_order_seq_cst);
#endif
}

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

#endif
