/* Lock and RLock: one robust mutex (lock.h).
 *
 * The word holds the owner's token and a waiters bit:
 *   acquire: CAS 0 -> me. Otherwise spin briefly, then set WAITERS and
 *            sleep on both the mutex word and the owner's slot word
 *            (mp__owner_wait), so that either a release or the owner's
 *            death wakes us. An owner found dead is replaced by a CAS of
 *            its token by ours: the caller gets MP_EOWNERDEAD and holds it.
 *   release: exchange with 0; if WAITERS was set, wake every sleeper.
 *
 * Why wake all: a sleeper woken alone and killed before it took the lock
 * would leave the others asleep next to a free lock. Woken together, the
 * first takes it and the rest set WAITERS again and sleep; that costs extra
 * wake-ups only when several processes sleep on one lock at once. */
#include "sync/lock.h"
#include "sync/proxy.h"
#include "testing.h"

#include <assert.h>

#define LOCK_SPINS 4

static bool is_recursive(const mp__mutex_t *m) {
  return m->magic == MP__RLOCK_MAGIC;
}

static bool is_mutex(uint64_t id) {
  return (uint32_t)id == MP__LOCK_MAGIC || (uint32_t)id == MP__RLOCK_MAGIC;
}

void mp__mutex_init(mp__mutex_t *m, uint32_t magic) {
  m->magic = magic;
  atomic_init(&m->word, 0);
  atomic_init(&m->count, 0);
}

/* Takes the word for `me` from nobody or from a dead owner. Kept out of
 * line so that the fast path stays a few instructions. A contended
 * acquire first spins (a holder on another core usually lets go within
 * it), then checks the owner's life and the deadline, then sleeps. */
static __attribute__((noinline)) int lock_slow(mp__mutex_t *m, mp__owner_t me,
                                               const mp__deadline_t *deadline) {
  /* A few spins, each until the word changes: the lock may go to a third
   * thread between two of them. None when we may not wait. */
  int spins = mp__deadline_expired(deadline) ? 0 : LOCK_SPINS;
  /* The lock we wait for: freed (or its memory given to another object)
   * while we wait, we return MP_EINVAL (mp__mutex_wake_freed wakes us). */
  uint64_t id = mp__object_id(m);
  if (!is_mutex(id))
    return MP_EINVAL;
  for (;;) {
    if (mp__object_id(m) != id)
      return MP_EINVAL;
    uint32_t v = atomic_load(&m->word);
    mp__owner_t owner = v & MP__MUTEX_OWNER;
    if (owner == MP__OWNER_NONE) {
      if (atomic_compare_exchange_weak(&m->word, &v,
                                       me | (v & MP__MUTEX_WAITERS)))
        return 0;
      continue;
    }
    if (spins > 0) {
      spins--;
      if (mp__futex_spin(&m->word, v))
        continue;
      spins = 0; /* it did not move: the holder is busy, sleep */
    }
    if (mp__owner_dead(owner)) {
      /* Others may sleep on the word: keep WAITERS for our release. */
      if (atomic_compare_exchange_strong(&m->word, &v,
                                         me | MP__MUTEX_WAITERS)) {
        mp__debug_log(MP_DEBUG_INFO,
                      "took over %s %p from its dead owner (MP_EOWNERDEAD)",
                      m->magic == MP__RLOCK_MAGIC ? "RLock" : "Lock",
                      (void *)m);
        return MP_EOWNERDEAD;
      }
      continue;
    }
    if (mp__deadline_expired(deadline))
      return MP_ETIMEDOUT;
    if (!mp__futex_flag(&m->word, &v, MP__MUTEX_WAITERS))
      continue;
    /* Every way back (release, death, timeout, signal) is re-checked at
     * the top of the loop, but an interrupt. */
    mp__futex_watch_t watch = {&m->word, v};
    if (mp__owner_wait(owner, &watch, 1, deadline) == MP_EINTR)
      return MP_EINTR;
  }
}

/* The slow path of an acquire given a timeout: the deadline is computed
 * only here, so the fast path reads no clock (and waiting forever never
 * does). */
static __attribute__((noinline)) int
lock_slow_timeout(mp__mutex_t *m, mp__owner_t me, double timeout) {
  mp__deadline_t deadline = {.forever = true, .interruptible = true};
  if (timeout >= 0) /* NaN was refused before */
    deadline = mp__deadline_in(timeout);
  return lock_slow(m, me, &deadline);
}

/* The acquire of both kinds, until the deadline (NULL: the timeout);
 * inlined with `recursive` constant so that the Lock fast path is one load
 * of the thread's token and one CAS. */
