/* The shared list (containers.h).
 *
 * Layout. A list is a header with one robust lock and an array of pointers
 * to entries (store.h) in its own arena block. Invariant: the pointers at
 * [len, capacity) are NULL, and every entry pointer is distinct (each entry
 * is its own block). The array grows by doubling: a new array is filled
 * aside and installed with one store.
 *
 * The ops of the intent record (store.h), each finished by list_finish from
 * the record alone:
 *   OP_SET     put `fresh` at `target` (the item's pointer), free `old`.
 *   OP_INSERT  shift items [a, b) up by one, put `fresh` at a, len = b + 1.
 *   OP_POP     shift items (a, b) down by one, NULL at b - 1, len = b - 1,
 *              free `old` (the item that was at a).
 *   OP_RESIZE  install the new array `fresh`, free the old one (`old`).
 *   OP_CLEAR   the array `old` was taken out (len 0): free its items one by
 *              one, then the array.
 *   OP_EXTEND  put the entries of the batch `staged` (store.h) at a, a + 1,
 *              ..., len = a + their number, free the batch. The batch and
 *              the room in the array are made before the commit point, so
 *              an extend is whole or absent, and finishing it needs no
 *              memory.
 * A shift moves one pointer at a time, in order, so a shift cut short by a
 * death has one visible seam: with distinct pointers, the place where the
 * same pointer appears twice in a row says how far it got, and the finish
 * goes on from there (resume_insert, resume_pop). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "containers/remote.h"
#include "containers/store.h"

#define LIST_MAGIC 0x4c495354u /* "LIST" */
#define MIN_ITEMS  8u

enum list_op { OP_SET = 1, OP_INSERT, OP_POP, OP_RESIZE, OP_CLEAR, OP_EXTEND };

typedef struct array {
  uint64_t bytes; /* of the block (store.h) */
  uint64_t capacity;
  _Atomic(void *) items[]; /* mp__entry_t */
} array_t;

struct mp_list {
  _Atomic uint32_t magic;
  uint32_t generation;
  mp__mutex_t lock;
  /* Guarded by lock: */
  _Atomic(void *) array; /* array_t, NULL until the first item */
  _Atomic uint64_t len;
  _Atomic(void *) staged; /* an extend's mp__batch_t, else NULL */
  mp__intent_t intent;
};
MP__OBJECT_LAYOUT(mp_list_t);

/* ---- finishing and recovering -------------------------------------------- */

static _Atomic(void *) *items_of(mp_list_t *l) {
  return ((array_t *)MP__GET(&l->array))->items;
}

/* Where an insert at i into n items got: the next k to shift into (k > i),
 * or i when the shift is done. Before the first step items[n] is NULL;
 * after steps n..k0+1, items[k0] == items[k0 + 1]. */
static uint64_t resume_insert(_Atomic(void *) *items, uint64_t i, uint64_t n) {
  if (MP__GET(&items[n]) == NULL)
    return n;
  for (uint64_t k = i; k < n; k++)
    if (MP__GET(&items[k]) == MP__GET(&items[k + 1]))
      return k;
  return i; /* not reached: a step was made, so a seam exists */
}

static void finish_insert(mp_list_t *l, mp__intent_t *in) {
  uint64_t i = MP__GET(&in->a), n = MP__GET(&in->b);
  _Atomic(void *) *items = items_of(l);
  void *fresh = MP__GET(&in->fresh);
  if (fresh && MP__GET(&items[i]) != fresh) {
    for (uint64_t k = resume_insert(items, i, n); k > i; k--)
      MP__PUT(&items[k], MP__GET(&items[k - 1]));
    MP__PUT(&items[i], fresh);
  }
  MP__PUT(&l->len, n + 1);
  MP__PUT(&in->fresh, NULL);
}

/* Where a pop at i of n items got: the next k to shift into. Before the
 * first step items[i] is still the popped item; after steps i..k0-1,
 * items[k0 - 1] == items[k0]; once all are made, items[n - 1] is NULL. */
static uint64_t resume_pop(_Atomic(void *) *items, uint64_t i, uint64_t n,
                           void *popped) {
  if (MP__GET(&items[n - 1]) == NULL)
    return n;
  if (MP__GET(&items[i]) == popped)
    return i;
  for (uint64_t k = i; k + 1 < n; k++)
    if (MP__GET(&items[k]) == MP__GET(&items[k + 1]))
      return k + 1;
  return n - 1;
}

