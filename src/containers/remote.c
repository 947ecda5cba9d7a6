/* Dicts and lists of a manager's server, called through remote handles
 * (queue/remote.h): each public function of dict.c and list.c forwards to
 * the function of the same name here when given such a handle. Items lists
 * travel as (u64 length, bytes) pairs: a dict item is two of them. */
#include <stdlib.h>
#include <string.h>

#include "containers/remote.h"

/* ---- items on the wire ----------------------------------------------------
 */

static unsigned char *pack_one(unsigned char *at, const void *p, size_t len) {
  uint64_t l = len;
  memcpy(at, &l, 8);
  if (len)
    memcpy(at + 8, p, len);
  return at + 8 + len;
}

/* The n buffers (bufs[i], lens[i]) packed in one malloc'ed buffer. */
void *mp__remote_pack(const void *const *bufs, const size_t *lens, size_t n,
                      size_t *total) {
  *total = mp__remote_pack_size(lens, n);
  unsigned char *out = malloc(*total ? *total : 1), *at = out;
  for (size_t i = 0; out && i < n; i++)
    at = pack_one(at, bufs[i], lens[i]);
  return out;
}

/* Walks packed buffers: the next one, or false at the end or when
 * malformed. */
bool mp__remote_unpack(const unsigned char **at, const unsigned char *end,
                       const void **p, size_t *len) {
  uint64_t l;
  if ((size_t)(end - *at) < 8)
    return false;
  memcpy(&l, *at, 8);
  if (l > (size_t)(end - *at) - 8)
    return false;
  *p = *at + 8;
  *len = (size_t)l;
  *at += 8 + l;
  return true;
}

/* Counts packed buffers (-1 if malformed). */
static long count_packed(const void *buf, size_t len) {
  const unsigned char *at = buf, *end = at + len;
  const void *p;
  size_t l;
  long n = 0;
  while (at < end) {
    if (!mp__remote_unpack(&at, end, &p, &l))
      return -1;
    n++;
  }
  return n;
}

/* Items are pointers into the packed reply, which the array takes over:
 * the array comes first in one buffer, the reply after it. */
static int unpack_items(void *packed, size_t len, size_t per_item, void **items,
                        size_t *n) {
  long count = count_packed(packed, len);
  if (count < 0 || count % (long)per_item) {
    free(packed);
    return MP_EINVAL;
  }
  size_t k = (size_t)count / per_item;
  size_t item_size =
      per_item == 2 ? sizeof(mp_dict_item_t) : sizeof(mp_list_item_t);
  unsigned char *out = malloc(k * item_size + len + 1);
  if (!out) {
    free(packed);
    return -ENOMEM;
  }
  unsigned char *copy = out + k * item_size;
  memcpy(copy, packed, len);
  free(packed);
  const unsigned char *at = copy, *end = copy + len;
  for (size_t i = 0; i < k; i++) {
    const void *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    mp__remote_unpack(&at, end, &a, &alen);
    if (per_item == 2) {
      mp__remote_unpack(&at, end, &b, &blen);
      ((mp_dict_item_t *)out)[i] = (mp_dict_item_t){a, alen, b, blen};
    } else {
      ((mp_list_item_t *)out)[i] = (mp_list_item_t){a, alen};
    }
  }
  *items = out;
  *n = k;
  return 0;
}

/* ---- dict -----------------------------------------------------------------
 */

int mp__remote_dict_set(mp__remote_t *r, const void *key, size_t klen,
                        const void *val, size_t vlen) {
  mp__remote_req_t req = {
      .op = MP__OP_DICT_SET, .a = key, .alen = klen, .b = val, .blen = vlen};
  return mp__remote_do(r, req, NULL, NULL, NULL);
}

int mp__remote_dict_get(mp__remote_t *r, const void *key, size_t klen,
                        void **val, size_t *vlen) {
  mp__remote_req_t req = {.op = MP__OP_DICT_GET, .a = key, .alen = klen};
  return mp__remote_do(r, req, val, vlen, NULL);
}

int mp__remote_dict_get_into(mp__remote_t *r, const void *key, size_t klen,
                             void *buf, size_t cap, size_t *vlen) {
  mp__remote_req_t req = {.op = MP__OP_DICT_GET, .a = key, .alen = klen};
  return mp__remote_do_into(r, req, buf, cap, vlen);
}

int mp__remote_dict_pop(mp__remote_t *r, const void *key, size_t klen,
                        void **val, size_t *vlen) {
  mp__remote_req_t req = {
      .op = MP__OP_DICT_POP, .a = key, .alen = klen, .n = val != NULL};
  return mp__remote_do(r, req, val, vlen, NULL);
}

int mp__remote_dict_contains(mp__remote_t *r, const void *key, size_t klen) {
  int64_t n = 0;
  mp__remote_req_t req = {.op = MP__OP_DICT_CONTAINS, .a = key, .alen = klen};
  int rc = mp__remote_do(r, req, NULL, NULL, &n);
  return rc < 0 ? rc : n != 0;
}

int mp__remote_len(mp__remote_t *r, uint32_t op, size_t *n) {
  int64_t got = 0;
  mp__remote_req_t req = {.op = op};
  int rc = mp__remote_do(r, req, NULL, NULL, &got);
  if (rc == 0)
    *n = (size_t)got;
  return rc;
}

