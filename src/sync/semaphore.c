/* Semaphore and BoundedSemaphore.
 *
 * One word: the value in bits 0..30 and a waiters bit.
 *   acquire: CAS value -> value - 1 while it is positive; at 0, spin
 *            briefly, then set WAITERS and sleep on the word.
 *   release: CAS value -> value + 1 clearing WAITERS; if it was set, wake
 *            every sleeper (the ones that find nothing set WAITERS again).
 * Waking all, as for Lock, means that a sleeper killed right after its
 * wake-up cannot leave the others asleep next to a positive value. A
 * semaphore has no owner: units taken by a process that dies are gone, as
 * in Python. */
#include <assert.h>

#include "testing.h"
#include "core/owner.h"
#include "sync/proxy.h"

#define SEMAPHORE_MAGIC 0x53454d41u /* "SEMA" */
#define VALUE_MASK      0x7fffffffu
#define WAITERS         0x80000000u

struct mp_semaphore {
  uint32_t magic;
  uint32_t generation;
  uint32_t bound; /* BoundedSemaphore: the initial value; else VALUE_MASK */
  _Atomic uint32_t word;
};
MP__OBJECT_LAYOUT(mp_semaphore_t);

static mp_semaphore_t *semaphore_new(unsigned value, uint32_t bound) {
  if (value > VALUE_MASK) {
    errno = EINVAL;
    return NULL;
  }
  mp_semaphore_t *s = mp__sync_alloc(sizeof *s);
  if (!s)
    return NULL;
  s->bound = bound;
  atomic_init(&s->word, value);
  return mp__object_publish(s, SEMAPHORE_MAGIC);
}

mp_semaphore_t *mp_semaphore_new(unsigned value) {
  return semaphore_new(value, VALUE_MASK);
}

mp_semaphore_t *mp_bounded_semaphore_new(unsigned value) {
  return semaphore_new(value, value);
}

static bool try_take(mp_semaphore_t *s, uint32_t *v) {
  while (*v & VALUE_MASK)
    if (atomic_compare_exchange_weak(&s->word, v, *v - 1))
      return true;
  return false;
}

int mp_semaphore_acquire(mp_semaphore_t *s, double timeout) {
  const void *handle = s;
  if (!(s = mp__object_open(s, SEMAPHORE_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_SEMAPHORE, MP__SYNC_ACQUIRE,
                               timeout);
  int rc_timeout = mp__timeout_check(timeout);
  if (rc_timeout < 0)
    return rc_timeout;
  uint64_t id = mp__object_id(s);
  uint32_t v = atomic_load(&s->word);
  if (try_take(s, &v))
    goto taken;
  mp__deadline_t deadline = mp__deadline_in(timeout);
  if (!mp__deadline_expired(&deadline) && mp__futex_spin(&s->word, v)) {
    v = atomic_load(&s->word);
    if (try_take(s, &v))
      goto taken;
  }
  for (;;) {
    /* Freed while we waited: mp_semaphore_free marks it, then moves the
     * word and wakes, so either this sees the mark or the wait below
     * returns at once. */
    if (mp__object_id(s) != id)
      return MP_EINVAL;
    if (try_take(s, &v))
      goto taken;
    if (mp__deadline_expired(&deadline))
      return MP_ETIMEDOUT;
    if (!mp__futex_flag(&s->word, &v, WAITERS))
      continue;
    if (mp__futex_wait(&s->word, v, &deadline) == MP_EINTR)
      return MP_EINTR;
    v = atomic_load(&s->word);
  }
taken:
  mp__tsan_acquire(s);
  return 0;
}

int mp_semaphore_release(mp_semaphore_t *s) {
  const void *handle = s;
  if (!(s = mp__object_open(s, SEMAPHORE_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_SEMAPHORE, MP__SYNC_RELEASE, 0);
  mp__tsan_release(s);
  uint32_t v = atomic_load(&s->word);
  do {
    if ((v & VALUE_MASK) >= s->bound)
      return MP_EOVERFLOW;
  } while (!atomic_compare_exchange_weak(&s->word, &v, (v & VALUE_MASK) + 1));
  if (v & WAITERS)
    mp__futex_wake(&s->word, INT_MAX);
  return 0;
}

int mp_semaphore_value(const mp_semaphore_t *s) {
  const void *handle = s;
  if (!(s = mp__object_open(s, SEMAPHORE_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_SEMAPHORE, MP__SYNC_VALUE, 0);
  return (int)(atomic_load(&((mp_semaphore_t *)s)->word) & VALUE_MASK);
}

void mp_semaphore_free(mp_semaphore_t *s) {
  if (!s || mp__sync_proxy_free(s, MP__SYNC_SEMAPHORE))
    return;
  s = mp__object_retire(s, SEMAPHORE_MAGIC, "semaphore");
  /* Sleepers wait at 0 units (and one about to sleep sets WAITERS on 0
   * units): one unit differs from both. Woken, they find the mark of the
   * free before they try to take it. */
  atomic_store(&s->word, 1);
  mp__futex_wake(&s->word, INT_MAX);
  mp__shm_free(s);
}

bool mp__semaphore_has_sleepers(const void *handle) {
  mp_semaphore_t *s = mp__object_open(handle, SEMAPHORE_MAGIC);
  return s && (atomic_load(&s->word) & WAITERS);
}
