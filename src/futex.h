/* The futex core: every wait of the library on shared memory goes through
 * here. Words live in shared memory (the arena), so the process-shared
 * (non-private) futex operations are used. */
#ifndef MPROC_FUTEX_H
#define MPROC_FUTEX_H

#include "internal.h"

/* Sleeps while *word == expected, until woken or the deadline passes.
 * Returns 0 when woken, when the value differed, or on a signal (the caller
 * re-checks its condition either way), MP_ETIMEDOUT at the deadline. */
int mp__futex_wait(_Atomic uint32_t *word, uint32_t expected,
                   const mp__deadline_t *deadline);

/* Wakes up to n waiters of word (INT32_MAX: all). Returns how many. */
int mp__futex_wake(_Atomic uint32_t *word, int n);

#endif
