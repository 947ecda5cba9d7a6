/* pickle.loads for Python's basic values, safe on hostile input.
 *
 * The pickle machine is a stack machine whose program is the input; this
 * runs it with an explicit stack (so nesting never recurses in C), for the
 * opcodes Python's picklers emit for None, bool, int, float, str, bytes,
 * tuple, list, dict, set and frozenset in protocols 0 to 5 (see Python's
 * Lib/pickletools.py for the opcode list). Every length in the input is
 * checked against the bytes actually there before anything is allocated
 * for it; what the value will take in memory is counted as it grows,
 * shared parts (memo gets) each time, against a budget; containers are
 * sealed once inside another (see obj_internal.h), so no input can build a
 * cycle. Only four globals exist here, and only as arguments of REDUCE:
 * bytes() and _codecs.encode(str, "latin1") (bytes below protocol 3), and
 * set() / frozenset() (sets below protocol 4). */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"

#define DEFAULT_MAX_DEPTH     1000
#define DEFAULT_BASE_SIZE     ((size_t)64 << 20)
#define DEFAULT_SIZE_PER_BYTE 32

static _Atomic size_t limit_depth, limit_size;

void mp_obj_set_limits(const mp_obj_limits_t *limits) {
  atomic_store(&limit_depth, limits ? limits->max_depth : 0);
  atomic_store(&limit_size, limits ? limits->max_size : 0);
}

static _Thread_local char last_error[160] = "no error";

const char *mp_obj_last_error(void) {
  return last_error;
}

enum global {
  GLOBAL_BYTES = 1,
  GLOBAL_SET,
  GLOBAL_FROZENSET,
  GLOBAL_CODECS_ENCODE,
};

#define EMPTY_SLOT 0xff /* a memo slot nothing was put in */

typedef struct loader {
  const unsigned char *p, *end;
  mp_obj_t *stack;
  size_t n, cap;
  size_t *marks;
  size_t nmarks, marks_cap;
  mp_obj_t *memo;
  size_t memo_len, memo_count;
  size_t memo_high; /* slots below may be in use; all above are empty */
  size_t max_depth;
  uint64_t budget; /* bytes the value may still take */
} loader_t;

static int fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return code;
}

static int no_memory(void) {
  return fail(-ENOMEM, "out of memory");
}

static int truncated(void) {
  return fail(-EPROTO, "truncated pickle");
}

/* ---- Reading the input --------------------------------------------------- */

static int need(loader_t *L, size_t n) {
  return (size_t)(L->end - L->p) < n ? truncated() : 0;
}

static uint64_t read_le(loader_t *L, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v |= (uint64_t)L->p[i] << (8 * i);
  L->p += n;
  return v;
}

/* A text argument up to its newline (protocol 0 opcodes). */
static int read_line(loader_t *L, const char **s, size_t *len) {
  *s = NULL;
  *len = 0;
  const unsigned char *nl = memchr(L->p, '\n', (size_t)(L->end - L->p));
  if (!nl)
    return truncated();
  *s = (const char *)L->p;
  *len = (size_t)(nl - L->p);
  L->p = nl + 1;
  return 0;
}

/* A length that must be followed by that many bytes of input. */
static int read_length(loader_t *L, int width, size_t *len) {
  int rc = need(L, (size_t)width);
  if (rc < 0)
    return rc;
  uint64_t n = read_le(L, width);
  if (n > (uint64_t)(L->end - L->p))
    return truncated();
  *len = (size_t)n;
  return 0;
}

/* ---- The stack ------------------------------------------------------------
 */

static int charge(loader_t *L, uint64_t bytes) {
  if (bytes > L->budget)
    return fail(-E2BIG, "the value is larger than the size limit");
  L->budget -= bytes;
  return 0;
}

/* Pushes cell (whose reference the stack now owns). On failure the cell
 * is released. */
static int push(loader_t *L, mp_obj_t cell) {
  int rc = charge(L, mp__cell_weight(&cell));
  if (rc == 0 && L->n == L->cap) {
    size_t cap = L->cap ? 2 * L->cap : 64;
    mp_obj_t *grown = realloc(L->stack, cap * sizeof *grown);
    if (!grown)
      rc = no_memory();
    else
      L->stack = grown, L->cap = cap;
  }
  if (rc < 0) {
    mp__cell_release(&cell);
    return rc;
  }
  /* Field by field: a cell just written by its maker, copied as one
   * 16-byte load, would stall on store forwarding. */
  mp_obj_t *top = &L->stack[L->n++];
  top->kind = cell.kind;
  top->flags = cell.flags;
  top->extra = cell.extra;
  top->u.i = cell.u.i;
  return 0;
}

