/* Value and Array (Python's multiprocessing.Value / Array): a block of the
 * arena whose first 64 bytes describe it and hold its own RLock, followed by
 * the user's bytes. */
#include <assert.h>
#include <stddef.h>

#include "sync/lock.h"

#define VALUE_MAGIC 0x56414c55u /* "VALU" */

enum value_lock {
  VALUE_NO_LOCK,
  VALUE_OWN_RLOCK,   /* own, below */
  VALUE_GIVEN_RLOCK, /* the caller's RLock */
  VALUE_GIVEN_LOCK,  /* the caller's Lock */
};

/* In the arena; never changes after mp_value_new* returns. */
struct mp_value {
  uint32_t magic;
  uint32_t lock_kind; /* enum value_lock */
  uint64_t size;      /* bytes of data */
  uint64_t count;     /* elements (1 for a value) */
  mp_rlock_t *rlock;  /* own or given; arena pointers */
  mp_lock_t *lock;    /* given */
  struct mp_rlock own;
  char pad[8];
  char data[]; /* 64-byte aligned, like the block */
};

_Static_assert(offsetof(struct mp_value, data) == 64, "data is aligned");

static mp_value_t *value_new(size_t elem_size, size_t count,
                             enum value_lock kind) {
  mp__check_bootstrapped();
  size_t size, total;
  if (!mp__size(elem_size, count, 0, &size) ||
      !mp__size(size, 1, sizeof(mp_value_t), &total)) {
    errno = ENOMEM;
    return NULL;
  }
  /* With a lock, mp__sync_alloc makes sure the owner table of the robust
   * locks exists before any child starts. */
  mp_value_t *v =
      kind != VALUE_NO_LOCK ? mp__sync_alloc(total) : mp__shm_alloc(total);
  if (!v)
    return NULL;
  v->magic = VALUE_MAGIC;
  v->lock_kind = kind;
  v->size = size;
  v->count = count;
  if (kind == VALUE_OWN_RLOCK) {
    mp__mutex_init(&v->own.mutex, MP__RLOCK_MAGIC);
    v->rlock = &v->own;
  }
  return v;
}

mp_value_t *mp_value_new(size_t size, bool lock) {
  if (size == 0) {
    errno = EINVAL;
    return NULL;
  }
  return value_new(size, 1, lock ? VALUE_OWN_RLOCK : VALUE_NO_LOCK);
}

mp_value_t *mp_value_new_with_rlock(size_t size, mp_rlock_t *lock) {
  if (size == 0 || mp__object_check(lock, MP__RLOCK_MAGIC) < 0) {
    errno = EINVAL;
    return NULL;
  }
  mp_value_t *v = value_new(size, 1, VALUE_GIVEN_RLOCK);
  if (v)
    v->rlock = lock;
  return v;
}

mp_value_t *mp_value_new_with_lock(size_t size, mp_lock_t *lock) {
  if (size == 0 || mp__object_check(lock, MP__LOCK_MAGIC) < 0) {
    errno = EINVAL;
    return NULL;
  }
  mp_value_t *v = value_new(size, 1, VALUE_GIVEN_LOCK);
  if (v)
    v->lock = lock;
  return v;
}

mp_value_t *mp_array_new(size_t n, size_t elem_size, bool lock) {
  if (elem_size == 0) {
    errno = EINVAL;
    return NULL;
  }
  return value_new(elem_size, n, lock ? VALUE_OWN_RLOCK : VALUE_NO_LOCK);
}

void *mp_value_ptr(const mp_value_t *v) {
  if (mp__object_check(v, VALUE_MAGIC) < 0)
    return NULL;
  return (void *)v->data;
}

size_t mp_value_size(const mp_value_t *v) {
  if (mp__object_check(v, VALUE_MAGIC) < 0)
    return 0;
  return (size_t)v->size;
}

size_t mp_value_len(const mp_value_t *v) {
  if (mp__object_check(v, VALUE_MAGIC) < 0)
    return 0;
  return (size_t)v->count;
}

mp_rlock_t *mp_value_lock(const mp_value_t *v) {
  if (mp__object_check(v, VALUE_MAGIC) < 0)
    return NULL;
  return v->rlock;
}

mp_lock_t *mp_value_plain_lock(const mp_value_t *v) {
  if (mp__object_check(v, VALUE_MAGIC) < 0)
    return NULL;
  return v->lock;
}

int mp_value_acquire(mp_value_t *v, double timeout) {
  if (mp__object_check(v, VALUE_MAGIC) < 0)
    return MP_EINVAL;
  if (v->rlock)
    return mp_rlock_acquire(v->rlock, timeout);
  if (v->lock)
    return mp_lock_acquire(v->lock, timeout);
  return MP_ESTATE;
}

int mp_value_release(mp_value_t *v) {
  if (mp__object_check(v, VALUE_MAGIC) < 0)
    return MP_EINVAL;
  if (v->rlock)
    return mp_rlock_release(v->rlock);
  if (v->lock)
    return mp_lock_release(v->lock);
  return MP_ESTATE;
}

void mp_value_free(mp_value_t *v) {
  if (!v)
    return;
  mp__object_retire(v, VALUE_MAGIC, "value");
  mp__shm_free(v); /* the own RLock goes with it */
}
