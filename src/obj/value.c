/* The value type: making, reading, growing and freeing values. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "obj/obj_internal.h"

/* ---- Bodies and cells -------------------------------------------------- */

void mp__cell_release(mp_obj_t *o) {
  if (!mp__obj_has_body(o) || --o->u.body->refs > 0)
    return;
  if (!mp__body_is_container(o->u.body)) {
    free(o->u.body);
    return;
  }
  /* A worklist threaded through the containers themselves: freeing needs
   * no memory and no recursion, however deep the value. A container joins
   * it once, when its last reference goes. */
  mp__body_t *todo = o->u.body;
  todo->u.c.next_free = NULL;
  while (todo) {
    mp__body_t *b = todo;
    todo = b->u.c.next_free;
    size_t n = b->kind == MP_OBJ_DICT ? 2 * b->len : b->len;
    for (size_t i = 0; i < n; i++) {
      mp_obj_t *item = &b->u.c.items[i];
      if (!mp__obj_has_body(item) || --item->u.body->refs > 0)
        continue;
      if (mp__body_is_container(item->u.body)) {
        item->u.body->u.c.next_free = todo;
        todo = item->u.body;
      } else {
        free(item->u.body);
      }
    }
    free(b->u.c.items);
    free(b->u.c.index);
    free(b);
  }
}

mp_obj_t *mp__cell_to_root(const mp_obj_t *cell) {
  mp_obj_t *o = malloc(sizeof *o);
  if (!o)
    return NULL;
  *o = *cell;
  o->flags |= MP__CELL_ROOT;
  return o;
}

static mp_obj_t *new_root(const mp_obj_t *cell) {
  mp_obj_t *o = mp__cell_to_root(cell);
  if (!o) {
    mp_obj_t copy = *cell;
    mp__cell_release(&copy);
  }
  return o;
}

int mp__str_cell(mp_obj_t *cell, const char *utf8, size_t len, size_t chars) {
  mp__body_t *b = mp__body_new(len);
  if (!b)
    return -ENOMEM;
  b->kind = MP_OBJ_STR;
  b->u.chars = chars;
  memcpy(mp__body_data(b), utf8, len);
  *cell = (mp_obj_t){.kind = MP_OBJ_STR, .u.body = b};
  return 0;
}

int mp__bytes_cell(mp_obj_t *cell, const void *buf, size_t len) {
  mp__body_t *b = mp__body_new(len);
  if (!b)
    return -ENOMEM;
  b->kind = MP_OBJ_BYTES;
  if (len)
    memcpy(mp__body_data(b), buf, len);
  *cell = (mp_obj_t){.kind = MP_OBJ_BYTES, .u.body = b};
  return 0;
}

int mp__container_cell(mp_obj_t *cell, mp_obj_kind_t kind, size_t cap) {
  mp__body_t *b = malloc(sizeof *b);
  if (!b)
    return -ENOMEM;
  mp__body_init(b, 0);
  b->kind = (uint8_t)kind;
  memset(&b->u.c, 0, sizeof b->u.c);
  b->u.c.weight = sizeof *b;
  b->u.c.depth = 1;
  if (cap) {
    size_t cells = kind == MP_OBJ_DICT ? 2 * cap : cap;
    b->u.c.items = malloc(cells * sizeof(mp_obj_t));
    if (!b->u.c.items) {
      free(b);
      return -ENOMEM;
    }
    b->u.c.cap = cap;
  }
  *cell = (mp_obj_t){.kind = (uint8_t)kind, .u.body = b};
  return 0;
}

/* ---- UTF-8 ------------------------------------------------------------- */

bool mp__utf8_check(const unsigned char *s, size_t len, bool surrogates,
                    size_t *chars) {
  size_t i = 0, n = 0;
  while (i < len) {
    /* Eight ASCII bytes at a time: the common case. */
    while (i + 8 <= len) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull)
        break;
      i += 8;
      n += 8;
    }
    if (i >= len)
      break;
    unsigned c = s[i];
    size_t need;
    unsigned lo = 0x80, hi = 0xbf; /* the second byte's range */
    if (c < 0x80) {
      i++;
      n++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c == 0xe0)
        lo = 0xa0;
      else if (c == 0xed && !surrogates)
        hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c == 0xf0)
        lo = 0x90;
      else if (c == 0xf4)
        hi = 0x8f;
    } else {
      return false;
    }
    if (len - i <= need || s[i + 1] < lo || s[i + 1] > hi)
      return false;
    for (size_t k = 2; k <= need; k++)
      if ((s[i + k] & 0xc0) != 0x80)
        return false;
    i += need + 1;
    n++;
  }
  *chars = n;
  return true;
}

