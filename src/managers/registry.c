/* What the manager's client and server share: the wire format of a
 * request and its reply, and the registry of named objects (a shared dict
 * from "<kind>:<name>" to the object's pointer, in the family's arena). */
#include <errno.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "managers/manager.h"

/* ---- the wire ---------------------------------------------------------------
 */

static unsigned char *put(unsigned char *at, const void *p, size_t len) {
  if (len)
    memcpy(at, p, len);
  return at + len;
}

void *mp__wire_request(const mp__remote_req_t *req, size_t *len) {
  uint64_t alen = req->alen, blen = req->blen;
  *len = 4 + 8 + 8 + alen + 8 + blen + 8 + 8 + 8;
  unsigned char *buf = malloc(*len), *at = buf;
  if (!buf)
    return NULL;
  at = put(at, &req->op, 4);
  at = put(at, &req->id, 8);
  at = put(at, &alen, 8);
  at = put(at, req->a, alen);
  at = put(at, &blen, 8);
  at = put(at, req->b, blen);
  at = put(at, &req->n, 8);
  at = put(at, &req->m, 8);
  put(at, &req->timeout, 8);
  return buf;
}

/* Reads len bytes at *at (within end) into p; false if too short. */
static bool take(const unsigned char **at, const unsigned char *end, void *p,
                 size_t len) {
  if ((size_t)(end - *at) < len)
    return false;
  memcpy(p, *at, len);
  *at += len;
  return true;
}

/* A byte field: its length, then its bytes (pointed to, not copied). */
static bool take_bytes(const unsigned char **at, const unsigned char *end,
                       const void **p, size_t *len) {
  uint64_t l;
  if (!take(at, end, &l, 8) || l > (uint64_t)(end - *at))
    return false;
  *p = *at;
  *len = (size_t)l;
  *at += l;
  return true;
}

bool mp__wire_parse_request(const void *buf, size_t len,
                            mp__remote_req_t *req) {
  const unsigned char *at = buf, *end = at + len;
  return take(&at, end, &req->op, 4) && take(&at, end, &req->id, 8) &&
         take_bytes(&at, end, &req->a, &req->alen) &&
         take_bytes(&at, end, &req->b, &req->blen) &&
         take(&at, end, &req->n, 8) && take(&at, end, &req->m, 8) &&
         take(&at, end, &req->timeout, 8) && at == end;
}

int mp__wire_parse_reply(const void *buf, size_t len, mp__remote_reply_t *rep) {
  int32_t code = MP_EINVAL;
  const unsigned char *at = buf, *end = at + len;
  if (take(&at, end, &code, 4) && take(&at, end, &rep->n, 8)) {
    rep->out_len = (size_t)(end - at);
    rep->out = rep->out_len ? malloc(rep->out_len) : NULL;
    if (rep->out_len && !rep->out)
      code = -ENOMEM;
    else if (rep->out_len)
      memcpy(rep->out, at, rep->out_len);
  }
  return code;
}

void *mp__wire_reply(int rc, int64_t n, const void *out, size_t out_len,
                     size_t *len) {
  int32_t code = rc;
  *len = 4 + 8 + out_len;
  unsigned char *buf = malloc(*len), *at = buf;
  if (!buf)
    return NULL;
  at = put(at, &code, 4);
  at = put(at, &n, 8);
  put(at, out, out_len);
  return buf;
}

/* Every request and every reply is one small message the other side waits
 * for: Nagle's algorithm would only hold one back behind an unacknowledged
 * one. (A Unix socket refuses the option: nothing to do there.) */
void mp__manager_nodelay(mp_conn_t *c) {
  int one = 1;
  (void)setsockopt(mp_conn_fileno(c), IPPROTO_TCP, TCP_NODELAY, &one,
                   sizeof one);
}

