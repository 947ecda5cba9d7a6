/* ShareableList (Python's multiprocessing.shared_memory.ShareableList) on
 * top of a named segment: the layout is Python's, described in
 * include/mproc/memory.h, in native byte order as Python's struct module
 * writes it by default.
 *
 * Python writes a list in four parts: the count and N + 1 slot offsets,
 * the data area, N format fields of 8 bytes, N back-transform codes. The
 * handle keeps the positions of the parts (they never change: the slots
 * are fixed at creation) and checks them against the segment's size when
 * attaching, so every later access is in bounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

#define SLOT_ALIGN   8
#define FORMAT_WIDTH 8
/* The longest slot whose format "<n>s" fits the 8-byte field. */
#define SLOT_MAX 9999999u

/* Python's back-transform codes. */
enum { CODE_PLAIN = 0, CODE_STR = 1, CODE_BYTES = 2, CODE_NONE = 3 };

static const char FORMAT_INT[] = "q";
static const char FORMAT_FLOAT[] = "d";
static const char FORMAT_BOOL[] = "xxxxxxx?";
static const char FORMAT_NONE[] = "xxxxxx?x";

struct mp_shareable_list {
  mp_shm_t *shm;
  uint8_t *base;
  size_t n;
  size_t data;    /* offset of the data area */
  size_t formats; /* offset of the format fields */
  size_t codes;   /* offset of the back-transform codes */
};

