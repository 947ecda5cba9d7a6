/* Proxies of locks, semaphores and events that live in a manager's server
 * (managers/): what the public functions of this area receive in place of
 * a shared-memory object when the caller is not of the server's family.
 *
 * This area sits below the managers, so it cannot call them: a proxy
 * carries its own table of functions (set by the managers area), and each
 * public function, when its handle check fails, hands the call to
 * mp__sync_proxy_call, which forwards it if the handle is a proxy of the
 * right kind and returns MP_EINVAL otherwise. The local objects' fast path
 * is untouched: the forward is only reached where the call would have
 * failed. */
#ifndef MPROC_SYNC_PROXY_H
#define MPROC_SYNC_PROXY_H

#include "core/internal.h"

#define MP__SYNC_PROXY_MAGIC 0x53505859u /* "SPXY" */

/* What a proxy stands for. */
enum mp__sync_kind {
  MP__SYNC_LOCK = 1,
  MP__SYNC_RLOCK,
  MP__SYNC_SEMAPHORE,
  MP__SYNC_EVENT,
};

/* The operations: acquire/release (Lock, RLock, Semaphore), locked (Lock,
 * RLock: 1 or 0), value (Semaphore), set/clear/is_set/wait (Event). */
enum mp__sync_op {
  MP__SYNC_ACQUIRE = 1,
  MP__SYNC_RELEASE,
  MP__SYNC_LOCKED,
  MP__SYNC_VALUE,
  MP__SYNC_SET,
  MP__SYNC_CLEAR,
  MP__SYNC_IS_SET,
  MP__SYNC_WAIT,
};

typedef struct mp__sync_proxy mp__sync_proxy_t;

typedef struct mp__sync_proxy_ops {
  /* Performs op (timeout for acquire and wait): the code of the public
   * function, or a non-negative result (locked, value, is_set). */
  int (*call)(mp__sync_proxy_t *p, uint32_t op, double timeout);
  void (*free)(mp__sync_proxy_t *p);
} mp__sync_proxy_ops_t;

/* The head of every proxy (process-local memory, made by managers/). */
struct mp__sync_proxy {
  uint32_t magic; /* MP__SYNC_PROXY_MAGIC */
  uint32_t kind;  /* enum mp__sync_kind */
  const mp__sync_proxy_ops_t *ops;
};

/* For a handle that failed its check: op performed through the proxy if h
 * is a proxy of that kind, else MP_EINVAL. */
int mp__sync_proxy_call(const void *h, uint32_t kind, uint32_t op,
                        double timeout);

/* For mp_<kind>_free: frees h and returns true if it is a proxy of that
 * kind; false (nothing done) otherwise. */
bool mp__sync_proxy_free(void *h, uint32_t kind);

#endif
