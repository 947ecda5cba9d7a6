/* mproc: a dict and a list shared by processes (what Python's Manager().dict()
 * and Manager().list() give, without the server process).
 *
 * Keys, values and items are bytes. A container lives in shared memory: a
 * pointer made before mp_process_start() may be passed to the child in its
 * arg struct and works there under every start method. Every operation is a
 * copy into or out of shared memory under a robust lock: no server, no
 * pickling, no round trip.
 *
 * Concurrency. Every operation on one key or one index is atomic. The dict
 * is split into 64 stripes by the hash of the key, each with its own lock
 * and its own table (which it grows alone): processes working on different
 * keys rarely meet, and a growing stripe blocks only its own keys. The
 * operations on the whole dict (len, keys, items, update, clear) take every
 * stripe's lock in a fixed order, so they see and make one consistent state.
 * A list has one lock.
 *
 * Beyond Python (where a process killed in the middle of a Manager call can
 * leave the server with half an update): a process killed at any instant
 * inside any operation (a set that grows a table, a delete, an insert that
 * shifts a long list, an update of many keys) leaves the container
 * consistent. Each operation writes
 * what it is about to do into an intent record in shared memory before it
 * changes anything; the next process to take the lock (it learns from the
 * robust lock that the holder died) completes the operation from the record,
 * or drops it if it had not started. So the change of a killed process is
 * either whole or absent; a value being read by it is simply not delivered.
 * The one exception is memory: a process killed inside the arena's allocator
 * (making or freeing the block of one item or one table) may lose that block
 * until the process family exits (see queue.h: the arena is not safe against
 * that); the container itself stays consistent.
 *
 * A manager (manager.h) gives the same types: in the server's family the
 * objects themselves, elsewhere proxies that take the same calls.
 *
 * Handles are checked on every call: NULL, a freed container (also once
 * its memory holds a new container: a handle carries a generation) or a
 * pointer to something else gives MP_EINVAL (-EINVAL), not a crash (a
 * constructor sets errno and returns NULL). *_free: every process must have
 * stopped using the container. All functions are thread-safe. */
#ifndef MPROC_CONTAINERS_H
#define MPROC_CONTAINERS_H

#include <stdbool.h>
#include <stddef.h>

#include "mproc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dict ----------------------------------------------------------------
 * Python's dict of bytes keys to bytes values (Manager().dict()). Keys and
 * values may be empty. Values returned in *val are malloc'ed copies freed
 * with mp_free (a zero-length value still gives a buffer). */
typedef struct mp_dict mp_dict_t;

/* One key and value (val NULL for mp_dict_keys). */
typedef struct mp_dict_item {
  const void *key;
  size_t klen;
  const void *val;
  size_t vlen;
} mp_dict_item_t;

/* A new empty dict; NULL with errno ENOMEM. Python: dict(). */
MP_API mp_dict_t *mp_dict_new(void);

/* d[key] = val. 0, MP_EINVAL, -ENOMEM. */
MP_API int mp_dict_set(mp_dict_t *d, const void *key, size_t klen,
                       const void *val, size_t vlen);

/* A copy of d[key] in *val (freed with mp_free), its length in *vlen.
 * MP_EKEY when absent (KeyError), MP_EINVAL, -ENOMEM. */
MP_API int mp_dict_get(mp_dict_t *d, const void *key, size_t klen, void **val,
                       size_t *vlen);

/* d[key] copied into buf (cap bytes); *vlen is its length. MP_EOVERFLOW
 * (nothing copied, *vlen the size needed) when it does not fit; MP_EKEY. */
MP_API int mp_dict_get_into(mp_dict_t *d, const void *key, size_t klen,
                            void *buf, size_t cap, size_t *vlen);

/* del d[key]. MP_EKEY when absent. */
MP_API int mp_dict_del(mp_dict_t *d, const void *key, size_t klen);

/* key in d: 1 or 0, or MP_EINVAL. */
MP_API int mp_dict_contains(mp_dict_t *d, const void *key, size_t klen);

/* len(d), counted over a consistent state. */
MP_API int mp_dict_len(mp_dict_t *d, size_t *n);

/* d.pop(key): removes key and gives its value (val NULL: drops it).
 * MP_EKEY when absent. */
MP_API int mp_dict_pop(mp_dict_t *d, const void *key, size_t klen, void **val,
                       size_t *vlen);

/* d.setdefault(key, dflt): stores dflt if key is absent; gives the value now
 * stored (val NULL: nothing given). Returns 1 when it stored dflt, 0 when
 * the key was there, or a negative code. */
MP_API int mp_dict_setdefault(mp_dict_t *d, const void *key, size_t klen,
                              const void *dflt, size_t dlen, void **val,
                              size_t *vlen);

/* d.update(items): stores the n pairs (val and vlen of each; a later pair of
 * the same key wins) as one atomic change: no process sees some of them and
 * not the others, also when the calling process dies in the middle (the
 * next process to use the dict completes the update if it had reached its
 * commit point, else drops it). All the memory it needs is taken before
 * that point, so on -ENOMEM nothing is stored. */
