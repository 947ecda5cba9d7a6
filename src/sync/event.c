/* Event.
 *
 * One word: a set counter in bits 2..31, a waiters bit and the flag.
 *   set:   if clear, CAS to (counter + 1) | SET, clearing WAITERS; if it
 *          was set, wake every sleeper.
 *   clear: clear the flag (the counter stays).
 *   wait:  return at once if set; else sleep until the word changes and
 *          return as soon as the flag is set or the counter moved. The
 *          counter is what makes a set() followed at once by clear() wake
 *          the waiters anyway (threading.Event's behaviour; a sleeper
 *          re-checking only the flag would miss it).
 * Nothing is owned, so a dying waiter or setter cannot strand anyone. */
#include <assert.h>

#include "core/owner.h"
#include "sync/proxy.h"

#define EVENT_MAGIC 0x45564e54u /* "EVNT" */
#define FLAG_SET    1u
#define WAITERS     2u
#define COUNTER_ONE 4u

struct mp_event {
  uint32_t magic;
  uint32_t generation;
  _Atomic uint32_t word;
};
MP__OBJECT_LAYOUT(mp_event_t);

mp_event_t *mp_event_new(void) {
  mp_event_t *e = mp__sync_alloc(sizeof *e);
  if (!e)
    return NULL;
  atomic_init(&e->word, 0);
  return mp__object_publish(e, EVENT_MAGIC);
}

int mp_event_set(mp_event_t *e) {
  const void *handle = e;
  if (!(e = mp__object_open(e, EVENT_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_EVENT, MP__SYNC_SET, 0);
  mp__tsan_release(e);
  uint32_t v = atomic_load(&e->word);
  do {
    if (v & FLAG_SET)
      return 0;
  } while (!atomic_compare_exchange_weak(
      &e->word, &v, ((v & ~(WAITERS | FLAG_SET)) + COUNTER_ONE) | FLAG_SET));
  if (v & WAITERS)
    mp__futex_wake(&e->word, INT_MAX);
  return 0;
}

int mp_event_clear(mp_event_t *e) {
  const void *handle = e;
  if (!(e = mp__object_open(e, EVENT_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_EVENT, MP__SYNC_CLEAR, 0);
  atomic_fetch_and(&e->word, ~FLAG_SET);
  return 0;
}

bool mp_event_is_set(const mp_event_t *e) {
  const void *handle = e;
  if (!(e = mp__object_open(e, EVENT_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_EVENT, MP__SYNC_IS_SET, 0) > 0;
  bool set = atomic_load(&((mp_event_t *)e)->word) & FLAG_SET;
  if (set)
    mp__tsan_acquire(e);
  return set;
}

/* True once the flag is set or was set since `start` was read. */
static bool was_set(uint32_t start, uint32_t now) {
  return (now & FLAG_SET) ||
         (now & ~(WAITERS | FLAG_SET)) != (start & ~(WAITERS | FLAG_SET));
}

int mp_event_wait(mp_event_t *e, double timeout) {
  const void *handle = e;
  if (!(e = mp__object_open(e, EVENT_MAGIC)))
    return mp__sync_proxy_call(handle, MP__SYNC_EVENT, MP__SYNC_WAIT, timeout);
  int rc_timeout = mp__timeout_check(timeout);
  if (rc_timeout < 0)
    return rc_timeout;
  uint64_t id = mp__object_id(e);
  uint32_t start = atomic_load(&e->word);
  if (start & FLAG_SET)
    goto set;
  mp__deadline_t deadline = mp__deadline_in(timeout);
  if (!mp__deadline_expired(&deadline))
    mp__futex_spin(&e->word, start);
  for (;;) {
    uint32_t v = atomic_load(&e->word);
    /* Freed while we waited: mp_event_free retires it, then moves the word
     * and wakes, so either this sees it retired or the wait below returns
     * at once. */
    if (mp__object_id(e) != id)
      return MP_EINVAL;
    if (was_set(start, v))
      goto set;
    if (mp__deadline_expired(&deadline))
      return MP_ETIMEDOUT;
    if (!mp__futex_flag(&e->word, &v, WAITERS))
      continue;
    if (mp__futex_wait(&e->word, v, &deadline) == MP_EINTR)
      return MP_EINTR;
  }
set:
  mp__tsan_acquire(e);
  return 0;
}

void mp_event_free(mp_event_t *e) {
  if (!e || mp__sync_proxy_free(e, MP__SYNC_EVENT))
    return;
  e = mp__object_retire(e, EVENT_MAGIC, "event");
  atomic_fetch_add(&e->word, COUNTER_ONE);
  mp__futex_wake(&e->word, INT_MAX); /* waiters find it freed */
  mp__shm_free(e);
}
