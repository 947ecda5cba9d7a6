/* The manager's server process (manager.h): a listener, and one thread per
 * connected client that performs its requests on the family's shared
 * objects. A client may only name objects it opened on its connection
 * (their ids are kept per connection), so a stale or made-up id is an
 * error, never a stray pointer. Waiting operations (queue get and put) wait
 * in slices and check between them that the client is still there, so that
 * a dead client's get does not take a message that nobody would receive. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "managers/manager.h"
#include "managers/python.h"
#include "sync/lock.h"

#define SLICE        0.05 /* seconds of a waiting slice */
#define ACCEPT_SLICE 0.1  /* how often the accept loop looks at `stop` */

typedef struct opened {
  uint64_t id;
  uint32_t kind;
} opened_t;

typedef struct client {
  mp__family_manager_t *m;
  mp_conn_t *conn;
  opened_t *opened;
  size_t n_opened, cap_opened;
} client_t;

/* What a request produces: the code, an integer, bytes (malloc'ed or
 * NULL). */
typedef struct result {
  int rc;
  int64_t n;
  void *out;
  size_t out_len;
} result_t;

/* ---- objects ------------------------------------------------------------- */

static void *object(client_t *c, uint64_t id, uint32_t kind) {
  for (size_t i = 0; i < c->n_opened; i++)
    if (c->opened[i].id == id && c->opened[i].kind == kind)
      return (void *)(uintptr_t)id;
  return NULL;
}

/* A new segment for the client: its name goes back; the server keeps no
 * mapping of it (the registry has its name, to unlink it). With a name:
 * the client's own segment (a ShareableList it laid out), adopted. */
static void open_shm(client_t *c, const mp__remote_req_t *req, result_t *res) {
  if (req->alen > 0) {
    char name[MP__MANAGER_NAME_MAX + 1];
    memcpy(name, req->a, req->alen); /* alen <= MP__MANAGER_NAME_MAX */
    name[req->alen] = 0;
    res->rc = mp__manager_adopt_shm(c->m, name);
    return;
  }
  mp_shm_t *s = mp__manager_new_shm(c->m, (size_t)req->m);
  if (!s) {
    res->rc = -errno;
    return;
  }
  res->out = strdup(mp_shm_name(s));
  res->out_len = res->out ? strlen(res->out) : 0;
  if (!res->out)
    res->rc = -ENOMEM;
  mp_shm_close(s);
}

static void open_object(client_t *c, const mp__remote_req_t *req,
                        result_t *res) {
  char name[MP__MANAGER_NAME_MAX + 1];
  uint32_t kind = (uint32_t)req->n;
  if (req->alen > MP__MANAGER_NAME_MAX || kind < MP__REMOTE_QUEUE ||
      kind >= MP__REMOTE_KINDS) {
    res->rc = MP_EINVAL;
    return;
  }
  if (kind == MP__REMOTE_SHM) {
    open_shm(c, req, res);
    return;
  }
  memcpy(name, req->a, req->alen);
  name[req->alen] = 0;
  void *obj = mp__manager_open(c->m, kind, name, (size_t)req->m);
  if (!obj) {
    res->rc = -errno;
    return;
  }
  if (c->n_opened == c->cap_opened) {
    size_t cap = c->cap_opened ? 2 * c->cap_opened : 8;
    opened_t *more = realloc(c->opened, cap * sizeof *more);
    if (!more) {
      res->rc = -ENOMEM;
      return;
    }
    c->opened = more;
    c->cap_opened = cap;
  }
  c->opened[c->n_opened++] = (opened_t){(uintptr_t)obj, kind};
  res->n = (int64_t)(uintptr_t)obj;
}

/* ---- queues: waiting in slices --------------------------------------------
 */

typedef int (*try_fn)(void *q, const mp__remote_req_t *req, result_t *res,
                      double timeout);

static int try_put(void *q, const mp__remote_req_t *req, result_t *res,
                   double timeout) {
  (void)res;
  return mp_queue_put(q, req->a, req->alen, timeout);
}

static int try_get(void *q, const mp__remote_req_t *req, result_t *res,
                   double timeout) {
  if (!req->m)
    return mp_queue_get(q, &res->out, &res->out_len, timeout);
  size_t cap = (size_t)req->n, len = 0;
  res->out = malloc(cap ? cap : 1);
  if (!res->out)
    return -ENOMEM;
  int rc = mp_queue_get_into(q, res->out, cap, &len, timeout);
  res->out_len = rc == 0 ? len : 0;
  if (rc == MP_EOVERFLOW)
    res->n = (int64_t)len;
  return rc;
}