static int push_scalar(loader_t *L, uint8_t kind, int64_t i) {
  return push(L, (mp_obj_t){.kind = kind, .u.i = i});
}

static int push_new(loader_t *L, int rc, mp_obj_t cell) {
  if (rc == -ENOMEM)
    return no_memory();
  if (rc < 0)
    return fail(rc, "malformed value");
  return push(L, cell);
}

/* Where the items above the last MARK start. As in Python's unpickler, an
 * opcode sees only those: none reaches below a mark, so marks never point
 * above the stack. */
static size_t frame_base(const loader_t *L) {
  return L->nmarks ? L->marks[L->nmarks - 1] : 0;
}

static int need_items(loader_t *L, size_t n) {
  return L->n - frame_base(L) < n ? fail(-EPROTO, "stack underflow") : 0;
}

static int pop_mark(loader_t *L, size_t *start) {
  *start = 0;
  if (L->nmarks == 0)
    return fail(-EPROTO, "MARK missing");
  *start = L->marks[--L->nmarks];
  return 0;
}

static void release_from(loader_t *L, size_t start) {
  while (L->n > start)
    mp__cell_release(&L->stack[--L->n]);
}

/* A copy of cell that holds its own reference. */
static mp_obj_t share(const mp_obj_t *cell) {
  if (mp__obj_has_body(cell))
    cell->u.body->refs++;
  return *cell;
}

/* ---- Containers ------------------------------------------------------------
 */

/* Whether item may go into container c: a real value (not a global), not
 * c itself, and within the depth limit. */
static int check_item(loader_t *L, const mp_obj_t *c, const mp_obj_t *item) {
  if (item->kind == MP__OBJ_GLOBAL)
    return fail(-EPROTO, "a global used as a value");
  if (!mp__obj_has_body(item))
    return 0;
  if (item->u.body == c->u.body)
    return fail(-EPROTO, "an object inside itself (recursive objects are "
                         "not supported)");
  if (mp__obj_is_container(item) && item->u.body->u.c.depth + 1 > L->max_depth)
    return fail(-E2BIG, "nesting deeper than the depth limit");
  return 0;
}

/* Moves stack[start..n) into container c (pairs for a dict). The items
 * leave the stack whatever happens. */
static int fill(loader_t *L, mp_obj_t *c, size_t start) {
  int rc = 0;
  size_t i = start;
  bool dict = c->kind == MP_OBJ_DICT;
  if (dict && (L->n - start) % 2)
    rc = fail(-EPROTO, "odd number of items for a dict");
  else if (mp__reserve(c->u.body, (L->n - start) / (dict ? 2 : 1)) < 0)
    rc = no_memory();
  for (; rc == 0 && i < L->n; i += dict ? 2 : 1) {
    const mp_obj_t *item = &L->stack[i];
    rc = check_item(L, c, item);
    if (rc == 0 && dict)
      rc = check_item(L, c, item + 1);
    if (rc < 0)
      break;
    if (c->kind == MP_OBJ_TUPLE || c->kind == MP_OBJ_LIST)
      rc = mp__seq_push(c, item);
    else
      rc = mp__hashed_insert(c, item, dict ? item + 1 : NULL);
    if (rc == MP_EINVAL)
      rc = fail(-EPROTO, "unhashable key");
    else if (rc < 0)
      rc = no_memory();
    if (rc < 0)
      break; /* item i was not taken */
  }
  /* Consumed: [start, i); the rest is released. */
  size_t consumed = i;
  while (L->n > consumed)
    mp__cell_release(&L->stack[--L->n]);
  L->n = start;
  return rc;
}

/* A new container from stack[start..n), replacing them. */
static int build(loader_t *L, mp_obj_kind_t kind, size_t start) {
  mp_obj_t c;
  size_t count = L->n - start;
  int rc =
      mp__container_cell(&c, kind, kind == MP_OBJ_DICT ? count / 2 : count);
  if (rc < 0) {
    release_from(L, start);
    return no_memory();
  }
  rc = fill(L, &c, start);
  if (rc < 0) {
    mp__cell_release(&c);
    return rc;
  }
  return push(L, c);
}

