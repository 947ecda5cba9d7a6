/* Python's == and hash for values: equal values hash alike across kinds
 * (hash(1) == hash(1.0) == hash(True)), so dicts and sets find 1.0 under 1.
 * Both walk nesting with an explicit stack, never the C stack; the one
 * exception is looking a key up in a dict or set whose keys collide, which
 * compares the candidates with a nested call (rare: it takes equal 64-bit
 * hashes of unequal keys). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "obj/obj_internal.h"

/* ---- Hashing ------------------------------------------------------------ */

uint64_t mp__hash_bytes(const void *buf, size_t len) {
  const unsigned char *p = buf;
  uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ mp__mix64(w)) * 0x100000001b3ull;
  }
  uint64_t tail = 0; /* short keys end here: no call to memcpy */
  for (size_t k = 0; i + k < len; k++)
    tail |= (uint64_t)p[i + k] << (8 * k);
  return mp__mix64(h ^ tail ^ (uint64_t)(len - i) << 56);
}

static uint64_t hash_int64(int64_t v) {
  return mp__mix64((uint64_t)v);
}

#define TWO_63 9223372036854775808.0

/* Integral doubles in int64's range hash as that int; others by bits. */
static uint64_t hash_double(double d) {
  if (d >= -TWO_63 && d < TWO_63 && d == floor(d))
    return hash_int64((int64_t)d);
  uint64_t bits;
  memcpy(&bits, &d, 8);
  return mp__mix64(bits ^ 0x5bd1e995ull);
}

/* The hash cached in a body, and its state (enum mp__hash_state). Threads
 * reading one value at once may both compute a hash and store it: the same
 * value, published with release and read with acquire. */
static int cached(const mp__body_t *b, uint64_t *hash) {
  int state = __atomic_load_n(&b->hash_state, __ATOMIC_ACQUIRE);
  if (state == MP__HASH_KNOWN)
    *hash = __atomic_load_n(&b->hash, __ATOMIC_RELAXED);
  return state;
}

static void cache(mp__body_t *b, int state, uint64_t hash) {
  __atomic_store_n(&b->hash, hash, __ATOMIC_RELAXED);
  __atomic_store_n(&b->hash_state, (uint8_t)state, __ATOMIC_RELEASE);
}

/* A hash for values that need no walk (everything but tuples). */
static bool hash_flat(const mp_obj_t *o, uint64_t *out) {
  switch (o->kind) {
  case MP_OBJ_NONE:
    *out = 0x6e6f6e65ull;
    return true;
  case MP_OBJ_BOOL:
    *out = hash_int64(o->u.i);
    return true;
  case MP_OBJ_FLOAT:
    *out = hash_double(o->u.f);
    return true;
  case MP_OBJ_INT:
    if (!(o->flags & MP__CELL_BIG)) {
      *out = hash_int64(o->u.i);
      return true;
    }
    break;
  default:
    break;
  }
  mp__body_t *b = o->u.body;
  uint64_t h;
  switch (cached(b, out)) {
  case MP__HASH_KNOWN:
    return true;
  case MP__HASH_UNHASHABLE:
    return false;
  }
  switch (o->kind) {
  case MP_OBJ_INT: {
    bool exact;
    double d = mp__bigint_to_double(mp__body_data(b), b->len, &exact);
    h = exact ? hash_double(d) : mp__hash_bytes(mp__body_data(b), b->len);
    break;
  }
  case MP_OBJ_STR:
  case MP_OBJ_BYTES:
    h = mp__hash_bytes(mp__body_data(b), b->len) ^ o->kind;
    break;
  case MP_OBJ_FROZENSET:
    /* Order-free; every element was hashed when it went in. */
    h = 0x66726f7aull + b->len;
    for (size_t i = 0; i < b->len; i++) {
      uint64_t e = 0;
      mp__obj_hash(&b->u.c.items[i], &e);
      h += mp__mix64(e ^ 0x2545f4914f6cdd1dull);
    }
    h = mp__mix64(h);
    break;
  default: /* list, dict, set: Python's TypeError: unhashable */
    cache(b, MP__HASH_UNHASHABLE, 0);
    return false;
  }
  cache(b, MP__HASH_KNOWN, h);
  *out = h;
  return true;
}

typedef struct hash_frame {
  mp__body_t *tuple;
  size_t next;
  uint64_t acc;
} hash_frame_t;

/* Tuples hash their items in order; nested tuples are walked with an
 * explicit stack, each one's hash cached when done. */