typedef struct attempt {
  void *q;
  const mp__remote_req_t *req;
  result_t *res;
  try_fn fn;
} attempt_t;

static int attempt_once(void *arg, double timeout) {
  attempt_t *a = arg;
  return a->fn(a->q, a->req, a->res, timeout);
}

/* fn in slices (mp__manager_wait_sliced), for the request's timeout. */
static int wait_in_slices(client_t *c, void *q, const mp__remote_req_t *req,
                          result_t *res, try_fn fn) {
  attempt_t a = {q, req, res, fn};
  return mp__manager_wait_sliced(c->conn, req->timeout, SLICE, attempt_once,
                                 &a);
}

static void queue_op(client_t *c, const mp__remote_req_t *req, result_t *res) {
  mp_queue_t *q = object(c, req->id, MP__REMOTE_QUEUE);
  if (!q) {
    res->rc = MP_EINVAL;
    return;
  }
  switch (req->op) {
  case MP__OP_QUEUE_PUT:
    res->rc = wait_in_slices(c, q, req, res, try_put);
    break;
  case MP__OP_QUEUE_GET:
    res->rc = wait_in_slices(c, q, req, res, try_get);
    break;
  case MP__OP_QUEUE_QSIZE:
    res->n = (int64_t)mp_queue_qsize(q);
    break;
  case MP__OP_QUEUE_FULL:
    res->n = mp_queue_full(q);
    break;
  default:
    res->rc = mp_queue_close(q);
  }
}

/* ---- dicts ----------------------------------------------------------------
 */

/* Unpacks a packed items list (per item: `per` buffers) into an array of
 * (buf, len) pairs. NULL for a malformed one. */
static mp_list_item_t *unpack_all(const void *buf, size_t len, size_t per,
                                  size_t *n) {
  const unsigned char *at = buf, *end = at + len;
  size_t count = 0, cap = 16;
  mp_list_item_t *out = malloc(cap * sizeof *out);
  while (out && at < end) {
    if (count == cap) {
      mp_list_item_t *more = realloc(out, 2 * cap * sizeof *out);
      if (!more)
        break;
      out = more;
      cap *= 2;
    }
    if (!mp__remote_unpack(&at, end, &out[count].buf, &out[count].len))
      break;
    count++;
  }
  if (!out || at != end || count % per) {
    free(out);
    return NULL;
  }
  *n = count / per;
  return out;
}

/* Packs items (dict: key and value each, or keys only; list: bufs). */
static void pack_reply(const void *items, size_t n, bool dict, bool values,
                       result_t *res) {
  size_t per = dict && values ? 2 : 1, k = 0;
  const void **bufs = malloc((n * 2 + 1) * sizeof *bufs);
  size_t *lens = malloc((n * 2 + 1) * sizeof *lens);
  for (size_t i = 0; bufs && lens && i < n; i++) {
    if (dict) {
      const mp_dict_item_t *it = &((const mp_dict_item_t *)items)[i];
      bufs[k] = it->key, lens[k++] = it->klen;
      if (per == 2)
        bufs[k] = it->val, lens[k++] = it->vlen;
    } else {
      const mp_list_item_t *it = &((const mp_list_item_t *)items)[i];
      bufs[k] = it->buf, lens[k++] = it->len;
    }
  }
  res->out =
      bufs && lens ? mp__remote_pack(bufs, lens, k, &res->out_len) : NULL;
  if (!res->out)
    res->rc = -ENOMEM;
  free(bufs);
  free(lens);
}

/* A dict's items as the client asked: keys only are sent as (key, "")
 * pairs, so that the client reads pairs either way. */
static void dict_items(mp_dict_t *d, bool values, result_t *res) {
  mp_dict_item_t *items;
  size_t n;
  res->rc = mp_dict_items(d, &items, &n);
  if (res->rc < 0)
    return;
  if (!values)
    for (size_t i = 0; i < n; i++)
      items[i].vlen = 0;
  pack_reply(items, n, true, true, res);
  mp_free(items);
}

/* REPLACE: stores (or deletes) only if the value is still the one the
 * client read; -EAGAIN otherwise. */
struct replace {
  bool found, delete;
  const void *old, *new_val;
  size_t old_len, new_len;
};

