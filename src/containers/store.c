/* Items, intents and locks of the shared containers (store.h). */
#include <stdlib.h>
#include <string.h>

#include <signal.h>
#include <unistd.h>

#include "containers/store.h"
#include "core/hash.h"

int mp__store_kill_countdown;

void mp__store_kill_now(void) {
  kill(getpid(), SIGKILL);
  pause();
}

/* What the arena counts for a block of size bytes (arena.c: a 64-byte
 * header, power-of-two classes from 128 bytes up to 4 KiB, whole pages
 * above): the most a death inside the arena can lose. */
static uint64_t arena_block_bytes(uint64_t size) {
  uint64_t total = size + 64, block = 128;
  if (total > 4096)
    return (total + 4095) & ~(uint64_t)4095;
  while (block < total)
    block *= 2;
  return block;
}

static void arena_enter(mp__intent_t *in, uint64_t size) {
  MP__PUT(&in->arena_bytes, arena_block_bytes(size));
  MP__PUT(&in->in_arena, 1);
}

static void arena_leave(mp__intent_t *in) {
  MP__PUT(&in->in_arena, 0);
}

/* In a block's capacity word: a block that must not become a spare (tables
 * and arrays, whose users count on zeroed memory). */
#define NOT_SPARE (1ull << 63)

/* A spare of capacity for size bytes, not much larger; -1 if none. */
static int spare_for(mp__intent_t *in, uint64_t size) {
  for (int i = 0; i < MP__SPARES; i++) {
    uint64_t *p = MP__GET(&in->spares[i]);
    if (p && *p >= size && *p <= 2 * size + 64)
      return i;
  }
  return -1;
}

/* Taking a spare: fresh first, then the spare slot, so that a block in both
 * (a death in between) is a spare that fresh must not free. */
int mp__store_alloc(mp__intent_t *in, _Atomic(void *) *slot, size_t size,
                    bool zeroed) {
  int spare = zeroed ? -1 : spare_for(in, size);
  if (spare >= 0) {
    MP__PUT(slot, MP__GET(&in->spares[spare]));
    MP__PUT(&in->spares[spare], NULL);
    return 0;
  }
  arena_enter(in, size);
  uint64_t *p = mp__shm_alloc(size);
  int err = errno;
  /* The capacity word before the block is published: whoever frees it
   * after a death reads a true size (a death before the store is inside
   * the arena's window, counted as a loss). */
  if (p)
    *p = size | (zeroed ? NOT_SPARE : 0);
  MP__PUT(slot, (void *)p);
  arena_leave(in);
  return p ? 0 : -err;
}

static _Atomic(void *) *spare_slot_of(mp__intent_t *in, void *p) {
  _Atomic(void *) *empty = NULL;
  for (int i = 0; i < MP__SPARES; i++) {
    void *s = MP__GET(&in->spares[i]);
    if (s == p)
      return &in->spares[i];
    if (!s && !empty)
      empty = &in->spares[i];
  }
  return empty;
}

void mp__store_release(mp__intent_t *in, _Atomic(void *) *slot) {
  uint64_t *p = MP__GET(slot);
  if (!p)
    return;
  _Atomic(void *) *spare = *p <= MP__SPARE_MAX ? spare_slot_of(in, p) : NULL;
  if (spare) { /* already there (a death before the clear), or an empty one */
    MP__PUT(spare, (void *)p);
    MP__PUT(slot, NULL);
    return;
  }
  arena_enter(in, *p & ~NOT_SPARE);
  MP__PUT(slot, NULL);
  mp__shm_free(p);
  arena_leave(in);
}

void mp__store_free_spares(mp__intent_t *in) {
  for (int i = 0; i < MP__SPARES; i++) {
    void *p = MP__GET(&in->spares[i]);
    if (!p)
      continue;
    arena_enter(in, *(uint64_t *)p & ~NOT_SPARE);
    MP__PUT(&in->spares[i], NULL);
    mp__shm_free(p);
    arena_leave(in);
  }
}