static void finish_pop(mp_list_t *l, mp__intent_t *in) {
  uint64_t i = MP__GET(&in->a), n = MP__GET(&in->b);
  if (MP__GET(&l->len) == n) {
    _Atomic(void *) *items = items_of(l);
    uint64_t k = resume_pop(items, i, n, MP__GET(&in->old));
    for (; k + 1 < n; k++)
      MP__PUT(&items[k], MP__GET(&items[k + 1]));
    MP__PUT(&items[n - 1], NULL);
    MP__PUT(&l->len, n - 1);
  }
  mp__store_release(in, &in->old);
}

/* Frees the items of an array taken out of the list, then the array. */
static void free_retired(mp__intent_t *in) {
  array_t *a = MP__GET(&in->old);
  if (!a)
    return;
  for (uint64_t i = 0; i < a->capacity; i++)
    mp__store_release(in, &a->items[i]);
  mp__store_release(in, &in->old);
}

static void finish_extend(mp_list_t *l, mp__intent_t *in) {
  mp__batch_t *b = MP__GET(&l->staged);
  if (!b)
    return; /* freed last: everything else was done */
  uint64_t at = MP__GET(&in->a);
  _Atomic(void *) *items = items_of(l);
  for (uint64_t i = 0; i < b->n; i++)
    MP__PUT(&items[at + i], MP__GET(&b->entries[i]));
  MP__PUT(&l->len, at + b->n);
  MP__PUT(&b->done, b->n);
  mp__batch_free(in, &l->staged);
}

static void list_finish(mp_list_t *l) {
  mp__intent_t *in = &l->intent;
  switch (MP__GET(&in->op)) {
  case OP_SET:
  case OP_RESIZE:
    mp__intent_swap(in);
    break;
  case OP_INSERT:
    finish_insert(l, in);
    break;
  case OP_POP:
    finish_pop(l, in);
    break;
  case OP_EXTEND:
    finish_extend(l, in);
    break;
  case OP_CLEAR:
    MP__PUT(&l->array, NULL);
    MP__PUT(&l->len, 0);
    free_retired(in);
    break;
  }
  mp__intent_end(in);
}

static void list_recover(void *obj) {
  mp_list_t *l = obj;
  if (MP__GET(&l->intent.op) != MP__INTENT_NONE)
    list_finish(l);
  else
    mp__intent_drop(&l->intent);
  /* An extend's batch that is still here was not committed (a death before
   * OP_EXTEND, perhaps in the growth of the array it made room with). */
  mp__batch_free(&l->intent, &l->staged);
}

/* Opens the handle *l (the list's address in *l from now on) and takes
 * the lock. */
static int list_lock(mp_list_t **l) {
  if (!(*l = mp__object_open(*l, LIST_MAGIC)))
    return MP_EINVAL;
  return mp__store_lock(&(*l)->lock, &(*l)->intent, list_recover, *l);
}

static void list_unlock(mp_list_t *l) {
  mp__mutex_release(&l->lock);
}

/* ---- changes (under the lock) ----------------------------------------------
 */

/* Makes room for `extra` more items (an insert's shift reaches
 * items[len]). */
static int list_reserve(mp_list_t *l, uint64_t extra) {
  array_t *a = MP__GET(&l->array);
  uint64_t n = MP__GET(&l->len), need = n + extra, size;
  if (a && need <= a->capacity)
    return 0;
  uint64_t capacity = a ? a->capacity : MIN_ITEMS;
  while (capacity < need && capacity <= UINT64_MAX / 2)
    capacity *= 2;
  if (capacity < need ||
      __builtin_mul_overflow(capacity, sizeof(void *), &size) ||
      __builtin_add_overflow(size, sizeof(array_t), &size))
    return -ENOMEM;
  mp__intent_t *in = &l->intent;
  int rc = mp__store_alloc(in, &in->fresh, size, true);
  if (rc < 0)
    return rc;
  array_t *fresh = MP__GET(&in->fresh);
  fresh->capacity = capacity;
  for (uint64_t i = 0; i < n; i++)
    atomic_init(&fresh->items[i], MP__GET(&a->items[i]));
  MP__PUT(&in->old, a);
  in->target = &l->array;
  mp__intent_begin(in, OP_RESIZE);
  list_finish(l);
  return 0;
}

