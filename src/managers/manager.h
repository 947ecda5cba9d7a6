/* What the manager's two sides share (manager.c: the handles and the
 * client; server.c: the server process). */
#ifndef MPROC_MANAGERS_H
#define MPROC_MANAGERS_H

#include <pthread.h>

#include "containers/remote.h"
#include "mproc/manager.h"
#include "sync/proxy.h"

#define MP__MANAGER_MAGIC        0x4d4e4752u /* "MNGR": a family handle */
#define MP__MANAGER_REMOTE_MAGIC 0x4d4e4743u /* "MNGC": a connected one */
#define MP__MANAGER_ADDRESS_MAX  256
#define MP__MANAGER_KEY_MAX      256
#define MP__MANAGER_NAME_MAX     200

enum mp__manager_state {
  MP__MANAGER_STARTING,
  MP__MANAGER_RUNNING,
  MP__MANAGER_FAILED,
  MP__MANAGER_STOPPED,
};

/* A family handle, in the arena (valid in the family under every start
 * method). The registry maps "<kind>:<name>" to the object's pointer. */
typedef struct mp__family_manager {
  _Atomic uint32_t magic;
  uint32_t generation;    /* of its handle (mp__object_publish) */
  _Atomic uint32_t state; /* enum mp__manager_state */
  _Atomic int32_t error;  /* why the server failed to start */
  _Atomic uint32_t stop;  /* the server should stop */
  pid_t creator;          /* the process that made it (frees it) */
  mp_process_t *server;   /* valid in the creator only */
  bool joined;            /* the creator joined the server */
  mp_dict_t *registry;
  mp_event_t *changed; /* set by the server when it ran or stopped */
  bool has_key;
  size_t key_len;
  unsigned char key[MP__MANAGER_KEY_MAX];
  char address[MP__MANAGER_ADDRESS_MAX];
} mp__family_manager_t;
MP__OBJECT_LAYOUT(mp__family_manager_t);

/* ---- registry.c: below server.c and manager.c ---------------------------- */

/* Sets TCP_NODELAY on a connection's socket (nothing on a Unix socket). */
void mp__manager_nodelay(mp_conn_t *c);

/* The errno of a constructor that failed with rc (an MP_E* code or
 * -errno). */
int mp__manager_errno(int rc);

/* The server's object of that kind and name, made on first use (arg: a
 * queue's maxsize, a semaphore's value). NULL with errno. */
void *mp__manager_open(mp__family_manager_t *m, uint32_t kind, const char *name,
                       size_t arg);

/* A new segment of size bytes (a random name), owned by the manager: it is
 * unlinked when the server stops or the manager is freed. NULL with
 * errno (those of mp_shm_open). */
mp_shm_t *mp__manager_new_shm(mp__family_manager_t *m, size_t size);

/* Makes an existing segment (a client made it) the manager's, as if it had
 * made it: registered, and tracked by the family's resource tracker. 0,
 * MP_EINVAL (a bad name), or a code of the registry. */
int mp__manager_adopt_shm(mp__family_manager_t *m, const char *name);

/* Unlinks every segment of the manager. */
void mp__manager_unlink_shm(mp__family_manager_t *m);

/* Frees every named object and unlinks every segment (the creator, at
 * free). */
void mp__manager_registry_free(mp__family_manager_t *m);

/* The next slice of a wait in slices of `slice` seconds that ends at `end`
 * (mp__now_ns; forever: no end): the smaller of slice and what is left. */
double mp__manager_slice(bool forever, uint64_t end, double slice);

/* Spins up to ns for input on conn (a request or a reply) before a
 * blocking receive. On an idle machine a blocking wait for the peer's
 * answer costs the wake-up of a sleeping CPU on each side, several times
 * the round trip itself (bench_manager: a loopback round trip 14 us with
 * the CPUs awake, 60 us from idle); a call answered within the spin pays
 * none. Bounded, as the pool's waits spin (request.c, worker.c): the
 * CPU a slow answer costs is at most ns. It yields at each look: on a
 * busy machine the peer may be waiting for this very CPU (without the
 * yield, a call there took 4x a plain round trip). */
void mp__manager_spin_for_input(mp_conn_t *conn, uint64_t ns);

/* A server's wait for a client's blocking call: runs attempt(arg, t) with
 * t at most `slice` seconds until it ends otherwise than by its slice
 * running out (MP_ETIMEDOUT of a wait, MP_EEMPTY of a get, MP_EFULL of a
 * put), `timeout` passes (< 0 or NaN: never), or the client hangs up:
 * MP__CLIENT_GONE (a client waiting for its reply sends nothing, so
 * anything readable on conn is its end). Otherwise attempt's last code. */
#define MP__CLIENT_GONE 1 /* not a code: no reply is owed */
int mp__manager_wait_sliced(mp_conn_t *conn, double timeout, double slice,
                            int (*attempt)(void *arg, double t), void *arg);

/* The wire: a request is {u32 op, u64 id, u64 alen, a, u64 blen, b, i64 n,
 * i64 m, f64 timeout}; a reply {i32 rc, i64 n, out...}. Native byte order:
 * both ends are mproc on the same kind of machine. */
void *mp__wire_request(const mp__remote_req_t *req, size_t *len);
bool mp__wire_parse_request(const void *buf, size_t len, mp__remote_req_t *req);
void *mp__wire_reply(int rc, int64_t n, const void *out, size_t out_len,
                     size_t *len);
/* A reply's code, with its n and a malloc'd copy of its bytes in rep. */
int mp__wire_parse_reply(const void *buf, size_t len, mp__remote_reply_t *rep);

/* ---- server.c ---------------------------------------------------------- */

/* The server process's main. */
void mp__manager_serve(void *arg);

#endif
