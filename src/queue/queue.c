/* Queue, SimpleQueue and JoinableQueue: one ring (ring.c) behind three
 * public types. A public queue pointer is the ring itself; the type only
 * keeps the C compiler from mixing them up, and the ring's kind is checked
 * by every call. */
#include <assert.h>

#include "queue/remote.h"
#include "queue/ring.h"

/* The ring behind a handle of the given kind, or NULL when the handle is
 * NULL, freed, or of another kind (checked in every build). */
static mp__ring_t *ring_of(const void *q, enum mp__ring_kind kind) {
  mp__ring_t *r = mp__object_open(q, MP__RING_MAGIC);
  return r && mp__ring_kind(r) == kind ? r : NULL;
}

#define QUEUE(q) ring_of((q), MP__RING_QUEUE)
/* A Queue may also be a manager's remote handle (remote.h). */
#define REMOTE(q)   mp__remote_of((q), MP__REMOTE_QUEUE)
#define SIMPLE(q)   ring_of((q), MP__RING_SIMPLE)
#define JOINABLE(q) ring_of((q), MP__RING_JOINABLE)

/* ---- Queue --------------------------------------------------------------- */

mp_queue_t *mp_queue_new(size_t maxsize) {
  return (mp_queue_t *)mp__ring_new(maxsize, MP__RING_QUEUE);
}

int mp_queue_put(mp_queue_t *q, const void *buf, size_t len, double timeout) {
  if (REMOTE(q))
    return mp__remote_queue_put(REMOTE(q), buf, len, timeout);
  mp__ring_t *r = QUEUE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_put(r, buf, len, timeout);
}

int mp_queue_get(mp_queue_t *q, void **buf, size_t *len, double timeout) {
  if (REMOTE(q))
    return mp__remote_queue_get(REMOTE(q), buf, len, timeout);
  mp__ring_t *r = QUEUE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_get(r, buf, len, timeout);
}

int mp_queue_get_into(mp_queue_t *q, void *buf, size_t cap, size_t *len,
                      double timeout) {
  if (REMOTE(q))
    return mp__remote_queue_get_into(REMOTE(q), buf, cap, len, timeout);
  mp__ring_t *r = QUEUE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_get_into(r, buf, cap, len, timeout);
}

size_t mp_queue_qsize(const mp_queue_t *q) {
  if (REMOTE(q))
    return mp__remote_queue_qsize(REMOTE(q));
  mp__ring_t *r = QUEUE(q);
  if (!r)
    return 0;
  return mp__ring_qsize(r);
}

bool mp_queue_empty(const mp_queue_t *q) {
  if (REMOTE(q))
    return mp__remote_queue_qsize(REMOTE(q)) == 0;
  mp__ring_t *r = QUEUE(q);
  if (!r)
    return false;
  return mp__ring_qsize(r) == 0;
}

bool mp_queue_full(const mp_queue_t *q) {
  if (REMOTE(q))
    return mp__remote_queue_full(REMOTE(q));
  mp__ring_t *r = QUEUE(q);
  if (!r)
    return false;
  return mp__ring_full(r);
}

int mp_queue_close(mp_queue_t *q) {
  if (REMOTE(q))
    return mp__remote_queue_close(REMOTE(q));
  mp__ring_t *r = QUEUE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_close(r);
}

void mp_queue_free(mp_queue_t *q) {
  if (!q)
    return;
  if (REMOTE(q)) {
    mp__remote_free(REMOTE(q));
    return;
  }
  mp__ring_free(mp__object_retire(q, MP__RING_MAGIC, "queue"));
}

/* ---- SimpleQueue --------------------------------------------------------- */

mp_simple_queue_t *mp_simple_queue_new(void) {
  return (mp_simple_queue_t *)mp__ring_new(0, MP__RING_SIMPLE);
}

int mp_simple_queue_put(mp_simple_queue_t *q, const void *buf, size_t len) {
  mp__ring_t *r = SIMPLE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_put(r, buf, len, MP_FOREVER);
}

int mp_simple_queue_get(mp_simple_queue_t *q, void **buf, size_t *len) {
  mp__ring_t *r = SIMPLE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_get(r, buf, len, MP_FOREVER);
}

int mp_simple_queue_get_into(mp_simple_queue_t *q, void *buf, size_t cap,
                             size_t *len) {
  mp__ring_t *r = SIMPLE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_get_into(r, buf, cap, len, MP_FOREVER);
}

bool mp_simple_queue_empty(const mp_simple_queue_t *q) {
  mp__ring_t *r = SIMPLE(q);
  if (!r)
    return false;
  return mp__ring_qsize(r) == 0;
}

int mp_simple_queue_close(mp_simple_queue_t *q) {
  mp__ring_t *r = SIMPLE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_close(r);
}

void mp_simple_queue_free(mp_simple_queue_t *q) {
  if (!q)
    return;
  mp__ring_free(mp__object_retire(q, MP__RING_MAGIC, "simple_queue"));
}

/* ---- JoinableQueue ------------------------------------------------------- */

mp_joinable_queue_t *mp_joinable_queue_new(size_t maxsize) {
  return (mp_joinable_queue_t *)mp__ring_new(maxsize, MP__RING_JOINABLE);
}

int mp_joinable_queue_put(mp_joinable_queue_t *q, const void *buf, size_t len,
                          double timeout) {
  mp__ring_t *r = JOINABLE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_put(r, buf, len, timeout);
}

int mp_joinable_queue_get(mp_joinable_queue_t *q, void **buf, size_t *len,
                          double timeout) {
  mp__ring_t *r = JOINABLE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_get(r, buf, len, timeout);
}

int mp_joinable_queue_get_into(mp_joinable_queue_t *q, void *buf, size_t cap,
                               size_t *len, double timeout) {
  mp__ring_t *r = JOINABLE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_get_into(r, buf, cap, len, timeout);
}

size_t mp_joinable_queue_qsize(const mp_joinable_queue_t *q) {
  mp__ring_t *r = JOINABLE(q);
  if (!r)
    return 0;
  return mp__ring_qsize(r);
}

bool mp_joinable_queue_empty(const mp_joinable_queue_t *q) {
  mp__ring_t *r = JOINABLE(q);
  if (!r)
    return false;
  return mp__ring_qsize(r) == 0;
}

bool mp_joinable_queue_full(const mp_joinable_queue_t *q) {
  mp__ring_t *r = JOINABLE(q);
  if (!r)
    return false;
  return mp__ring_full(r);
}

int mp_joinable_queue_close(mp_joinable_queue_t *q) {
  mp__ring_t *r = JOINABLE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_close(r);
}

void mp_joinable_queue_free(mp_joinable_queue_t *q) {
  if (!q)
    return;
  mp__ring_free(mp__object_retire(q, MP__RING_MAGIC, "joinable_queue"));
}

int mp_joinable_queue_task_done(mp_joinable_queue_t *q) {
  mp__ring_t *r = JOINABLE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_task_done(r);
}

int mp_joinable_queue_join(mp_joinable_queue_t *q, double timeout) {
  mp__ring_t *r = JOINABLE(q);
  if (!r)
    return MP_EINVAL;
  return mp__ring_join(r, timeout);
}
