/* The futex core (see futex.h). */
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "futex.h"

int mp__futex_wait(_Atomic uint32_t *word, uint32_t expected,
                   const mp__deadline_t *deadline) {
  /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so a
   * retry after a signal needs no recomputation of the time left. */
  const struct timespec *at =
      deadline && !deadline->forever ? &deadline->at : NULL;
  long rc = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, at, NULL,
                    FUTEX_BITSET_MATCH_ANY);
  if (rc < 0 && errno == ETIMEDOUT)
    return MP_ETIMEDOUT;
  return 0; /* woken, EAGAIN (value changed) or EINTR: re-check */
}

int mp__futex_wake(_Atomic uint32_t *word, int n) {
  long rc = syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
  return rc < 0 ? 0 : (int)rc;
}