static int64_t load_i64(const uint8_t *p) {
  int64_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

static void store_i64(uint8_t *p, int64_t v) {
  memcpy(p, &v, sizeof v);
}

/* Offset of slot i from the start of the data area. */
static size_t slot_offset(const mp_shareable_list_t *l, size_t i) {
  return (size_t)load_i64(l->base + SLOT_ALIGN * (1 + i));
}

static size_t slot_size(const mp_shareable_list_t *l, size_t i) {
  return slot_offset(l, i + 1) - slot_offset(l, i);
}

/* The slot a str or bytes item of len bytes gets: Python's
 * 8 * (len // 8 + 1). */
static size_t bytes_slot(size_t len) {
  return SLOT_ALIGN * (len / SLOT_ALIGN + 1);
}

static bool is_bytes_kind(mp_shareable_kind_t k) {
  return k == MP_SHAREABLE_STR || k == MP_SHAREABLE_BYTES;
}

static int check_item(const mp_shareable_item_t *it) {
  if (!it || it->kind < MP_SHAREABLE_INT || it->kind > MP_SHAREABLE_BYTES)
    return MP_EINVAL;
  if (is_bytes_kind(it->kind) && !it->u.bytes.ptr && it->u.bytes.len > 0)
    return MP_EINVAL;
  return 0;
}

/* Fills the positions of the parts from the count and the last offset. */
static void layout(mp_shareable_list_t *l, size_t n, size_t data_size) {
  l->n = n;
  l->data = SLOT_ALIGN * (n + 2);
  l->formats = l->data + data_size;
  l->codes = l->formats + FORMAT_WIDTH * n;
}

static size_t total_size(const mp_shareable_list_t *l) {
  return l->codes + l->n;
}

/* Writes item i's value, format and code (Python's __setitem__ writes the
 * same three). The slot has room (checked by the caller). */
static void write_item(mp_shareable_list_t *l, size_t i,
                       const mp_shareable_item_t *it) {
  uint8_t *slot = l->base + l->data + slot_offset(l, i);
  char format[FORMAT_WIDTH + 1] = {0};
  uint8_t code = CODE_PLAIN;
  switch (it->kind) {
  case MP_SHAREABLE_INT:
    store_i64(slot, it->u.i);
    memcpy(format, FORMAT_INT, sizeof FORMAT_INT);
    break;
  case MP_SHAREABLE_FLOAT:
    memcpy(slot, &it->u.f, sizeof it->u.f);
    memcpy(format, FORMAT_FLOAT, sizeof FORMAT_FLOAT);
    break;
  case MP_SHAREABLE_BOOL: /* pad bytes are zero, as struct writes them */
  case MP_SHAREABLE_NONE:
    memset(slot, 0, SLOT_ALIGN);
    if (it->kind == MP_SHAREABLE_BOOL)
      slot[7] = it->u.b ? 1 : 0;
    memcpy(format, it->kind == MP_SHAREABLE_BOOL ? FORMAT_BOOL : FORMAT_NONE,
           FORMAT_WIDTH);
    code = it->kind == MP_SHAREABLE_NONE ? CODE_NONE : CODE_PLAIN;
    break;
  default: { /* STR, BYTES: "<slot>s" pads with NULs to the slot's end */
    size_t size = slot_size(l, i);
    if (it->u.bytes.len > 0)
      memcpy(slot, it->u.bytes.ptr, it->u.bytes.len);
    memset(slot + it->u.bytes.len, 0, size - it->u.bytes.len);
    snprintf(format, sizeof format, "%zus", size);
    code = it->kind == MP_SHAREABLE_STR ? CODE_STR : CODE_BYTES;
  }
  }
  memcpy(l->base + l->formats + FORMAT_WIDTH * i, format, FORMAT_WIDTH);
  l->base[l->codes + i] = code;
}

mp_shareable_list_t *mp_shareable_list_new(const char *name,
                                           const mp_shareable_item_t *items,
                                           size_t n) {
  if (!items && n > 0) {
    errno = EINVAL;
    return NULL;
  }
  size_t data_size = 0;
  for (size_t i = 0; i < n; i++) {
    if (check_item(&items[i]) < 0 ||
        (is_bytes_kind(items[i].kind) &&
         (items[i].u.bytes.len > SLOT_MAX ||
          bytes_slot(items[i].u.bytes.len) > SLOT_MAX))) {
      errno = EINVAL;
      return NULL;
    }
    data_size += is_bytes_kind(items[i].kind) ? bytes_slot(items[i].u.bytes.len)
                                              : SLOT_ALIGN;
  }
  mp_shareable_list_t *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  layout(l, n, data_size);
  l->shm = mp_shm_open(name, true, total_size(l));
  if (!l->shm) {
    free(l);
    return NULL;
  }
  l->base = mp_shm_buf(l->shm);
  store_i64(l->base, (int64_t)n);
  size_t offset = 0;
  for (size_t i = 0; i <= n; i++) {
    store_i64(l->base + SLOT_ALIGN * (1 + i), (int64_t)offset);
    if (i < n)
      offset += is_bytes_kind(items[i].kind) ? bytes_slot(items[i].u.bytes.len)
                                             : SLOT_ALIGN;
  }
  for (size_t i = 0; i < n; i++)
    write_item(l, i, &items[i]);
  return l;
}

/* Whether the segment holds a consistent list: the count and the offsets
 * (increasing, each slot at least 8 bytes, as Python makes them) leave the
 * four parts inside the segment. */
static bool layout_valid(mp_shareable_list_t *l, size_t size) {
  if (size < 2 * SLOT_ALIGN)
    return false;
  int64_t count = load_i64(l->base);
  if (count < 0 || (uint64_t)count > (size / SLOT_ALIGN) - 2)
    return false;
  size_t n = (size_t)count;
  l->n = n; /* slot_offset reads within the offsets, now known in bounds */
  if (slot_offset(l, 0) != 0)
    return false;
  for (size_t i = 0; i < n; i++) {
    int64_t next = load_i64(l->base + SLOT_ALIGN * (2 + i));
    if (next < 0 || (uint64_t)next > size ||
        (size_t)next < slot_offset(l, i) + SLOT_ALIGN)
      return false;
  }
  layout(l, n, slot_offset(l, n));
  return total_size(l) <= size;
}

mp_shareable_list_t *mp_shareable_list_open(const char *name) {
  mp_shareable_list_t *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  l->shm = mp_shm_open(name, false, 0);
  if (!l->shm) {
    free(l);
    return NULL;
  }
  l->base = mp_shm_buf(l->shm);
  if (!layout_valid(l, mp_shm_size(l->shm))) {
    mp_shm_close(l->shm);
    free(l);
    errno = EPROTO;
    return NULL;
  }
  return l;
}

size_t mp_shareable_list_len(const mp_shareable_list_t *l) {
  return l ? l->n : 0;
}

/* Python's position handling: negative counts from the end. */
static int position(const mp_shareable_list_t *l, ptrdiff_t index,
                    size_t *out) {
  if (!l)
    return MP_EINVAL;
  if (index < 0)
    index += (ptrdiff_t)l->n;
  if (index < 0 || (size_t)index >= l->n)
    return MP_EINDEX;
  *out = (size_t)index;
  return 0;
}

/* Item i's format field without its trailing NULs, NUL-terminated. */
static void read_format(const mp_shareable_list_t *l, size_t i,
                        char out[FORMAT_WIDTH + 1]) {
  memcpy(out, l->base + l->formats + FORMAT_WIDTH * i, FORMAT_WIDTH);
  out[FORMAT_WIDTH] = 0;
}

/* A "<n>s" format whose n fits slot i. */
static bool bytes_format(const mp_shareable_list_t *l, size_t i,
                         const char *format, size_t *width) {
  char *end;
  unsigned long v = strtoul(format, &end, 10);
  if (end == format || strcmp(end, "s") != 0 || v > slot_size(l, i))
    return false;
  *width = v;
  return true;
}

int mp_shareable_list_get(const mp_shareable_list_t *l, ptrdiff_t index,
                          mp_shareable_item_t *out) {
  size_t i, width;
  int rc = position(l, index, &i);
  if (rc < 0)
    return rc;
  char format[FORMAT_WIDTH + 1];
  read_format(l, i, format);
  const uint8_t *slot = l->base + l->data + slot_offset(l, i);
  uint8_t code = l->base[l->codes + i];
  mp_shareable_item_t it = {0};
  if (code == CODE_NONE) {
    it.kind = MP_SHAREABLE_NONE; /* Python ignores the value then */
  } else if (strcmp(format, FORMAT_INT) == 0) {
    it.kind = MP_SHAREABLE_INT;
    it.u.i = load_i64(slot);
  } else if (strcmp(format, FORMAT_FLOAT) == 0) {
    it.kind = MP_SHAREABLE_FLOAT;
    memcpy(&it.u.f, slot, sizeof it.u.f);
  } else if (strcmp(format, FORMAT_BOOL) == 0) {
    it.kind = MP_SHAREABLE_BOOL;
    it.u.b = slot[7] != 0;
  } else if ((code == CODE_STR || code == CODE_BYTES) &&
             bytes_format(l, i, format, &width)) {
    it.kind = code == CODE_STR ? MP_SHAREABLE_STR : MP_SHAREABLE_BYTES;
    while (width > 0 && slot[width - 1] == 0)
      width--; /* Python's rstrip(b'\x00') */
    it.u.bytes.ptr = slot;
    it.u.bytes.len = width;
  } else {
    return -EPROTO;
  }
  *out = it;
  return 0;
}

int mp_shareable_list_set(mp_shareable_list_t *l, ptrdiff_t index,
                          const mp_shareable_item_t *item) {
  size_t i;
  int rc = check_item(item);
  if (rc == 0)
    rc = position(l, index, &i);
  if (rc < 0)
    return rc;
  if (is_bytes_kind(item->kind) && item->u.bytes.len > slot_size(l, i))
    return MP_EOVERFLOW;
  write_item(l, i, item);
  return 0;
}

int mp_shareable_list_format(const mp_shareable_list_t *l, char *buf,
                             size_t cap) {
  if (!l)
    return MP_EINVAL;
  size_t len = 0;
  char format[FORMAT_WIDTH + 1];
  for (size_t i = 0; i < l->n; i++) {
    read_format(l, i, format);
    len += strlen(format);
  }
  if (len >= cap || len > INT32_MAX)
    return MP_EOVERFLOW; /* buf untouched */
  buf[0] = 0;
  for (size_t i = 0; i < l->n; i++) {
    read_format(l, i, format);
    strcat(buf, format);
  }
  return (int)len;
}

mp_shm_t *mp_shareable_list_shm(const mp_shareable_list_t *l) {
  return l ? l->shm : NULL;
}

const char *mp_shareable_list_name(const mp_shareable_list_t *l) {
  return l ? mp_shm_name(l->shm) : NULL;
}

int mp_shareable_list_close(mp_shareable_list_t *l) {
  if (!l)
    return 0;
  int rc = mp_shm_close(l->shm);
  free(l);
  return rc;
}
