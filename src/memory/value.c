/* Value and Array (Python's multiprocessing.Value / Array): a block of the
 * arena whose first 64 bytes describe it and hold its own RLock, followed by
 * the user's bytes. */
#include <assert.h>
#include <stddef.h>
#include <string.h>

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
  uint32_t generation;
  uint64_t size;     /* bytes of data */
  uint64_t count;    /* elements (1 for a value) */
  mp_rlock_t *rlock; /* the handle of own or the given one */
  mp_lock_t *lock;   /* a given handle */
  struct mp_rlock own;
  uint32_t lock_kind; /* enum value_lock */
  char pad[4];
  char data[]; /* 64-byte aligned, like the block */
};
MP__OBJECT_LAYOUT(mp_value_t);

_Static_assert(offsetof(struct mp_value, data) == 64, "data is aligned");

/* A value of count elements, size bytes in all, with a lock of the given
 * kind (rlock or lock for the caller's own) and its bytes copied from init
 * (NULL: zeroed). */
static mp_value_t *value_new(size_t size, size_t count, enum value_lock kind,
                             const void *init, mp_rlock_t *rlock,
                             mp_lock_t *lock) {
  mp__check_bootstrapped();
  size_t total;
  if (!mp__size(size, 1, sizeof(mp_value_t), &total)) {
    errno = ENOMEM;
    return NULL;
  }
  /* With a lock, mp__sync_alloc makes sure the owner table of the robust
   * locks exists before any child starts. */
  mp_value_t *v =
      kind != VALUE_NO_LOCK ? mp__sync_alloc(total) : mp__shm_alloc(total);
  if (!v)
    return NULL;
  v->lock_kind = kind;
  v->size = size;
  v->count = count;
  v->rlock = rlock;
  v->lock = lock;
  if (kind == VALUE_OWN_RLOCK) {
    mp__mutex_init(&v->own.mutex, MP__RLOCK_MAGIC);
    v->rlock = mp__object_publish(&v->own, MP__RLOCK_MAGIC);
  }
  if (init && size > 0)
    memcpy(v->data, init, (size_t)size);
  return mp__object_publish(v, VALUE_MAGIC);
}

/* Every constructor: checks the arguments, then value_new. A value has
 * count 1 and size elem_size (0 refused); an array count n (the size
 * through the one checked-size helper: ENOMEM when it overflows). given is
 * the caller's lock when kind is VALUE_GIVEN_* (NULL, freed or of another
 * kind refused). */
static mp_value_t *make(size_t n, size_t elem_size, bool array,
                        enum value_lock kind, const void *init, void *given) {
  size_t size = elem_size;
  int err =
      elem_size == 0                               ? EINVAL
      : array && !mp__size(elem_size, n, 0, &size) ? ENOMEM
      : kind == VALUE_GIVEN_RLOCK && !mp__object_open(given, MP__RLOCK_MAGIC)
          ? EINVAL
      : kind == VALUE_GIVEN_LOCK && !mp__object_open(given, MP__LOCK_MAGIC)
          ? EINVAL
          : 0;
  if (err) {
    errno = err;
    return NULL;
  }
  return value_new(size, array ? n : 1, kind, init,
                   kind == VALUE_GIVEN_RLOCK ? given : NULL,
                   kind == VALUE_GIVEN_LOCK ? given : NULL);
}

static enum value_lock own_or_none(bool lock) {
  return lock ? VALUE_OWN_RLOCK : VALUE_NO_LOCK;
}

mp_value_t *mp_value_new(size_t size, bool lock) {
  return make(1, size, false, own_or_none(lock), NULL, NULL);
}

mp_value_t *mp_value_new_from(const void *init, size_t size, bool lock) {
  return make(1, size, false, own_or_none(lock), init, NULL);
}

mp_value_t *mp_value_new_with_rlock(size_t size, mp_rlock_t *lock) {
  return make(1, size, false, VALUE_GIVEN_RLOCK, NULL, lock);
}

mp_value_t *mp_value_new_with_lock(size_t size, mp_lock_t *lock) {
  return make(1, size, false, VALUE_GIVEN_LOCK, NULL, lock);
}

mp_value_t *mp_array_new(size_t n, size_t elem_size, bool lock) {
  return make(n, elem_size, true, own_or_none(lock), NULL, NULL);
}

mp_value_t *mp_array_new_from(const void *init, size_t n, size_t elem_size,
                              bool lock) {
  return make(n, elem_size, true, own_or_none(lock), init, NULL);
}

mp_value_t *mp_array_new_with_rlock(size_t n, size_t elem_size,
                                    const void *init, mp_rlock_t *lock) {
  return make(n, elem_size, true, VALUE_GIVEN_RLOCK, init, lock);
}

mp_value_t *mp_array_new_with_lock(size_t n, size_t elem_size, const void *init,
                                   mp_lock_t *lock) {
  return make(n, elem_size, true, VALUE_GIVEN_LOCK, init, lock);
}

void *mp_value_ptr(const mp_value_t *v) {
  if (!(v = mp__object_open(v, VALUE_MAGIC)))
    return NULL;
  return (void *)v->data;
}

size_t mp_value_size(const mp_value_t *v) {
  if (!(v = mp__object_open(v, VALUE_MAGIC)))
    return 0;
  return (size_t)v->size;
}

size_t mp_value_len(const mp_value_t *v) {
  if (!(v = mp__object_open(v, VALUE_MAGIC)))
    return 0;
  return (size_t)v->count;
}

mp_rlock_t *mp_value_lock(const mp_value_t *v) {
  if (!(v = mp__object_open(v, VALUE_MAGIC)))
    return NULL;
  return v->rlock;
}

mp_lock_t *mp_value_plain_lock(const mp_value_t *v) {
  if (!(v = mp__object_open(v, VALUE_MAGIC)))
    return NULL;
  return v->lock;
}

int mp_value_acquire(mp_value_t *v, double timeout) {
  if (!(v = mp__object_open(v, VALUE_MAGIC)))
    return MP_EINVAL;
  if (v->rlock)
    return mp_rlock_acquire(v->rlock, timeout);
  if (v->lock)
    return mp_lock_acquire(v->lock, timeout);
  return MP_ESTATE;
}

int mp_value_release(mp_value_t *v) {
  if (!(v = mp__object_open(v, VALUE_MAGIC)))
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
  v = mp__object_retire(v, VALUE_MAGIC, "value");
  if (v->lock_kind == VALUE_OWN_RLOCK) {
    mp__object_retire(v->rlock, MP__RLOCK_MAGIC, "rlock");
    mp__mutex_wake_freed(&v->own.mutex);
  }
  mp__shm_free(v); /* the own RLock goes with it */
}