static int replace_cb(const void *old, size_t old_len, bool found,
                      const void **new_val, size_t *new_len, void *arg) {
  struct replace *r = arg;
  if (found != r->found ||
      (found && (old_len != r->old_len || memcmp(old, r->old, old_len) != 0)))
    return -EAGAIN;
  *new_val = r->new_val;
  *new_len = r->new_len;
  return r->delete ? MP_DICT_DELETE : MP_DICT_STORE;
}

static int dict_replace(mp_dict_t *d, const mp__remote_req_t *req) {
  const unsigned char *at = req->b, *end = at + req->blen;
  struct replace r = {req->n & 1, (req->n & 2) != 0, NULL, NULL, 0, 0};
  if (!mp__remote_unpack(&at, end, &r.old, &r.old_len) ||
      !mp__remote_unpack(&at, end, &r.new_val, &r.new_len))
    return MP_EINVAL;
  return mp_dict_modify(d, req->a, req->alen, replace_cb, &r);
}

static void dict_op(client_t *c, const mp__remote_req_t *req, result_t *res) {
  mp_dict_t *d = object(c, req->id, MP__REMOTE_DICT);
  size_t n = 0;
  if (!d) {
    res->rc = MP_EINVAL;
    return;
  }
  switch (req->op) {
  case MP__OP_DICT_SET:
    res->rc = mp_dict_set(d, req->a, req->alen, req->b, req->blen);
    break;
  case MP__OP_DICT_GET:
    res->rc = mp_dict_get(d, req->a, req->alen, &res->out, &res->out_len);
    break;
  case MP__OP_DICT_POP:
    res->rc = mp_dict_pop(d, req->a, req->alen, req->n ? &res->out : NULL,
                          &res->out_len);
    break;
  case MP__OP_DICT_CONTAINS:
    res->rc = mp_dict_contains(d, req->a, req->alen);
    res->n = res->rc > 0;
    res->rc = res->rc < 0 ? res->rc : 0;
    break;
  case MP__OP_DICT_LEN:
    res->rc = mp_dict_len(d, &n);
    res->n = (int64_t)n;
    break;
  case MP__OP_DICT_SETDEFAULT:
    res->rc = mp_dict_setdefault(d, req->a, req->alen, req->b, req->blen,
                                 &res->out, &res->out_len);
    res->n = res->rc > 0;
    res->rc = res->rc < 0 ? res->rc : 0;
    break;
  case MP__OP_DICT_UPDATE: {
    mp_list_item_t *pairs = unpack_all(req->a, req->alen, 2, &n);
    mp_dict_item_t *items = pairs ? malloc((n + 1) * sizeof *items) : NULL;
    for (size_t i = 0; items && i < n; i++)
      items[i] = (mp_dict_item_t){pairs[2 * i].buf, pairs[2 * i].len,
                                  pairs[2 * i + 1].buf, pairs[2 * i + 1].len};
    res->rc = items ? mp_dict_update(d, items, n) : MP_EINVAL;
    free(items);
    free(pairs);
    break;
  }
  case MP__OP_DICT_ITEMS:
    dict_items(d, req->n != 0, res);
    break;
  case MP__OP_DICT_CLEAR:
    res->rc = mp_dict_clear(d);
    break;
  default:
    res->rc = dict_replace(d, req);
  }
}

/* ---- lists ----------------------------------------------------------------
 */

static void list_op(client_t *c, const mp__remote_req_t *req, result_t *res) {
  mp_list_t *l = object(c, req->id, MP__REMOTE_LIST);
  size_t n = 0;
  if (!l) {
    res->rc = MP_EINVAL;
    return;
  }
  long index = (long)req->n;
  switch (req->op) {
  case MP__OP_LIST_GET:
    res->rc = mp_list_get(l, index, &res->out, &res->out_len);
    break;
  case MP__OP_LIST_SET:
    res->rc = mp_list_set(l, index, req->a, req->alen);
    break;
  case MP__OP_LIST_POP:
    res->rc = mp_list_pop(l, index, req->m ? &res->out : NULL, &res->out_len);
    break;
  case MP__OP_LIST_INSERT:
  case MP__OP_LIST_APPEND:
    res->rc = mp_list_insert(l, index, req->a, req->alen);
    break;
  case MP__OP_LIST_EXTEND: {
    mp_list_item_t *items = unpack_all(req->a, req->alen, 1, &n);
    res->rc = items ? mp_list_extend(l, items, n) : MP_EINVAL;
    free(items);
    break;
  }
  case MP__OP_LIST_SLICE: {
    mp_list_item_t *items;
    res->rc = mp_list_slice(l, index, (long)req->m, &items, &n);
    if (res->rc == 0) {
      pack_reply(items, n, false, false, res);
      mp_free(items);
    }
    break;
  }
  case MP__OP_LIST_LEN:
    res->rc = mp_list_len(l, &n);
    res->n = (int64_t)n;
    break;
  default:
    res->rc = mp_list_clear(l);
  }
}

