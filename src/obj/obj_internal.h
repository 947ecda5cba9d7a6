/* What the files of the value type share (value.c, compare.c, bigint.c,
 * loads.c, dumps.c).
 *
 * Representation. An mp_obj_t is a 16-byte cell: None, bools, floats and
 * ints that fit int64 live in the cell itself, so a list of a million ints
 * is one array of cells, not a million allocations. Everything else (str,
 * bytes, big ints, containers) keeps its content in a body the cell points
 * to. A container holds its items as cells, in place.
 *
 * Bodies are reference-counted only because a pickle may share one part in
 * several places (its memo); the public API never shares. The loader keeps
 * the value a tree of bodies: a container can be changed only until it is
 * put inside another one (then it is sealed), so no pickle can build an
 * object that contains itself, and every walk over a value ends. */
#ifndef MPROC_OBJ_INTERNAL_H
#define MPROC_OBJ_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mproc/obj.h"

/* Cell flags. */
#define MP__CELL_ROOT 0x1 /* malloc'ed alone: freed by mp_obj_free */
#define MP__CELL_BIG  0x2 /* an int that does not fit int64: in a body */

/* The loader's cell for an accepted global (never escapes a load). */
#define MP__OBJ_GLOBAL 0x40

struct mp__body;

struct mp_obj {
  uint8_t kind; /* mp_obj_kind_t, or MP__OBJ_GLOBAL */
  uint8_t flags;
  uint32_t extra; /* MP__OBJ_GLOBAL: which global */
  union {
    int64_t i;
    double f;
    struct mp__body *body;
  } u;
};

enum mp__hash_state { MP__HASH_UNKNOWN, MP__HASH_KNOWN, MP__HASH_UNHASHABLE };

typedef struct mp__body {
  uint32_t refs;
  uint8_t kind;       /* mp_obj_kind_t of the cells pointing here */
  uint8_t sealed;     /* inside a container: can no longer change */
  uint8_t hash_state; /* enum mp__hash_state */
  uint64_t hash;      /* when hash_state is MP__HASH_KNOWN */
  size_t len; /* str, bytes, big int: bytes (str: of UTF-8); others: items */
  union {
    /* Leaves: str, bytes, big int. Their bytes follow at MP__LEAF_DATA
     * (a str's NUL-terminated; a big int's two's complement, LE). */
    size_t chars; /* str: code points */
    struct {
      size_t cap;
      mp_obj_t *items; /* tuple, list: len cells; dict: 2*len (k, v) */
      uint64_t *index; /* dict, set: slots, see mp__slot */
      size_t index_mask;
      uint64_t weight; /* bytes the value takes, shared parts each time */
      uint32_t depth;  /* 1 + the deepest item's depth */
      struct mp__body *next_free; /* the free worklist */
    } c;
  } u;
} mp__body_t;

#define MP__LEAF_DATA (offsetof(mp__body_t, u) + sizeof(size_t))

static inline unsigned char *mp__body_data(const mp__body_t *b) {
  return (unsigned char *)b + MP__LEAF_DATA;
}

static inline bool mp__body_is_container(const mp__body_t *b) {
  return b->kind >= MP_OBJ_TUPLE;
}

/* The bytes a body takes (a container: with all it holds). */
static inline uint64_t mp__body_weight(const mp__body_t *b) {
  return mp__body_is_container(b) ? b->u.c.weight : MP__LEAF_DATA + b->len;
}

static inline bool mp__obj_has_body(const mp_obj_t *o) {
  return (o->kind >= MP_OBJ_STR && o->kind <= MP_OBJ_FROZENSET) ||
         (o->kind == MP_OBJ_INT && (o->flags & MP__CELL_BIG));
}

static inline bool mp__obj_is_container(const mp_obj_t *o) {
  return o->kind >= MP_OBJ_TUPLE && o->kind <= MP_OBJ_FROZENSET;
}

/* The items of a container body as a flat array of cells and their count
 * (a dict: keys and values alternate). */
static inline size_t mp__body_cells(const mp_obj_t *o) {
  return o->kind == MP_OBJ_DICT ? 2 * o->u.body->len : o->u.body->len;
}

/* The bytes a cell adds to the weight of what holds it. */
static inline uint64_t mp__cell_weight(const mp_obj_t *o) {
  return sizeof(mp_obj_t) +
         (mp__obj_has_body(o) ? mp__body_weight(o->u.body) : 0);
}

/* An index slot of a dict or set: the entry number + 1 (0: a free slot)
 * in the low half, the high half of the key's hash in the high half, so a
 * probe skips other keys without touching them. */
static inline uint64_t mp__slot(size_t entry, uint64_t hash) {
  return (hash & 0xffffffff00000000ull) | (uint64_t)(entry + 1);
}

