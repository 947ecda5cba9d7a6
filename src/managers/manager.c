/* Managers (manager.h): the family handle (in the arena, with the server
 * process it started) and the connected handle (a connection to a server,
 * the transport of remote handles). The wire format and the registry of
 * named objects are in registry.c, the server in server.c. */
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
  rc = mp__wire_parse_reply(reply, reply_len, rep);
  free(reply);
  return rc;
}

/* ---- handles ---------------------------------------------------------------
 */

static mp__family_manager_t *family(const mp_manager_t *m) {
  return mp__object_open(m, MP__MANAGER_MAGIC);
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
  mp_manager_t *handle = mp__object_publish(f, MP__MANAGER_MAGIC);
  if ((rc = start_server(f)) < 0)
    goto error;
  return handle;
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
  errno = mp__manager_errno(rc);
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
  errno = mp__manager_errno(rc);
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
    errno = mp__manager_errno(rc);
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
  mp__manager_registry_free(f);
  mp_dict_free(f->registry);
  mp_event_free(f->changed);
  atomic_store(&f->magic, 0);
  mp_raw_free(f);
}
