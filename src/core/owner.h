/* Owner identity (owner.c): which thread of the process family holds a
 * robust primitive, and whether it is still alive. Built on the futex core;
 * used by the sync objects, the queues' ring and the pool. */
#ifndef MPROC_OWNER_H
#define MPROC_OWNER_H

#include "core/futex.h"

/* A token names one thread of the process family: an index into the owner
 * table in shared memory plus the generation of that slot, so a slot reused
 * by another thread never passes for its dead previous owner. Tokens fit in
 * bits 0..30; 0 is no owner. */
typedef uint32_t mp__owner_t;

#define MP__OWNER_NONE 0u
#define MP__OWNER_MASK 0x7fffffffu

/* The calling thread's token once it took one (MP__OWNER_NONE before, and
 * again in a forked child). Initial-exec TLS: one load on the fast paths. */
extern _Thread_local MP__TLS_MODEL mp__owner_t mp__self_token;

/* Takes a slot for the calling thread: see mp__owner_self. */
int mp__owner_take(mp__owner_t *token);

/* The calling thread's token, taken on first use (and again after fork).
 * 0, or -EAGAIN when the table has no free slot, -ENOMEM without shared
 * memory for it. */
static inline int mp__owner_self(mp__owner_t *token) {
  mp__owner_t mine = mp__self_token;
  if (__builtin_expect(mine == MP__OWNER_NONE, 0))
    return mp__owner_take(token);
  *token = mine;
  return 0;
}

/* Whether token names the calling thread (never takes a slot). */
static inline bool mp__owner_is_self(mp__owner_t token) {
  return token != MP__OWNER_NONE && token == mp__self_token;
}

/* Whether the thread named by token has ended (died, exited or exec'd).
 * Waiters that find it dead also wake the others waiting for it. */
bool mp__owner_dead(mp__owner_t token);

/* The process and thread ids of a live token's owner; false if it ended. */
bool mp__owner_ids(mp__owner_t token, pid_t *pid, pid_t *tid);

/* Sleeps until one of the watched words changes, the owner named by token
 * dies, or the deadline passes. Returns 0 (re-check), MP_ETIMEDOUT, or
 * MP_EOWNERDEAD when the owner is dead (also when it already was). With
 * MP__OWNER_NONE it is a plain mp__futex_waitv. At most
 * MP__FUTEX_WATCH_MAX - 1 words. */
int mp__owner_wait(mp__owner_t token, const mp__futex_watch_t *watch,
                   unsigned n, const mp__deadline_t *deadline);

/* Shared memory for a sync object (mp__shm_alloc), once the owner table
 * exists: constructors make it, so that it is created by the process that
 * makes the objects, before its children start. NULL with errno. */
void *mp__sync_alloc(size_t size);

#endif