double mp__manager_slice(bool forever, uint64_t end, double slice) {
  if (forever)
    return slice;
  uint64_t now = mp__now_ns();
  double left = now >= end ? 0 : (double)(end - now) / 1e9;
  return left < slice ? left : slice;
}

void mp__manager_spin_for_input(mp_conn_t *conn, uint64_t ns) {
  uint64_t end = mp__now_ns() + ns;
  do {
    if (mp_conn_poll(conn, 0) != 0) /* input, or an error to receive */
      return;
    sched_yield(); /* the peer may be waiting for this CPU */
  } while (mp__now_ns() < end);
}

int mp__manager_wait_sliced(mp_conn_t *conn, double timeout, double slice,
                            int (*attempt)(void *arg, double t), void *arg) {
  bool forever = timeout < 0 || timeout != timeout;
  uint64_t end = forever ? 0 : mp__now_ns() + (uint64_t)(timeout * 1e9);
  for (;;) {
    int rc = attempt(arg, mp__manager_slice(forever, end, slice));
    bool slice_over = rc == MP_ETIMEDOUT || rc == MP_EEMPTY || rc == MP_EFULL;
    if (!slice_over || (!forever && mp__now_ns() >= end))
      return rc;
    if (mp_conn_poll(conn, 0) != 0)
      return MP__CLIENT_GONE;
  }
}

/* The errno of a constructor that failed with rc (an MP_E* code or
 * -errno). */
int mp__manager_errno(int rc) {
  switch (rc) {
  case MP_EAUTH:
    return EACCES;
  case MP_ETIMEDOUT:
    return ETIMEDOUT;
  case MP_ECLOSED:
    return ECONNRESET;
  }
  return rc > -1000 ? -rc : EIO;
}

/* ---- the registry (family) -------------------------------------------------
 */

struct open_args {
  uint32_t kind;
  size_t arg; /* a queue's maxsize, a semaphore's value */
  void *obj;
};

/* A new object of that kind (not a segment: those are made by
 * mp__manager_new_shm). */
static void *object_new(uint32_t kind, size_t arg) {
  switch (kind) {
  case MP__REMOTE_DICT:
    return mp_dict_new();
  case MP__REMOTE_LIST:
    return mp_list_new();
  case MP__REMOTE_QUEUE:
    return mp_queue_new(arg);
  case MP__REMOTE_LOCK:
    return mp_lock_new();
  case MP__REMOTE_RLOCK:
    return mp_rlock_new();
  case MP__REMOTE_SEMAPHORE:
    if (arg > INT32_MAX) {
      errno = EINVAL;
      return NULL;
    }
    return mp_semaphore_new((unsigned)arg);
  case MP__REMOTE_EVENT:
    return mp_event_new();
  }
  errno = EINVAL;
  return NULL;
}

static int open_cb(const void *old, size_t old_len, bool found,
                   const void **new_val, size_t *new_len, void *arg) {
  struct open_args *a = arg;
  if (found) {
    if (old_len != sizeof a->obj)
      return MP_EINVAL;
    memcpy(&a->obj, old, sizeof a->obj);
    return MP_DICT_KEEP;
  }
  a->obj = object_new(a->kind, a->arg);
  if (!a->obj)
    return -errno;
  *new_val = &a->obj;
  *new_len = sizeof a->obj;
  return MP_DICT_STORE;
}

/* A registry key starts with one letter per kind (by its number). */
static const char kind_letters[MP__REMOTE_KINDS + 1] = "?qdlkrsem";

static int registry_key(uint32_t kind, const char *name, char *key) {
  if (!name || strlen(name) > MP__MANAGER_NAME_MAX || kind == 0 ||
      kind >= MP__REMOTE_KINDS)
    return MP_EINVAL;
  return snprintf(key, MP__MANAGER_NAME_MAX + 8, "%c:%s", kind_letters[kind],
                  name);
}

