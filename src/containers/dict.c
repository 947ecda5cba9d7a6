/* The shared dict (containers.h).
 *
 * Layout. A dict is a header and SHARDS stripes; the top bits of a key's
 * hash choose its stripe. Each stripe has its own robust lock, its own
 * open-addressing table (linear probing, in its own arena block) and its own
 * intent record (store.h), so stripes grow, fail and recover alone. A slot
 * holds the hash and a pointer to the entry (the key and value in one arena
 * block, never changed once published): empty (NULL), a tombstone, or live.
 * A change of value installs a new entry with one pointer store.
 *
 * Locks. Everything in a stripe is guarded by its lock. Whole-dict
 * operations take every stripe's lock in index order; nobody holds two
 * stripe locks otherwise, so there is no cycle.
 *
 * The ops of the intent record, each finished by stripe_finish:
 *   OP_STORE   put the entry `fresh` in the slot `target`, free the entry
 *              it replaced (`old`); a = count after, b = used after.
 *   OP_REPLACE the same for a key that was there (count and used stay).
 *   OP_REMOVE  put a tombstone in `target`, free `old`; a = count after.
 *   OP_RESIZE  install the new table `fresh` (already filled) as the
 *              stripe's table, free the old one (`old`); a = used after.
 *   OP_CLEAR   the stripe's table `old` was taken out (the stripe is empty):
 *              free its entries one by one, then the table.
 *
 * An update is one batch (store.h) in the dict's `staged` field, guarded by
 * every stripe's lock: its entries are made and every table it adds to is
 * grown first; setting `committed` is its commit point; then each pair is
 * installed by an OP_STORE or OP_REPLACE of its stripe (an entry already in
 * its slot was installed before a death). Whoever takes a stripe and finds a
 * batch there (its maker died) lets go and takes every stripe, which finishes
 * or drops it (dict_settle): nobody works on a stripe while a batch is pending,
 * so nobody sees part of one. */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "containers/remote.h"
#include "containers/store.h"

#define DICT_MAGIC 0x44494354u /* "DICT" */
#define SHARD_BITS 6
#define SHARDS     (1u << SHARD_BITS)
#define MIN_SLOTS  8u
#define TOMBSTONE  ((void *)1)

enum dict_op { OP_STORE = 1, OP_REPLACE, OP_REMOVE, OP_RESIZE, OP_CLEAR };

typedef struct slot {
  _Atomic uint64_t hash;
  _Atomic(void *) entry; /* NULL, TOMBSTONE or an mp__entry_t */
} slot_t;

typedef struct table {
  uint64_t bytes; /* of the block (store.h) */
  uint64_t mask;  /* slots - 1 */
  slot_t slots[];
} table_t;

typedef struct shard {
  mp__mutex_t lock;
  /* Guarded by lock: */
  _Atomic(void *) table; /* table_t, NULL while empty */
  mp__intent_t intent;
  _Atomic uint64_t count;         /* live entries */
  _Atomic uint64_t used;          /* live entries and tombstones */
  _Atomic uint64_t cleared_epoch; /* the dict's clear this stripe did last */
  struct mp_dict *dict;           /* set at creation */
} __attribute__((aligned(64))) shard_t;

/* The replacement of a value (the most common change) writes one line of
 * its stripe: the lock's, which holds everything it changes (store.h). */
_Static_assert(offsetof(shard_t, intent.spares[1]) == 64, "stripe layout");

struct mp_dict {
  _Atomic uint32_t magic;
  uint32_t generation;
  uint64_t seed; /* of the hash; set at creation */
  /* The number of the last clear (written under every stripe's lock):
   * setting it is the commit point of a clear, and a stripe whose
   * cleared_epoch is behind it owes that clear (a process died in the
   * middle of mp_dict_clear; see stripe_recover). */
  _Atomic uint64_t clear_epoch;
  /* An update's batch, NULL but while one is made and installed (guarded
   * by every stripe's lock; see the top of the file). */
  _Atomic(void *) staged;
  char pad[32];
  shard_t shards[SHARDS];
};
MP__OBJECT_LAYOUT(mp_dict_t);

/* ---- finishing and recovering -------------------------------------------- */