/* The container below stack[start] that APPENDS/SETITEMS/ADDITEMS add to. */
static int target(loader_t *L, size_t start, mp_obj_kind_t kind, mp_obj_t **c) {
  *c = NULL;
  if (start <= frame_base(L) || start > L->n)
    return fail(-EPROTO, "stack underflow");
  *c = &L->stack[start - 1];
  if ((*c)->kind != kind)
    return fail(-EPROTO, "adding items to the wrong kind of object");
  if ((*c)->u.body->sealed)
    return fail(-EPROTO, "adding items to an object already inside another "
                         "(recursive objects are not supported)");
  return 0;
}

static int add_items(loader_t *L, mp_obj_kind_t kind, size_t start) {
  mp_obj_t *c;
  int rc = target(L, start, kind, &c);
  if (rc < 0) {
    release_from(L, start);
    return rc;
  }
  return fill(L, c, start); /* the items were charged when pushed */
}

/* ---- Globals and REDUCE -----------------------------------------------------
 */

static bool equals(const char *s, size_t len, const char *word) {
  return strlen(word) == len && memcmp(s, word, len) == 0;
}

static int push_global(loader_t *L, const char *mod, size_t mlen,
                       const char *name, size_t nlen) {
  int which = 0;
  if (equals(mod, mlen, "builtins") || equals(mod, mlen, "__builtin__")) {
    if (equals(name, nlen, "bytes"))
      which = GLOBAL_BYTES;
    else if (equals(name, nlen, "set"))
      which = GLOBAL_SET;
    else if (equals(name, nlen, "frozenset"))
      which = GLOBAL_FROZENSET;
  } else if (equals(mod, mlen, "_codecs") && equals(name, nlen, "encode")) {
    which = GLOBAL_CODECS_ENCODE;
  }
  if (!which)
    return fail(-EPROTO, "forbidden global %.*s.%.*s",
                (int)(mlen > 60 ? 60 : mlen), mod, (int)(nlen > 60 ? 60 : nlen),
                name);
  return push(L, (mp_obj_t){.kind = MP__OBJ_GLOBAL, .extra = (uint32_t)which});
}

/* _codecs.encode(s, "latin1"): each code point of s (all below 256) is a
 * byte. */
static int encode_latin1(const mp_obj_t *s, mp_obj_t *out) {
  const unsigned char *u = mp__body_data(s->u.body);
  size_t n = s->u.body->u.chars, j = 0;
  mp__body_t *b = mp__body_new(n);
  if (!b)
    return no_memory();
  b->kind = MP_OBJ_BYTES;
  for (size_t i = 0; i < s->u.body->len; j++) {
    if (u[i] < 0x80) {
      mp__body_data(b)[j] = u[i++];
    } else if (u[i] == 0xc2 || u[i] == 0xc3) {
      mp__body_data(b)[j] =
          (unsigned char)((u[i] & 0x1f) << 6 | (u[i + 1] & 0x3f));
      i += 2;
    } else {
      free(b);
      return fail(-EPROTO, "_codecs.encode: not latin-1");
    }
  }
  *out = (mp_obj_t){.kind = MP_OBJ_BYTES, .u.body = b};
  return 0;
}

/* set(items) or frozenset(items), items a list or tuple. */
static int make_set(mp_obj_kind_t kind, const mp_obj_t *items, mp_obj_t *out) {
  int rc = mp__container_cell(out, kind, items ? items->u.body->len : 0);
  if (rc < 0)
    return no_memory();
  for (size_t i = 0; rc == 0 && items && i < items->u.body->len; i++) {
    mp_obj_t item = share(&items->u.body->u.c.items[i]);
    rc = mp__hashed_insert(out, &item, NULL);
    if (rc < 0)
      mp__cell_release(&item);
    if (rc == MP_EINVAL)
      rc = fail(-EPROTO, "unhashable set element");
    else if (rc < 0)
      rc = no_memory();
  }
  if (rc < 0)
    mp__cell_release(out);
  return rc;
}

