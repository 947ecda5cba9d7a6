/* Condition.
 *
 * The waiters sleep on a sequence word with the futex itself as the queue:
 *   wait:   (lock held) read seq, release the lock, sleep while seq is
 *           unchanged, take the lock back.
 *   notify: (lock held) FUTEX_WAKE n sleepers. If fewer than n were
 *           asleep, bump seq and wake the rest of n: the bump reaches the
 *           waiters that have released the lock but are not yet asleep
 *           (their futex wait then fails at once), the second wake those
 *           that fell asleep between the first wake and the bump.
 * The kernel counts only the threads actually queued on the word, and a
 * process that has died is no longer queued, so a dead waiter never takes
 * a notify meant for a live one (in Python's multiprocessing it does, and
 * notify then waits forever for the dead waiter to acknowledge). A waiter
 * that had just released the lock when the notify came may return along
 * with the n woken ones: a spurious wake-up, as POSIX allows. */
#include <assert.h>

#include "sync/lock.h"
#include "testing.h"

#define CONDITION_MAGIC 0x434f4e44u /* "COND" */

struct mp_condition {
  uint32_t magic;
  uint32_t generation;
  /* Waiters between reading seq and taking the lock back; with none,
   * notify skips the system call. A waiter that dies stays counted, which
   * only costs notify that system call. Changed under the lock. */
  _Atomic uint32_t sleepers;
  _Atomic uint32_t seq;
  /* The lock: `own` (an RLock, Python's default) when `lock` is NULL, else
   * the handle of the caller's Lock or RLock (of kind lock_magic), opened
   * at every use, so that a condition whose lock was freed says MP_EINVAL.
   * All live in the arena, at the same address in every process. */
  void *lock;
  uint32_t lock_magic;
  uint32_t reserved;
  mp__mutex_t own;
};
MP__OBJECT_LAYOUT(mp_condition_t);

static mp_condition_t *condition_new(void *lock, uint32_t lock_magic) {
  mp_condition_t *c = mp__sync_alloc(sizeof *c);
  if (!c)
    return NULL;
  atomic_init(&c->sleepers, 0);
  atomic_init(&c->seq, 0);
  mp__mutex_init(&c->own, MP__RLOCK_MAGIC);
  c->lock = lock;
  c->lock_magic = lock_magic;
  return mp__object_publish(c, CONDITION_MAGIC);
}

mp_condition_t *mp_condition_new(mp_rlock_t *lock) {
  if (lock && !mp__object_open(lock, MP__RLOCK_MAGIC)) {
    errno = EINVAL;
    return NULL;
  }
  return condition_new(lock, MP__RLOCK_MAGIC);
}

mp_condition_t *mp_condition_new_with_lock(mp_lock_t *lock) {
  if (!mp__object_open(lock, MP__LOCK_MAGIC)) {
    errno = EINVAL;
    return NULL;
  }
  return condition_new(lock, MP__LOCK_MAGIC);
}

/* The lock of c, or NULL when the caller's lock was freed. */
static mp__mutex_t *lock_of(mp_condition_t *c) {
  return c->lock ? mp__object_open(c->lock, c->lock_magic) : &c->own;
}

int mp_condition_acquire(mp_condition_t *c, double timeout) {
  mp__mutex_t *lock;
  if (!(c = mp__object_open(c, CONDITION_MAGIC)) || !(lock = lock_of(c)))
    return MP_EINVAL;
  return mp__mutex_acquire(lock, timeout);
}

int mp_condition_release(mp_condition_t *c) {
  mp__mutex_t *lock;
  if (!(c = mp__object_open(c, CONDITION_MAGIC)) || !(lock = lock_of(c)))
    return MP_EINVAL;
  return mp__mutex_release(lock);
}

/* Sleeps until notified or the deadline: 1 notified, 0 signal (sleep
 * again), MP_ETIMEDOUT, or MP_EINVAL when c (of identity id) was freed
 * meanwhile. */
static int sleep_once(mp_condition_t *c, uint64_t id, uint32_t seq,
                      const mp__deadline_t *deadline) {
  int rc = mp__futex_wait_woken(&c->seq, seq, deadline);
  if (mp__object_id(c) != id)
    return MP_EINVAL;
  if (rc == 1 || atomic_load(&c->seq) != seq)
    return 1;
  return rc;
}