static bool is_live(const void *e) {
  return e != NULL && e != TOMBSTONE;
}

/* Frees the entries of a table taken out of the stripe, then the table. */
static void free_retired(mp__intent_t *in) {
  table_t *t = MP__GET(&in->old);
  if (!t)
    return;
  for (uint64_t i = 0; i <= t->mask; i++)
    if (is_live(MP__GET(&t->slots[i].entry)))
      mp__store_release(in, &t->slots[i].entry);
  mp__store_release(in, &in->old);
}

/* Completes the op in the intent (see the top of the file). Idempotent. */
static void stripe_finish(shard_t *s) {
  mp__intent_t *in = &s->intent;
  switch (MP__GET(&in->op)) {
  case OP_STORE:
    mp__intent_swap(in);
    MP__PUT(&s->count, MP__GET(&in->a));
    MP__PUT(&s->used, MP__GET(&in->b));
    break;
  case OP_REPLACE:
    mp__intent_swap(in);
    break;
  case OP_REMOVE:
    MP__PUT(in->target, TOMBSTONE);
    MP__PUT(&s->count, MP__GET(&in->a));
    mp__store_release(in, &in->old);
    break;
  case OP_RESIZE:
    mp__intent_swap(in);
    MP__PUT(&s->used, MP__GET(&in->a));
    break;
  case OP_CLEAR:
    MP__PUT(&s->table, NULL);
    MP__PUT(&s->count, 0);
    MP__PUT(&s->used, 0);
    free_retired(in);
    break;
  }
  mp__intent_end(in);
}

static void stripe_clear(shard_t *s);

/* Whether the block p is the entry of a committed batch that is being
 * installed: a stripe's `fresh` holds it before the op's commit point, and
 * the batch still owns it then. */
static bool batch_owns(mp_dict_t *d, void *p) {
  mp__batch_t *b = MP__GET(&d->staged);
  if (!p || !b || !MP__GET(&b->committed))
    return false;
  uint64_t i = MP__GET(&b->done);
  return i < b->n && MP__GET(&b->entries[i]) == p;
}

static void stripe_recover(void *obj) {
  shard_t *s = obj;
  mp__intent_t *in = &s->intent;
  if (MP__GET(&in->op) != MP__INTENT_NONE) {
    stripe_finish(s);
  } else {
    if (batch_owns(s->dict, MP__GET(&in->fresh)))
      MP__PUT(&in->fresh, NULL);
    mp__intent_drop(in);
  }
  uint64_t epoch = MP__GET(&s->dict->clear_epoch);
  if (MP__GET(&s->cleared_epoch) != epoch) {
    stripe_clear(s);
    MP__PUT(&s->cleared_epoch, epoch);
  }
}

static int stripe_lock(shard_t *s) {
  return mp__store_lock(&s->lock, &s->intent, stripe_recover, s);
}

static void stripe_unlock(shard_t *s) {
  mp__mutex_release(&s->lock);
}

/* ---- lookup ---------------------------------------------------------------
 */

typedef struct probe {
  slot_t *found; /* the key's slot, or NULL */
  slot_t *free;  /* where it would go: the first tombstone or empty slot */
} probe_t;

static bool entry_has_key(const mp__entry_t *e, const void *key, size_t klen) {
  return e->klen == klen && memcmp(mp__entry_key(e), key, klen) == 0;
}

/* Under the stripe lock. The table always has an empty slot (its load is
 * kept under 3/4), so the probe ends. */
static probe_t probe(shard_t *s, uint64_t hash, const void *key, size_t klen) {
  probe_t p = {NULL, NULL};
  table_t *t = MP__GET(&s->table);
  if (!t)
    return p;
  for (uint64_t i = hash & t->mask;; i = (i + 1) & t->mask) {
    slot_t *slot = &t->slots[i];
    void *e = MP__GET(&slot->entry);
    if (!e) {
      if (!p.free)
        p.free = slot;
      return p;
    }
    if (e == TOMBSTONE) {
      if (!p.free)
        p.free = slot;
    } else if (MP__GET(&slot->hash) == hash && entry_has_key(e, key, klen)) {
      p.found = slot;
      return p;
    }
  }
}

