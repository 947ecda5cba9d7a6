/* Managers (manager.h): the family handle (in the arena, with the server
 * process it started) and the connected handle (a connection to a server,
 * the transport of remote handles). The wire format and the registry of
 * named objects are in registry.c, the server in server.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "managers/manager.h"
#include "managers/python.h"

#define START_TIMEOUT 20.0 /* for the server to listen */
#define STOP_TIMEOUT  5.0  /* for it to exit once told */

/* A connected handle (process-local). The threads on the connection take
 * turns at it in the order they came (tickets under `lock`): a thread
 * waiting in slices (sync_call) takes a new turn for each slice, so a
 * thread that came meanwhile (to release what it waits for) goes first;
 * with a plain mutex the slicer could take it back at once, every time.
 * After a failed exchange the stream may hold half a message, so the
 * connection is `broken` for good. */
typedef struct remote_manager {
  uint32_t magic;
  pthread_mutex_t lock;
  pthread_cond_t turn_changed;
  uint64_t next_ticket, serving;
  mp_conn_t *conn;
  bool broken;
  mp__pyclient_t *python; /* a Python manager's server: no conn */
  char address[MP__MANAGER_ADDRESS_MAX];
} remote_manager_t;

/* ---- the client: one exchange ---------------------------------------------
 */

/* How long a call spins for its reply before it sleeps: a call the server
 * answers at once (a get, a set, a put that fits) gets its reply within
 * it; one that blocks there (a get of an empty queue) then sleeps. */
#define CALL_SPIN_NS 20000

static void take_turn(remote_manager_t *m) {
  pthread_mutex_lock(&m->lock);
  uint64_t ticket = m->next_ticket++;
  while (m->serving != ticket)
    pthread_cond_wait(&m->turn_changed, &m->lock);
  pthread_mutex_unlock(&m->lock);
}

static void end_turn(remote_manager_t *m) {
  pthread_mutex_lock(&m->lock);
  m->serving++;
  pthread_cond_broadcast(&m->turn_changed);
  pthread_mutex_unlock(&m->lock);
}

static int exchange(remote_manager_t *m, const void *req, size_t req_len,
                    void **reply, size_t *reply_len) {
  if (m->broken)
    return MP_ECLOSED;
  int rc = mp_conn_send_bytes(m->conn, req, req_len);
  if (rc == 0) {
    mp__manager_spin_for_input(m->conn, CALL_SPIN_NS);
    rc = mp_conn_recv_bytes(m->conn, reply, reply_len);
  }
  if (rc < 0) {
    m->broken = true;
    return MP_ECLOSED; /* whatever broke, the server is out of reach */
  }
  return 0;
}