static bool hash_tuple(mp__body_t *root, uint64_t *out) {
  hash_frame_t small[16], *frames = small;
  size_t n = 0, cap = 16;
  bool ok = true, no_memory = false;
  uint64_t h = 0;
  frames[n++] = (hash_frame_t){root, 0, 0x7475706cull};
  while (n > 0 && ok) {
    hash_frame_t *f = &frames[n - 1];
    if (f->next == f->tuple->len) {
      h = mp__mix64(f->acc ^ f->tuple->len);
      cache(f->tuple, MP__HASH_KNOWN, h);
      if (--n > 0)
        frames[n - 1].acc = (frames[n - 1].acc ^ h) * 0x100000001b3ull;
      continue;
    }
    const mp_obj_t *item = &f->tuple->u.c.items[f->next++];
    uint64_t ih = 0;
    int state = item->kind == MP_OBJ_TUPLE ? cached(item->u.body, &ih)
                : hash_flat(item, &ih)     ? MP__HASH_KNOWN
                                           : MP__HASH_UNHASHABLE;
    if (state == MP__HASH_UNKNOWN) { /* a tuple inside: walk it first */
      if (n == cap &&
          !mp__frames_grow((void **)&frames, small, &cap, sizeof *frames)) {
        ok = false; /* unhashable for now; nothing cached */
        no_memory = true;
        break;
      }
      frames[n++] = (hash_frame_t){item->u.body, 0, 0x7475706cull};
    } else if (state == MP__HASH_KNOWN) {
      f->acc = (f->acc ^ ih) * 0x100000001b3ull;
    } else {
      ok = false;
    }
  }
  if (!ok && !no_memory)
    for (size_t i = 0; i < n; i++)
      cache(frames[i].tuple, MP__HASH_UNHASHABLE, 0);
  if (frames != small)
    free(frames);
  if (ok)
    *out = h;
  return ok;
}

bool mp__obj_hash(const mp_obj_t *o, uint64_t *hash) {
  if (o->kind != MP_OBJ_TUPLE)
    return hash_flat(o, hash);
  switch (cached(o->u.body, hash)) {
  case MP__HASH_KNOWN:
    return true;
  case MP__HASH_UNHASHABLE:
    return false;
  }
  return hash_tuple(o->u.body, hash);
}

/* ---- Equality ------------------------------------------------------------ */

enum shallow { NOT_EQUAL, EQUAL, DESCEND };

static bool is_number(const mp_obj_t *o) {
  return o->kind == MP_OBJ_BOOL || o->kind == MP_OBJ_INT ||
         o->kind == MP_OBJ_FLOAT;
}

static bool int64_equals_double(int64_t i, double d) {
  return d >= -TWO_63 && d < TWO_63 && d == floor(d) && (int64_t)d == i;
}

static bool numbers_equal(const mp_obj_t *a, const mp_obj_t *b) {
  if (a->kind == MP_OBJ_FLOAT && b->kind == MP_OBJ_FLOAT)
    return a->u.f == b->u.f;
  if (b->kind == MP_OBJ_FLOAT) {
    const mp_obj_t *t = a;
    a = b;
    b = t;
  }
  bool big = (b->flags & MP__CELL_BIG) != 0;
  if (a->kind == MP_OBJ_FLOAT)
    return big ? mp__bigint_equals_double(mp__body_data(b->u.body),
                                          b->u.body->len, a->u.f)
               : int64_equals_double(b->u.i, a->u.f);
  bool abig = (a->flags & MP__CELL_BIG) != 0;
  if (abig != big) /* big ints never fit int64 */
    return false;
  if (!big)
    return a->u.i == b->u.i;
  return a->u.body->len == b->u.body->len &&
         memcmp(mp__body_data(a->u.body), mp__body_data(b->u.body),
                a->u.body->len) == 0;
}

static bool is_set(const mp_obj_t *o) {
  return o->kind == MP_OBJ_SET || o->kind == MP_OBJ_FROZENSET;
}