/* ---- locks, semaphores, events ---------------------------------------------
 * The waits run in slices (wait_in_slices) like a queue's, so that a client
 * gone while it waits is noticed. A lock is taken by this client's thread
 * of the server, so that at the end of the connection the locks that
 * thread still holds are the client's, and are released. */

static int try_acquire(void *obj, const mp__remote_req_t *req, result_t *res,
                       double timeout) {
  (void)res;
  switch ((uint32_t)req->m) {
  case MP__REMOTE_LOCK:
    return mp_lock_acquire(obj, timeout);
  case MP__REMOTE_RLOCK:
    return mp_rlock_acquire(obj, timeout);
  default:
    return mp_semaphore_acquire(obj, timeout);
  }
}

static int try_wait(void *obj, const mp__remote_req_t *req, result_t *res,
                    double timeout) {
  (void)req, (void)res;
  return mp_event_wait(obj, timeout);
}

/* The operations that do not wait: their code, or their result in n. */
static int sync_now(void *obj, uint32_t kind, uint32_t op, int64_t *n) {
  switch (kind << 8 | op) {
  case MP__REMOTE_LOCK << 8 | MP__SYNC_RELEASE:
    return mp_lock_release(obj);
  case MP__REMOTE_RLOCK << 8 | MP__SYNC_RELEASE:
    return mp_rlock_release(obj);
  case MP__REMOTE_SEMAPHORE << 8 | MP__SYNC_RELEASE:
    return mp_semaphore_release(obj);
  case MP__REMOTE_LOCK << 8 | MP__SYNC_LOCKED:
    *n = mp_lock_locked(obj);
    return 0;
  case MP__REMOTE_RLOCK << 8 | MP__SYNC_LOCKED:
    *n = mp_rlock_locked(obj);
    return 0;
  case MP__REMOTE_SEMAPHORE << 8 | MP__SYNC_VALUE:
    *n = mp_semaphore_value(obj);
    return *n < 0 ? (int)*n : 0;
  case MP__REMOTE_EVENT << 8 | MP__SYNC_SET:
    return mp_event_set(obj);
  case MP__REMOTE_EVENT << 8 | MP__SYNC_CLEAR:
    return mp_event_clear(obj);
  case MP__REMOTE_EVENT << 8 | MP__SYNC_IS_SET:
    *n = mp_event_is_set(obj);
    return 0;
  }
  return MP_EINVAL;
}

static void sync_op(client_t *c, const mp__remote_req_t *req, result_t *res) {
  uint32_t kind = (uint32_t)req->m, op = (uint32_t)req->n;
  void *obj = kind >= MP__REMOTE_LOCK && kind <= MP__REMOTE_EVENT
                  ? object(c, req->id, kind)
                  : NULL;
  if (!obj)
    res->rc = MP_EINVAL;
  else if (op == MP__SYNC_ACQUIRE && kind != MP__REMOTE_EVENT)
    res->rc = wait_in_slices(c, obj, req, res, try_acquire);
  else if (op == MP__SYNC_WAIT && kind == MP__REMOTE_EVENT)
    res->rc = wait_in_slices(c, obj, req, res, try_wait);
  else
    res->rc = sync_now(obj, kind, op, &res->n);
}

/* The end of a connection: what its thread still holds is released. */
static void release_held(client_t *c) {
  for (size_t i = 0; i < c->n_opened; i++) {
    void *obj = (void *)(uintptr_t)c->opened[i].id;
    struct mp_lock *lock = c->opened[i].kind == MP__REMOTE_LOCK
                               ? mp__object_open(obj, MP__LOCK_MAGIC)
                               : NULL;
    if (lock && mp__mutex_is_mine(&lock->mutex))
      mp_lock_release(obj);
    while (c->opened[i].kind == MP__REMOTE_RLOCK && mp_rlock_is_mine(obj))
      mp_rlock_release(obj);
  }
}

/* ---- connections ------------------------------------------------------------
 */

