/* Managers (manager.h): the family handle (in the arena, with the server
 * process it started) and the connected handle (a connection to a server,
 * the transport of remote handles), and the wire format both sides use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "managers/manager.h"

#define START_TIMEOUT 20.0 /* for the server to listen */
#define STOP_TIMEOUT  5.0  /* for it to exit once told */

/* A connected handle (process-local). `lock` serialises the calls of the
 * threads on the connection; after a failed exchange the stream may hold
 * half a message, so the connection is `broken` for good. */
typedef struct remote_manager {
  uint32_t magic;
  pthread_mutex_t lock;
  mp_conn_t *conn;
  bool broken;
  char address[MP__MANAGER_ADDRESS_MAX];
} remote_manager_t;

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

/* ---- the client: one exchange ---------------------------------------------
 */

static int exchange(remote_manager_t *m, const void *req, size_t req_len,
                    void **reply, size_t *reply_len) {
  if (m->broken)
    return MP_ECLOSED;
  int rc = mp_conn_send_bytes(m->conn, req, req_len);
  if (rc == 0)
    rc = mp_conn_recv_bytes(m->conn, reply, reply_len);
  if (rc < 0) {
    m->broken = true;
    return MP_ECLOSED; /* whatever broke, the server is out of reach */
  }
  return 0;
}

static int link_call(void *link, const mp__remote_req_t *req,
                     mp__remote_reply_t *rep) {
  remote_manager_t *m = link;
  size_t len, reply_len = 0;
  void *buf = mp__wire_request(req, &len), *reply = NULL;
  if (!buf)
    return -ENOMEM;
  pthread_mutex_lock(&m->lock);
  int rc = exchange(m, buf, len, &reply, &reply_len);
  pthread_mutex_unlock(&m->lock);
  free(buf);
  if (rc < 0)
    return rc;
  int32_t code = MP_EINVAL;
  const unsigned char *at = reply, *end = at + reply_len;
  if (take(&at, end, &code, 4) && take(&at, end, &rep->n, 8)) {
    rep->out_len = (size_t)(end - at);
    rep->out = rep->out_len ? malloc(rep->out_len) : NULL;
    if (rep->out_len && !rep->out)
      code = -ENOMEM;
    else
      put(rep->out, at, rep->out_len);
  }
  free(reply);
  return code;
}

/* ---- handles ---------------------------------------------------------------
 */

static mp__family_manager_t *family(const mp_manager_t *m) {
  const mp__family_manager_t *f = (const void *)m;
  return m && mp__arena_contains(m) &&
                 atomic_load(&f->magic) == MP__MANAGER_MAGIC
             ? (mp__family_manager_t *)f
             : NULL;
}

static remote_manager_t *connected(const mp_manager_t *m) {
  const remote_manager_t *r = (const void *)m;
  return m && !mp__arena_contains(m) && r->magic == MP__MANAGER_REMOTE_MAGIC
             ? (remote_manager_t *)r
             : NULL;
}

static bool copy_key(const void *authkey, size_t len, bool *has,
                     unsigned char *key, size_t *key_len) {
  if (!authkey) {
    authkey = mp_process_authkey(mp_current_process(), &len);
    if (!authkey)
      return false;
  }
  if (len > MP__MANAGER_KEY_MAX)
    return false;
  memcpy(key, authkey, len);
  *key_len = len;
  *has = true;
  return true;
}

/* The errno of a constructor that failed with rc (an MP_E* code or
 * -errno). */
static int errno_of(int rc) {
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
  size_t maxsize;
  void *obj;
};

static int open_cb(const void *old, size_t old_len, bool found,
                   const void **new_val, size_t *new_len, void *arg) {
  struct open_args *a = arg;
  if (found) {
    if (old_len != sizeof a->obj)
      return MP_EINVAL;
    memcpy(&a->obj, old, sizeof a->obj);
    return MP_DICT_KEEP;
  }
  switch (a->kind) {
  case MP__REMOTE_DICT:
    a->obj = mp_dict_new();
    break;
  case MP__REMOTE_LIST:
    a->obj = mp_list_new();
    break;
  default:
    a->obj = mp_queue_new(a->maxsize);
  }
  if (!a->obj)
    return -errno;
  *new_val = &a->obj;
  *new_len = sizeof a->obj;
  return MP_DICT_STORE;
}