static int apply(const mp_obj_t *fn, const mp_obj_t *args, mp_obj_t *out) {
  size_t argc = args->u.body->len;
  const mp_obj_t *argv = args->u.body->u.c.items;
  switch (fn->extra) {
  case GLOBAL_BYTES:
    if (argc == 0)
      return mp__bytes_cell(out, "", 0) < 0 ? no_memory() : 0;
    break;
  case GLOBAL_SET:
  case GLOBAL_FROZENSET: {
    mp_obj_kind_t kind =
        fn->extra == GLOBAL_SET ? MP_OBJ_SET : MP_OBJ_FROZENSET;
    if (argc == 0)
      return make_set(kind, NULL, out);
    if (argc == 1 &&
        (argv[0].kind == MP_OBJ_LIST || argv[0].kind == MP_OBJ_TUPLE))
      return make_set(kind, &argv[0], out);
    break;
  }
  case GLOBAL_CODECS_ENCODE:
    if (argc == 2 && argv[0].kind == MP_OBJ_STR && argv[1].kind == MP_OBJ_STR &&
        (equals((const char *)mp__body_data(argv[1].u.body),
                argv[1].u.body->len, "latin1") ||
         equals((const char *)mp__body_data(argv[1].u.body),
                argv[1].u.body->len, "latin-1")))
      return encode_latin1(&argv[0], out);
    break;
  }
  return fail(-EPROTO, "unsupported arguments for a global");
}

static int reduce(loader_t *L) {
  int rc = need_items(L, 2);
  if (rc < 0)
    return rc;
  mp_obj_t fn = L->stack[L->n - 2], args = L->stack[L->n - 1];
  if (fn.kind != MP__OBJ_GLOBAL || args.kind != MP_OBJ_TUPLE)
    return fail(-EPROTO, "REDUCE of something else than an accepted global");
  mp_obj_t result;
  rc = apply(&fn, &args, &result);
  release_from(L, L->n - 2);
  return rc < 0 ? rc : push(L, result);
}

/* ---- Memo
 * -------------------------------------------------------------------- */

static int memo_put(loader_t *L, uint64_t index) {
  if (need_items(L, 1) < 0)
    return fail(-EPROTO, "memo put with an empty stack");
  /* Python's picklers number memo entries 0, 1, 2...; gaps are allowed,
   * but not an index so large its slot array would be unbounded. */
  if (index >= L->memo_len) {
    if (index > 2 * (uint64_t)L->memo_count + 1024)
      return fail(-EPROTO, "memo index out of range");
    size_t len = L->memo_len ? L->memo_len : 64;
    while (len <= index)
      len *= 2;
    mp_obj_t *grown = realloc(L->memo, len * sizeof *grown);
    if (!grown)
      return no_memory();
    for (size_t i = L->memo_len; i < len; i++)
      grown[i].kind = EMPTY_SLOT;
    L->memo = grown;
    L->memo_len = len;
  }
  if (index >= L->memo_high)
    L->memo_high = (size_t)index + 1;
  mp_obj_t *slot = &L->memo[index];
  if (slot->kind == EMPTY_SLOT)
    L->memo_count++;
  else
    mp__cell_release(slot);
  *slot = share(&L->stack[L->n - 1]);
  return 0;
}

static int memo_get(loader_t *L, uint64_t index) {
  if (index >= L->memo_len || L->memo[index].kind == EMPTY_SLOT)
    return fail(-EPROTO, "memo key %llu not found", (unsigned long long)index);
  return push(L, share(&L->memo[index]));
}

static int read_decimal(loader_t *L, uint64_t *v) {
  const char *s;
  size_t len;
  int rc = read_line(L, &s, &len);
  if (rc < 0)
    return rc;
  if (len == 0 || len > 19)
    return fail(-EPROTO, "bad memo index");
  *v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return fail(-EPROTO, "bad memo index");
    *v = *v * 10 + (uint64_t)(s[i] - '0');
  }
  return 0;
}

/* ---- Scalars
 * ------------------------------------------------------------------ */

static int load_str(loader_t *L, const unsigned char *s, size_t len) {
  size_t chars;
  if (!mp__utf8_check(s, len, true, &chars))
    return fail(-EPROTO, "str is not UTF-8");
  mp_obj_t cell;
  return push_new(L, mp__str_cell(&cell, (const char *)s, len, chars), cell);
}

