/* pickle.dumps for Python's basic values: each value written with the
 * opcodes Python's own pickler uses for it in the protocol asked for (its
 * Lib/pickle.py, save_* methods), so every Python from 3.0 loads it to an
 * equal object. Python's memo and frames are left out: they only save
 * space for repeated objects and help buffered readers, and Python's
 * loader does not need them. Nesting is walked with an explicit stack. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"

#define BATCH 1000 /* Python's _BATCHSIZE: items per APPENDS/SETITEMS */

typedef struct writer {
  unsigned char *buf;
  size_t len, cap;
  int proto;
  int err;
} writer_t;

/* Room for n more bytes, or NULL (w->err set). */
static unsigned char *room(writer_t *w, size_t n) {
  if (w->cap - w->len >= n)
    return w->buf + w->len;
  if (w->err)
    return NULL;
  size_t cap = w->cap ? w->cap : 256;
  while (cap - w->len < n) {
    if (cap > SIZE_MAX / 2) {
      w->err = -ENOMEM;
      return NULL;
    }
    cap *= 2;
  }
  /* A large request (a big bytes) gets exactly its size: no doubling of
   * a hundred megabytes. */
  if (n > w->cap && w->len + n + 64 < cap)
    cap = w->len + n + 64;
  unsigned char *grown = realloc(w->buf, cap);
  if (!grown) {
    w->err = -ENOMEM;
    return NULL;
  }
  if (n >= cap / 2) /* a large write into fresh memory: fault it in first */
    mp__prefault(grown + w->len, cap - w->len);
  w->buf = grown;
  w->cap = cap;
  return w->buf + w->len;
}

static void put(writer_t *w, const void *data, size_t n) {
  unsigned char *p = room(w, n);
  if (p) {
    memcpy(p, data, n);
    w->len += n;
  }
}

static void put_byte(writer_t *w, unsigned char c) {
  unsigned char *p = room(w, 1);
  if (p)
    *p = c, w->len++;
}

static void put_str(writer_t *w, const char *s) {
  put(w, s, strlen(s));
}

/* An opcode followed by a little-endian length of width bytes. */
static void put_sized(writer_t *w, unsigned char op, uint64_t n, int width) {
  unsigned char *p = room(w, 1 + (size_t)width);
  if (!p)
    return;
  p[0] = op;
  for (int i = 0; i < width; i++)
    p[1 + i] = (unsigned char)(n >> (8 * i));
  w->len += 1 + (size_t)width;
}

/* ---- Scalars ------------------------------------------------------------ */

static void dump_int(writer_t *w, const mp_obj_t *o) {
  if (!(o->flags & MP__CELL_BIG) && w->proto >= 1 && o->u.i >= 0 &&
      o->u.i <= 0xffff) {
    put_sized(w, o->u.i <= 0xff ? 'K' : 'M', (uint64_t)o->u.i,
              o->u.i <= 0xff ? 1 : 2);
    return;
  }
  bool int32 =
      !(o->flags & MP__CELL_BIG) && o->u.i >= INT32_MIN && o->u.i <= INT32_MAX;
  if (int32 && w->proto >= 1) {
    put_sized(w, 'J', (uint32_t)(int32_t)o->u.i, 4);
    return;
  }
  if (w->proto >= 2) { /* LONG1 / LONG4: two's complement bytes */
    unsigned char small[8];
    size_t n;
    const unsigned char *src = mp__int_bytes(o, small, &n);
    if (n < 256)
      put_sized(w, 0x8a, n, 1);
    else
      put_sized(w, 0x8b, n, 4);
    put(w, src, n);
    return;
  }
  char *text;
  size_t len;
  int rc = mp__int_to_decimal(o, &text, &len);
  if (rc < 0) {
    w->err = rc;
    return;
  }
  put_byte(w, int32 ? 'I' : 'L');
  put(w, text, len);
  put_str(w, int32 ? "\n" : "L\n");
  free(text);
}

