/* Handles of objects that live in a manager's server process (managers/):
 * what the public functions of queues, dicts and lists receive in place of
 * a shared-memory object when the caller is not of the server's family.
 * Such a handle is process-local memory starting with MP__REMOTE_MAGIC;
 * the public functions recognise it (mp__remote_of) and forward the call
 * as one request/reply through mp__remote_call, which the managers area
 * sets when it makes its first handle. This area only knows the shape of a
 * request; the connection and the server are the managers'. */
#ifndef MPROC_REMOTE_H
#define MPROC_REMOTE_H

#include "core/internal.h"

#define MP__REMOTE_MAGIC 0x524d5445u /* "RMTE" */

enum mp__remote_kind {
  MP__REMOTE_QUEUE = 1,
  MP__REMOTE_DICT,
  MP__REMOTE_LIST,
  MP__REMOTE_LOCK, /* locks, semaphores and events: sync/proxy.h */
  MP__REMOTE_RLOCK,
  MP__REMOTE_SEMAPHORE,
  MP__REMOTE_EVENT,
  MP__REMOTE_SHM, /* a shared memory segment: its name */
  MP__REMOTE_KINDS,
};

/* The operations a server performs for a handle. Numbers are on the wire
 * (between mproc builds of the same version). */
enum mp__remote_op {
  MP__OP_OPEN = 1, /* a: name, n: kind, m: maxsize (queues), value
                      (semaphores), size (shm) -> n: id, out: shm name */
  MP__OP_SHUTDOWN,
  MP__OP_QUEUE_PUT, /* a: message */
  MP__OP_QUEUE_GET, /* m: 1 for get_into with n: its capacity -> out */
  MP__OP_QUEUE_QSIZE,
  MP__OP_QUEUE_FULL,
  MP__OP_QUEUE_CLOSE,
  MP__OP_DICT_SET, /* a: key, b: value */
  MP__OP_DICT_GET,
  MP__OP_DICT_POP,      /* n: 1 to return the value */
  MP__OP_DICT_CONTAINS, /* -> n */
  MP__OP_DICT_LEN,
  MP__OP_DICT_SETDEFAULT, /* -> n: 1 if stored, out: the value */
  MP__OP_DICT_UPDATE,     /* a: items (mp__remote_pack_items) */
  MP__OP_DICT_ITEMS,      /* n: 1 with values -> out: items */
  MP__OP_DICT_CLEAR,
  MP__OP_DICT_REPLACE, /* a: key, b: expected old then new, n: flags */
  MP__OP_LIST_APPEND,
  MP__OP_LIST_GET, /* n: index */
  MP__OP_LIST_SET,
  MP__OP_LIST_POP,
  MP__OP_LIST_INSERT,
  MP__OP_LIST_EXTEND, /* a: items */
  MP__OP_LIST_SLICE,  /* n: start, m: stop -> out: items */
  MP__OP_LIST_LEN,
  MP__OP_LIST_CLEAR,
  MP__OP_SYNC, /* m: kind, n: enum mp__sync_op -> n: its result */
  MP__OP_COUNT,
};

/* A handle (malloc'ed by the managers area). */
typedef struct mp__remote {
  uint32_t magic;
  uint32_t kind;
  void *link; /* the manager's connection */
  uint64_t id;
} mp__remote_t;

/* One request: every operation fits this shape. */
typedef struct mp__remote_req {
  uint32_t op;
  uint64_t id;
  const void *a;
  size_t alen;
  const void *b;
  size_t blen;
  int64_t n, m;
  double timeout;
} mp__remote_req_t;

/* Its reply: the code, an integer, and bytes (malloc'ed, for the caller). */
typedef struct mp__remote_reply {
  int rc;
  int64_t n;
  void *out;
  size_t out_len;
} mp__remote_reply_t;

/* The transport, set by the managers area (atomically: read with
 * __atomic_load_n): sends req on link and waits for the reply. Returns the
 * reply's code; MP_ECLOSED when the server is gone (then rep->out is NULL). */
extern int (*mp__remote_call)(void *link, const mp__remote_req_t *req,
                              mp__remote_reply_t *rep);

/* The handle h if it is a remote handle of that kind, else NULL. A handle
 * in the arena is never remote; any other pointer is read for its magic. */
static inline mp__remote_t *mp__remote_of(const void *h, uint32_t kind) {
  if (!h || mp__arena_contains(h))
    return NULL;
  const mp__remote_t *r = h;
  return r->magic == MP__REMOTE_MAGIC && r->kind == kind ? (mp__remote_t *)r
                                                         : NULL;
}

/* Calls op for r with the given arguments; out/out_len (may be NULL) get
 * the reply's bytes (on success), n (may be NULL) its integer. */
int mp__remote_do(mp__remote_t *r, mp__remote_req_t req, void **out,
                  size_t *out_len, int64_t *n);

/* The same, copying the reply's bytes into buf (cap bytes): MP_EOVERFLOW
 * with *len the size needed when they do not fit. */
int mp__remote_do_into(mp__remote_t *r, mp__remote_req_t req, void *buf,
                       size_t cap, size_t *len);

/* Items lists on the wire: (u64 len, bytes) pairs, one after the other. */
size_t mp__remote_pack_size(const size_t *lens, size_t n);

/* Queue calls on a remote handle (queue.c forwards to these). */
int mp__remote_queue_put(mp__remote_t *r, const void *buf, size_t len,
                         double timeout);
int mp__remote_queue_get(mp__remote_t *r, void **buf, size_t *len,
                         double timeout);
int mp__remote_queue_get_into(mp__remote_t *r, void *buf, size_t cap,
                              size_t *len, double timeout);
size_t mp__remote_queue_qsize(mp__remote_t *r);
bool mp__remote_queue_full(mp__remote_t *r);
int mp__remote_queue_close(mp__remote_t *r);
void mp__remote_free(mp__remote_t *r);

#endif