static int list_insert_locked(mp_list_t *l, uint64_t i, const void *buf,
                              size_t len) {
  mp__intent_t *in = &l->intent;
  int rc = list_reserve(l, 1);
  if (rc == 0)
    rc = mp__store_entry(in, &in->fresh, NULL, 0, buf, len);
  if (rc < 0)
    return rc;
  MP__PUT(&in->a, i);
  MP__PUT(&in->b, MP__GET(&l->len));
  mp__intent_begin(in, OP_INSERT);
  list_finish(l);
  return 0;
}

/* The n items are made into a batch and room is made for them before the
 * commit point (see OP_EXTEND); on a failure nothing changed. */
static int list_extend_locked(mp_list_t *l, const mp_list_item_t *items,
                              size_t n) {
  mp__intent_t *in = &l->intent;
  int rc = mp__batch_new(in, &l->staged, n);
  mp__batch_t *b = MP__GET(&l->staged);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = mp__store_entry(in, &b->entries[i], NULL, 0, items[i].buf,
                         items[i].len);
  if (rc == 0)
    rc = list_reserve(l, n);
  if (rc < 0) {
    mp__batch_free(in, &l->staged);
    return rc;
  }
  MP__PUT(&in->a, MP__GET(&l->len));
  mp__intent_begin(in, OP_EXTEND);
  list_finish(l);
  return 0;
}

/* Python's index rules: *at is the position, or MP_EINDEX. */
static int resolve(mp_list_t *l, long index, uint64_t *at) {
  uint64_t n = MP__GET(&l->len);
  uint64_t i = index < 0 ? n - (uint64_t)(-(index + 1)) - 1 : (uint64_t)index;
  if (index < 0 ? (uint64_t)(-(index + 1)) >= n : i >= n)
    return MP_EINDEX;
  *at = i;
  return 0;
}

/* Python's slice clamping of one bound. */
static uint64_t clamp(long index, uint64_t n) {
  if (index < 0) {
    uint64_t back = (uint64_t)(-(index + 1)) + 1;
    return back >= n ? 0 : n - back;
  }
  return (uint64_t)index > n ? n : (uint64_t)index;
}

/* Checks the handle, takes the lock and resolves index (the lock is not
 * held after an error). */
static int lock_index(mp_list_t **l, long index, uint64_t *i) {
  int rc = list_lock(l);
  if (rc == 0 && (rc = resolve(*l, index, i)) < 0)
    list_unlock(*l);
  return rc;
}

static mp__entry_t *item_at(mp_list_t *l, uint64_t i) {
  return MP__GET(&items_of(l)[i]);
}

/* ---- the public functions -------------------------------------------------
 */

mp_list_t *mp_list_new(void) {
  mp_list_t *l = mp__store_new(sizeof *l);
  if (!l)
    return NULL;
  mp__mutex_init(&l->lock, MP__LOCK_MAGIC);
  return mp__object_publish(l, LIST_MAGIC);
}

int mp_list_append(mp_list_t *l, const void *buf, size_t len) {
  return mp_list_insert(l, LONG_MAX, buf, len);
}

int mp_list_insert(mp_list_t *l, long index, const void *buf, size_t len) {
  if (len && !buf)
    return MP_EINVAL;
  if (MP__LIST_REMOTE(l))
    return mp__remote_list_put(MP__LIST_REMOTE(l), MP__OP_LIST_INSERT, index,
                               buf, len);
  int rc = list_lock(&l);
  if (rc < 0)
    return rc;
  rc = list_insert_locked(l, clamp(index, MP__GET(&l->len)), buf, len);
  list_unlock(l);
  return rc;
}

int mp_list_extend(mp_list_t *l, const mp_list_item_t *items, size_t n) {
  if (n && !items)
    return MP_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (items[i].len && !items[i].buf)
      return MP_EINVAL;
  if (MP__LIST_REMOTE(l))
    return mp__remote_list_extend(MP__LIST_REMOTE(l), items, n);
  int rc = list_lock(&l);
  if (rc < 0)
    return rc;
  if (n > 0)
    rc = list_extend_locked(l, items, n);
  list_unlock(l);
  return rc;
}

int mp_list_get(mp_list_t *l, long index, void **buf, size_t *len) {
  if (!buf)
    return MP_EINVAL;
  if (MP__LIST_REMOTE(l))
    return mp__remote_list_take(MP__LIST_REMOTE(l), MP__OP_LIST_GET, index, buf,
                                len);
  uint64_t i;
  int rc = lock_index(&l, index, &i);
  if (rc < 0)
    return rc;
  rc = mp__entry_copy(item_at(l, i), buf, len);
  list_unlock(l);
  return rc;
}