/* ---- Constructors ------------------------------------------------------ */

mp_obj_t *mp_obj_none(void) {
  return new_root(&(mp_obj_t){.kind = MP_OBJ_NONE});
}

mp_obj_t *mp_obj_bool(bool v) {
  return new_root(&(mp_obj_t){.kind = MP_OBJ_BOOL, .u.i = v ? 1 : 0});
}

mp_obj_t *mp_obj_int(int64_t v) {
  return new_root(&(mp_obj_t){.kind = MP_OBJ_INT, .u.i = v});
}

mp_obj_t *mp_obj_int_from_bytes(const void *buf, size_t len) {
  mp_obj_t cell;
  if (!buf && len) {
    errno = EINVAL;
    return NULL;
  }
  if (mp__int_cell(&cell, buf, len) < 0) {
    errno = ENOMEM;
    return NULL;
  }
  return new_root(&cell);
}

mp_obj_t *mp_obj_float(double v) {
  return new_root(&(mp_obj_t){.kind = MP_OBJ_FLOAT, .u.f = v});
}

mp_obj_t *mp_obj_str(const char *utf8, size_t len) {
  size_t chars;
  if ((!utf8 && len) ||
      !mp__utf8_check((const unsigned char *)utf8, len, false, &chars)) {
    errno = EINVAL;
    return NULL;
  }
  mp_obj_t cell;
  if (mp__str_cell(&cell, utf8 ? utf8 : "", len, chars) < 0)
    return NULL;
  return new_root(&cell);
}

mp_obj_t *mp_obj_bytes(const void *buf, size_t len) {
  mp_obj_t cell;
  if (!buf && len) {
    errno = EINVAL;
    return NULL;
  }
  if (mp__bytes_cell(&cell, buf, len) < 0)
    return NULL;
  return new_root(&cell);
}

static mp_obj_t *new_container(mp_obj_kind_t kind) {
  mp_obj_t cell;
  if (mp__container_cell(&cell, kind, 0) < 0)
    return NULL;
  return new_root(&cell);
}

mp_obj_t *mp_obj_tuple(void) {
  return new_container(MP_OBJ_TUPLE);
}

mp_obj_t *mp_obj_list(void) {
  return new_container(MP_OBJ_LIST);
}

mp_obj_t *mp_obj_dict(void) {
  return new_container(MP_OBJ_DICT);
}

mp_obj_t *mp_obj_set(void) {
  return new_container(MP_OBJ_SET);
}

mp_obj_t *mp_obj_frozenset(void) {
  return new_container(MP_OBJ_FROZENSET);
}

/* ---- Growing containers ------------------------------------------------ */

int mp__reserve(mp__body_t *b, size_t n) {
  if (n <= b->u.c.cap - b->len)
    return 0;
  size_t cap = b->u.c.cap ? 2 * b->u.c.cap : 4;
  if (cap < b->len + n)
    cap = b->len + n;
  size_t per = b->kind == MP_OBJ_DICT ? 2 : 1;
  if (b->len + n < b->len || cap > SIZE_MAX / (per * sizeof(mp_obj_t)))
    return -ENOMEM;
  mp_obj_t *items = realloc(b->u.c.items, cap * per * sizeof(mp_obj_t));
  if (!items)
    return -ENOMEM;
  b->u.c.items = items;
  b->u.c.cap = cap;
  return 0;
}

/* Bookkeeping when item becomes part of container b: it is sealed, and
 * b's weight and depth include it. */
static void adopt(mp__body_t *b, mp_obj_t *slot, const mp_obj_t *item) {
  *slot = *item;
  slot->flags &= (uint8_t)~MP__CELL_ROOT;
  b->u.c.weight += mp__cell_weight(item);
  if (mp__obj_has_body(item)) {
    mp__body_t *ib = item->u.body;
    ib->sealed = 1;
    if (mp__body_is_container(ib) && ib->u.c.depth + 1 > b->u.c.depth)
      b->u.c.depth = ib->u.c.depth + 1;
  }
}

int mp__seq_push(mp_obj_t *seq, const mp_obj_t *item) {
  mp__body_t *b = seq->u.body;
  if (mp__reserve(b, 1) < 0)
    return -ENOMEM;
  adopt(b, &b->u.c.items[b->len], item);
  b->len++;
  return 0;
}

static void place(uint64_t *index, size_t mask, uint64_t hash, size_t entry) {
  size_t s = hash & mask;
  while (index[s])
    s = (s + 1) & mask;
  index[s] = mp__slot(entry, hash);
}