static mp__entry_t *found_entry(const probe_t *p) {
  return p->found ? MP__GET(&p->found->entry) : NULL;
}

/* ---- changes (under the stripe lock) -------------------------------------
 */

static void table_put(table_t *t, uint64_t hash, void *entry) {
  uint64_t i = hash & t->mask;
  while (t->slots[i].entry)
    i = (i + 1) & t->mask;
  atomic_init(&t->slots[i].hash, hash);
  atomic_init(&t->slots[i].entry, entry);
}

/* Rebuilds the stripe's table with room for `need` live entries (dropping
 * tombstones): a new table is filled aside, then installed in one store. */
static int stripe_resize(shard_t *s, uint64_t need) {
  uint64_t slots = MIN_SLOTS;
  while (slots / 2 < need)
    slots *= 2;
  mp__intent_t *in = &s->intent;
  int rc = mp__store_alloc(in, &in->fresh,
                           sizeof(table_t) + slots * sizeof(slot_t), true);
  if (rc < 0)
    return rc;
  table_t *fresh = MP__GET(&in->fresh);
  fresh->mask = slots - 1;
  table_t *t = MP__GET(&s->table);
  for (uint64_t i = 0; t && i <= t->mask; i++) {
    void *e = MP__GET(&t->slots[i].entry);
    if (is_live(e))
      table_put(fresh, MP__GET(&t->slots[i].hash), e);
  }
  MP__PUT(&in->old, t);
  in->target = &s->table;
  MP__PUT(&in->a, MP__GET(&s->count));
  mp__intent_begin(in, OP_RESIZE);
  stripe_finish(s);
  return 0;
}

/* Makes room for `extra` more entries. */
static int stripe_reserve(shard_t *s, uint64_t extra) {
  table_t *t = MP__GET(&s->table);
  uint64_t used = MP__GET(&s->used);
  if (t && (used + extra) * 4 <= (t->mask + 1) * 3)
    return 0;
  return stripe_resize(s, MP__GET(&s->count) + extra);
}

static void stripe_put(shard_t *s, uint64_t hash, probe_t p);

/* Stores key -> val in the stripe (p: the key's probe). */
static int stripe_store(shard_t *s, uint64_t hash, const void *key, size_t klen,
                        const void *val, size_t vlen, probe_t p) {
  if (!p.found) {
    table_t *t = MP__GET(&s->table);
    int rc = stripe_reserve(s, 1);
    if (rc < 0)
      return rc;
    if (MP__GET(&s->table) != t)
      p = probe(s, hash, key, klen);
  }
  mp__intent_t *in = &s->intent;
  int rc = mp__store_entry(in, &in->fresh, key, klen, val, vlen);
  if (rc < 0)
    return rc;
  stripe_put(s, hash, p);
  return 0;
}

/* Puts the entry in the intent's `fresh` at the key's place (p: its probe,
 * with room for a new key). */
static void stripe_put(shard_t *s, uint64_t hash, probe_t p) {
  mp__intent_t *in = &s->intent;
  slot_t *slot = p.found ? p.found : p.free;
  if (p.found) {
    MP__PUT(&in->old, MP__GET(&slot->entry));
    in->target = &slot->entry;
    mp__intent_begin(in, OP_REPLACE);
    stripe_finish(s);
    return;
  }
  /* The hash of a slot that is not live means nothing yet. */
  MP__PUT(&slot->hash, hash);
  in->target = &slot->entry;
  MP__PUT(&in->a, MP__GET(&s->count) + 1);
  MP__PUT(&in->b, MP__GET(&s->used) + (MP__GET(&slot->entry) == NULL));
  mp__intent_begin(in, OP_STORE);
  stripe_finish(s);
}

static void stripe_remove(shard_t *s, slot_t *slot) {
  mp__intent_t *in = &s->intent;
  MP__PUT(&in->old, MP__GET(&slot->entry));
  in->target = &slot->entry;
  MP__PUT(&in->a, MP__GET(&s->count) - 1);
  mp__intent_begin(in, OP_REMOVE);
  stripe_finish(s);
}