static int hex_value(const char *s, int n, uint32_t *v) {
  *v = 0;
  for (int i = 0; i < n; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0)
      return -1;
    *v = *v << 4 | (uint32_t)d;
  }
  return 0;
}

static size_t put_utf8(unsigned char *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xc0 | cp >> 6);
    o[1] = (unsigned char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xe0 | cp >> 12);
    o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (unsigned char)(0xf0 | cp >> 18);
  o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
  o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
  o[3] = (unsigned char)(0x80 | (cp & 0x3f));
  return 4;
}

/* UNICODE: Python's "raw-unicode-escape": bytes are latin-1 code points,
 * except \uXXXX and \UXXXXXXXX after an odd run of backslashes. */
static int load_raw_unicode(loader_t *L) {
  const char *s;
  size_t len;
  int rc = read_line(L, &s, &len);
  if (rc < 0)
    return rc;
  unsigned char *out = malloc(2 * len + 1), *o = out;
  if (!out)
    return no_memory();
  size_t run = 0; /* backslashes just before */
  for (size_t i = 0; i < len;) {
    unsigned char c = (unsigned char)s[i];
    int width = c == '\\' && (run % 2 == 0) && i + 1 < len
                    ? (s[i + 1] == 'u'   ? 4
                       : s[i + 1] == 'U' ? 8
                                         : 0)
                    : 0;
    uint32_t cp;
    if (width && i + 2 + (size_t)width <= len &&
        hex_value(s + i + 2, width, &cp) == 0 && cp <= 0x10ffff) {
      o += put_utf8(o, cp);
      i += 2 + (size_t)width;
      run = 0;
    } else if (width) {
      free(out);
      return fail(-EPROTO, "bad \\u escape in UNICODE");
    } else {
      o += put_utf8(o, c);
      run = c == '\\' ? run + 1 : 0;
      i++;
    }
  }
  rc = load_str(L, out, (size_t)(o - out));
  free(out);
  return rc;
}

