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
#include "testing.h"

/* Stores of the protocol: release, so that everything written before a
 * commit point is in memory before it (also against the compiler: a
 * SIGKILL stops the process between two instructions). */
#define MP__PUT(field, value)                                                  \
  (mp__store_step(),                                                           \
   atomic_store_explicit((field), (value), memory_order_release))

/* The seam for tests (testing.h): mp__store_kill_countdown above 0 makes
 * the store that brings it to 0 kill the calling process. */
void mp__store_kill_now(void);
static inline void mp__store_step(void) {
  if (__builtin_expect(mp__store_kill_countdown > 0, 0) &&
      --mp__store_kill_countdown == 0)
    mp__store_kill_now();
}
#define MP__GET(field) atomic_load_explicit((field), memory_order_acquire)

/* Every block the store allocates (entries, tables, arrays) starts with
 * its capacity word, written by mp__store_alloc: its size in bytes (what a
 * death while freeing it may lose) and whether it may become a spare. */

/* An item in the arena: a dict's key then its value, or a list's item
 * (klen 0). Written once before it is published, never changed. */
typedef struct mp__entry {
  uint64_t bytes;
  uint64_t klen;
  uint64_t vlen;
  unsigned char data[]; /* key, then value */
} mp__entry_t;

static inline const void *mp__entry_key(const mp__entry_t *e) {
  return e->data;
}

static inline const void *mp__entry_value(const mp__entry_t *e) {
  return e->data + e->klen;
}

#define MP__INTENT_NONE 0u
#define MP__SPARES      3
#define MP__SPARE_MAX   (4096u - 64u) /* the arena's small classes */

/* The intent record of one lock (guarded by it). `op` and the meaning of
 * `a` and `b` belong to the container. */
typedef struct mp__intent {
  /* Fields in the order of use, so that a change touches few cache lines:
   * a dict stripe's lock and its table pointer share one line with the
   * fields up to spares[0], all that the replacement of a value writes. */
  _Atomic uint32_t op;
  /* Set while the lock holder is inside the arena's allocator, with the
   * bytes of the block at stake: the arena is not safe against a death
   * there, so that block may be lost. The next holder adds what may be lost
   * to `lost` (for leak checks in tests) and clears it. */
  _Atomic uint32_t in_arena;
  _Atomic(void *) fresh;   /* a block the container does not own yet */
  _Atomic(void *) old;     /* a block leaving it: freed when done */
  _Atomic(void *) *target; /* where `fresh` goes (an arena address) */
  /* Small blocks that left the container, kept for its next allocations so
   * that a steady stream of changes makes no arena call (the arena has one
   * lock for the whole family). Guarded by the lock; a block may be here
   * and in another field at once only when a process died between the two
   * stores that move it, which mp__store_release recognises. The first
   * that fits is taken and a block given back goes to the first empty one,
   * so a steady stream of same-size changes uses spares[0] alone. */
  _Atomic(void *) spares[MP__SPARES];
  _Atomic uint64_t a, b; /* op-specific */
  _Atomic uint64_t arena_bytes;
  _Atomic uint64_t lost;
} mp__intent_t;

/* Allocates size bytes into *slot (NULL before: in->fresh, or a place the
 * next lock holder finds, such as a batch's entry): zeroed from the arena,
 * or else perhaps a spare (of old bytes) of in. A block's first 8 bytes hold
 * its capacity. 0 or -ENOMEM. */
int mp__store_alloc(mp__intent_t *in, _Atomic(void *) *slot, size_t size,
                    bool zeroed);

/* Gives up the block in *slot (a field of in, or a pointer the container
 * owns): keeps it as a spare, or frees it, and clears the field. A death in
 * between can lose it but never free it twice. */
void mp__store_release(mp__intent_t *in, _Atomic(void *) *slot);

/* Frees the spares (when the container is freed). */
void mp__store_free_spares(mp__intent_t *in);

/* Allocates an entry with key and value into *slot (as mp__store_alloc).
 * 0, -ENOMEM, or MP_EINVAL for sizes that overflow. */
int mp__store_entry(mp__intent_t *in, _Atomic(void *) *slot, const void *key,
                    size_t klen, const void *val, size_t vlen);

/* A batch: the entries of a multi-item change (dict update, list extend),
 * all made before its commit point so that finishing it allocates nothing
 * and cannot fail. The container keeps it in a field guarded by its
 * lock(s), which the next holder after a death finds: before the commit
 * point it frees the batch and its entries, after it finishes the change.
 * Entries [0, done) belong to the container, the rest to the batch. */
typedef struct mp__batch {
  uint64_t bytes; /* the capacity word */
  uint64_t n;
  _Atomic uint64_t done;
  _Atomic uint32_t committed; /* the dict's commit point */
  uint32_t reserved;
  _Atomic(void *) entries[]; /* mp__entry_t, NULL until made */
} mp__batch_t;

/* Allocates an empty batch of n entries into *slot. 0 or -ENOMEM. */
int mp__batch_new(mp__intent_t *in, _Atomic(void *) *slot, size_t n);

/* Frees the batch in *slot and its entries from `done` on (a death in here:
 * the next holder goes on). */
void mp__batch_free(mp__intent_t *in, _Atomic(void *) *slot);

/* The step shared by most ops: puts fresh at *target (if not done yet),
 * then frees old. Idempotent. */
void mp__intent_swap(mp__intent_t *in);

/* Starts an op (the commit point) and ends it. */
static inline void mp__intent_begin(mp__intent_t *in, uint32_t op) {
  MP__PUT(&in->op, op);
}
void mp__intent_end(mp__intent_t *in);

/* Takes the lock that guards in; when its holder died, calls recover(obj)
 * (with the lock held) first. 0 or a code of mp__mutex_acquire. */
int mp__store_lock(mp__mutex_t *m, mp__intent_t *in, void (*recover)(void *obj),
                   void *obj);

/* Recovery of an intent with no op: frees the block a dead process had
 * allocated and not yet used, and forgets `old` (not freed: without an op
 * it still belongs to the container). */
void mp__intent_drop(mp__intent_t *in);

/* A malloc'ed copy of an entry's value (at least one byte), 0 or -ENOMEM. */
int mp__entry_copy(const mp__entry_t *e, void **buf, size_t *len);

/* For mp_*_get_into: copies the value or reports the size needed. */
int mp__entry_copy_into(const mp__entry_t *e, void *buf, size_t cap,
                        size_t *len);

/* A 64-bit hash of bytes, keyed by seed. */
uint64_t mp__store_hash(uint64_t seed, const void *key, size_t len);

/* Constructors: the arena object (zeroed), once the owner table exists and
 * the spawned-child check passed. NULL with errno. */
void *mp__store_new(size_t size);

/* For tests: at most how many bytes of the arena processes killed inside
 * it may have lost for this intent (see in_arena). */
static inline uint64_t mp__intent_arena_lost(const mp__intent_t *in) {
  return atomic_load(&in->lost) +
         (atomic_load(&in->in_arena) ? atomic_load(&in->arena_bytes) : 0);
}

#endif