static void stripe_clear(shard_t *s) {
  mp__intent_t *in = &s->intent;
  MP__PUT(&in->old, MP__GET(&s->table));
  mp__intent_begin(in, OP_CLEAR);
  stripe_finish(s);
}

/* ---- the handle and its key -----------------------------------------------
 */

typedef struct keyed {
  shard_t *shard;
  uint64_t hash;
} keyed_t;

static keyed_t key_of(mp_dict_t *d, const void *key, size_t klen) {
  uint64_t hash = mp__store_hash(d->seed, key, klen);
  return (keyed_t){&d->shards[hash >> (64 - SHARD_BITS)], hash};
}

/* Opens the handle *d (the dict's address in *d from now on). */
static int checked(mp_dict_t **d, const void *key, size_t klen, keyed_t *k) {
  if (!(*d = mp__object_open(*d, DICT_MAGIC)) || (klen && !key))
    return MP_EINVAL;
  *k = key_of(*d, key, klen);
  return 0;
}

/* ---- updates: batches (under every stripe's lock) -------------------------
 */

/* The batch's blocks are counted in stripe 0's intent (its lock is held
 * whenever a batch is made, installed or freed). */
static mp__intent_t *batch_intent(mp_dict_t *d) {
  return &d->shards[0].intent;
}

/* Makes the batch's entries, copies of the n pairs. */
static int batch_stage(mp_dict_t *d, const mp_dict_item_t *items, size_t n) {
  mp__intent_t *in = batch_intent(d);
  int rc = mp__batch_new(in, &d->staged, n);
  mp__batch_t *b = MP__GET(&d->staged);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = mp__store_entry(in, &b->entries[i], items[i].key, items[i].klen,
                         items[i].val, items[i].vlen);
  return rc;
}

/* Grows every table the batch adds keys to, so that installing it needs no
 * memory. */