static void perform(client_t *c, const mp__remote_req_t *req, result_t *res) {
  if (req->op == MP__OP_OPEN) {
    open_object(c, req, res);
  } else if (req->op == MP__OP_SHUTDOWN) {
    atomic_store(&c->m->stop, 1);
  } else if (req->op >= MP__OP_QUEUE_PUT && req->op <= MP__OP_QUEUE_CLOSE) {
    queue_op(c, req, res);
  } else if (req->op >= MP__OP_DICT_SET && req->op <= MP__OP_DICT_REPLACE) {
    dict_op(c, req, res);
  } else if (req->op >= MP__OP_LIST_APPEND && req->op <= MP__OP_LIST_CLEAR) {
    list_op(c, req, res);
  } else if (req->op == MP__OP_SYNC) {
    sync_op(c, req, res);
  } else {
    res->rc = MP_EINVAL;
  }
}

/* How long a client's thread spins for the next request after an answer,
 * before it sleeps (manager.h: mp__manager_spin_for_input). */
#define SERVE_SPIN_NS 50000

/* Answers one request; false once the client is gone. */
static bool answer(client_t *c, const void *buf, size_t len) {
  mp__remote_req_t req;
  result_t res = {0, 0, NULL, 0};
  if (!mp__wire_parse_request(buf, len, &req))
    res.rc = MP_EINVAL;
  else
    perform(c, &req, &res);
  if (res.rc == MP__CLIENT_GONE)
    return false;
  size_t reply_len;
  void *reply = mp__wire_reply(res.rc, res.n, res.out, res.out_len, &reply_len);
  int rc = reply ? mp_conn_send_bytes(c->conn, reply, reply_len) : -ENOMEM;
  if (rc < 0 && res.rc == 0 && req.op == MP__OP_QUEUE_GET) {
    /* The client died as its message was taken: back into the queue. */
    mp_queue_put(object(c, req.id, MP__REMOTE_QUEUE), res.out, res.out_len,
                 MP_FOREVER);
  }
  free(reply);
  free(res.out);
  return rc == 0;
}

static void *serve_client(void *arg) {
  client_t *c = arg;
  for (bool answered = false;; answered = true) {
    void *buf;
    size_t len;
    /* A client calling in a loop sends its next request at once. */
    if (answered)
      mp__manager_spin_for_input(c->conn, SERVE_SPIN_NS);
    if (mp_conn_recv_bytes(c->conn, &buf, &len) < 0)
      break;
    /* Shut down: no more answers (the process ends soon). */
    bool more = !atomic_load(&c->m->stop) &&
                (mp__python_request(buf, len) /* a Python client's pickle */
                     ? mp__python_answer(c->m, c->conn, buf, len)
                     : answer(c, buf, len));
    mp_free(buf);
    if (!more)
      break;
  }
  release_held(c);
  mp_conn_free(c->conn);
  free(c->opened);
  free(c);
  return NULL;
}

static void start_client(mp__family_manager_t *m, mp_conn_t *conn) {
  client_t *c = calloc(1, sizeof *c);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  mp__manager_nodelay(conn);
  if (c) {
    *c = (client_t){m, conn, NULL, 0, 0};
    if (pthread_create(&t, &attr, serve_client, c) == 0)
      conn = NULL;
    else
      free(c);
  }
  pthread_attr_destroy(&attr);
  mp_conn_free(conn); /* NULL when the thread has it */
}

static void settle(mp__family_manager_t *m, uint32_t state) {
  atomic_store(&m->state, state);
  mp_event_set(m->changed);
}

void mp__manager_serve(void *arg) {
  mp__family_manager_t *m = *(mp__family_manager_t **)arg;
  mp_listener_t *l = mp_listener_new(m->address[0] ? m->address : NULL,
                                     m->has_key ? m->key : NULL, m->key_len);
  if (!l) {
    atomic_store(&m->error, -errno);
    settle(m, MP__MANAGER_FAILED);
    return;
  }
  snprintf(m->address, sizeof m->address, "%s", mp_listener_address(l));
  settle(m, MP__MANAGER_RUNNING);
  while (!atomic_load(&m->stop)) {
    mp_conn_t *conn;
    if (mp_listener_accept(l, ACCEPT_SLICE, &conn) == 0)
      start_client(m, conn);
  }
  mp_listener_free(l);
  mp__manager_unlink_shm(m); /* SharedMemoryManager's shutdown */
  settle(m, MP__MANAGER_STOPPED);
  /* The client threads may be inside calls: end at once, without exit
   * handlers (the objects are robust to that). */
  _exit(0);
}