static int registry_key(uint32_t kind, const char *name, char *key) {
  if (!name || strlen(name) > MP__MANAGER_NAME_MAX)
    return MP_EINVAL;
  return snprintf(key, MP__MANAGER_NAME_MAX + 8, "%c:%s", "?qdl"[kind & 3],
                  name);
}

void *mp__manager_open(mp__family_manager_t *m, uint32_t kind, const char *name,
                       size_t maxsize) {
  char key[MP__MANAGER_NAME_MAX + 8];
  int len = registry_key(kind, name, key);
  struct open_args a = {kind, maxsize, NULL};
  int rc = len < 0 ? len
                   : mp_dict_modify(m->registry, key, (size_t)len, open_cb, &a);
  if (rc < 0) {
    errno = errno_of(rc);
    return NULL;
  }
  return a.obj;
}

/* Frees every named object (the creator, at free). */
static void registry_free(mp__family_manager_t *m) {
  mp_dict_item_t *items;
  size_t n;
  if (mp_dict_items(m->registry, &items, &n) < 0)
    return;
  for (size_t i = 0; i < n; i++) {
    void *obj;
    if (items[i].vlen != sizeof obj)
      continue;
    memcpy(&obj, items[i].val, sizeof obj);
    switch (((const char *)items[i].key)[0]) {
    case 'd':
      mp_dict_free(obj);
      break;
    case 'l':
      mp_list_free(obj);
      break;
    case 'q':
      mp_queue_free(obj);
      break;
    }
  }
  mp_free(items);
}

/* ---- the public functions ---------------------------------------------------
 */

static bool server_settled(mp__family_manager_t *f) {
  return atomic_load(&f->state) != MP__MANAGER_STARTING;
}

static int start_server(mp__family_manager_t *f) {
  /* A daemon: a program that exits without mp_manager_free does not wait
   * for its server forever (Python finalizes its managers at exit). */
  mp_process_opts_t opts = {.name = "Manager", .daemon = true};
  f->server = mp_process_new(mp__manager_serve, &f, sizeof f, &opts);
  if (!f->server)
    return -errno;
  int rc = mp_process_start(f->server);
  if (rc < 0)
    return rc;
  /* Waits for the server to listen, or to fail, or to die trying. */
  mp__deadline_t deadline = mp__deadline_in(START_TIMEOUT);
  while (!server_settled(f) && mp_process_is_alive(f->server) &&
         !mp__deadline_expired(&deadline))
    mp_event_wait(f->changed, 0.05);
  if (atomic_load(&f->state) == MP__MANAGER_RUNNING)
    return 0;
  rc = atomic_load(&f->error);
  return rc < 0 ? rc : -ETIMEDOUT;
}

mp_manager_t *mp_manager_new(const char *address, const void *authkey,
                             size_t authkey_len) {
  if (address && strlen(address) >= MP__MANAGER_ADDRESS_MAX) {
    errno = EINVAL;
    return NULL;
  }
  mp__family_manager_t *f = mp_raw_alloc(sizeof *f);
  if (!f)
    return NULL;
  int rc = -EINVAL;
  if (!copy_key(authkey, authkey_len, &f->has_key, f->key, &f->key_len))
    goto error;
  if (address)
    strcpy(f->address, address);
  f->creator = getpid();
  f->registry = mp_dict_new();
  f->changed = mp_event_new();
  rc = -ENOMEM;
  if (!f->registry || !f->changed)
    goto error;
  atomic_store(&f->magic, MP__MANAGER_MAGIC);
  if ((rc = start_server(f)) < 0)
    goto error;
  return (mp_manager_t *)f;
error:
  if (f->server) {
    mp_process_kill(f->server);
    mp_process_join(f->server, MP_FOREVER);
    mp_process_free(f->server);
  }
  mp_dict_free(f->registry);
  mp_event_free(f->changed);
  atomic_store(&f->magic, 0);
  mp_raw_free(f);
  errno = errno_of(rc);
  return NULL;
}

