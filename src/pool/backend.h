/* The pool's backend interface (internal, exported for libmproc_mpi): a
 * backend runs some of a pool's work outside its worker processes -- the
 * MPI library runs it on other hosts -- through slots of its own in the
 * shared queue. The pool's public functions stay what they are: a backend
 * takes chunks from the same queue as the workers and commits their
 * results the same way, so map, imap, apply and their async forms, their
 * callbacks, close, join and terminate need no change.
 *
 * The backend's slots come after the workers'; slot numbers here count
 * from 0 among the backend's. One thread of the backend uses them (the
 * calls below are not meant to race with each other for one slot). A slot
 * holds at most one claim: claim, then exactly one of commit, lost or
 * drop. */
#ifndef MPROC_POOL_BACKEND_H
#define MPROC_POOL_BACKEND_H

#include "pool/parent.h"

/* A claimed chunk: items [first, first + n) of a map, or an apply (n 1). */
typedef struct mp__pool_chunk {
  bool apply;
  const mp__fnref_t *fn; /* valid as long as the pool */
  const char *in;        /* the chunk's input (map: n * in_size bytes) */
  char *out;             /* where its output goes (map: n * out_size) */
  uint64_t in_size;      /* map: per item; apply: the input's length */
  uint64_t out_size;     /* map: per item; apply: the result's capacity */
  uint64_t first, n;
  uint32_t losses; /* how often these items were lost already */
} mp__pool_chunk_t;

/* A pool with `slots` backend slots, whose automatic chunk sizes divide
 * the work among chunk_processes (0: the pool's processes). As
 * mp_pool_new otherwise. The backend is called from the pool's threads
 * as pool.h describes from the moment the pool exists. */
MP_API mp_pool_t *mp__pool_new_backend(const mp_pool_opts_t *opts,
                                       uint32_t slots, int chunk_processes,
                                       const mp__pool_backend_t *backend,
                                       void *arg);

/* Claims the next chunk for slot into *chunk. false when there is none, or
 * the pool is terminating. */
MP_API bool mp__pool_backend_claim(mp_pool_t *pool, uint32_t slot,
                                   mp__pool_chunk_t *chunk);

/* One item's outcome as a backend reports it: MP__ITEM_OK or an MP_E*
 * code, and the task's own code for MP_ETASK. */
typedef struct mp__pool_outcome {
  int32_t state;
  int32_t task_code;
} mp__pool_outcome_t;

/* The claim of slot has run; its output was written where the chunk said.
 * outcomes: one per item, or NULL when every item succeeded. out_len: an
 * apply's result length. Wakes the waiters. */
MP_API void mp__pool_backend_commit(mp_pool_t *pool, uint32_t slot,
                                    const mp__pool_outcome_t *outcomes,
                                    uint64_t out_len);

/* The claim of slot was lost with its host: its items go back to the
 * queue if they were lost at most `retries` times, else they fail with
 * MP_ELOST. Returns true when they were queued again. */
MP_API bool mp__pool_backend_lost(mp_pool_t *pool, uint32_t slot,
                                  uint32_t retries);

/* Drops the claim of slot unrun, leaving its items pending (the backend's
 * stop: terminate then fails them). */
MP_API void mp__pool_backend_drop(mp_pool_t *pool, uint32_t slot);

/* The address of a function reference in this process, or NULL. */
MP_API void *mp__pool_backend_resolve(const mp__fnref_t *ref);

#endif