static int load_decimal_int(loader_t *L, bool long_form) {
  const char *s;
  size_t len;
  int rc = read_line(L, &s, &len);
  if (rc < 0)
    return rc;
  if (!long_form && len == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1'))
    return push_scalar(L, MP_OBJ_BOOL, s[1] == '1'); /* I00 / I01 */
  if (long_form && len > 0 && s[len - 1] == 'L')
    len--;
  mp_obj_t cell;
  rc = mp__int_from_decimal(&cell, s, len);
  if (rc == -EPROTO)
    return fail(rc, "bad int");
  return push_new(L, rc, cell);
}

static int load_float_text(loader_t *L) {
  const char *s;
  size_t len;
  int rc = read_line(L, &s, &len);
  if (rc < 0)
    return rc;
  char text[64];
  if (len == 0 || len >= sizeof text)
    return fail(-EPROTO, "bad float");
  memcpy(text, s, len);
  text[len] = 0;
  char *end;
  double d = strtod(text, &end);
  if (end != text + len)
    return fail(-EPROTO, "bad float");
  return push(L, (mp_obj_t){.kind = MP_OBJ_FLOAT, .u.f = d});
}

static int load_long_binary(loader_t *L, int width) {
  size_t n;
  int rc = read_length(L, width, &n);
  if (rc < 0)
    return rc;
  mp_obj_t cell;
  rc = mp__int_cell(&cell, L->p, n);
  L->p += n;
  return push_new(L, rc, cell);
}

static int load_sized(loader_t *L, int width, bool str) {
  size_t n;
  int rc = read_length(L, width, &n);
  if (rc < 0)
    return rc;
  const unsigned char *at = L->p;
  L->p += n;
  /* Over the size limit: refused before it is copied (push would only
   * find out after). */
  if (n > L->budget)
    return charge(L, n);
  if (str)
    return load_str(L, at, n);
  mp_obj_t cell;
  return push_new(L, mp__bytes_cell(&cell, at, n), cell);
}

/* ---- The machine
 * --------------------------------------------------------------- */

static int step(loader_t *L, unsigned char op, bool *stop);

static int run(loader_t *L, mp_obj_t *out) {
  bool stop = false;
  while (!stop) {
    if (L->p == L->end)
      return truncated();
    int rc = step(L, *L->p++, &stop);
    if (rc < 0)
      return rc;
  }
  if (L->n == frame_base(L))
    return fail(-EPROTO, "STOP with an empty stack");
  if (L->stack[L->n - 1].kind == MP__OBJ_GLOBAL)
    return fail(-EPROTO, "a global as the result");
  *out = L->stack[--L->n];
  return 0;
}

static int step(loader_t *L, unsigned char op, bool *stop) {
  int rc = 0;
  size_t start, n;
  const char *s, *s2;
  size_t len, len2;
  uint64_t index;
  switch (op) {
  case '.': /* STOP */
    *stop = true;
    return 0;
  case 0x80: /* PROTO */
    if ((rc = need(L, 1)) < 0)
      return rc;
    if (*L->p++ > 5)
      return fail(-EPROTO, "unsupported pickle protocol %d", L->p[-1]);
    return 0;
  case 0x95: /* FRAME: only a hint for buffered readers */
    if ((rc = need(L, 8)) < 0)
      return rc;
    L->p += 8;
    return 0;
  case '(': /* MARK */
    if (L->nmarks == L->marks_cap) {
      size_t cap = L->marks_cap ? 2 * L->marks_cap : 32;
      size_t *grown = realloc(L->marks, cap * sizeof *grown);
      if (!grown)
        return no_memory();
      L->marks = grown;
      L->marks_cap = cap;
    }
    L->marks[L->nmarks++] = L->n;
    return 0;
  case '0': /* POP (a mark when the stack above it is empty, as Python) */
    if (L->n > 0 && (L->nmarks == 0 || L->marks[L->nmarks - 1] < L->n)) {
      release_from(L, L->n - 1);
      return 0;
    }
    if ((rc = pop_mark(L, &start)) < 0)
      return rc;
    release_from(L, start);
    return 0;
  case '1': /* POP_MARK */
    if ((rc = pop_mark(L, &start)) < 0)
      return rc;
    release_from(L, start);
    return 0;
  case '2': /* DUP */
    if ((rc = need_items(L, 1)) < 0)
      return rc;
    return push(L, share(&L->stack[L->n - 1]));
  case 'N':
    return push_scalar(L, MP_OBJ_NONE, 0);
  case 0x88: /* NEWTRUE */
  case 0x89: /* NEWFALSE */
    return push_scalar(L, MP_OBJ_BOOL, op == 0x88);
  case 'I':
    return load_decimal_int(L, false);
  case 'L':
    return load_decimal_int(L, true);
  case 'J': /* BININT */
    if ((rc = need(L, 4)) < 0)
      return rc;
    return push_scalar(L, MP_OBJ_INT, (int32_t)(uint32_t)read_le(L, 4));
  case 'K': /* BININT1 */
  case 'M': /* BININT2 */
    if ((rc = need(L, op == 'K' ? 1 : 2)) < 0)
      return rc;
    return push_scalar(L, MP_OBJ_INT, (int64_t)read_le(L, op == 'K' ? 1 : 2));
  case 0x8a: /* LONG1 */
  case 0x8b: /* LONG4 */
    if (op == 0x8b && need(L, 4) == 0 && (L->p[3] & 0x80))
      return fail(-EPROTO, "negative LONG4 length");
    return load_long_binary(L, op == 0x8a ? 1 : 4);
  case 'F':
    return load_float_text(L);
  case 'G': { /* BINFLOAT, big-endian */
    if ((rc = need(L, 8)) < 0)
      return rc;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++)
      bits = bits << 8 | L->p[i];
    L->p += 8;
    mp_obj_t cell = {.kind = MP_OBJ_FLOAT};
    memcpy(&cell.u.f, &bits, 8);
    return push(L, cell);
  }
  case 'V': /* UNICODE */
    return load_raw_unicode(L);
  case 'X': /* BINUNICODE */
    return load_sized(L, 4, true);
  case 0x8c: /* SHORT_BINUNICODE */
    return load_sized(L, 1, true);
  case 0x8d: /* BINUNICODE8 */
    return load_sized(L, 8, true);
  case 'B': /* BINBYTES */
    return load_sized(L, 4, false);
  case 'C': /* SHORT_BINBYTES */
    return load_sized(L, 1, false);
  case 0x8e: /* BINBYTES8 */
    return load_sized(L, 8, false);
  case ')': /* EMPTY_TUPLE */
    return build(L, MP_OBJ_TUPLE, L->n);
  case 0x85: /* TUPLE1 */
  case 0x86: /* TUPLE2 */
  case 0x87: /* TUPLE3 */
    n = (size_t)(op - 0x84);
    if ((rc = need_items(L, n)) < 0)
      return rc;
    return build(L, MP_OBJ_TUPLE, L->n - n);
  case 't':  /* TUPLE */
  case 'l':  /* LIST */
  case 'd':  /* DICT */
  case 0x91: /* FROZENSET */
    if ((rc = pop_mark(L, &start)) < 0)
      return rc;
    return build(L,
                 op == 't'   ? MP_OBJ_TUPLE
                 : op == 'l' ? MP_OBJ_LIST
                 : op == 'd' ? MP_OBJ_DICT
                             : MP_OBJ_FROZENSET,
                 start);
  case ']': /* EMPTY_LIST */
    return build(L, MP_OBJ_LIST, L->n);
  case '}': /* EMPTY_DICT */
    return build(L, MP_OBJ_DICT, L->n);
  case 0x8f: /* EMPTY_SET */
    return build(L, MP_OBJ_SET, L->n);
  case 'a': /* APPEND */
    if ((rc = need_items(L, 2)) < 0)
      return rc;
    return add_items(L, MP_OBJ_LIST, L->n - 1);
  case 's': /* SETITEM */
    if ((rc = need_items(L, 3)) < 0)
      return rc;
    return add_items(L, MP_OBJ_DICT, L->n - 2);
  case 'e':  /* APPENDS */
  case 'u':  /* SETITEMS */
  case 0x90: /* ADDITEMS */
    if ((rc = pop_mark(L, &start)) < 0)
      return rc;
    return add_items(L,
                     op == 'e'   ? MP_OBJ_LIST
                     : op == 'u' ? MP_OBJ_DICT
                                 : MP_OBJ_SET,
                     start);
  case 'c': /* GLOBAL */
    if ((rc = read_line(L, &s, &len)) < 0 ||
        (rc = read_line(L, &s2, &len2)) < 0)
      return rc;
    return push_global(L, s, len, s2, len2);
  case 0x93: { /* STACK_GLOBAL */
    if ((rc = need_items(L, 2)) < 0)
      return rc;
    const mp_obj_t *m = &L->stack[L->n - 2], *nm = &L->stack[L->n - 1];
    if (m->kind != MP_OBJ_STR || nm->kind != MP_OBJ_STR)
      return fail(-EPROTO, "STACK_GLOBAL needs two strs");
    mp_obj_t mod = *m, name = *nm;
    L->n -= 2;
    rc =
        push_global(L, (const char *)mp__body_data(mod.u.body), mod.u.body->len,
                    (const char *)mp__body_data(name.u.body), name.u.body->len);
    mp__cell_release(&mod);
    mp__cell_release(&name);
    return rc;
  }
  case 'R': /* REDUCE */
    return reduce(L);
  case 'p': /* PUT */
    if ((rc = read_decimal(L, &index)) < 0)
      return rc;
    return memo_put(L, index);
  case 'q': /* BINPUT */
  case 'r': /* LONG_BINPUT */
    if ((rc = need(L, op == 'q' ? 1 : 4)) < 0)
      return rc;
    return memo_put(L, read_le(L, op == 'q' ? 1 : 4));
  case 0x94: /* MEMOIZE */
    return memo_put(L, L->memo_count);
  case 'g': /* GET */
    if ((rc = read_decimal(L, &index)) < 0)
      return rc;
    return memo_get(L, index);
  case 'h': /* BINGET */
  case 'j': /* LONG_BINGET */
    if ((rc = need(L, op == 'h' ? 1 : 4)) < 0)
      return rc;
    return memo_get(L, read_le(L, op == 'h' ? 1 : 4));
  default:
    /* Everything that would build other objects or call code: INST, OBJ,
     * NEWOBJ(_EX), BUILD, EXT*, PERSID, bytearray and out-of-band buffers,
     * Python 2 strings. */
    return fail(-EPROTO, "unsupported pickle opcode 0x%02x", op);
  }
}

