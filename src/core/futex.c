/* The futex core (see futex.h). */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"
#include "core/futex.h"

/* The kernel's struct futex_waitv (Linux 5.16; older headers lack it). */
typedef struct waitv_entry {
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;
  uint32_t reserved;
} waitv_entry_t;
#define WAITV_U32 2 /* FUTEX2_SIZE_U32 (FUTEX_32) */

/* How many times the spin re-reads the word (a pause each: about 25 ns on
 * the machines we measured, up to 40 on recent Intel), and how long a
 * fallback wait (no futex_waitv) sleeps before it re-checks the other
 * words. */
#define SPIN_MIN         16
#define SPIN_MAX         128
#define FALLBACK_POLL_NS 5000000L

static long futex_wait_raw(_Atomic uint32_t *word, uint32_t expected,
                           const mp__deadline_t *deadline) {
  /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so a
   * retry after a signal needs no recomputation of the time left. */
  const struct timespec *at =
      deadline && !deadline->forever ? &deadline->at : NULL;
  return syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, at, NULL,
                 FUTEX_BITSET_MATCH_ANY);
}

int mp__futex_wake(_Atomic uint32_t *word, int n) {
  long rc = syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
  return rc < 0 ? 0 : (int)rc;
}

/* Without futex_waitv (Linux < 5.16, or a sandbox refusing it): sleep on the
 * first word for a few milliseconds at a time, so that a change of the others
 * (or an interrupt) is seen late but never missed. Returns as futex_waitv. */
static long waitv_fallback(const mp__futex_watch_t *watch, unsigned n,
                           const mp__deadline_t *deadline) {
  for (unsigned i = 1; i < n; i++)
    if (atomic_load(watch[i].word) != watch[i].expected) {
      errno = EAGAIN;
      return -1;
    }
  mp__deadline_t slice = mp__deadline_in(FALLBACK_POLL_NS / 1e9);
  bool last = deadline && !deadline->forever &&
              (deadline->at.tv_sec < slice.at.tv_sec ||
               (deadline->at.tv_sec == slice.at.tv_sec &&
                deadline->at.tv_nsec <= slice.at.tv_nsec));
  long rc = futex_wait_raw(watch[0].word, watch[0].expected,
                           last ? deadline : &slice);
  if (rc < 0 && errno == ETIMEDOUT && !last)
    errno = EAGAIN; /* the slice ended: re-check */
  return rc;
}

/* Sleeps on n words: the index of the word woken (>= 0), or -1 with errno
 * ETIMEDOUT, EAGAIN (a value differed) or EINTR. */
static long wait_words(const mp__futex_watch_t *watch, unsigned n,
                       const mp__deadline_t *deadline) {
  static _Atomic bool no_waitv;
  if (n == 1)
    return futex_wait_raw(watch[0].word, watch[0].expected, deadline);
  if (atomic_load_explicit(&no_waitv, memory_order_relaxed))
    return waitv_fallback(watch, n, deadline);
  waitv_entry_t v[MP__FUTEX_WATCH_MAX + 1] = {0};
  for (unsigned i = 0; i < n && i < MP__FUTEX_WATCH_MAX + 1; i++) {
    v[i].val = watch[i].expected;
    v[i].uaddr = (uintptr_t)watch[i].word;
    /* Shared words (no FUTEX_PRIVATE_FLAG), but the interrupt word: it is
     * this process's own, and a private key is cheaper to look up. */
    v[i].flags = watch[i].word == &mp__interrupt_word
                     ? WAITV_U32 | FUTEX_PRIVATE_FLAG
                     : WAITV_U32;
  }
  const struct timespec *at =
      deadline && !deadline->forever ? &deadline->at : NULL;
  long rc = syscall(SYS_futex_waitv, v, n, 0, at, CLOCK_MONOTONIC);
  if (rc < 0 && MP__UNSUPPORTED(errno)) {
    atomic_store(&no_waitv, true);
    return waitv_fallback(watch, n, deadline);
  }
  return rc;
}

/* Every futex wait: the words, and for an interruptible deadline the
 * interrupt word last (see interrupt.c), so that mp_interrupt() wakes it.
 * Returns 0 (re-check; *woken when a wake on the first word ended it),
 * MP_ETIMEDOUT or MP_EINTR. */
static int wait_any(const mp__futex_watch_t *watch, unsigned n,
                    const mp__deadline_t *deadline, bool *woken) {
  mp__futex_watch_t all[MP__FUTEX_WATCH_MAX + 1];
  *woken = false;
  if (deadline && deadline->interruptible) {
    if (mp__interrupted(deadline))
      return MP_EINTR;
    for (unsigned i = 0; i < n; i++)
      all[i] = watch[i];
    all[n++] = (mp__futex_watch_t){&mp__interrupt_word, 0};
    watch = all;
  }
  long rc = wait_words(watch, n, deadline);
  if (mp__interrupted(deadline))
    return MP_EINTR;
  if (rc < 0)
    return errno == ETIMEDOUT ? MP_ETIMEDOUT : 0; /* EAGAIN, EINTR */
  *woken = rc == 0;
  return 0;
}

int mp__futex_wait(_Atomic uint32_t *word, uint32_t expected,
                   const mp__deadline_t *deadline) {
  bool woken;
  return wait_any(&(mp__futex_watch_t){word, expected}, 1, deadline, &woken);
}

int mp__futex_wait_woken(_Atomic uint32_t *word, uint32_t expected,
                         const mp__deadline_t *deadline) {
  bool woken;
  int rc = wait_any(&(mp__futex_watch_t){word, expected}, 1, deadline, &woken);
  return rc == 0 && woken ? 1 : rc;
}

int mp__futex_waitv(const mp__futex_watch_t *watch, unsigned n,
                    const mp__deadline_t *deadline) {
  bool woken;
  return wait_any(watch, n, deadline, &woken);
}

/* The spin adapts per thread: halved (down to SPIN_MIN) after a spin that
 * saw nothing, since the other side was then most likely not running and
 * spinning only delayed our sleep; back to SPIN_MAX after one that saw the
 * change it waited for. */
static _Thread_local MP__TLS_MODEL unsigned spin_rounds = SPIN_MAX;

/* The one spin loop of the library: up to `rounds` reads of the word, a
 * pause between two. True as soon as the word left value. */
static inline bool spin(_Atomic uint32_t *word, uint32_t value,
                        unsigned rounds) {
  for (unsigned i = 0; i < rounds; i++) {
    if (atomic_load_explicit(word, memory_order_relaxed) != value)
      return true;
    mp__cpu_relax();
  }
  return false;
}

bool mp__futex_spin(_Atomic uint32_t *word, uint32_t value) {
  unsigned rounds = spin_rounds;
  if (spin(word, value, rounds)) {
    spin_rounds = SPIN_MAX;
    return true;
  }
  spin_rounds = rounds / 2 > SPIN_MIN ? rounds / 2 : SPIN_MIN;
  return atomic_load_explicit(word, memory_order_relaxed) != value;
}

bool mp__futex_spin_for(_Atomic uint32_t *word, uint32_t value, uint64_t ns) {
  uint64_t start = mp__now_ns();
  do {
    if (spin(word, value, 64))
      return true;
  } while (mp__now_ns() - start < ns);
  return false;
}