static inline int mutex_acquire(mp__mutex_t *m, double timeout,
                                const mp__deadline_t *deadline,
                                bool recursive) {
  mp__owner_t me;
  int rc = deadline ? 0 : mp__timeout_check(timeout);
  if (rc == 0)
    rc = mp__owner_self(&me);
  if (rc < 0)
    return rc;
  if (recursive && (atomic_load_explicit(&m->word, memory_order_relaxed) &
                    MP__MUTEX_OWNER) == me) {
    uint32_t depth = atomic_load_explicit(&m->count, memory_order_relaxed);
    if (depth == UINT32_MAX)
      return -EAGAIN;
    atomic_store_explicit(&m->count, depth + 1, memory_order_relaxed);
    return 0;
  }
  uint32_t unlocked = 0;
  if (!atomic_compare_exchange_strong_explicit(&m->word, &unlocked, me,
                                               memory_order_acquire,
                                               memory_order_relaxed)) {
    rc = deadline ? lock_slow(m, me, deadline)
                  : lock_slow_timeout(m, me, timeout);
    if (rc != 0 && rc != MP_EOWNERDEAD)
      return rc;
  }
  if (recursive)
    atomic_store_explicit(&m->count, 1, memory_order_relaxed);
  mp__tsan_acquire(m);
  return rc;
}

/* Unlocks the word, whoever holds it. MP_EOVERFLOW if nobody did. */
static inline int unlock_word(mp__mutex_t *m) {
  mp__tsan_release(m);
  uint32_t old = atomic_exchange_explicit(&m->word, 0, memory_order_release);
  if (__builtin_expect(!(old & MP__MUTEX_OWNER), 0))
    return MP_EOVERFLOW;
  if (__builtin_expect(old & MP__MUTEX_WAITERS, 0))
    mp__futex_wake(&m->word, INT_MAX);
  return 0;
}

bool mp__mutex_is_mine(const mp__mutex_t *m) {
  mp__owner_t owner = atomic_load(&((mp__mutex_t *)m)->word) & MP__MUTEX_OWNER;
  return mp__owner_is_self(owner);
}

static inline int rlock_release(mp__mutex_t *m) {
  if (!mp__mutex_is_mine(m))
    return MP_ENOTOWNER;
  uint32_t depth = atomic_load_explicit(&m->count, memory_order_relaxed);
  if (depth > 1) {
    atomic_store_explicit(&m->count, depth - 1, memory_order_relaxed);
    return 0;
  }
  atomic_store_explicit(&m->count, 0, memory_order_relaxed);
  return unlock_word(m);
}

int mp__mutex_acquire(mp__mutex_t *m, double timeout) {
  assert(m->magic == MP__LOCK_MAGIC || m->magic == MP__RLOCK_MAGIC);
  return mutex_acquire(m, timeout, NULL, is_recursive(m));
}

int mp__mutex_acquire_until(mp__mutex_t *m, const mp__deadline_t *deadline) {
  assert(m->magic == MP__LOCK_MAGIC || m->magic == MP__RLOCK_MAGIC);
  return mutex_acquire(m, 0, deadline, is_recursive(m));
}

int mp__mutex_release(mp__mutex_t *m) {
  assert(m->magic == MP__LOCK_MAGIC || m->magic == MP__RLOCK_MAGIC);
  /* Python: any process may release a Lock, only the owner an RLock. */
  return is_recursive(m) ? rlock_release(m) : unlock_word(m);
}

uint32_t mp__mutex_release_all(mp__mutex_t *m) {
  uint32_t depth = 1;
  if (is_recursive(m)) {
    depth = atomic_load_explicit(&m->count, memory_order_relaxed);
    atomic_store_explicit(&m->count, 0, memory_order_relaxed);
  }
  unlock_word(m);
  return depth;
}

int mp__mutex_restore(mp__mutex_t *m, uint32_t depth) {
  /* Not interruptible: the caller must hold the lock again on return. */
  int rc = mp__mutex_acquire_until(m, MP__NO_DEADLINE);
  if ((rc == 0 || rc == MP_EOWNERDEAD) && is_recursive(m))
    atomic_store_explicit(&m->count, depth, memory_order_relaxed);
  return rc;
}

void mp__mutex_wake_freed(mp__mutex_t *m) {
  /* A sleeper waits while the word holds an owner; 0 differs from every
   * value it sleeps on, so one not yet asleep does not fall asleep. Woken,
   * it finds the mark of the free (lock_slow) before looking at the word. */
  atomic_store(&m->word, 0);
  mp__futex_wake(&m->word, INT_MAX);
}

/* ---- the public objects -------------------------------------------------- */

static void *mutex_new(uint32_t magic) {
  mp__mutex_t *m = mp__sync_alloc(sizeof *m);
  if (!m)
    return NULL;
  mp__mutex_init(m, magic);
  return mp__object_publish(m, magic);
}