/* Grows the open-addressing index of a dict or set to keep it at most
 * two thirds full (as Python's dicts), re-placing every entry. */
static int grow_index(mp__body_t *b, mp_obj_t *c) {
  size_t want = b->len + 1;
  if (b->u.c.index && want * 3 <= (b->u.c.index_mask + 1) * 2)
    return 0;
  if (want < b->u.c.cap) /* room for what was reserved, in one go */
    want = b->u.c.cap;
  if (want > UINT32_MAX / 4)
    return -ENOMEM;
  size_t slots = 8;
  while (slots * 2 < want * 3)
    slots *= 2;
  uint64_t *index = calloc(slots, sizeof *index);
  if (!index)
    return -ENOMEM;
  size_t stride = c->kind == MP_OBJ_DICT ? 2 : 1;
  for (size_t e = 0; e < b->len; e++) {
    uint64_t h = 0;
    mp__obj_hash(&b->u.c.items[e * stride], &h); /* hashable: it is in */
    place(index, slots - 1, h, e);
  }
  free(b->u.c.index);
  b->u.c.index = index;
  b->u.c.index_mask = slots - 1;
  return 0;
}

int mp__hashed_insert(mp_obj_t *c, const mp_obj_t *key, const mp_obj_t *value) {
  mp__body_t *b = c->u.body;
  uint64_t h;
  if (!mp__obj_hash(key, &h))
    return MP_EINVAL;
  if (mp__reserve(b, 1) < 0 || grow_index(b, c) < 0)
    return -ENOMEM;
  size_t stride = value ? 2 : 1, slot = 0;
  size_t found = mp__hashed_probe(b, stride, key, h, &slot);
  if (found != SIZE_MAX) {
    /* Python keeps the first key and takes the new value. */
    mp_obj_t extra = *key;
    mp__cell_release(&extra);
    if (value) {
      mp_obj_t *old = &b->u.c.items[2 * found + 1];
      b->u.c.weight -= mp__cell_weight(old);
      mp__cell_release(old);
      adopt(b, old, value);
    }
    return 0;
  }
  adopt(b, &b->u.c.items[b->len * stride], key);
  if (value)
    adopt(b, &b->u.c.items[b->len * stride + 1], value);
  b->u.c.index[slot] = mp__slot(b->len, h);
  b->len++;
  return 0;
}

/* A container the caller may still change: its own root, not sealed. */
static bool is_open(const mp_obj_t *o) {
  return o && (o->flags & MP__CELL_ROOT) && mp__obj_is_container(o) &&
         !o->u.body->sealed;
}

/* Frees what a failed insertion was given (it takes its items). */
static int give_up(int rc, mp_obj_t *a, mp_obj_t *b) {
  if (a && (a->flags & MP__CELL_ROOT))
    mp_obj_free(a);
  if (b && (b->flags & MP__CELL_ROOT))
    mp_obj_free(b);
  return rc;
}

int mp_obj_append(mp_obj_t *seq, mp_obj_t *item) {
  if (!is_open(seq) || seq == item || !item || !(item->flags & MP__CELL_ROOT) ||
      (seq->kind != MP_OBJ_TUPLE && seq->kind != MP_OBJ_LIST))
    return give_up(MP_EINVAL, item == seq ? NULL : item, NULL);
  int rc = mp__seq_push(seq, item);
  if (rc < 0)
    return give_up(rc, item, NULL);
  free(item);
  return 0;
}

int mp_obj_dict_set(mp_obj_t *d, mp_obj_t *key, mp_obj_t *value) {
  if (!is_open(d) || d->kind != MP_OBJ_DICT || !key || !value || key == d ||
      value == d || key == value || !(key->flags & MP__CELL_ROOT) ||
      !(value->flags & MP__CELL_ROOT))
    return give_up(MP_EINVAL, key == d ? NULL : key,
                   value == d || value == key ? NULL : value);
  int rc = mp__hashed_insert(d, key, value);
  if (rc < 0)
    return give_up(rc, key, value);
  free(key);
  free(value);
  return 0;
}

int mp_obj_set_add(mp_obj_t *s, mp_obj_t *item) {
  if (!is_open(s) || (s->kind != MP_OBJ_SET && s->kind != MP_OBJ_FROZENSET) ||
      !item || item == s || !(item->flags & MP__CELL_ROOT))
    return give_up(MP_EINVAL, item == s ? NULL : item, NULL);
  int rc = mp__hashed_insert(s, item, NULL);
  if (rc < 0)
    return give_up(rc, item, NULL);
  free(item);
  return 0;
}