int mp__remote_dict_setdefault(mp__remote_t *r, const void *key, size_t klen,
                               const void *dflt, size_t dlen, void **val,
                               size_t *vlen) {
  int64_t stored = 0;
  void *out = NULL;
  size_t len = 0;
  mp__remote_req_t req = {.op = MP__OP_DICT_SETDEFAULT,
                          .a = key,
                          .alen = klen,
                          .b = dflt,
                          .blen = dlen};
  int rc = mp__remote_do(r, req, &out, &len, &stored);
  if (rc < 0)
    return rc;
  if (val) {
    *val = out;
    if (vlen)
      *vlen = len;
  } else {
    free(out);
  }
  return stored != 0;
}

/* Sends op with the count buffers packed as its argument. */
static int send_packed(mp__remote_t *r, uint32_t op, const void **bufs,
                       const size_t *lens, size_t count) {
  size_t total;
  void *packed =
      bufs && lens ? mp__remote_pack(bufs, lens, count, &total) : NULL;
  if (!packed)
    return -ENOMEM;
  mp__remote_req_t req = {.op = op, .a = packed, .alen = total};
  int rc = mp__remote_do(r, req, NULL, NULL, NULL);
  free(packed);
  return rc;
}

int mp__remote_dict_update(mp__remote_t *r, const mp_dict_item_t *items,
                           size_t n) {
  const void **bufs = malloc((2 * n + 1) * sizeof *bufs);
  size_t *lens = malloc((2 * n + 1) * sizeof *lens);
  for (size_t i = 0; bufs && lens && i < n; i++) {
    bufs[2 * i] = items[i].key, lens[2 * i] = items[i].klen;
    bufs[2 * i + 1] = items[i].val, lens[2 * i + 1] = items[i].vlen;
  }
  int rc = send_packed(r, MP__OP_DICT_UPDATE, bufs, lens, 2 * n);
  free(bufs);
  free(lens);
  return rc;
}

int mp__remote_dict_items(mp__remote_t *r, bool values, mp_dict_item_t **items,
                          size_t *n) {
  void *packed;
  size_t len;
  mp__remote_req_t req = {.op = MP__OP_DICT_ITEMS, .n = values};
  int rc = mp__remote_do(r, req, &packed, &len, NULL);
  if (rc < 0)
    return rc;
  rc = unpack_items(packed, len, 2, (void **)items, n);
  if (rc == 0 && !values)
    for (size_t i = 0; i < *n; i++)
      (*items)[i].val = NULL, (*items)[i].vlen = 0;
  return rc;
}

int mp__remote_simple(mp__remote_t *r, uint32_t op) {
  mp__remote_req_t req = {.op = op};
  return mp__remote_do(r, req, NULL, NULL, NULL);
}

/* modify on a server: the callback runs here, so it is an optimistic loop:
 * read the value, decide, and have the server replace it only if it is
 * still what was read (MP__OP_DICT_REPLACE); else read again. */
int mp__remote_dict_modify(mp__remote_t *r, const void *key, size_t klen,
                           mp_dict_modify_cb fn, void *arg) {
  for (;;) {
    void *old = NULL;
    size_t old_len = 0;
    int rc = mp__remote_dict_get(r, key, klen, &old, &old_len);
    if (rc < 0 && rc != MP_EKEY)
      return rc;
    bool found = rc == 0;
    const void *nval = NULL;
    size_t nlen = 0;
    int decision = fn(old, old_len, found, &nval, &nlen, arg);
    if (decision < 0 || decision == MP_DICT_KEEP || decision > MP_DICT_DELETE) {
      free(old);
      return decision == MP_DICT_KEEP ? 0 : decision < 0 ? decision : MP_EINVAL;
    }
    const void *bufs[2] = {old, nval};
    size_t lens[2] = {old_len, nlen}, total;
    void *packed = mp__remote_pack(bufs, lens, 2, &total);
    free(old);
    if (!packed)
      return -ENOMEM;
    mp__remote_req_t req = {.op = MP__OP_DICT_REPLACE,
                            .a = key,
                            .alen = klen,
                            .b = packed,
                            .blen = total,
                            .n = found | (decision == MP_DICT_DELETE) << 1};
    rc = mp__remote_do(r, req, NULL, NULL, NULL);
    free(packed);
    if (rc != -EAGAIN)
      return rc;
  }
}

/* ---- list -----------------------------------------------------------------
 */

int mp__remote_list_put(mp__remote_t *r, uint32_t op, long index,
                        const void *buf, size_t len) {
  mp__remote_req_t req = {.op = op, .a = buf, .alen = len, .n = index};
  return mp__remote_do(r, req, NULL, NULL, NULL);
}

int mp__remote_list_take(mp__remote_t *r, uint32_t op, long index, void **buf,
                         size_t *len) {
  mp__remote_req_t req = {.op = op, .n = index, .m = buf != NULL};
  return mp__remote_do(r, req, buf, len, NULL);
}

int mp__remote_list_extend(mp__remote_t *r, const mp_list_item_t *items,
                           size_t n) {
  const void **bufs = malloc((n + 1) * sizeof *bufs);
  size_t *lens = malloc((n + 1) * sizeof *lens);
  for (size_t i = 0; bufs && lens && i < n; i++)
    bufs[i] = items[i].buf, lens[i] = items[i].len;
  int rc = send_packed(r, MP__OP_LIST_EXTEND, bufs, lens, n);
  free(bufs);
  free(lens);
  return rc;
}

int mp__remote_list_slice(mp__remote_t *r, long start, long stop,
                          mp_list_item_t **items, size_t *n) {
  void *packed;
  size_t len;
  mp__remote_req_t req = {.op = MP__OP_LIST_SLICE, .n = start, .m = stop};
  int rc = mp__remote_do(r, req, &packed, &len, NULL);
  if (rc < 0)
    return rc;
  return unpack_items(packed, len, 1, (void **)items, n);
}