static int link_call(void *link, const mp__remote_req_t *req,
                     mp__remote_reply_t *rep) {
  remote_manager_t *m = link;
  if (m->python)
    return mp__pyclient_call(m->python, req, rep);
  size_t len, reply_len = 0;
  void *buf = mp__wire_request(req, &len), *reply = NULL;
  if (!buf)
    return -ENOMEM;
  take_turn(m);
  int rc = exchange(m, buf, len, &reply, &reply_len);
  end_turn(m);
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

/* mp_manager_connect, or mp_manager_connect_python with python. */
static mp_manager_t *connect_any(const char *address, const void *authkey,
                                 size_t authkey_len, bool python) {
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
  if (python)
    rc = (m->python = mp__pyclient_connect(address, key, key_len)) ? 0 : -errno;
  else
    rc = mp_client(address, key, key_len, &m->conn);
  if (rc < 0)
    goto error;
  strcpy(m->address, address);
  mp__manager_nodelay(m->conn);
  pthread_mutex_init(&m->lock, NULL);
  pthread_cond_init(&m->turn_changed, NULL);
  m->magic = MP__MANAGER_REMOTE_MAGIC;
  __atomic_store_n(&mp__remote_call, link_call, __ATOMIC_RELEASE);
  return (mp_manager_t *)m;
error:
  free(m);
  errno = mp__manager_errno(rc);
  return NULL;
}

mp_manager_t *mp_manager_connect(const char *address, const void *authkey,
                                 size_t authkey_len) {
  return connect_any(address, authkey, authkey_len, false);
}

mp_manager_t *mp_manager_connect_python(const char *address,
                                        const void *authkey,
                                        size_t authkey_len) {
  return connect_any(address, authkey, authkey_len, true);
}

const char *mp_manager_address(const mp_manager_t *m) {
  mp__family_manager_t *f = family(m);
  remote_manager_t *r = connected(m);
  return f ? f->address : r ? r->address : NULL;
}

/* Opens the server's object of that kind and name for this connection:
 * its id, and for a segment its name (in rep->out, for the caller). */
static int remote_open(remote_manager_t *r, uint32_t kind, const char *name,
                       size_t arg, mp__remote_reply_t *rep) {
  if (!name || strlen(name) > MP__MANAGER_NAME_MAX)
    return MP_EINVAL;
  mp__remote_req_t req = {.op = MP__OP_OPEN,
                          .a = name,
                          .alen = strlen(name),
                          .n = kind,
                          .m = (int64_t)arg};
  return link_call(r, &req, rep);
}

/* The id of the server's object for this connection. False with errno. */
static bool remote_id(remote_manager_t *r, uint32_t kind, const char *name,
                      size_t arg, uint64_t *id) {
  mp__remote_reply_t rep = {0, 0, NULL, 0};
  int rc = r->python ? mp__pyclient_open(r->python, kind, name, &rep.n)
                     : remote_open(r, kind, name, arg, &rep);
  free(rep.out);
  if (rc < 0)
    errno = mp__manager_errno(rc);
  *id = (uint64_t)rep.n;
  return rc == 0;
}

/* A proxy of the server's dict, list or queue of that name. */
static void *proxy_open(remote_manager_t *r, uint32_t kind, const char *name,
                        size_t maxsize) {
  uint64_t id;
  mp__remote_t *h = malloc(sizeof *h);
  if (!h || !remote_id(r, kind, name, maxsize, &id)) {
    free(h);
    return NULL;
  }
  *h = (mp__remote_t){MP__REMOTE_MAGIC, kind, r, id};
  return h;
}

/* ---- proxies of locks, semaphores and events (sync/proxy.h) ----------------
 */

#define SYNC_SLICE 0.1 /* seconds a waiting call holds the connection */

typedef struct sync_proxy {
  mp__sync_proxy_t head;
  uint32_t kind; /* MP__REMOTE_LOCK ... MP__REMOTE_EVENT */
  remote_manager_t *link;
  uint64_t id;
} sync_proxy_t;

/* One call. A wait is cut in slices, each a request of its own, so that
 * between them the connection is free for the other threads (one of them
 * may be about to release what this one waits for). */
static int sync_call(mp__sync_proxy_t *p, uint32_t op, double timeout) {
  sync_proxy_t *s = (sync_proxy_t *)p;
  int rc = mp__timeout_check(timeout);
  if (rc < 0)
    return rc;
  bool waits = op == MP__SYNC_ACQUIRE || op == MP__SYNC_WAIT;
  bool forever = timeout < 0;
  uint64_t end = forever ? 0 : mp__now_ns() + (uint64_t)(timeout * 1e9);
  mp__deadline_t interrupt = mp__deadline_in(MP_FOREVER);
  for (;;) {
    mp__remote_req_t req = {
        .op = MP__OP_SYNC,
        .id = s->id,
        .n = op,
        .m = s->kind,
        .timeout = waits ? mp__manager_slice(forever, end, SYNC_SLICE) : 0};
    mp__remote_reply_t rep = {0, 0, NULL, 0};
    rc = link_call(s->link, &req, &rep);
    free(rep.out);
    if (rc != MP_ETIMEDOUT || !waits || (!forever && mp__now_ns() >= end))
      return rc < 0 ? rc : (int)rep.n;
    if (mp__interrupted(&interrupt))
      return MP_EINTR; /* mp_interrupt(), between two slices */
  }
}

static void sync_free(mp__sync_proxy_t *p) {
  p->magic = 0;
  free(p);
}

static const mp__sync_proxy_ops_t sync_ops = {sync_call, sync_free};

/* The sync kind (sync/proxy.h) of a manager's kind. */
static uint32_t sync_kind(uint32_t kind) {
  return kind - MP__REMOTE_LOCK + MP__SYNC_LOCK;
}

static void *sync_proxy_open(remote_manager_t *r, uint32_t kind,
                             const char *name, size_t arg) {
  uint64_t id;
  sync_proxy_t *h = malloc(sizeof *h);
  if (!h || !remote_id(r, kind, name, arg, &id)) {
    free(h);
    return NULL;
  }
  *h = (sync_proxy_t){
      {MP__SYNC_PROXY_MAGIC, sync_kind(kind), &sync_ops}, kind, r, id};
  return h;
}

static void *open_any(mp_manager_t *m, uint32_t kind, const char *name,
                      size_t arg) {
  mp__family_manager_t *f = family(m);
  remote_manager_t *r = connected(m);
  if (f)
    return mp__manager_open(f, kind, name, arg);
  if (r && kind >= MP__REMOTE_LOCK)
    return sync_proxy_open(r, kind, name, arg);
  if (r)
    return proxy_open(r, kind, name, arg);
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

mp_lock_t *mp_manager_lock(mp_manager_t *m, const char *name) {
  return open_any(m, MP__REMOTE_LOCK, name, 0);
}

mp_rlock_t *mp_manager_rlock(mp_manager_t *m, const char *name) {
  return open_any(m, MP__REMOTE_RLOCK, name, 0);
}

mp_semaphore_t *mp_manager_semaphore(mp_manager_t *m, const char *name,
                                     unsigned value) {
  return open_any(m, MP__REMOTE_SEMAPHORE, name, value);
}

mp_event_t *mp_manager_event(mp_manager_t *m, const char *name) {
  return open_any(m, MP__REMOTE_EVENT, name, 0);
}

/* A connected client asks the server for a segment and maps it by name. */
static mp_shm_t *remote_shm(remote_manager_t *r, size_t size) {
  mp__remote_reply_t rep = {0, 0, NULL, 0};
  char name[MP__MANAGER_NAME_MAX + 1];
  int rc = remote_open(r, MP__REMOTE_SHM, "", size, &rep);
  if (rc == 0 && (rep.out_len == 0 || rep.out_len > MP__MANAGER_NAME_MAX))
    rc = MP_EINVAL;
  if (rc == 0) {
    memcpy(name, rep.out, rep.out_len);
    name[rep.out_len] = 0;
  }
  free(rep.out);
  if (rc < 0) {
    errno = mp__manager_errno(rc);
    return NULL;
  }
  return mp_shm_open(name, false, 0);
}

mp_shm_t *mp_manager_shm(mp_manager_t *m, size_t size) {
  mp__family_manager_t *f = family(m);
  remote_manager_t *r = connected(m);
  if (size == 0 || (!f && !r)) {
    errno = EINVAL;
    return NULL;
  }
  return f ? mp__manager_new_shm(f, size) : remote_shm(r, size);
}

/* SharedMemoryManager().ShareableList(items): the list is laid out here,
 * then the manager adopts its segment. A client's tracker forgets it just
 * before: the client may be of the server's family, with the same tracker,
 * which keeps a set of names, so a "forget" after the server's "track"
 * would undo it. (A client killed between the two leaves the segment to
 * nobody: the window is one request.) */
mp_shareable_list_t *mp_manager_shareable_list(mp_manager_t *m,
                                               const mp_shareable_item_t *items,
                                               size_t n) {
  mp__family_manager_t *f = family(m);
  remote_manager_t *r = connected(m);
  if (!f && !r) {
    errno = EINVAL;
    return NULL;
  }
  mp_shareable_list_t *l = mp_shareable_list_new(NULL, items, n);
  if (!l)
    return NULL;
  mp_shm_t *s = mp_shareable_list_shm(l);
  mp__remote_reply_t rep = {0, 0, NULL, 0};
  if (r)
    mp_shm_untrack(s);
  int rc = f ? mp__manager_adopt_shm(f, mp_shm_name(s))
             : remote_open(r, MP__REMOTE_SHM, mp_shm_name(s), 0, &rep);
  free(rep.out);
  if (rc < 0) {
    mp_shm_unlink(s);
    mp_shareable_list_close(l);
    errno = mp__manager_errno(rc);
    return NULL;
  }
  return l;
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
  if (r->python)
    return mp__pyclient_shutdown(r->python);
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
    mp__pyclient_free(r->python);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->turn_changed);
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