int mp__store_entry(mp__intent_t *in, _Atomic(void *) *slot, const void *key,
                    size_t klen, const void *val, size_t vlen) {
  if ((klen && !key) || (vlen && !val))
    return MP_EINVAL;
  size_t size = sizeof(mp__entry_t);
  if (__builtin_add_overflow(size, klen, &size) ||
      __builtin_add_overflow(size, vlen, &size))
    return MP_EINVAL;
  /* The whole of the arena's block, so that spares fit more often. */
  if (size <= MP__SPARE_MAX)
    size = arena_block_bytes(size) - 64;
  int rc = mp__store_alloc(in, slot, size, false);
  if (rc < 0)
    return rc;
  mp__entry_t *e = atomic_load_explicit(slot, memory_order_relaxed);
  e->klen = klen;
  e->vlen = vlen;
  if (klen)
    memcpy(e->data, key, klen);
  if (vlen)
    memcpy(e->data + klen, val, vlen);
  return 0;
}

int mp__batch_new(mp__intent_t *in, _Atomic(void *) *slot, size_t n) {
  size_t size;
  if (__builtin_mul_overflow(n, sizeof(void *), &size) ||
      __builtin_add_overflow(size, sizeof(mp__batch_t), &size))
    return -ENOMEM;
  int rc = mp__store_alloc(in, slot, size, true);
  if (rc == 0)
    ((mp__batch_t *)MP__GET(slot))->n = n;
  return rc;
}

void mp__batch_free(mp__intent_t *in, _Atomic(void *) *slot) {
  mp__batch_t *b = MP__GET(slot);
  if (!b)
    return;
  for (uint64_t i = MP__GET(&b->done); i < b->n; i++)
    mp__store_release(in, &b->entries[i]);
  mp__store_release(in, slot);
}

void mp__intent_swap(mp__intent_t *in) {
  void *fresh = MP__GET(&in->fresh);
  if (fresh) {
    MP__PUT(in->target, fresh);
    MP__PUT(&in->fresh, NULL);
  }
  mp__store_release(in, &in->old);
}

/* The op first: a finish redone after a death needs its target. */
void mp__intent_end(mp__intent_t *in) {
  MP__PUT(&in->op, MP__INTENT_NONE);
  in->target = NULL;
}

/* Before the commit point `old` may already name the block the op would
 * replace: it is still the container's, so it is only forgotten. */
void mp__intent_drop(mp__intent_t *in) {
  mp__store_release(in, &in->fresh);
  MP__PUT(&in->old, NULL);
}

int mp__store_lock(mp__mutex_t *m, mp__intent_t *in, void (*recover)(void *obj),
                   void *obj) {
  int rc = mp__mutex_acquire(m, MP_FOREVER);
  if (rc == MP_EOWNERDEAD) {
    if (MP__GET(&in->in_arena)) {
      atomic_fetch_add(&in->lost, MP__GET(&in->arena_bytes));
      arena_leave(in);
    }
    recover(obj);
    rc = 0;
  }
  return rc;
}

int mp__entry_copy(const mp__entry_t *e, void **buf, size_t *len) {
  void *copy = malloc(e->vlen ? e->vlen : 1);
  if (!copy)
    return -ENOMEM;
  memcpy(copy, mp__entry_value(e), e->vlen);
  *buf = copy;
  if (len)
    *len = e->vlen;
  return 0;
}

int mp__entry_copy_into(const mp__entry_t *e, void *buf, size_t cap,
                        size_t *len) {
  if (len)
    *len = e->vlen;
  if (e->vlen > cap)
    return MP_EOVERFLOW;
  memcpy(buf, mp__entry_value(e), e->vlen);
  return 0;
}

/* A multiply-and-fold over 8-byte words with a final avalanche (the
 * finaliser of splitmix64): fast for short keys, and keyed by a random seed
 * per dict so that keys cannot be chosen to collide (core/hash.h). */
uint64_t mp__store_hash(uint64_t seed, const void *key, size_t len) {
  const unsigned char *p = key;
  uint64_t h = seed ^ (len * 0x9e3779b97f4a7c15ull);
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 29;
    p += 8;
    len -= 8;
  }
  uint64_t tail = 0;
  if (len)
    memcpy(&tail, p, len);
  return mp__mix64(h ^ tail);
}

void *mp__store_new(size_t size) {
  mp__check_bootstrapped();
  return mp__sync_alloc(size);
}