int mp_list_set(mp_list_t *l, long index, const void *buf, size_t len) {
  if (len && !buf)
    return MP_EINVAL;
  if (MP__LIST_REMOTE(l))
    return mp__remote_list_put(MP__LIST_REMOTE(l), MP__OP_LIST_SET, index, buf,
                               len);
  uint64_t i;
  int rc = lock_index(&l, index, &i);
  if (rc < 0)
    return rc;
  mp__intent_t *in = &l->intent;
  rc = mp__store_entry(in, &in->fresh, NULL, 0, buf, len);
  if (rc == 0) {
    MP__PUT(&in->old, item_at(l, i));
    in->target = &items_of(l)[i];
    mp__intent_begin(in, OP_SET);
    list_finish(l);
  }
  list_unlock(l);
  return rc;
}

int mp_list_pop(mp_list_t *l, long index, void **buf, size_t *len) {
  if (MP__LIST_REMOTE(l))
    return mp__remote_list_take(MP__LIST_REMOTE(l), MP__OP_LIST_POP, index, buf,
                                len);
  uint64_t i;
  int rc = lock_index(&l, index, &i);
  if (rc < 0)
    return rc;
  if (buf)
    rc = mp__entry_copy(item_at(l, i), buf, len);
  if (rc == 0) {
    mp__intent_t *in = &l->intent;
    MP__PUT(&in->old, item_at(l, i));
    MP__PUT(&in->a, i);
    MP__PUT(&in->b, MP__GET(&l->len));
    mp__intent_begin(in, OP_POP);
    list_finish(l);
  }
  list_unlock(l);
  return rc;
}

int mp_list_len(mp_list_t *l, size_t *n) {
  if (!n)
    return MP_EINVAL;
  if (MP__LIST_REMOTE(l))
    return mp__remote_len(MP__LIST_REMOTE(l), MP__OP_LIST_LEN, n);
  int rc = list_lock(&l);
  if (rc < 0)
    return rc;
  *n = MP__GET(&l->len);
  list_unlock(l);
  return 0;
}

int mp_list_slice(mp_list_t *l, long start, long stop, mp_list_item_t **items,
                  size_t *n) {
  if (!items || !n)
    return MP_EINVAL;
  if (MP__LIST_REMOTE(l))
    return mp__remote_list_slice(MP__LIST_REMOTE(l), start, stop, items, n);
  int rc = list_lock(&l);
  if (rc < 0)
    return rc;
  uint64_t len = MP__GET(&l->len);
  uint64_t from = clamp(start, len), to = clamp(stop, len);
  uint64_t count = to > from ? to - from : 0, bytes = 0;
  for (uint64_t i = from; i < from + count; i++)
    bytes += item_at(l, i)->vlen;
  mp_list_item_t *out = malloc(count * sizeof *out + bytes + 1);
  if (!out) {
    list_unlock(l);
    return -ENOMEM;
  }
  unsigned char *at = (unsigned char *)(out + count);
  for (uint64_t i = 0; i < count; i++) {
    mp__entry_t *e = item_at(l, from + i);
    memcpy(at, mp__entry_value(e), e->vlen);
    out[i] = (mp_list_item_t){at, e->vlen};
    at += e->vlen;
  }
  list_unlock(l);
  *items = out;
  *n = count;
  return 0;
}

int mp_list_clear(mp_list_t *l) {
  if (MP__LIST_REMOTE(l))
    return mp__remote_simple(MP__LIST_REMOTE(l), MP__OP_LIST_CLEAR);
  int rc = list_lock(&l);
  if (rc < 0)
    return rc;
  mp__intent_t *in = &l->intent;
  MP__PUT(&in->old, MP__GET(&l->array));
  mp__intent_begin(in, OP_CLEAR);
  list_finish(l);
  list_unlock(l);
  return 0;
}

void mp_list_free(mp_list_t *l) {
  if (MP__LIST_REMOTE(l)) {
    mp__remote_free(MP__LIST_REMOTE(l));
    return;
  }
  if (!l || mp_list_clear(l) < 0)
    return;
  l = mp__object_retire(l, LIST_MAGIC, "list");
  mp__store_free_spares(&l->intent);
  mp__shm_free(l);
}

/* For tests: at most how many arena bytes processes killed inside the
 * arena lost for l. */
uint64_t mp__list_arena_lost(const mp_list_t *l);
uint64_t mp__list_arena_lost(const mp_list_t *l) {
  l = mp__object_address(l);
  return mp__intent_arena_lost(&l->intent);
}
