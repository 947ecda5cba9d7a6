/* The robust mutex under Lock, RLock and the lock of a Condition. */
#ifndef MPROC_LOCK_H
#define MPROC_LOCK_H

#include "core/owner.h"

#define MP__LOCK_MAGIC  0x4c4f434bu /* "LOCK" */
#define MP__RLOCK_MAGIC 0x524c434bu /* "RLCK" */

/* Bits of the mutex word. The owner is a token of the owner table (futex.h)
 * naming the thread that acquired it. */
#define MP__MUTEX_OWNER   MP__OWNER_MASK /* 0: unlocked */
#define MP__MUTEX_WAITERS 0x80000000u    /* someone may sleep on the word */

/* In shared memory. `word` is changed by atomic operations only; `count`
 * belongs to the owner named in `word`. */
typedef struct mp__mutex {
  uint32_t magic;      /* MP__LOCK_MAGIC or MP__RLOCK_MAGIC */
  uint32_t generation; /* of a Lock's or RLock's handle; 0 inside another */
  _Atomic uint32_t word;
  _Atomic uint32_t count; /* RLock: recursion depth; 0 when unlocked */
} mp__mutex_t;
MP__OBJECT_LAYOUT(mp__mutex_t);

struct mp_lock {
  mp__mutex_t mutex;
};

struct mp_rlock {
  mp__mutex_t mutex;
};

void mp__mutex_init(mp__mutex_t *m, uint32_t magic);
/* 0, MP_EOWNERDEAD (acquired from a dead holder), MP_ETIMEDOUT, or a
 * negative code; the first form for a caller's timeout (no clock read on
 * the fast path), the second for a deadline the caller carries. */
int mp__mutex_acquire(mp__mutex_t *m, double timeout);
int mp__mutex_acquire_until(mp__mutex_t *m, const mp__deadline_t *deadline);
int mp__mutex_release(mp__mutex_t *m);
bool mp__mutex_is_mine(const mp__mutex_t *m);

/* For Condition.wait: releases every recursion level of a mutex the caller
 * holds and returns how many there were; mp__mutex_restore takes it back
 * (blocking) with that depth, returning 0 or MP_EOWNERDEAD. */
uint32_t mp__mutex_release_all(mp__mutex_t *m);
int mp__mutex_restore(mp__mutex_t *m, uint32_t depth);

/* Wakes whoever sleeps on a mutex that was just retired (freed): they
 * return MP_EINVAL. */
void mp__mutex_wake_freed(mp__mutex_t *m);

#endif