static int batch_reserve(mp_dict_t *d, mp__batch_t *b) {
  uint64_t extra[SHARDS] = {0};
  for (uint64_t i = 0; i < b->n; i++) {
    mp__entry_t *e = MP__GET(&b->entries[i]);
    keyed_t k = key_of(d, mp__entry_key(e), e->klen);
    if (!probe(k.shard, k.hash, mp__entry_key(e), e->klen).found)
      extra[k.shard - d->shards]++;
  }
  for (unsigned i = 0; i < SHARDS; i++) {
    int rc = extra[i] ? stripe_reserve(&d->shards[i], extra[i]) : 0;
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* Installs the committed batch's pairs from `done` on, in order (a later
 * pair of the same key wins). Idempotent. */
static void batch_install(mp_dict_t *d, mp__batch_t *b) {
  for (uint64_t i = MP__GET(&b->done); i < b->n; i++) {
    mp__entry_t *e = MP__GET(&b->entries[i]);
    keyed_t k = key_of(d, mp__entry_key(e), e->klen);
    probe_t p = probe(k.shard, k.hash, mp__entry_key(e), e->klen);
    if (found_entry(&p) != e) { /* else installed before a death */
      MP__PUT(&k.shard->intent.fresh, (void *)e);
      stripe_put(k.shard, k.hash, p);
    }
    MP__PUT(&b->done, i + 1);
  }
}

/* Finishes a committed batch, or drops one that was not, and frees it. */
static void dict_settle(mp_dict_t *d) {
  mp__batch_t *b = MP__GET(&d->staged);
  if (!b)
    return;
  if (MP__GET(&b->committed))
    batch_install(d, b);
  mp__batch_free(batch_intent(d), &d->staged);
}

/* ---- locking ---------------------------------------------------------------
 */

/* Takes every stripe of the open dict d, in index order (see Locks); then a
 * batch whose maker died is settled. */
static int lock_stripes(mp_dict_t *d) {
  for (unsigned i = 0; i < SHARDS; i++) {
    int rc = stripe_lock(&d->shards[i]);
    if (rc < 0) {
      while (i-- > 0)
        stripe_unlock(&d->shards[i]);
      return rc;
    }
  }
  dict_settle(d);
  return 0;
}

/* Opens the handle *d (as checked) and takes every stripe. */
static int lock_all(mp_dict_t **d) {
  if (!(*d = mp__object_open(*d, DICT_MAGIC)))
    return MP_EINVAL;
  return lock_stripes(*d);
}

static void unlock_all(mp_dict_t *d) {
  for (unsigned i = SHARDS; i-- > 0;)
    stripe_unlock(&d->shards[i]);
}

/* Takes the key's stripe and probes for it. A batch found there was left
 * by a dead process (a live one holds every lock while it has one): it is
 * settled under every lock first. */
static int lock_key(mp_dict_t **d, const void *key, size_t klen, keyed_t *k,
                    probe_t *p) {
  int rc = checked(d, key, klen, k);
  while (rc == 0 && (rc = stripe_lock(k->shard)) == 0 &&
         __builtin_expect(MP__GET(&(*d)->staged) != NULL, 0)) {
    stripe_unlock(k->shard);
    if ((rc = lock_stripes(*d)) == 0)
      unlock_all(*d);
  }
  if (rc == 0)
    *p = probe(k->shard, k->hash, key, klen);
  return rc;
}

/* ---- the public functions -------------------------------------------------
 */

mp_dict_t *mp_dict_new(void) {
  mp_dict_t *d = mp__store_new(sizeof *d);
  if (!d)
    return NULL;
  if (getrandom(&d->seed, sizeof d->seed, GRND_NONBLOCK) != sizeof d->seed)
    d->seed = mp__now_ns() * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
  for (unsigned i = 0; i < SHARDS; i++) {
    mp__mutex_init(&d->shards[i].lock, MP__LOCK_MAGIC);
    d->shards[i].dict = d;
  }
  return mp__object_publish(d, DICT_MAGIC);
}

int mp_dict_set(mp_dict_t *d, const void *key, size_t klen, const void *val,
                size_t vlen) {
  if (MP__DICT_REMOTE(d))
    return mp__remote_dict_set(MP__DICT_REMOTE(d), key, klen, val, vlen);
  keyed_t k;
  probe_t p;
  int rc = lock_key(&d, key, klen, &k, &p);
  if (rc < 0)
    return rc;
  rc = stripe_store(k.shard, k.hash, key, klen, val, vlen, p);
  stripe_unlock(k.shard);
  return rc;
}

/* get and get_into: a malloc'ed copy in *val, or else a copy into buf. */
static int dict_read(mp_dict_t *d, const void *key, size_t klen, void **val,
                     void *buf, size_t cap, size_t *vlen) {
  keyed_t k;
  probe_t p;
  int rc = lock_key(&d, key, klen, &k, &p);
  if (rc < 0)
    return rc;
  mp__entry_t *e = found_entry(&p);
  if (!e)
    rc = MP_EKEY;
  else
    rc = val ? mp__entry_copy(e, val, vlen)
             : mp__entry_copy_into(e, buf, cap, vlen);
  stripe_unlock(k.shard);
  return rc;
}

int mp_dict_get(mp_dict_t *d, const void *key, size_t klen, void **val,
                size_t *vlen) {
  if (!val)
    return MP_EINVAL;
  if (MP__DICT_REMOTE(d))
    return mp__remote_dict_get(MP__DICT_REMOTE(d), key, klen, val, vlen);
  return dict_read(d, key, klen, val, NULL, 0, vlen);
}

int mp_dict_get_into(mp_dict_t *d, const void *key, size_t klen, void *buf,
                     size_t cap, size_t *vlen) {
  if (cap && !buf)
    return MP_EINVAL;
  if (MP__DICT_REMOTE(d))
    return mp__remote_dict_get_into(MP__DICT_REMOTE(d), key, klen, buf, cap,
                                    vlen);
  return dict_read(d, key, klen, NULL, buf, cap, vlen);
}

int mp_dict_contains(mp_dict_t *d, const void *key, size_t klen) {
  if (MP__DICT_REMOTE(d))
    return mp__remote_dict_contains(MP__DICT_REMOTE(d), key, klen);
  keyed_t k;
  probe_t p;
  int rc = lock_key(&d, key, klen, &k, &p);
  if (rc < 0)
    return rc;
  stripe_unlock(k.shard);
  return p.found != NULL;
}

/* pop and del: val NULL drops the value. */
int mp_dict_pop(mp_dict_t *d, const void *key, size_t klen, void **val,
                size_t *vlen) {
  if (MP__DICT_REMOTE(d))
    return mp__remote_dict_pop(MP__DICT_REMOTE(d), key, klen, val, vlen);
  keyed_t k;
  probe_t p;
  int rc = lock_key(&d, key, klen, &k, &p);
  if (rc < 0)
    return rc;
  mp__entry_t *e = found_entry(&p);
  if (!e)
    rc = MP_EKEY;
  else if (val)
    rc = mp__entry_copy(e, val, vlen);
  if (rc == 0)
    stripe_remove(k.shard, p.found);
  stripe_unlock(k.shard);
  return rc;
}

int mp_dict_del(mp_dict_t *d, const void *key, size_t klen) {
  return mp_dict_pop(d, key, klen, NULL, NULL);
}

int mp_dict_setdefault(mp_dict_t *d, const void *key, size_t klen,
                       const void *dflt, size_t dlen, void **val,
                       size_t *vlen) {
  if (dlen && !dflt)
    return MP_EINVAL;
  if (MP__DICT_REMOTE(d))
    return mp__remote_dict_setdefault(MP__DICT_REMOTE(d), key, klen, dflt, dlen,
                                      val, vlen);
  keyed_t k;
  probe_t p;
  int rc = lock_key(&d, key, klen, &k, &p);
  if (rc < 0)
    return rc;
  bool absent = !p.found;
  if (absent)
    rc = stripe_store(k.shard, k.hash, key, klen, dflt, dlen, p);
  if (rc == 0 && val) {
    p = probe(k.shard, k.hash, key, klen);
    rc = mp__entry_copy(found_entry(&p), val, vlen);
  }
  stripe_unlock(k.shard);
  return rc < 0 ? rc : absent;
}

int mp_dict_modify(mp_dict_t *d, const void *key, size_t klen,
                   mp_dict_modify_cb fn, void *arg) {
  if (!fn)
    return MP_EINVAL;
  if (MP__DICT_REMOTE(d))
    return mp__remote_dict_modify(MP__DICT_REMOTE(d), key, klen, fn, arg);
  keyed_t k;
  probe_t p;
  int rc = lock_key(&d, key, klen, &k, &p);
  if (rc < 0)
    return rc;
  mp__entry_t *e = found_entry(&p);
  const void *nval = NULL;
  size_t nlen = 0;
  rc = fn(e ? mp__entry_value(e) : NULL, e ? e->vlen : 0, e != NULL, &nval,
          &nlen, arg);
  if (rc == MP_DICT_STORE)
    rc = stripe_store(k.shard, k.hash, key, klen, nval, nlen, p);
  else if (rc == MP_DICT_DELETE && e)
    stripe_remove(k.shard, p.found);
  if (rc == MP_DICT_DELETE || rc == MP_DICT_KEEP)
    rc = 0;
  else if (rc > 0)
    rc = MP_EINVAL;
  stripe_unlock(k.shard);
  return rc;
}

int mp_dict_len(mp_dict_t *d, size_t *n) {
  if (!n)
    return MP_EINVAL;
  if (MP__DICT_REMOTE(d))
    return mp__remote_len(MP__DICT_REMOTE(d), MP__OP_DICT_LEN, n);
  int rc = lock_all(&d);
  if (rc < 0)
    return rc;
  size_t total = 0;
  for (unsigned i = 0; i < SHARDS; i++)
    total += MP__GET(&d->shards[i].count);
  unlock_all(d);
  *n = total;
  return 0;
}

int mp_dict_update(mp_dict_t *d, const mp_dict_item_t *items, size_t n) {
  if (n && !items)
    return MP_EINVAL;
  /* Checked first: a bad pair is refused before any lock is taken (a size
   * that overflows is refused while the batch is made: nothing stored). */
  for (size_t i = 0; i < n; i++)
    if ((items[i].klen && !items[i].key) || (items[i].vlen && !items[i].val))
      return MP_EINVAL;
  if (MP__DICT_REMOTE(d))
    return mp__remote_dict_update(MP__DICT_REMOTE(d), items, n);
  int rc = lock_all(&d);
  if (rc < 0)
    return rc;
  rc = n ? batch_stage(d, items, n) : 0;
  mp__batch_t *b = MP__GET(&d->staged);
  if (rc == 0 && b)
    rc = batch_reserve(d, b);
  if (rc == 0 && b)
    MP__PUT(&b->committed, 1); /* the commit point */
  dict_settle(d);
  unlock_all(d);
  return rc;
}

/* The snapshot of keys (and values): sizes first, then one buffer. */
static int snapshot(mp_dict_t *d, bool values, mp_dict_item_t **out,
                    size_t *n) {
  if (!out || !n)
    return MP_EINVAL;
  if (MP__DICT_REMOTE(d))
    return mp__remote_dict_items(MP__DICT_REMOTE(d), values, out, n);
  int rc = lock_all(&d);
  if (rc < 0)
    return rc;
  size_t count = 0, bytes = 0;
  for (unsigned i = 0; i < SHARDS; i++) {
    table_t *t = MP__GET(&d->shards[i].table);
    for (uint64_t j = 0; t && j <= t->mask; j++) {
      mp__entry_t *e = MP__GET(&t->slots[j].entry);
      if (is_live(e)) {
        count++;
        bytes += e->klen + (values ? e->vlen : 0);
      }
    }
  }
  mp_dict_item_t *items = malloc(count * sizeof *items + bytes + 1);
  if (!items) {
    unlock_all(d);
    return -ENOMEM;
  }
  unsigned char *at = (unsigned char *)(items + count);
  size_t k = 0;
  for (unsigned i = 0; i < SHARDS; i++) {
    table_t *t = MP__GET(&d->shards[i].table);
    for (uint64_t j = 0; t && j <= t->mask; j++) {
      mp__entry_t *e = MP__GET(&t->slots[j].entry);
      if (!is_live(e))
        continue;
      size_t len = e->klen + (values ? e->vlen : 0);
      memcpy(at, e->data, len);
      items[k++] = (mp_dict_item_t){at, e->klen, values ? at + e->klen : NULL,
                                    values ? e->vlen : 0};
      at += len;
    }
  }
  unlock_all(d);
  *out = items;
  *n = count;
  return 0;
}

int mp_dict_items(mp_dict_t *d, mp_dict_item_t **items, size_t *n) {
  return snapshot(d, true, items, n);
}

int mp_dict_keys(mp_dict_t *d, mp_dict_item_t **keys, size_t *n) {
  return snapshot(d, false, keys, n);
}

int mp_dict_clear(mp_dict_t *d) {
  if (MP__DICT_REMOTE(d))
    return mp__remote_simple(MP__DICT_REMOTE(d), MP__OP_DICT_CLEAR);
  int rc = lock_all(&d);
  if (rc < 0)
    return rc;
  uint64_t epoch = MP__GET(&d->clear_epoch) + 1;
  MP__PUT(&d->clear_epoch, epoch); /* the commit point */
  for (unsigned i = 0; i < SHARDS; i++) {
    stripe_clear(&d->shards[i]);
    MP__PUT(&d->shards[i].cleared_epoch, epoch);
  }
  unlock_all(d);
  return 0;
}

void mp_dict_free(mp_dict_t *d) {
  if (MP__DICT_REMOTE(d)) {
    mp__remote_free(MP__DICT_REMOTE(d));
    return;
  }
  if (!d || mp_dict_clear(d) < 0)
    return;
  d = mp__object_retire(d, DICT_MAGIC, "dict");
  for (unsigned i = 0; i < SHARDS; i++)
    mp__store_free_spares(&d->shards[i].intent);
  mp__shm_free(d);
}

/* For tests: at most how many arena bytes processes killed inside the
 * arena lost for d. */
uint64_t mp__dict_arena_lost(const mp_dict_t *d);
uint64_t mp__dict_arena_lost(const mp_dict_t *d) {
  d = mp__object_address(d);
  uint64_t lost = 0;
  for (unsigned i = 0; i < SHARDS; i++)
    lost += mp__intent_arena_lost(&d->shards[i].intent);
  return lost;
}