static enum shallow compare_shallow(const mp_obj_t *a, const mp_obj_t *b) {
  if (is_number(a) || is_number(b))
    return is_number(a) && is_number(b) && numbers_equal(a, b) ? EQUAL
                                                               : NOT_EQUAL;
  if (a->kind != b->kind && !(is_set(a) && is_set(b)))
    return NOT_EQUAL;
  if (a->kind == MP_OBJ_NONE)
    return EQUAL;
  if (a->u.body == b->u.body && a->kind != MP_OBJ_TUPLE &&
      a->kind != MP_OBJ_LIST && a->kind != MP_OBJ_DICT)
    return EQUAL; /* shared, and nothing inside can be a NaN */
  if (a->u.body->len != b->u.body->len)
    return NOT_EQUAL;
  if (a->kind == MP_OBJ_STR || a->kind == MP_OBJ_BYTES)
    return memcmp(mp__body_data(a->u.body), mp__body_data(b->u.body),
                  a->u.body->len) == 0
               ? EQUAL
               : NOT_EQUAL;
  return DESCEND;
}

typedef struct eq_frame {
  const mp_obj_t *a, *b;
  size_t next; /* entry of a to compare next */
} eq_frame_t;

/* The next pair of cells to compare inside frame f, or false when f is
 * done. *mismatch is set when a dict or set lacks a key of the other. */
static bool next_pair(eq_frame_t *f, const mp_obj_t **x, const mp_obj_t **y,
                      bool *mismatch) {
  const mp__body_t *ab = f->a->u.body, *bb = f->b->u.body;
  if (f->next == ab->len)
    return false;
  size_t i = f->next++;
  if (f->a->kind == MP_OBJ_TUPLE || f->a->kind == MP_OBJ_LIST) {
    *x = &ab->u.c.items[i];
    *y = &bb->u.c.items[i];
    return true;
  }
  size_t stride = f->a->kind == MP_OBJ_DICT ? 2 : 1;
  const mp_obj_t *key = &ab->u.c.items[i * stride];
  uint64_t h = 0;
  mp__obj_hash(key, &h);
  size_t at = mp__hashed_find(f->b, key, h);
  if (at == SIZE_MAX) {
    *mismatch = true;
    return false;
  }
  if (stride == 1) { /* the element is there: nothing more to compare */
    *x = *y = NULL;
    return true;
  }
  *x = &ab->u.c.items[2 * i + 1];
  *y = &bb->u.c.items[2 * at + 1];
  return true;
}

bool mp_obj_equal(const mp_obj_t *a, const mp_obj_t *b) {
  if (!a || !b)
    return a == b;
  enum shallow s = compare_shallow(a, b);
  if (s != DESCEND)
    return s == EQUAL;
  eq_frame_t small[16], *frames = small;
  size_t n = 0, cap = 16;
  bool equal = true;
  frames[n++] = (eq_frame_t){a, b, 0};
  while (n > 0 && equal) {
    const mp_obj_t *x, *y;
    bool mismatch = false;
    if (!next_pair(&frames[n - 1], &x, &y, &mismatch)) {
      equal = !mismatch;
      n--;
      continue;
    }
    if (!x)
      continue;
    s = compare_shallow(x, y);
    if (s == NOT_EQUAL) {
      equal = false;
    } else if (s == DESCEND) {
      if (n == cap &&
          !mp__frames_grow((void **)&frames, small, &cap, sizeof *frames)) {
        equal = false; /* cannot tell without memory: say unequal */
        break;
      }
      frames[n++] = (eq_frame_t){x, y, 0};
    }
  }
  if (frames != small)
    free(frames);
  return equal;
}

/* ---- Lookups in dicts and sets -------------------------------------- */

/* The entry of a dict or set body equal to key (whose hash is h), or
 * SIZE_MAX; then *free_slot is the index slot where it would go. One probe
 * serves both the lookup and the insertion. */
size_t mp__hashed_probe(const mp__body_t *b, size_t stride, const mp_obj_t *key,
                        uint64_t h, size_t *free_slot) {
  uint64_t high = mp__slot(0, h) - 1, *index = b->u.c.index;
  size_t s = h & b->u.c.index_mask;
  for (; index[s]; s = (s + 1) & b->u.c.index_mask) {
    if ((index[s] & 0xffffffff00000000ull) != high)
      continue;
    size_t e = (size_t)(index[s] & 0xffffffffu) - 1;
    if (mp_obj_equal(&b->u.c.items[e * stride], key))
      return e;
  }
  *free_slot = s;
  return SIZE_MAX;
}

size_t mp__hashed_find(const mp_obj_t *c, const mp_obj_t *key, uint64_t hash) {
  size_t unused;
  if (!c->u.body->u.c.index)
    return SIZE_MAX;
  return mp__hashed_probe(c->u.body, c->kind == MP_OBJ_DICT ? 2 : 1, key, hash,
                          &unused);
}