static int wait_until(mp_condition_t *c, mp__mutex_t *lock,
                      const mp__deadline_t *deadline) {
  if (!mp__mutex_is_mine(lock))
    return MP_ENOTOWNER;
  uint64_t id = mp__object_id(c);
  uint32_t seq = atomic_load(&c->seq);
  atomic_fetch_add(&c->sleepers, 1);
  uint32_t depth = mp__mutex_release_all(lock);
  int rc;
  do
    rc = sleep_once(c, id, seq, deadline);
  while (rc == 0);
  /* Freed while asleep (see mp_condition_free): its memory is no longer
   * the condition's, so nothing of it is touched, and its lock is not
   * taken back (the condition's own RLock went with it). */
  if (rc == MP_EINVAL)
    return rc;
  int taken = mp__mutex_restore(lock, depth);
  atomic_fetch_sub(&c->sleepers, 1);
  if (taken < 0)
    return taken; /* MP_EOWNERDEAD: held, but its holder died */
  return rc == 1 ? 0 : rc;
}

int mp_condition_wait(mp_condition_t *c, double timeout) {
  mp__mutex_t *lock;
  if (!(c = mp__object_open(c, CONDITION_MAGIC)) || !(lock = lock_of(c)))
    return MP_EINVAL;
  int rc_timeout = mp__timeout_check(timeout);
  if (rc_timeout < 0)
    return rc_timeout;
  mp__deadline_t deadline = mp__deadline_in(timeout);
  return wait_until(c, lock, &deadline);
}

int mp_condition_wait_for(mp_condition_t *c, mp_condition_pred_cb pred,
                          void *arg, double timeout) {
  mp__mutex_t *lock;
  if (!(c = mp__object_open(c, CONDITION_MAGIC)) || !(lock = lock_of(c)))
    return MP_EINVAL;
  int rc_timeout = mp__timeout_check(timeout);
  if (rc_timeout < 0)
    return rc_timeout;
  if (!mp__mutex_is_mine(lock))
    return MP_ENOTOWNER;
  mp__deadline_t deadline = mp__deadline_in(timeout);
  while (!pred(arg)) {
    if (mp__deadline_expired(&deadline))
      return MP_ETIMEDOUT;
    int rc = wait_until(c, lock, &deadline);
    if (rc < 0 && rc != MP_ETIMEDOUT)
      return rc;
  }
  return 0;
}

bool mp__condition_has_sleepers(const void *handle) {
  mp_condition_t *c = mp__object_open(handle, CONDITION_MAGIC);
  return c && atomic_load(&c->sleepers) > 0;
}

/* notify for an opened c. */
static int notify(mp_condition_t *c, int n) {
  mp__mutex_t *lock = lock_of(c);
  if (!lock)
    return MP_EINVAL;
  if (!mp__mutex_is_mine(lock))
    return MP_ENOTOWNER;
  if (n <= 0 || atomic_load(&c->sleepers) == 0)
    return 0;
  int woken = mp__futex_wake(&c->seq, n);
  if (woken < n) {
    /* Reach the waiters not yet asleep; the ones that fell asleep between
     * the wake and the bump still expect the old seq: wake them too. */
    atomic_fetch_add(&c->seq, 1);
    mp__futex_wake(&c->seq, n - woken);
  }
  return 0;
}

int mp_condition_notify(mp_condition_t *c, int n) {
  if (!(c = mp__object_open(c, CONDITION_MAGIC)))
    return MP_EINVAL;
  return notify(c, n);
}

int mp_condition_notify_all(mp_condition_t *c) {
  if (!(c = mp__object_open(c, CONDITION_MAGIC)))
    return MP_EINVAL;
  return notify(c, INT_MAX);
}

void mp_condition_free(mp_condition_t *c) {
  if (!c)
    return;
  c = mp__object_retire(c, CONDITION_MAGIC, "condition");
  /* Sleepers wake, find the mark of the free and say MP_EINVAL. */
  atomic_fetch_add(&c->seq, 1);
  mp__futex_wake(&c->seq, INT_MAX);
  mp__shm_free(c);
}