MP_API int mp_dict_update(mp_dict_t *d, const mp_dict_item_t *items, size_t n);

/* A snapshot of d.items(): an array of *n items, pointing into the same
 * buffer, in no particular order, as they all were at one instant. One
 * mp_free(*items) frees it all. mp_dict_update(other, items, n) copies a
 * dict. */
MP_API int mp_dict_items(mp_dict_t *d, mp_dict_item_t **items, size_t *n);

/* A snapshot of d.keys() the same way (val NULL, vlen 0). */
MP_API int mp_dict_keys(mp_dict_t *d, mp_dict_item_t **keys, size_t *n);

/* d.clear(), atomically (also when the calling process dies in it: the
 * next process to use each stripe completes the clear). */
MP_API int mp_dict_clear(mp_dict_t *d);

/* What a modify callback tells mp_dict_modify to do. */
enum mp_dict_decision {
  MP_DICT_STORE = 0,  /* store *new_val (new_len bytes) as the value */
  MP_DICT_KEEP = 1,   /* leave the key as it is */
  MP_DICT_DELETE = 2, /* remove the key (nothing if absent) */
};

/* Called by mp_dict_modify in the calling process with the key's current
 * value (old NULL and found false when absent; old points into shared
 * memory, read-only, valid during the call). Returns an mp_dict_decision,
 * or a negative code that mp_dict_modify returns unchanged (nothing
 * changed). For MP_DICT_STORE it sets *new_val and *new_len to bytes that stay
 * valid until it returns to mp_dict_modify (which copies them). */
typedef int (*mp_dict_modify_cb)(const void *old, size_t old_len, bool found,
                                 const void **new_val, size_t *new_len,
                                 void *arg);

/* Atomic read-modify-write of one key: calls fn under the key's lock, so no
 * other process changes the key between the read and the write (Python's
 * `with lock: d[k] = f(d.get(k))`, without the separate lock). fn must not
 * call the same dict (its stripe's lock is held; it would wait forever).
 * A process killed inside fn changes nothing. Returns 0, fn's negative code,
 * MP_EINVAL (also for a decision out of range), -ENOMEM. */
MP_API int mp_dict_modify(mp_dict_t *d, const void *key, size_t klen,
                          mp_dict_modify_cb fn, void *arg);

/* Frees d and everything in it. NULL is ignored. */
MP_API void mp_dict_free(mp_dict_t *d);

/* ---- list ----------------------------------------------------------------
 * Python's list of bytes items (Manager().list()). An index < 0 counts from
 * the end, as in Python; out of range gives MP_EINDEX (IndexError). Items
 * returned in *buf are malloc'ed copies freed with mp_free. */
typedef struct mp_list mp_list_t;

/* One item of mp_list_extend and mp_list_slice. */
typedef struct mp_list_item {
  const void *buf;
  size_t len;
} mp_list_item_t;

/* A new empty list; NULL with errno ENOMEM. Python: list(). */
MP_API mp_list_t *mp_list_new(void);

/* l.append(buf). */
MP_API int mp_list_append(mp_list_t *l, const void *buf, size_t len);

/* A copy of l[index]. MP_EINDEX. */
MP_API int mp_list_get(mp_list_t *l, long index, void **buf, size_t *len);

/* l[index] = buf. MP_EINDEX. */
MP_API int mp_list_set(mp_list_t *l, long index, const void *buf, size_t len);

/* l.pop(index) (index -1: the last, as Python's default); buf NULL drops
 * the item. MP_EINDEX, also for an empty list. */
MP_API int mp_list_pop(mp_list_t *l, long index, void **buf, size_t *len);

/* l.insert(index, buf): before the item at index; an index past either end
 * inserts at that end, as in Python (never MP_EINDEX). */
MP_API int mp_list_insert(mp_list_t *l, long index, const void *buf,
                          size_t len);

/* l.extend(items): appends the n items as one atomic change, also when the
 * calling process dies in the middle (as mp_dict_update). On -ENOMEM
 * nothing is appended. */
MP_API int mp_list_extend(mp_list_t *l, const mp_list_item_t *items, size_t n);

/* A copy of l[start:stop] (Python's slice rules with step 1: negative
 * counts from the end, out of range is clamped; stop LONG_MAX: to the end,
 * so (0, LONG_MAX) copies the whole list). *n items pointing into one
 * buffer that one mp_free(*items) frees. */
MP_API int mp_list_slice(mp_list_t *l, long start, long stop,
                         mp_list_item_t **items, size_t *n);

/* len(l). */
MP_API int mp_list_len(mp_list_t *l, size_t *n);

/* l.clear(). */
MP_API int mp_list_clear(mp_list_t *l);

/* Frees l and its items. NULL is ignored. */
MP_API void mp_list_free(mp_list_t *l);

#ifdef __cplusplus
}
#endif
#endif