/* The walks over nested values keep their frames in a local array of
 * `small` entries first and on the heap beyond. Called when *frames (n ==
 * *cap entries of elem bytes) is full: doubles it. false (nothing changed)
 * without memory. */
bool mp__frames_grow(void **frames, const void *small, size_t *cap,
                     size_t elem);

/* ---- value.c ------------------------------------------------------------ */
/* A leaf body (str, bytes, big int: kind still to set) with room for
 * data_len bytes and a NUL, refs 1. */
mp__body_t *mp__body_new(size_t data_len);
/* Sets the header every body starts with (one reference, length len). */
void mp__body_init(mp__body_t *b, size_t len);
/* Drops one reference to the cell's body, freeing what nobody holds any
 * more; iteratively, whatever the nesting. */
void mp__cell_release(mp_obj_t *o);
/* A root cell (malloc'ed) holding a copy of cell. */
mp_obj_t *mp__cell_to_root(const mp_obj_t *cell);
/* A new str body from UTF-8 already validated, with chars code points. */
int mp__str_cell(mp_obj_t *cell, const char *utf8, size_t len, size_t chars);
int mp__bytes_cell(mp_obj_t *cell, const void *buf, size_t len);
int mp__container_cell(mp_obj_t *cell, mp_obj_kind_t kind, size_t cap);
/* Appends item (moved in) to a tuple or list body, sealing item's body. */
int mp__seq_push(mp_obj_t *seq, const mp_obj_t *item);
/* Adds key (and value for a dict) to a dict or set body, moved in; an
 * equal key already there keeps its place (and gets the new value; the
 * extra key and a set's duplicate are released). MP_EINVAL: unhashable. */
int mp__hashed_insert(mp_obj_t *c, const mp_obj_t *key, const mp_obj_t *value);
/* Checks UTF-8 and counts code points. surrogates: accept encoded
 * surrogates (as Python's "surrogatepass"). false when invalid. */
bool mp__utf8_check(const unsigned char *s, size_t len, bool surrogates,
                    size_t *chars);
/* Room for n more entries in a container body at once. 0 or -ENOMEM. */
int mp__reserve(mp__body_t *b, size_t n);
/* Has the kernel fault in a large fresh buffer in one go before it is
 * written (faster than a fault per page); does nothing for small ones or
 * where the kernel cannot. */
void mp__prefault(void *buf, size_t len);

/* ---- compare.c ---------------------------------------------------------- */
/* The hash of a hashable value (equal values hash alike, across kinds as
 * Python's ==). false when unhashable. Caches in bodies. */
bool mp__obj_hash(const mp_obj_t *o, uint64_t *hash);
/* The index of the entry of c (dict or set) equal to key with that hash,
 * or SIZE_MAX. */
size_t mp__hashed_find(const mp_obj_t *c, const mp_obj_t *key, uint64_t hash);
/* The entry of a dict or set body equal to key (whose hash is h), or
 * SIZE_MAX; then *free_slot is the index slot where it would go. One probe
 * serves both the lookup and the insertion. */
size_t mp__hashed_probe(const mp__body_t *b, size_t stride, const mp_obj_t *key,
                        uint64_t h, size_t *free_slot);
uint64_t mp__hash_bytes(const void *buf, size_t len);

/* ---- bigint.c ----------------------------------------------------------- */
/* Sets cell to the int of these two's complement LE bytes: inline when it
 * fits int64, else a body. 0 or -ENOMEM. */
int mp__int_cell(mp_obj_t *cell, const unsigned char *le, size_t len);
/* The shortest two's complement LE bytes of an int64 (0: none) into
 * out[8]; returns the count. */
size_t mp__int64_bytes(int64_t v, unsigned char out[8]);
/* An int's (or bool's) shortest two's complement LE bytes and their count:
 * in its body, or written into small. */
const unsigned char *mp__int_bytes(const mp_obj_t *o, unsigned char small[8],
                                   size_t *len);
/* Decimal text (optional sign, digits) to an int cell. -EPROTO when not
 * a number or over 4300 digits (Python's limit). */
int mp__int_from_decimal(mp_obj_t *cell, const char *text, size_t len);
/* An int's decimal text into a malloc'ed string. MP_EINVAL over 4300
 * digits, -ENOMEM. */
int mp__int_to_decimal(const mp_obj_t *o, char **text, size_t *len);
/* Whether an integral double equals the big int of these bytes. */
bool mp__bigint_equals_double(const unsigned char *le, size_t len, double d);
/* The double nearest to the big int, and whether it is exact. */
double mp__bigint_to_double(const unsigned char *le, size_t len, bool *exact);

#endif