/* ---- Reading ----------------------------------------------------------- */

mp_obj_kind_t mp_obj_kind(const mp_obj_t *o) {
  return o ? (mp_obj_kind_t)o->kind : MP_OBJ_NONE;
}

size_t mp_obj_len(const mp_obj_t *o) {
  if (!o || !mp__obj_has_body(o) || o->kind == MP_OBJ_INT)
    return 0;
  return o->kind == MP_OBJ_STR ? o->u.body->u.chars : o->u.body->len;
}

const mp_obj_t *mp_obj_item(const mp_obj_t *seq, size_t i) {
  if (!seq || !mp__obj_is_container(seq) || seq->kind == MP_OBJ_DICT ||
      i >= seq->u.body->len)
    return NULL;
  return &seq->u.body->u.c.items[i];
}

static const mp_obj_t *dict_cell(const mp_obj_t *d, size_t i, size_t which) {
  if (!d || d->kind != MP_OBJ_DICT || i >= d->u.body->len)
    return NULL;
  return &d->u.body->u.c.items[2 * i + which];
}

const mp_obj_t *mp_obj_dict_key(const mp_obj_t *d, size_t i) {
  return dict_cell(d, i, 0);
}

const mp_obj_t *mp_obj_dict_value(const mp_obj_t *d, size_t i) {
  return dict_cell(d, i, 1);
}

static size_t find(const mp_obj_t *c, const mp_obj_t *key) {
  uint64_t h;
  if (!key || !mp__obj_hash(key, &h))
    return SIZE_MAX;
  return mp__hashed_find(c, key, h);
}

const mp_obj_t *mp_obj_dict_get(const mp_obj_t *d, const mp_obj_t *key) {
  if (!d || d->kind != MP_OBJ_DICT)
    return NULL;
  size_t at = find(d, key);
  return at == SIZE_MAX ? NULL : &d->u.body->u.c.items[2 * at + 1];
}

bool mp_obj_set_contains(const mp_obj_t *s, const mp_obj_t *key) {
  if (!s || (s->kind != MP_OBJ_SET && s->kind != MP_OBJ_FROZENSET))
    return false;
  return find(s, key) != SIZE_MAX;
}

int mp_obj_as_bool(const mp_obj_t *o, bool *v) {
  if (!o || !v || o->kind != MP_OBJ_BOOL)
    return MP_EINVAL;
  *v = o->u.i != 0;
  return 0;
}

int mp_obj_as_int(const mp_obj_t *o, int64_t *v) {
  if (!o || !v || (o->kind != MP_OBJ_INT && o->kind != MP_OBJ_BOOL))
    return MP_EINVAL;
  if (o->flags & MP__CELL_BIG)
    return MP_EOVERFLOW;
  *v = o->u.i;
  return 0;
}

int mp_obj_as_float(const mp_obj_t *o, double *v) {
  if (!o || !v)
    return MP_EINVAL;
  if (o->kind == MP_OBJ_FLOAT) {
    *v = o->u.f;
    return 0;
  }
  int64_t i;
  int rc = mp_obj_as_int(o, &i);
  if (rc == 0)
    *v = (double)i;
  return rc;
}

int mp_obj_int_to_bytes(const mp_obj_t *o, void *buf, size_t cap, size_t *len) {
  if (!o || !len || (o->kind != MP_OBJ_INT && o->kind != MP_OBJ_BOOL) ||
      (!buf && cap))
    return MP_EINVAL;
  unsigned char small[8];
  size_t n;
  const unsigned char *src = mp__int_bytes(o, small, &n);
  *len = n;
  if (n > cap)
    return MP_EOVERFLOW;
  if (n)
    memcpy(buf, src, n);
  return 0;
}

const char *mp_obj_as_str(const mp_obj_t *o, size_t *len_bytes) {
  if (!o || o->kind != MP_OBJ_STR)
    return NULL;
  if (len_bytes)
    *len_bytes = o->u.body->len;
  return (const char *)mp__body_data(o->u.body);
}

const void *mp_obj_as_bytes(const mp_obj_t *o, size_t *len) {
  if (!o || o->kind != MP_OBJ_BYTES)
    return NULL;
  if (len)
    *len = o->u.body->len;
  return mp__body_data(o->u.body);
}

void mp_obj_free(mp_obj_t *o) {
  if (!o)
    return;
  if (!(o->flags & MP__CELL_ROOT)) {
    fprintf(stderr, "mproc: mp_obj_free of an object inside a container "
                    "(free the container instead)\n");
    abort();
  }
  mp__cell_release(o);
  free(o);
}