void *mp__manager_open(mp__family_manager_t *m, uint32_t kind, const char *name,
                       size_t arg) {
  char key[MP__MANAGER_NAME_MAX + 8];
  int len = kind == MP__REMOTE_SHM ? MP_EINVAL : registry_key(kind, name, key);
  struct open_args a = {kind, arg, NULL};
  int rc = len < 0 ? len
                   : mp_dict_modify(m->registry, key, (size_t)len, open_cb, &a);
  if (rc < 0) {
    errno = mp__manager_errno(rc);
    return NULL;
  }
  return a.obj;
}

/* ---- shared memory segments (SharedMemoryManager) ---------------------------
 * A segment is made by whoever asks in the family (the server for its
 * clients), so the family's resource tracker knows it; its name goes into
 * the registry ("m:<name>"), and whoever frees the manager, or the server
 * when it stops, unlinks every one. */

/* Puts a segment's name in the registry. */
static int register_shm(mp__family_manager_t *m, const char *name) {
  char key[MP__MANAGER_NAME_MAX + 8];
  int len = registry_key(MP__REMOTE_SHM, name, key);
  return len < 0 ? len : mp_dict_set(m->registry, key, (size_t)len, "", 0);
}

mp_shm_t *mp__manager_new_shm(mp__family_manager_t *m, size_t size) {
  mp_shm_t *s = mp_shm_open(NULL, true, size);
  if (!s)
    return NULL;
  int rc = register_shm(m, mp_shm_name(s));
  if (rc < 0) {
    mp_shm_unlink(s);
    mp_shm_close(s);
    errno = mp__manager_errno(rc);
    return NULL;
  }
  return s;
}

int mp__manager_adopt_shm(mp__family_manager_t *m, const char *name) {
  char path[MP__MANAGER_NAME_MAX + 2];
  if (!name[0] || strchr(name, '/') || strlen(name) > MP__MANAGER_NAME_MAX)
    return MP_EINVAL;
  snprintf(path, sizeof path, "/%s", name);
  int rc = register_shm(m, name);
  if (rc == 0)
    mp__track(MP__RESOURCE_SHM, path); /* best effort, as for a new one */
  return rc;
}

void mp__manager_unlink_shm(mp__family_manager_t *m) {
  mp_dict_item_t *items;
  size_t n;
  if (mp_dict_keys(m->registry, &items, &n) < 0)
    return;
  for (size_t i = 0; i < n; i++) {
    const char *key = items[i].key;
    char name[MP__MANAGER_NAME_MAX + 1];
    if (items[i].klen < 3 || items[i].klen - 2 > MP__MANAGER_NAME_MAX ||
        key[0] != kind_letters[MP__REMOTE_SHM])
      continue;
    memcpy(name, key + 2, items[i].klen - 2);
    name[items[i].klen - 2] = 0;
    mp_shm_unlink_name(name);
  }
  mp_free(items);
}

/* Frees one named object (by its registry key's letter). */
static void object_free(char letter, void *obj) {
  switch (letter) {
  case 'd':
    mp_dict_free(obj);
    break;
  case 'l':
    mp_list_free(obj);
    break;
  case 'q':
    mp_queue_free(obj);
    break;
  case 'k':
    mp_lock_free(obj);
    break;
  case 'r':
    mp_rlock_free(obj);
    break;
  case 's':
    mp_semaphore_free(obj);
    break;
  case 'e':
    mp_event_free(obj);
    break;
  }
}

/* Frees every named object and unlinks every segment (the creator, at
 * free). */
void mp__manager_registry_free(mp__family_manager_t *m) {
  mp_dict_item_t *items;
  size_t n;
  mp__manager_unlink_shm(m);
  if (mp_dict_items(m->registry, &items, &n) < 0)
    return;
  for (size_t i = 0; i < n; i++) {
    void *obj;
    if (items[i].vlen != sizeof obj)
      continue;
    memcpy(&obj, items[i].val, sizeof obj);
    object_free(((const char *)items[i].key)[0], obj);
  }
  mp_free(items);
}