static void dump_float(writer_t *w, double d) {
  if (w->proto == 0) {
    char text[40];
    int n = snprintf(text, sizeof text, "F%.17g\n", d);
    put(w, text, (size_t)n);
    return;
  }
  uint64_t bits;
  memcpy(&bits, &d, 8);
  unsigned char *p = room(w, 9);
  if (!p)
    return;
  p[0] = 'G';
  for (int i = 0; i < 8; i++)
    p[1 + i] = (unsigned char)(bits >> (56 - 8 * i));
  w->len += 9;
}

/* The next code point of UTF-8 (as loaded or validated: surrogates
 * included) at *i. */
static uint32_t next_code_point(const unsigned char *s, size_t *i) {
  unsigned c = s[*i];
  if (c < 0x80) {
    (*i)++;
    return c;
  }
  int extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
  uint32_t cp = c & (0x3fu >> extra);
  for (int k = 1; k <= extra; k++)
    cp = cp << 6 | (s[*i + (size_t)k] & 0x3f);
  *i += (size_t)extra + 1;
  return cp;
}

/* UNICODE (protocol 0): "raw-unicode-escape" of the text, after Python's
 * pickler escaped \, NUL, \n, \r and \x1a as \uXXXX. */
static void dump_raw_unicode(writer_t *w, const unsigned char *s, size_t len) {
  put_byte(w, 'V');
  for (size_t i = 0; i < len && !w->err;) {
    uint32_t cp = next_code_point(s, &i);
    char esc[12];
    if (cp == '\\' || cp == 0 || cp == '\n' || cp == '\r' || cp == 0x1a ||
        (cp >= 0x100 && cp < 0x10000))
      put(w, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", cp));
    else if (cp >= 0x10000)
      put(w, esc, (size_t)snprintf(esc, sizeof esc, "\\U%08x", cp));
    else
      put_byte(w, (unsigned char)cp);
  }
  put_byte(w, '\n');
}

static void dump_str(writer_t *w, const unsigned char *s, size_t len) {
  if (w->proto == 0) {
    dump_raw_unicode(w, s, len);
  } else if (len < 256 && w->proto >= 4) {
    put_sized(w, 0x8c, len, 1);
    put(w, s, len);
  } else if (len <= UINT32_MAX) {
    put_sized(w, 'X', len, 4);
    put(w, s, len);
  } else if (w->proto >= 4) {
    put_sized(w, 0x8d, len, 8);
    put(w, s, len);
  } else {
    w->err = MP_EINVAL; /* Python: struct.error */
  }
}

/* Protocols 0-2 have no bytes opcode: Python writes bytes() for b"" and
 * _codecs.encode(s, "latin1") otherwise, s the bytes read as latin-1. */
static void dump_bytes_as_reduce(writer_t *w, const unsigned char *b,
                                 size_t len) {
  if (len == 0) {
    put_str(w, "c__builtin__\nbytes\n");
    put_str(w, w->proto == 0 ? "(tR" : ")R");
    return;
  }
  put_str(w, "c_codecs\nencode\n");
  if (w->proto < 2)
    put_byte(w, '(');
  if (w->proto == 0) {
    unsigned char u[2];
    put_byte(w, 'V');
    for (size_t i = 0; i < len && !w->err; i++) {
      char esc[8];
      unsigned c = b[i];
      if (c == '\\' || c == 0 || c == '\n' || c == '\r' || c == 0x1a)
        put(w, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", c));
      else
        u[0] = (unsigned char)c, put(w, u, 1);
    }
    put_str(w, "\nVlatin1\n");
  } else {
    size_t n = len;
    for (size_t i = 0; i < len; i++)
      n += b[i] >> 7;
    put_sized(w, 'X', n, 4);
    unsigned char *p = room(w, n);
    if (!p)
      return;
    for (size_t i = 0; i < len; i++) {
      if (b[i] < 0x80) {
        *p++ = b[i];
      } else {
        *p++ = (unsigned char)(0xc0 | b[i] >> 6);
        *p++ = (unsigned char)(0x80 | (b[i] & 0x3f));
      }
    }
    w->len += n;
    put(w, "X\x06\0\0\0latin1", 11);
  }
  put_str(w, w->proto < 2 ? "tR" : "\x86R");
}

static void dump_bytes(writer_t *w, const unsigned char *b, size_t len) {
  if (w->proto < 3) {
    dump_bytes_as_reduce(w, b, len);
    return;
  }
  if (len < 256)
    put_sized(w, 'C', len, 1);
  else if (len <= UINT32_MAX)
    put_sized(w, 'B', len, 4);
  else if (w->proto >= 4)
    put_sized(w, 0x8e, len, 8);
  else {
    w->err = MP_EINVAL;
    return;
  }
  put(w, b, len);
}

/* ---- Containers ------------------------------------------------------------
 */

/* Sets below protocol 4 are set(list) through REDUCE; their items are then
 * written as a list's. */
static bool set_as_reduce(const writer_t *w, const mp_obj_t *o) {
  return w->proto < 4 && (o->kind == MP_OBJ_SET || o->kind == MP_OBJ_FROZENSET);
}

static bool list_like(const writer_t *w, const mp_obj_t *o) {
  return o->kind == MP_OBJ_LIST || set_as_reduce(w, o);
}

static void open_container(writer_t *w, const mp_obj_t *o) {
  size_t len = o->u.body->len;
  switch (o->kind) {
  case MP_OBJ_TUPLE:
    if (len == 0)
      put_str(w, w->proto == 0 ? "(t" : ")");
    else if (w->proto < 2 || len > 3)
      put_byte(w, '(');
    return;
  case MP_OBJ_DICT:
    put_str(w, w->proto == 0 ? "(d" : "}");
    return;
  case MP_OBJ_SET:
    if (w->proto >= 4) {
      put_byte(w, 0x8f);
      return;
    }
    break;
  case MP_OBJ_FROZENSET:
    if (w->proto >= 4) {
      put_byte(w, '(');
      return;
    }
    break;
  default:
    break;
  }
  if (set_as_reduce(w, o)) {
    put_str(w, w->proto < 3 ? "c__builtin__\n" : "cbuiltins\n");
    put_str(w, o->kind == MP_OBJ_SET ? "set\n" : "frozenset\n");
    if (w->proto < 2)
      put_byte(w, '(');
  }
  put_str(w, w->proto == 0 ? "(l" : "]"); /* a list, or set()'s argument */
}

static void close_container(writer_t *w, const mp_obj_t *o) {
  size_t len = o->u.body->len;
  if (o->kind == MP_OBJ_TUPLE && len > 0)
    put_byte(w, w->proto >= 2 && len <= 3 ? (unsigned char)(0x84 + len) : 't');
  else if (o->kind == MP_OBJ_FROZENSET && w->proto >= 4)
    put_byte(w, 0x91);
  else if (set_as_reduce(w, o))
    put_str(w, w->proto < 2 ? "tR" : "\x85R");
}

/* Before entry i of a container: the MARK that opens a batch. */
static void before_entry(writer_t *w, const mp_obj_t *o, size_t i) {
  size_t len = o->u.body->len;
  if (w->proto == 0 || i % BATCH != 0)
    return;
  if (o->kind == MP_OBJ_SET && w->proto >= 4)
    put_byte(w, '(');
  else if ((list_like(w, o) || o->kind == MP_OBJ_DICT) && len - i > 1)
    put_byte(w, '(');
}

/* After entry i: APPEND(S) / SETITEM(S) / ADDITEMS closing a batch. */
static void after_entry(writer_t *w, const mp_obj_t *o, size_t i) {
  size_t len = o->u.body->len;
  bool dict = o->kind == MP_OBJ_DICT;
  if (!dict && !list_like(w, o) && o->kind != MP_OBJ_SET)
    return;
  if (w->proto == 0) {
    put_byte(w, dict ? 's' : 'a');
    return;
  }
  if ((i + 1) % BATCH != 0 && i + 1 != len)
    return;
  if (o->kind == MP_OBJ_SET && w->proto >= 4) {
    put_byte(w, 0x90);
    return;
  }
  bool single = i % BATCH == 0; /* a batch of one has no MARK */
  put_byte(w, dict ? (single ? 's' : 'u') : (single ? 'a' : 'e'));
}

static void dump_leaf(writer_t *w, const mp_obj_t *o) {
  switch (o->kind) {
  case MP_OBJ_NONE:
    put_byte(w, 'N');
    break;
  case MP_OBJ_BOOL:
    if (w->proto >= 2)
      put_byte(w, o->u.i ? 0x88 : 0x89);
    else
      put_str(w, o->u.i ? "I01\n" : "I00\n");
    break;
  case MP_OBJ_INT:
    dump_int(w, o);
    break;
  case MP_OBJ_FLOAT:
    dump_float(w, o->u.f);
    break;
  case MP_OBJ_STR:
    dump_str(w, mp__body_data(o->u.body), o->u.body->len);
    break;
  case MP_OBJ_BYTES:
    dump_bytes(w, mp__body_data(o->u.body), o->u.body->len);
    break;
  default:
    w->err = MP_EINVAL;
  }
}

typedef struct frame {
  const mp_obj_t *o;
  size_t next; /* cell */
} frame_t;

static void dump_value(writer_t *w, const mp_obj_t *root) {
  if (!mp__obj_is_container(root)) {
    dump_leaf(w, root);
    return;
  }
  frame_t small[32], *frames = small;
  size_t n = 0, cap = 32;
  open_container(w, root);
  frames[n++] = (frame_t){root, 0};
  while (n > 0 && !w->err) {
    frame_t *f = &frames[n - 1];
    const mp_obj_t *o = f->o;
    size_t cells = mp__body_cells(o);
    size_t per = o->kind == MP_OBJ_DICT ? 2 : 1;
    if (f->next == cells) {
      close_container(w, o);
      if (--n > 0) {
        f = &frames[n - 1];
        size_t parent_per = f->o->kind == MP_OBJ_DICT ? 2 : 1;
        if (f->next % parent_per == 0)
          after_entry(w, f->o, f->next / parent_per - 1);
      }
      continue;
    }
    size_t c = f->next++;
    if (c % per == 0)
      before_entry(w, o, c / per);
    const mp_obj_t *item = &o->u.body->u.c.items[c];
    if (mp__obj_is_container(item)) {
      if (n == cap &&
          !mp__frames_grow((void **)&frames, small, &cap, sizeof *frames)) {
        w->err = -ENOMEM;
        break;
      }
      open_container(w, item);
      frames[n++] = (frame_t){item, 0};
      continue;
    }
    dump_leaf(w, item);
    if (f->next % per == 0)
      after_entry(w, o, c / per);
  }
  if (frames != small)
    free(frames);
}

int mp_obj_dumps(const mp_obj_t *o, int protocol, void **buf, size_t *len) {
  if (!o || !buf || !len)
    return MP_EINVAL;
  if (protocol == MP_OBJ_PROTOCOL_0)
    protocol = 0;
  else if (protocol == 0)
    protocol = MP_OBJ_PROTOCOL_DEFAULT;
  else if (protocol < 0)
    protocol = MP_OBJ_PROTOCOL_HIGHEST;
  else if (protocol > MP_OBJ_PROTOCOL_HIGHEST)
    return MP_EINVAL;
  writer_t w = {.proto = protocol};
  if (protocol >= 2) {
    put_byte(&w, 0x80);
    put_byte(&w, (unsigned char)protocol);
  }
  dump_value(&w, o);
  put_byte(&w, '.');
  if (w.err) {
    free(w.buf);
    return w.err;
  }
  *buf = w.buf;
  *len = w.len;
  return 0;
}
