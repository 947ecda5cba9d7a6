/* What the dict and the list share (store.c): items in the arena, the
 * intent record that makes every change survive the death of the process
 * making it, and the lock that completes a dead holder's change.
 *
 * The protocol of a change, under the container's (or stripe's) lock:
 *   1. Blocks the change needs are allocated straight into the intent's
 *      `fresh` field (mp__store_alloc), so a process killed from then on
 *      leaves them where the next lock holder finds them.
 *   2. The intent's fields are filled, then `op` is set (release): the
 *      commit point. From here the change is finished by whoever holds the
 *      lock next if this process dies; before it, it is dropped.
 *   3. The change is made by steps that can be redone (each container's
 *      finish function works from the intent alone and is idempotent),
 *      `fresh` is cleared once the container owns it, and the block that
 *      left the container (`old`) is freed (mp__store_release).
 *   4. `op` is set back to MP__INTENT_NONE.
 * The next taker of a lock whose holder died (MP_EOWNERDEAD) calls the
 * container's recover function: finish the op if one is set, else free
 * `fresh`; a death during recovery just makes the next taker recover
 * again. */
#ifndef MPROC_STORE_H
#define MPROC_STORE_H

#include "sync/lock.h"

/* Stores of the protocol: release, so that everything written before a
 * commit point is in memory before it (also against the compiler: a
 * SIGKILL stops the process between two instructions). */
#define MP__PUT(field, value)                                                  \
  atomic_store_explicit((field), (value), memory_order_release)
#define MP__GET(field) atomic_load_explicit((field), memory_order_acquire)

/* An item in the arena: a dict's key then its value, or a list's item
 * (klen 0). Written once before it is published, never changed. */
typedef struct mp__entry {
  uint64_t klen;
  uint64_t vlen;
  unsigned char bytes[]; /* key, then value */
} mp__entry_t;

static inline const void *mp__entry_key(const mp__entry_t *e) {
  return e->bytes;
}

static inline const void *mp__entry_value(const mp__entry_t *e) {
  return e->bytes + e->klen;
}

#define MP__INTENT_NONE 0u

/* The intent record of one lock (guarded by it). `op` and the meaning of
 * `a` and `b` belong to the container. */
typedef struct mp__intent {
  _Atomic uint32_t op;
  /* Arena calls in progress for this container (see mp__store_alloc): a
   * count left above 0 means a process died inside the arena. Not guarded
   * by the lock (a process may allocate without it). */
  _Atomic uint32_t arena_calls;
  _Atomic(void *) fresh;   /* a block the container does not own yet */
  _Atomic(void *) old;     /* a block leaving it: freed when done */
  _Atomic(void *) *target; /* where `fresh` goes (an arena address) */
  _Atomic uint64_t a, b;   /* op-specific */
} mp__intent_t;

/* Allocates size bytes into in->fresh (which must be NULL). 0 or -ENOMEM. */
int mp__store_alloc(mp__intent_t *in, size_t size);

/* Frees the block in *slot (a field of in) and clears the field first, so
 * that a death in between can lose it but never free it twice. */
void mp__store_release(mp__intent_t *in, _Atomic(void *) *slot);

/* Allocates an entry with key and value into in->fresh. 0, -ENOMEM, or
 * MP_EINVAL for sizes that overflow. */
int mp__store_entry(mp__intent_t *in, const void *key, size_t klen,
                    const void *val, size_t vlen);

/* The step shared by most ops: puts fresh at *target (if not done yet),
 * then frees old. Idempotent. */
void mp__intent_swap(mp__intent_t *in);

/* Starts an op (the commit point) and ends it. */
static inline void mp__intent_begin(mp__intent_t *in, uint32_t op) {
  MP__PUT(&in->op, op);
}
void mp__intent_end(mp__intent_t *in);

/* Takes the lock; when its holder died, calls recover(obj) (with the lock
 * held) first. 0 or a code of mp__mutex_acquire. */
int mp__store_lock(mp__mutex_t *m, void (*recover)(void *obj), void *obj);

/* Recovery of an intent with no op: frees the block a dead process had
 * allocated and not yet used. */
void mp__intent_drop(mp__intent_t *in);

/* A malloc'ed copy of an entry's value (at least one byte), 0 or -ENOMEM. */
int mp__entry_copy(const mp__entry_t *e, void **buf, size_t *len);

/* For mp_*_get_into: copies the value or reports the size needed. */
int mp__entry_copy_into(const mp__entry_t *e, void *buf, size_t cap,
                        size_t *len);

/* A 64-bit hash of bytes, keyed by seed. */
uint64_t mp__store_hash(uint64_t seed, const void *key, size_t len);

/* A handle check: whether p is a live object of the arena starting with
 * magic (read without a fault: arena memory is always mapped). */
bool mp__store_is(const void *p, uint32_t magic);

/* Constructors: the arena object (zeroed), once the owner table exists and
 * the spawned-child check passed. NULL with errno. */
void *mp__store_new(size_t size);

/* For tests: whether a process died inside the arena for this intent. */
static inline bool mp__intent_arena_interrupted(const mp__intent_t *in) {
  return atomic_load(&in->arena_calls) != 0;
}

#endif