mp_manager_t *mp_manager_connect(const char *address, const void *authkey,
                                 size_t authkey_len) {
  remote_manager_t *m = calloc(1, sizeof *m);
  unsigned char key[MP__MANAGER_KEY_MAX];
  size_t key_len = 0;
  bool has_key = false;
  int rc = -EINVAL;
  if (!m || !address || strlen(address) >= sizeof m->address ||
      !copy_key(authkey, authkey_len, &has_key, key, &key_len)) {
    rc = m ? -EINVAL : -ENOMEM;
    goto error;
  }
  rc = mp_client(address, key, key_len, &m->conn);
  if (rc < 0)
    goto error;
  strcpy(m->address, address);
  pthread_mutex_init(&m->lock, NULL);
  m->magic = MP__MANAGER_REMOTE_MAGIC;
  __atomic_store_n(&mp__remote_call, link_call, __ATOMIC_RELEASE);
  return (mp_manager_t *)m;
error:
  free(m);
  errno = errno_of(rc);
  return NULL;
}

const char *mp_manager_address(const mp_manager_t *m) {
  mp__family_manager_t *f = family(m);
  remote_manager_t *r = connected(m);
  return f ? f->address : r ? r->address : NULL;
}

/* A proxy of the server's object of that kind and name. */
static void *proxy_open(remote_manager_t *r, uint32_t kind, const char *name,
                        size_t maxsize) {
  if (!name || strlen(name) > MP__MANAGER_NAME_MAX) {
    errno = EINVAL;
    return NULL;
  }
  mp__remote_t *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  mp__remote_req_t req = {.op = MP__OP_OPEN,
                          .a = name,
                          .alen = strlen(name),
                          .n = kind,
                          .m = (int64_t)maxsize};
  mp__remote_reply_t rep = {0, 0, NULL, 0};
  int rc = link_call(r, &req, &rep);
  free(rep.out);
  if (rc < 0) {
    free(h);
    errno = errno_of(rc);
    return NULL;
  }
  *h = (mp__remote_t){MP__REMOTE_MAGIC, kind, r, (uint64_t)rep.n};
  return h;
}

static void *open_any(mp_manager_t *m, uint32_t kind, const char *name,
                      size_t maxsize) {
  mp__family_manager_t *f = family(m);
  remote_manager_t *r = connected(m);
  if (f)
    return mp__manager_open(f, kind, name, maxsize);
  if (r)
    return proxy_open(r, kind, name, maxsize);
  errno = EINVAL;
  return NULL;
}

mp_dict_t *mp_manager_dict(mp_manager_t *m, const char *name) {
  return open_any(m, MP__REMOTE_DICT, name, 0);
}

mp_list_t *mp_manager_list(mp_manager_t *m, const char *name) {
  return open_any(m, MP__REMOTE_LIST, name, 0);
}

mp_queue_t *mp_manager_queue(mp_manager_t *m, const char *name,
                             size_t maxsize) {
  return open_any(m, MP__REMOTE_QUEUE, name, maxsize);
}

/* The family side: tells the server to stop; the creator waits for it
 * (also when a client stopped it). */
static int family_shutdown(mp__family_manager_t *f) {
  bool stopped = atomic_exchange(&f->stop, 1);
  if (getpid() == f->creator && f->server && !f->joined) {
    if (mp_process_join(f->server, STOP_TIMEOUT) < 0) {
      mp_process_kill(f->server);
      mp_process_join(f->server, MP_FOREVER);
    }
    f->joined = true;
    atomic_store(&f->state, MP__MANAGER_STOPPED);
  }
  return stopped ? MP_ECLOSED : 0;
}

int mp_manager_shutdown(mp_manager_t *m) {
  mp__family_manager_t *f = family(m);
  remote_manager_t *r = connected(m);
  if (f)
    return family_shutdown(f);
  if (!r)
    return MP_EINVAL;
  mp__remote_req_t req = {.op = MP__OP_SHUTDOWN};
  mp__remote_reply_t rep = {0, 0, NULL, 0};
  int rc = link_call(r, &req, &rep);
  free(rep.out);
  return rc;
}

void mp_manager_free(mp_manager_t *m) {
  mp__family_manager_t *f = family(m);
  remote_manager_t *r = connected(m);
  if (r) {
    mp_conn_free(r->conn);
    pthread_mutex_destroy(&r->lock);
    r->magic = 0;
    free(r);
  }
  if (!f || getpid() != f->creator)
    return;
  family_shutdown(f);
  mp_process_free(f->server);
  registry_free(f);
  mp_dict_free(f->registry);
  mp_event_free(f->changed);
  atomic_store(&f->magic, 0);
  mp_raw_free(f);
}