mp_lock_t *mp_lock_new(void) {
  return mutex_new(MP__LOCK_MAGIC);
}

int mp_lock_acquire(mp_lock_t *l, double timeout) {
  const void *handle = l;
  if (!(l = mp__object_open(l, MP__LOCK_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_LOCK, MP__SYNC_ACQUIRE,
                               timeout);
  return mutex_acquire(&l->mutex, timeout, NULL, false);
}

int mp_lock_release(mp_lock_t *l) {
  const void *handle = l;
  if (!(l = mp__object_open(l, MP__LOCK_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_LOCK, MP__SYNC_RELEASE, 0);
  return unlock_word(&l->mutex);
}

/* Held by a live thread: a holder that died leaves the owner bits behind,
 * but an acquire would not wait for it, so it reads as unlocked. */
static bool mutex_locked(const mp__mutex_t *m) {
  mp__owner_t owner = atomic_load(&((mp__mutex_t *)m)->word) & MP__MUTEX_OWNER;
  /* mp__owner_ids also works in a process that never took a slot. */
  return owner != MP__OWNER_NONE && mp__owner_ids(owner, NULL, NULL);
}

bool mp_lock_locked(const mp_lock_t *l) {
  const void *handle = l;
  if (!(l = mp__object_open(l, MP__LOCK_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_LOCK, MP__SYNC_LOCKED, 0) > 0;
  return mutex_locked(&l->mutex);
}

bool mp_rlock_locked(const mp_rlock_t *r) {
  const void *handle = r;
  if (!(r = mp__object_open(r, MP__RLOCK_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_RLOCK, MP__SYNC_LOCKED, 0) > 0;
  return mutex_locked(&r->mutex);
}

void mp_lock_free(mp_lock_t *l) {
  if (!l || mp__sync_proxy_free(l, MP__SYNC_LOCK))
    return;
  l = mp__object_retire(l, MP__LOCK_MAGIC, "lock");
  mp__mutex_wake_freed(&l->mutex);
  mp__shm_free(l);
}

mp_rlock_t *mp_rlock_new(void) {
  return mutex_new(MP__RLOCK_MAGIC);
}

int mp_rlock_acquire(mp_rlock_t *r, double timeout) {
  const void *handle = r;
  if (!(r = mp__object_open(r, MP__RLOCK_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_RLOCK, MP__SYNC_ACQUIRE,
                               timeout);
  return mutex_acquire(&r->mutex, timeout, NULL, true);
}

int mp_rlock_release(mp_rlock_t *r) {
  const void *handle = r;
  if (!(r = mp__object_open(r, MP__RLOCK_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_RLOCK, MP__SYNC_RELEASE, 0);
  return rlock_release(&r->mutex);
}

bool mp_rlock_is_mine(const mp_rlock_t *r) {
  if (!(r = mp__object_open(r, MP__RLOCK_MAGIC)))
    return false;
  return mp__mutex_is_mine(&r->mutex);
}

unsigned mp_rlock_count(const mp_rlock_t *r) {
  if (!(r = mp__object_open(r, MP__RLOCK_MAGIC)))
    return 0;
  mp__mutex_t *m = (mp__mutex_t *)&r->mutex;
  if (!(atomic_load(&m->word) & MP__MUTEX_OWNER))
    return 0;
  return atomic_load_explicit(&m->count, memory_order_relaxed);
}

pid_t mp_rlock_owner(const mp_rlock_t *r, pid_t *tid) {
  if (!(r = mp__object_open(r, MP__RLOCK_MAGIC)))
    return 0;
  mp__mutex_t *m = (mp__mutex_t *)&r->mutex;
  pid_t pid = 0, thread = 0;
  mp__owner_t owner = atomic_load(&m->word) & MP__MUTEX_OWNER;
  if (owner != MP__OWNER_NONE && !mp__owner_ids(owner, &pid, &thread))
    pid = thread = 0; /* held by a thread that ended */
  if (tid)
    *tid = thread;
  return pid;
}

void mp_rlock_free(mp_rlock_t *r) {
  if (!r || mp__sync_proxy_free(r, MP__SYNC_RLOCK))
    return;
  r = mp__object_retire(r, MP__RLOCK_MAGIC, "rlock");
  mp__mutex_wake_freed(&r->mutex);
  mp__shm_free(r);
}

bool mp__lock_has_sleepers(const void *handle) {
  mp__mutex_t *m = mp__object_open(handle, MP__LOCK_MAGIC);
  if (!m)
    m = mp__object_open(handle, MP__RLOCK_MAGIC);
  return m && (atomic_load(&m->word) & MP__MUTEX_WAITERS);
}