/* ---- Scratch arrays --------------------------------------------------------
 * The stack, marks and memo of a load are kept for the thread's next load
 * (up to SCRATCH_KEEP bytes each): programs load many pickles, and giving
 * a few hundred kilobytes back to the system and faulting them in again
 * every time would cost more than the load. Freed when the thread ends. */
#define SCRATCH_KEEP ((size_t)4 << 20)

typedef struct scratch {
  mp_obj_t *stack, *memo;
  size_t *marks;
  size_t stack_cap, memo_len, marks_cap;
} scratch_t;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static bool scratch_ok;

static void scratch_free(void *arg) {
  scratch_t *s = arg;
  free(s->stack);
  free(s->memo);
  free(s->marks);
  free(s);
}

static void scratch_init(void) {
  scratch_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

/* Takes the thread's arrays (they are the caller's until handed back). */
static void scratch_take(loader_t *L) {
  pthread_once(&scratch_once, scratch_init);
  scratch_t *s = scratch_ok ? pthread_getspecific(scratch_key) : NULL;
  if (!s)
    return;
  pthread_setspecific(scratch_key, NULL);
  L->stack = s->stack, L->cap = s->stack_cap;
  L->marks = s->marks, L->marks_cap = s->marks_cap;
  L->memo = s->memo, L->memo_len = s->memo_len;
  free(s);
}

static void *keep_or_free(void *array, size_t bytes) {
  if (bytes <= SCRATCH_KEEP)
    return array;
  free(array);
  return NULL;
}

/* Hands the (emptied) arrays back to the thread, or frees them. */
static void scratch_give(loader_t *L) {
  scratch_t *s = scratch_ok ? malloc(sizeof *s) : NULL;
  if (s) {
    s->stack = keep_or_free(L->stack, L->cap * sizeof(mp_obj_t));
    s->stack_cap = s->stack ? L->cap : 0;
    s->marks = keep_or_free(L->marks, L->marks_cap * sizeof(size_t));
    s->marks_cap = s->marks ? L->marks_cap : 0;
    s->memo = keep_or_free(L->memo, L->memo_len * sizeof(mp_obj_t));
    s->memo_len = s->memo ? L->memo_len : 0;
    if (pthread_setspecific(scratch_key, s) == 0)
      return;
    L->stack = s->stack, L->marks = s->marks, L->memo = s->memo;
    free(s);
  }
  free(L->stack);
  free(L->marks);
  free(L->memo);
}

int mp_obj_loads_limits(const void *buf, size_t len,
                        const mp_obj_limits_t *limits, mp_obj_t **out) {
  if (!out || (!buf && len))
    return fail(MP_EINVAL, "invalid argument");
  size_t depth = limits ? limits->max_depth : atomic_load(&limit_depth);
  size_t size = limits ? limits->max_size : atomic_load(&limit_size);
  loader_t L = {.p = buf, .end = (const unsigned char *)buf + len};
  L.max_depth = depth ? depth : DEFAULT_MAX_DEPTH;
  L.budget = size ? size
             : len > (UINT64_MAX - DEFAULT_BASE_SIZE) / DEFAULT_SIZE_PER_BYTE
                 ? UINT64_MAX
                 : DEFAULT_BASE_SIZE + (uint64_t)len * DEFAULT_SIZE_PER_BYTE;
  scratch_take(&L); /* its memo slots are all empty */
  mp_obj_t result;
  int rc = run(&L, &result);
  release_from(&L, 0);
  for (size_t i = 0; i < L.memo_high; i++) {
    if (L.memo[i].kind != EMPTY_SLOT)
      mp__cell_release(&L.memo[i]);
    L.memo[i].kind = EMPTY_SLOT;
  }
  scratch_give(&L);
  if (rc < 0)
    return rc;
  /* The caller owns the result: it may grow it again if nothing else
   * holds it. */
  if (mp__obj_has_body(&result) && result.u.body->refs == 1)
    result.u.body->sealed = 0;
  *out = mp__cell_to_root(&result);
  if (!*out) {
    mp__cell_release(&result);
    return no_memory();
  }
  return 0;
}

int mp_obj_loads(const void *buf, size_t len, mp_obj_t **out) {
  return mp_obj_loads_limits(buf, len, NULL, out);
}
